"""Turn the `data:` section of a run config into training and validation data."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from coconutblt.data.corpora import read_corpus, split_corpus
from coconutblt.data.reasoning import Example, exclude_questions, load_examples
from coconutblt.data.stages import format_example
from coconutblt.data.synth import synthesize
from coconutblt.errors import UserError
from coconutblt.train.config import RunConfig, context_limit, stage_config


@dataclass
class ReasoningData:
    train: list[Example]
    val: list[Example]
    dropped: int  # examples longer than the model's context, left out


@dataclass
class TextData:
    train: torch.Tensor  # uint8 bytes
    heldout: torch.Tensor


def _load_many(paths: list[str]) -> list[Example]:
    out: list[Example] = []
    for p in paths:
        out.extend(load_examples(p))
    return out


def load_reasoning(cfg: RunConfig) -> ReasoningData:
    d = cfg.data
    if d.train:
        train = _load_many(d.train)
        val = _load_many(d.val) if d.val else []
        if not val:  # hold out the tail of the training files
            n_val = max(len(train) // 10, 1)
            n_val = min(d.max_val_examples, n_val) if d.max_val_examples else n_val
            train, val = train[:-n_val], train[-n_val:]
        else:
            train = exclude_questions(train, val)  # no validation question is trained on
    else:
        train = synthesize(d.synth_task, d.synth_n, seed=cfg.training.seed, **d.synth_args)
        val = (
            _load_many(d.val)
            if d.val
            else synthesize(
                d.synth_task, d.synth_val_n, seed=cfg.training.seed + 10_007, **d.synth_args
            )
        )
        val = exclude_questions(val, train)
    if d.max_examples:
        train = train[: d.max_examples]
    if d.max_val_examples:
        val = val[: d.max_val_examples]
    limit = context_limit(cfg)
    # uniform mixing only draws stages 0..len(steps), which the loop below covers already
    stages = replace(stage_config(cfg), uniform_prob=0.0)

    # the longest layout over every stage the run can format an example at (thoughts may
    # outgrow steps)
    def longest(ex) -> int:
        n_stages = cfg.curriculum.max_latent_stage + 2
        return max(len(format_example(ex, k, stages).input_ids) for k in range(n_stages))

    kept = [ex for ex in train if longest(ex) <= limit]
    if not kept:
        raise UserError(
            f"every training example is longer than {limit} bytes; raise data.seq_len / model.max_seq_len"
        )
    val = [ex for ex in val if longest(ex) <= limit]  # generation needs the prompt in context
    if not val:
        raise UserError(
            f"no validation examples of at most {limit} bytes; give data.val files or raise "
            "data.seq_len / model.max_seq_len"
        )
    return ReasoningData(kept, val, len(train) - len(kept))


def load_text(cfg: RunConfig) -> TextData:
    blob = read_corpus(cfg.data.train or None)
    train, heldout = split_corpus(blob, cfg.data.holdout)
    if cfg.data.val:  # explicit held-out files: train on the whole training corpus
        train = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
        heldout = torch.frombuffer(bytearray(read_corpus(cfg.data.val)), dtype=torch.uint8)
    return TextData(train, heldout)
