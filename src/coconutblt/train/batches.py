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
    ) -> None:
        self.examples, self.stage_cfg = examples, stage_cfg
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        # > 0: an epoch is this many examples of a fresh shuffle of all of them, so short
        # curriculum stages still see new data (0 = every example once)
        self.epoch_size = min(epoch_size, len(examples)) if epoch_size > 0 else len(examples)

    def __len__(self) -> int:
        """Batches per epoch (per rank): every rank sees the same number."""
        return math.ceil(self.epoch_size / (self.batch_size * self.world_size))

    def order(self, epoch: int) -> list[int]:
        idx = list(range(len(self.examples)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(idx)
        return idx

    def batch(self, epoch: int, index: int, stage: int) -> dict[str, torch.Tensor]:
        """Batch `index` of `epoch` for this rank, laid out at `stage`."""
        order = self.order(epoch)
        global_bs = self.batch_size * self.world_size
        order = order[: self.epoch_size]
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
