"""The run config tree: model, data, training, curriculum. Dataclasses are the schema.

Defaults <- YAML preset <- `a.b=c` command-line overrides, merged by `config_tree.merge_into`;
an unknown key anywhere is a one-line error naming it and the valid keys.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from coconutblt.config_tree import merge_into, parse_overrides, read_yaml, to_dict
from coconutblt.data.chains import CHAINS
from coconutblt.data.stages import StageConfig
from coconutblt.errors import ConfigValueError, check_config
from coconutblt.model.config import ModelConfig
from coconutblt.runtime.trackers import check_trackers


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
    # reasoning: > 0 sorts each run of this many batches of the epoch's shuffle by example
    # length and shuffles the batches, so a batch pads to a near length instead of the longest
    # of a random 16 (synthetic 1-5 hop ProntoQA: a third of a random batch is padding); 0 = off
    group_by_length: int = 0
    max_val_examples: int = 0  # 0 = all
    seq_len: int = 256  # text windows, and the cap on a reasoning example's length
    holdout: float = 0.02  # text: share of the corpus kept for held-out bits-per-byte

    def __post_init__(self) -> None:
        check_config(
            _at_least(self, 1, "synth_n", "synth_val_n")
            + _at_least(self, 0, "max_examples", "examples_per_epoch", "max_val_examples")
            + _at_least(self, 0, "group_by_length")
            + _at_least(self, 0, "seq_len")
            + [
                (
                    0 <= self.holdout < 1,
                    "holdout",
                    f"is a share of the corpus in [0, 1), got {self.holdout}",
                )
            ]
        )


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
    # torch.compile every block (cached decoding stays eager); eager, with a warning, where it
    # cannot build (a CPU run needs a C++ compiler)
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
    # mirror metrics.jsonl into trackers: [tensorboard] (OUT/tensorboard), [wandb] (offline
    # unless WANDB_MODE says otherwise), or both; optional packages, off by default
    report_to: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_config(
            _at_least(self, 1, "batch_size", "grad_accum", "log_every")
            + _at_least(self, 0, "steps", "warmup_steps", "weight_decay", "grad_clip")
            + _at_least(self, 0, "est_loss_weight", "patch_curriculum_steps", "eval_every")
            + _at_least(self, 0, "save_every", "eval_max_new_tokens", "num_threads")
            + _at_least(self, 0, "max_steps_per_run")
            + [(False, "report_to", problem) for problem in check_trackers(self.report_to)]
            + [
                (
                    math.isfinite(self.lr) and self.lr > 0,
                    "lr",
                    f"must be a number > 0, got {self.lr} (e.g. training.lr=1e-3)",
                ),
                (
                    0 <= self.min_lr_ratio <= 1,
                    "min_lr_ratio",
                    f"is a share of lr in [0, 1], got {self.min_lr_ratio}",
                ),
                (0 <= self.beta1 < 1, "beta1", f"must be in [0, 1), got {self.beta1}"),
                (0 <= self.beta2 < 1, "beta2", f"must be in [0, 1), got {self.beta2}"),
                (
                    re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device) is not None,
                    "device",
                    f"must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}",
                ),
            ]
        )


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
    # weight of a second next-byte loss on the answer's bytes alone: the answer is one byte of
    # a ~300-byte chain, so the mean loss barely trains it
    answer_loss_weight: float = 0.0
    # the last steps of every example stay written at every stage (not in the paper): e.g. a
    # final step that restates the question, so the answer's decision is read from bytes
    keep_last_steps: int = 0
    # false: a stage above an example's step count gives it a thought per step, not per stage
    # (the official training pads short examples with thoughts; its evaluation does not)
    thoughts_beyond_steps: bool = True
    # how the steps are written (coconutblt.data.chains): "given", "prontoqa_backward" (a
    # ProntoQA proof walked back from the goal rule, which has no branch to choose) or
    # "prontoqa_search" (the same walk, opened at the first rule naming the asked property)
    chain: str = "given"

    def __post_init__(self) -> None:
        check_config(
            _at_least(self, 1, "c_thought", "epochs_per_stage", "num_epochs")
            + _at_least(self, 0, "max_latent_stage", "start_stage", "question_loss_weight")
            + _at_least(self, 0, "answer_loss_weight", "keep_last_steps")
            + [
                (
                    0 <= self.uniform_prob <= 1,
                    "uniform_prob",
                    f"is a probability in [0, 1], got {self.uniform_prob}",
                ),
                (
                    self.start_stage <= self.max_latent_stage,
                    "start_stage",
                    f"{self.start_stage} is beyond max_latent_stage={self.max_latent_stage}; "
                    "lower it or raise curriculum.max_latent_stage",
                ),
                (
                    self.chain in CHAINS,
                    "chain",
                    f"is one of {', '.join(CHAINS)}, got {self.chain!r}",
                ),
            ]
        )


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)

    def check(self, source: str = "") -> None:
        """Checks across sections, on the config a run is about to use (each section checks its
        own values when it is built; a preset may leave a key to the command line)."""
        try:
            self._check_across()
        except ConfigValueError as exc:
            raise exc.within("", source) from None

    def _check_across(self) -> None:
        m, d, c = self.model, self.data, self.curriculum
        window = d.seq_len or m.max_seq_len
        thoughts = c.c_thought * c.max_latent_stage
        check_config(
            [
                (
                    d.kind != "text" or 2 <= d.seq_len <= m.max_seq_len,
                    "data.seq_len",
                    f"text windows of {d.seq_len} bytes: set data.seq_len between 2 and "
                    f"model.max_seq_len={m.max_seq_len}",
                ),
                (
                    d.kind != "text" or self.training.steps >= 1,
                    "training.steps",
                    "text runs count optimizer steps: set training.steps >= 1 (e.g. 200)",
                ),
                (
                    d.kind != "reasoning"
                    or c.mode in ("cot", "no_cot")
                    or thoughts < min(window, m.max_seq_len),
                    "curriculum.max_latent_stage",
                    f"the last stage's {thoughts} thoughts (c_thought {c.c_thought} x "
                    f"max_latent_stage {c.max_latent_stage}) fill the {min(window, m.max_seq_len)}"
                    "-byte context; lower them or raise data.seq_len / model.max_seq_len",
                ),
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def _at_least(section, low: int, *keys: str) -> list[tuple[bool, str, str]]:
    """Checks that each of `keys` in `section` is >= `low`."""
    return [
        (getattr(section, k) >= low, k, f"must be >= {low}, got {getattr(section, k)}")
        for k in keys
    ]


def stage_config(cfg: RunConfig) -> StageConfig:
    """How the run formats an example at each stage (the `curriculum:` section)."""
    c = cfg.curriculum
    return StageConfig(
        mode=c.mode,
        c_thought=c.c_thought,
        max_latent_stage=c.max_latent_stage,
        pad_latent_to_max=c.pad_latent_to_max,
        uniform_prob=c.uniform_prob,
        markers=c.markers,
        keep_last_steps=c.keep_last_steps,
        thoughts_beyond_steps=c.thoughts_beyond_steps,
        chain=c.chain,
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
