"""Parallelism for the hybrid byte model: which of its modules FSDP2 shards, which recompute
their activations and which are compiled. The model file knows nothing of this; the process
group and full-state checkpoints are `runtime.distributed`'s.

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


def compile_blocks(model: nn.Module, warn: bool = True) -> None:
    """`torch.compile` each transformer block's full-sequence forward: the local encoder's and
    decoder's byte-level blocks as well as the latent ones (with a small latent the byte-level
    blocks are most of a step). A call with a KV cache (cached generation, validation during
    training, the continuous-thought passes) stays eager: a cache's bookkeeping is Python that
    recompiles at every length. Where torch.compile cannot build (no C++ compiler for a CPU
    run, say) the blocks stay eager with a one-line warning (printed where `warn`: one rank
    of a distributed run says it once): the run is slower, not stopped."""
    reason = compile_unavailable()
    if reason:
        if warn:
            print(
                f"warning: training.compile=true but torch.compile fails here ({reason}); "
                "the blocks run eagerly"
            )
        return
    for block in [*model.encoder.blocks, *model.latent.blocks, *model.decoder.layers]:
        eager = block.forward
        compiled = torch.compile(eager)

        def forward(*args, _eager=eager, _compiled=compiled, **kwargs):
            plain = all(_is_plain(a) for a in (*args, *kwargs.values()))
            return (_compiled if plain else _eager)(*args, **kwargs)

        block.forward = forward


def compile_unavailable() -> str | None:
    """None when torch.compile builds and runs a one-line function here, else why not."""
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(2))
    except Exception as exc:  # a missing compiler surfaces as any of several error types
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    return None


def _is_plain(arg) -> bool:
    """A tensor, a number, None or a tuple of tensors (RoPE tables): not a cache object."""
    if isinstance(arg, (tuple, list)):
        return all(isinstance(a, torch.Tensor) for a in arg)
    return arg is None or isinstance(arg, (torch.Tensor, int, float, bool))


def apply_fsdp(model: nn.Module, bf16: bool, device: torch.device | None = None) -> None:
    shard_fully(model, model.latent.blocks, bf16, device)
