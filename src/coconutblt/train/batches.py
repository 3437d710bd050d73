"""Reasoning batches whose content depends only on (seed, epoch, batch index, stage).

That is what makes `--resume` exact: a resumed run rebuilds the same batches from the data
position saved in the checkpoint, with no iterator state to restore.
"""

from __future__ import annotations

import math
import random

import torch

from coconutblt.data.reasoning import Example
from coconutblt.data.stages import StageConfig, collate, format_example


class ReasoningBatches:
    def __init__(
        self,
        examples: list[Example],
        stage_cfg: StageConfig,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_size: int = 0,
        group_by_length: int = 0,
    ) -> None:
        self.examples, self.stage_cfg = examples, stage_cfg
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        # > 0: an epoch is this many examples of a fresh shuffle of all of them, so short
        # curriculum stages still see new data (0 = every example once)
        self.epoch_size = min(epoch_size, len(examples)) if epoch_size > 0 else len(examples)
        # > 0: batches of near length (see `order`); the length is the example's at stage 0
        self.group_by_length = group_by_length
        self.lengths = (
            [
                len(e.question.encode())
                + sum(len(s.encode()) for s in e.steps)
                + len(e.answer.encode())
                for e in examples
            ]
            if group_by_length > 0
            else []
        )
        self._order: tuple[int, list[int]] | None = None  # (epoch, its order)

    def __len__(self) -> int:
        """Batches per epoch (per rank): every rank sees the same number."""
        return math.ceil(self.epoch_size / (self.batch_size * self.world_size))

    def order(self, epoch: int) -> list[int]:
        """The epoch's examples in batch order: a seeded shuffle cut to `epoch_size`; with
        `group_by_length`, each run of that many global batches sorted by length, cut into
        batches, and the batches shuffled (a last short batch stays last)."""
        if self._order is not None and self._order[0] == epoch:
            return self._order[1]
        idx = list(range(len(self.examples)))
        rng = random.Random(self.seed * 1_000_003 + epoch)
        rng.shuffle(idx)
        idx = idx[: self.epoch_size]
        if self.group_by_length > 0:
            global_bs = self.batch_size * self.world_size
            window = global_bs * self.group_by_length
            grouped: list[int] = []
            for start in range(0, len(idx), window):
                part = sorted(idx[start : start + window], key=self.lengths.__getitem__)
                batches = [part[i : i + global_bs] for i in range(0, len(part), global_bs)]
                short = [batches.pop()] if len(batches[-1]) < global_bs else []
                rng.shuffle(batches)
                grouped += [i for b in batches + short for i in b]
            idx = grouped
        self._order = (epoch, idx)
        return idx

    def batch(self, epoch: int, index: int, stage: int) -> dict[str, torch.Tensor]:
        """Batch `index` of `epoch` for this rank, laid out at `stage`."""
        order = self.order(epoch)
        global_bs = self.batch_size * self.world_size
        chunk = order[index * global_bs : (index + 1) * global_bs]
        if len(chunk) < global_bs:  # the last batch wraps around so every rank has work
            chunk = chunk + order[: global_bs - len(chunk)]
        mine = chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        staged = [
            format_example(
                self.examples[i], stage, self.stage_cfg, random.Random(hash((self.seed, epoch, i)))
            )
            for i in mine
        ]
        out = collate(staged)
        out["n_bytes"] = torch.tensor(sum(len(s.input_ids) for s in staged))
        return out
