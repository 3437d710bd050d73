"""The run config tree: model, data, training, curriculum. Dataclasses are the schema.

Defaults <- YAML preset <- `a.b=c` command-line overrides, merged by `config_tree.merge_into`;
an unknown key anywhere is a one-line error naming it and the valid keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from coconutblt.config_tree import merge_into, parse_overrides, read_yaml, to_dict
from coconutblt.data.stages import StageConfig
from coconutblt.model.config import ModelConfig


@dataclass
class DataConfig:
    """What to train on. kind "reasoning": {question, steps, answer} examples (files in any
    format `coconutblt.data.reasoning` reads, or a synthetic task); kind "text": byte windows
    from text files (none given -> the Python standard library's sources)."""

    kind: Literal["reasoning", "text"] = "reasoning"
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    synth_task: str = "chain"  # used when `train` is empty and kind is reasoning
    synth_n: int = 20000
    synth_val_n: int = 300
    synth_args: dict[str, Any] = field(default_factory=dict)
    max_examples: int = 0  # 0 = all
    # reasoning: > 0 makes an epoch this many examples drawn afresh from all of them (short
    # curriculum stages on a large set); 0 = an epoch is every example once
    examples_per_epoch: int = 0
    max_val_examples: int = 0  # 0 = all
    seq_len: int = 256  # text windows, and the cap on a reasoning example's length
    holdout: float = 0.02  # text: share of the corpus kept for held-out bits-per-byte


@dataclass
class TrainingConfig:
    steps: int = 0  # text runs: optimizer steps; reasoning runs count epochs (curriculum)
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bf16 autocast on CUDA
    compile: bool = False
    activation_checkpointing: bool = False
    train_estimator: bool = False  # learned entropy estimator: add its auxiliary loss
    est_loss_weight: float = 1.0
    entropy_model: str = ""  # checkpoint of a trained EntropyModel for patcher=entropy
    # >0: fixed patches first, entropy patches after this many steps
    patch_curriculum_steps: int = 0
    log_every: int = 10
    eval_every: int = 0  # text runs: steps between held-out evaluations (0 = at the end)
    save_every: int = 0  # steps between checkpoints (0 = each epoch / at the end)
    eval_max_new_tokens: int = 0  # 0 = from the data: 1.5x the longest target at the stage
    num_threads: int = 0  # CPU threads (0 = torch default)
    max_steps_per_run: int = 0  # >0: checkpoint and stop after this many steps (resume later)


@dataclass
class CurriculumConfig:
    """The Coconut stage schedule (as the official code): stage = epoch // epochs_per_stage."""

    mode: Literal["coconut", "cot", "no_cot", "no_thoughts", "pause", "no_curriculum"] = "coconut"
    c_thought: int = 1
    max_latent_stage: int = 3
    epochs_per_stage: int = 1
    num_epochs: int = 4
    pad_latent_to_max: bool = False
    uniform_prob: float = 0.0
    reset_optimizer: bool = True
    markers: bool | None = None  # None: the mode's default (coconut/pause/no_curriculum: yes)
    init_from: str = ""  # checkpoint to start from (e.g. a CoT run for stage >= 1)
    start_stage: int = 0  # curriculum modes: stage of the first epoch (1 after a CoT init)
    # weight of a next-byte loss on the question's bytes (0 = masked, as the paper): a byte
    # model trained from scratch learns to read the facts from it
    question_loss_weight: float = 0.0


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def stage_config(cfg: RunConfig) -> StageConfig:
    """How the run formats an example at each stage (the `curriculum:` section)."""
    c = cfg.curriculum
    return StageConfig(
        c.mode, c.c_thought, c.max_latent_stage, c.pad_latent_to_max, c.uniform_prob, c.markers
    )


def context_limit(cfg: RunConfig) -> int:
    """Longest training or validation example in bytes: `data.seq_len` within `model.max_seq_len`."""
    return (
        min(cfg.model.max_seq_len, cfg.data.seq_len) if cfg.data.seq_len else cfg.model.max_seq_len
    )


def load_run_config(path: str | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults <- YAML file (if any) <- dotted overrides."""
    cfg = RunConfig()
    if path:
        cfg = merge_into(cfg, read_yaml(path), "", str(path))
    if overrides:
        cfg = merge_into(cfg, parse_overrides(overrides), "", "command line")
    return cfg


def run_config_from_dict(values: dict[str, Any], source: str) -> RunConfig:
    return merge_into(RunConfig(), values, "", source)
