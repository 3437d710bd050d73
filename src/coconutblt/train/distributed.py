"""Parallelism for the hybrid byte model: which of its modules FSDP2 shards and which recompute
their activations. The model file knows nothing of this; the process group and full-state
checkpoints are `runtime.distributed`'s.

Under `torchrun`, rank 0 alone materialises the freshly initialised model (or the
checkpoint) on the CPU; every other rank builds it on the `meta` device, all ranks shard it
(each latent block, then the root), allocate their shards with `to_empty`, and receive their
slices from rank 0.
"""

from __future__ import annotations

import torch
from torch import nn

from coconutblt.runtime.distributed import shard_fully


def apply_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each latent block's activations in backward (see `Block`)."""
    for block in model.latent.blocks:
        block.activation_checkpointing = True


def apply_fsdp(model: nn.Module, bf16: bool, device: torch.device | None = None) -> None:
    shard_fully(model, model.latent.blocks, bf16, device)
