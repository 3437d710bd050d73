"""Next-byte entropies over a corpus, and boundaries decided one byte at a time.

`window_entropies` runs the entropy model exactly as `HybridTransformer` does in training: on
windows of `seq_len` bytes with positions from 0. `StreamingPatcher` decides patch starts one
byte at a time with KV caches (generation) and gives the same boundaries as
`model.patching.patch_starts` over the whole sequence.
"""

from __future__ import annotations

import torch

from coconutblt.model.entropy import EntropyModel


def windows_of(data: torch.Tensor, seq_len: int, max_bytes: int | None = None) -> torch.Tensor:
    """uint8/long (N,) -> (W, seq_len) int64 non-overlapping windows (the tail that does not fill one is dropped)."""
    if max_bytes is not None:
        data = data[:max_bytes]
    seq_len = min(seq_len, len(data))
    n = len(data) // seq_len
    return data[: n * seq_len].view(n, seq_len).long()


@torch.no_grad()
def window_entropies(
    model: EntropyModel, windows: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """(W, T) ids -> (W, T) entropies in nats; row w, column t = entropy of predicting byte t+1."""
    dev = next(model.parameters()).device
    out = [
        model.entropies(windows[i : i + batch_size].to(dev)).float().cpu()
        for i in range(0, len(windows), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0, windows.shape[1])
