"""Process groups, FSDP2 sharding, activation checkpointing and full-state checkpoints.

The model file knows nothing of this: parallelism is applied from outside (torchtitan's
order). Under `torchrun`, rank 0 alone materialises the freshly initialised model (or the
checkpoint) on the CPU; every other rank builds it on the `meta` device, all ranks shard it
with `fully_shard` (each latent block, then the root), allocate their shards with `to_empty`,
and receive their slices from rank 0. Checkpoints hold full (unsharded) state dicts, so a run
can resume at another world size and `generate`/`export-hf` read them directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistContext:
    """Read torchrun's environment; start the process group when there are several ranks."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and not device_name.startswith("cpu")
    if use_cuda:
        device = (
            torch.device("cuda", local)
            if device_name in ("auto", "cuda")
            else torch.device(device_name)
        )
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistContext(rank, world, local, device)


def shutdown(ctx: DistContext) -> None:
    """A barrier first: without it gloo ranks can abort at exit after the last collective."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_mean(value: float, ctx: DistContext) -> float:
    if not ctx.enabled:
        return value
    t = torch.tensor(
        [value], dtype=torch.float64, device=ctx.device if ctx.device.type == "cuda" else "cpu"
    )
    dist.all_reduce(t)
    return float(t) / ctx.world_size


def broadcast_object(obj, ctx: DistContext):
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def apply_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each latent block's activations in backward (see `Block`)."""
    for block in model.latent.blocks:
        block.activation_checkpointing = True


def apply_fsdp(model: nn.Module, bf16: bool) -> None:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if bf16
        else None
    )
    kwargs = {"mp_policy": mp} if mp is not None else {}
    for block in model.latent.blocks:
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)


def full_model_state(model: nn.Module, ctx: DistContext) -> dict:
    """Unsharded CPU state dict (a collective under FSDP: call on every rank)."""
    if not ctx.enabled:
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )


def full_optimizer_state(model: nn.Module, optimizer, ctx: DistContext) -> dict:
    """Unsharded optimizer state keyed by parameter names (not positions), so a checkpoint
    from any world size loads at any other."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    opts = (
        StateDictOptions(full_state_dict=True, cpu_offload=True)
        if ctx.enabled
        else StateDictOptions()
    )
    return get_optimizer_state_dict(model, optimizer, options=opts)


def load_full_model_state(model: nn.Module, state: dict | None, ctx: DistContext) -> None:
    """Load a full state dict (held by rank 0 only under FSDP) into a possibly sharded model."""
    if not ctx.enabled:
        model.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, state if ctx.is_main else {}, options=opts)


def load_full_optimizer_state(
    model: nn.Module, optimizer, state: dict | None, ctx: DistContext
) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if not ctx.enabled:
        set_optimizer_state_dict(model, optimizer, state)
        return

    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_optimizer_state_dict(model, optimizer, state if ctx.is_main else {}, options=opts)
