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
    dropped: int  # training examples longer than the model's context, left out
    dropped_val: int = 0  # validation examples likewise (generation needs the whole prompt)

    def left_out_warning(self, limit: int) -> str | None:
        """One line naming how many examples of each split are left out, or None."""
        if not (self.dropped or self.dropped_val):
            return None
        n_train, n_val = len(self.train) + self.dropped, len(self.val) + self.dropped_val
        return (
            f"warning: {self.dropped} of {n_train} training and {self.dropped_val} of {n_val} "
            f"validation examples are longer than {limit} bytes at some stage and are left out; "
            "raise data.seq_len / model.max_seq_len to keep them"
        )


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
        n_read = len(train)
        if not val:  # hold out the tail of the training files
            n_val = max(len(train) // 10, 1)
            n_val = min(d.max_val_examples, n_val) if d.max_val_examples else n_val
            train, val = train[:-n_val], train[-n_val:]
            if not train:
                raise UserError(
                    f"data.train: {n_read} example(s), all held out for validation; give more "
                    "examples or separate data.val files"
                )
        else:
            train = exclude_questions(train, val)  # no validation question is trained on
            if not train:
                raise UserError(
                    f"data.train: all {n_read} training questions are also in data.val; "
                    "give training files that are not the validation set"
                )
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
            f"data.train: all {len(train)} training examples are longer than {limit} bytes at "
            "some stage; raise data.seq_len / model.max_seq_len"
        )
    n_val = len(val)
    if not n_val:
        raise UserError(
            "data.val: no validation examples (every one is also a training question?); give "
            "separate data.val files"
        )
    val = [ex for ex in val if longest(ex) <= limit]  # generation needs the prompt in context
    if not val:
        raise UserError(
            f"data.val: all {n_val} validation examples are longer than {limit} bytes at some "
            "stage; give shorter data.val files or raise data.seq_len / model.max_seq_len"
        )
    return ReasoningData(kept, val, len(train) - len(kept), n_val - len(val))


def load_text(cfg: RunConfig) -> TextData:
    d = cfg.data
    blob = read_corpus(d.train or None)
    train, heldout = split_corpus(blob, d.holdout)
    if d.val:  # explicit held-out files: train on the whole training corpus
        train = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
        heldout = torch.frombuffer(bytearray(read_corpus(d.val)), dtype=torch.uint8)
    what = "the training text" if d.val else f"the training text ({len(blob)} bytes less held-out)"
    if len(train) < d.seq_len + 2:  # one window plus its next byte
        raise UserError(
            f"data.train: {what} is {len(train)} bytes, shorter than one window of "
            f"data.seq_len={d.seq_len}; give more text or lower data.seq_len"
        )
    if len(heldout) < 4:  # the held-out evaluation needs a window of at least 2 bytes
        raise UserError(
            f"data.holdout: only {len(heldout)} held-out bytes; raise data.holdout or give "
            "data.val files"
        )
    return TextData(train, heldout)
