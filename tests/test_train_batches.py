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


def _varied(n: int) -> list[Example]:
    """Examples whose lengths are a shuffle of 1..n question bytes (after a 4-byte id)."""
    import random

    sizes = list(range(1, n + 1))
    random.Random(0).shuffle(sizes)
    return [Example(f"{i:03d}:" + "x" * k, ["s"], "a") for i, k in enumerate(sizes)]


def _rows(batches: ReasoningBatches, epoch: int) -> list[list[str]]:
    out = []
    for index in range(len(batches)):
        ids = batches.batch(epoch, index, 0)["input_ids"]
        out.append([bytes(row[1:4]).decode() for row in ids.tolist()])
    return out


def test_group_by_length_pads_less_and_keeps_the_epochs_examples() -> None:
    examples = _varied(100)
    plain = ReasoningBatches(examples, StageConfig("cot"), batch_size=8, seed=3, epoch_size=60)
    grouped = ReasoningBatches(
        examples, StageConfig("cot"), batch_size=8, seed=3, epoch_size=60, group_by_length=4
    )

    def padded(b: ReasoningBatches, epoch: int) -> int:
        return sum(b.batch(epoch, i, 0)["input_ids"].numel() for i in range(len(b)))

    for epoch in (0, 1):
        # the same 60 examples of the epoch's shuffle, reordered (the last batch wraps around
        # to the epoch's first examples in both)
        seen = set(sum(_rows(grouped, epoch), []))
        assert seen == set(sum(_rows(plain, epoch), [])) and len(seen) == 60
        assert padded(grouped, epoch) < 0.8 * padded(plain, epoch)
    # within a window of 4 batches, each batch's lengths do not interleave with another's
    lengths = [[examples[int(k)].question.__len__() for k in row] for row in _rows(grouped, 0)]
    for a in lengths[:4]:
        for b in lengths[:4]:
            assert a is b or max(a) < min(b) or max(b) < min(a)
    assert _rows(grouped, 0) != _rows(grouped, 1)  # batches still change with the epoch
    # still a pure function of (seed, epoch, index)
    again = ReasoningBatches(
        examples, StageConfig("cot"), batch_size=8, seed=3, epoch_size=60, group_by_length=4
    )
    assert again.batch(1, 5, 0)["input_ids"].equal(grouped.batch(1, 5, 0)["input_ids"])
