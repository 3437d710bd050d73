"""The process group under `torchrun`, for every trainer: which rank this is, its device, and
the collectives and full-state (unsharded) state dicts that checkpoints need.

Checkpoints hold full state dicts, so a run can resume at another world size and every
command reads them directly. Parallelism is applied from outside the model (torchtitan's
order): the caller says which submodules `shard_fully` shards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from coconutblt.errors import UserError
from coconutblt.runtime.device import pick_device

# a rank may wait this long for another (rank 0's validation and checkpoint writes included)
TIMEOUT = timedelta(hours=1)


@dataclass
class DistContext:
    """This process's place under torchrun (rank 0 of 1 without it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owned: bool = False  # this process started the process group, so it ends it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str, key: str = "--device") -> DistContext:
    """Read torchrun's environment; with WORLD_SIZE > 1 start the process group: gloo on the
    CPU, nccl on CUDA with one GPU per process picked by LOCAL_RANK. `key` is how the user
    spelled the device (`--device`, `training.device`), for the errors."""
    device = pick_device(device_name, key)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device_name not in ("auto", "cuda"):
            raise UserError(
                f"under torchrun {key} {device_name} puts every process on one GPU; "
                f"pass {key} cuda (LOCAL_RANK picks each process's GPU)"
            )
        if local >= torch.cuda.device_count():
            raise UserError(
                f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs are visible; "
                "lower torchrun's --nproc_per_node"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise UserError(
            f"under torchrun training runs on cuda (nccl) or cpu (gloo), not {device.type}; "
            f"pass {key} cuda or {key} cpu"
        )
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend, timeout=TIMEOUT)
    return DistContext(dist.get_rank(), dist.get_world_size(), local, device, owned)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier(device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def shutdown(ctx: DistContext, ok: bool = True) -> None:
    """End a process group this process started. The barrier first (on success only: after an
    error the other ranks may never arrive) keeps gloo ranks from aborting one another at exit."""
    if ctx.owned and dist.is_initialized():
        if ok:
            barrier(ctx)
        dist.destroy_process_group()


def shard_fully(model: nn.Module, blocks, bf16: bool, device: torch.device | None = None) -> None:
    """FSDP2: `fully_shard` each of `blocks` (a model's repeated layers), then the root, with
    bf16 parameters and fp32 gradient reduction when `bf16`. `device`: where the shards live;
    its type picks the mesh (FSDP2's default mesh is CUDA's whenever CUDA exists, even for a
    run told to use the CPU)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kwargs = {}
    if bf16:
        kwargs["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32
        )
    if device is not None and dist.is_initialized():
        from torch.distributed.device_mesh import init_device_mesh

        kwargs["mesh"] = init_device_mesh(device.type, (dist.get_world_size(),))
    for block in blocks:
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)


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
