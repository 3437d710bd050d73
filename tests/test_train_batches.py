"""Reasoning batches: a pure function of (seed, epoch, index, stage), and short epochs that
draw a fresh subset of the examples each time."""

from __future__ import annotations

from coconutblt.data.reasoning import Example
from coconutblt.data.stages import StageConfig
from coconutblt.train.batches import ReasoningBatches
from coconutblt.vocab import BOS_ID


def _examples(n: int) -> list[Example]:
    return [Example(f"q{i:03d}", [f"s{i}"], f"a{i}") for i in range(n)]


def _questions(batches: ReasoningBatches, epoch: int) -> set[str]:
    seen = set()
    for index in range(len(batches)):
        ids = batches.batch(epoch, index, 0)["input_ids"]
        for row in ids.tolist():
            assert row[0] == BOS_ID
            seen.add(bytes(row[1:5]).decode())
    return seen


def test_epoch_size_draws_a_fresh_subset_each_epoch() -> None:
    examples = _examples(100)
    full = ReasoningBatches(examples, StageConfig("cot"), batch_size=8, seed=3)
    short = ReasoningBatches(examples, StageConfig("cot"), batch_size=8, seed=3, epoch_size=24)
    assert len(full) == 13 and len(short) == 3
    first, second = _questions(short, 0), _questions(short, 1)
    assert len(first) == len(second) == 24
    assert first != second  # a new draw, not the same 24 examples again
    assert first <= _questions(full, 0)  # the same shuffle, cut short
    # a pure function of (seed, epoch, index): rebuilding gives the same batch
    again = ReasoningBatches(examples, StageConfig("cot"), batch_size=8, seed=3, epoch_size=24)
    assert again.batch(1, 2, 0)["input_ids"].equal(short.batch(1, 2, 0)["input_ids"])
    # larger than the data: every example once
    assert len(ReasoningBatches(examples, StageConfig("cot"), 8, epoch_size=1000)) == 13
