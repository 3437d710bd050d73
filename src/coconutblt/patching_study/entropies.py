"""Next-byte entropies over a corpus, and boundaries decided one byte at a time.

`window_entropies` runs the entropy model exactly as `HybridTransformer` does in training: on
windows of `seq_len` bytes with positions from 0. `StreamingPatcher` decides patch starts one
byte at a time with KV caches (generation) and gives the same boundaries as
`model.patching.patch_starts` over the whole sequence.
"""

from __future__ import annotations

import torch

from coconutblt.model.entropy import EntropyModel
from coconutblt.vocab import NUM_BYTES


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


@torch.no_grad()
def incremental_entropies(model: EntropyModel, ids: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T): the same entropies as `model.entropies(ids)`, one byte at a time with KV caches."""
    caches = model.new_caches()
    cols = [model.entropies(ids[:, t : t + 1], caches) for t in range(ids.shape[1])]
    return torch.cat(cols, dim=1)


class StreamingPatcher:
    """Patch starts decided byte by byte, for generation.

    `push(ids)` takes the next id of each row, (B,) or (B, 1), and returns (B,) bool: whether it
    starts a new patch. The rule is `patch_starts`' rule applied sequentially: byte t starts a
    patch when t == 0, when it or byte t-1 is a special id, when the entropy rule fires on the
    entropy computed at t-1 (global: H[t-1] > threshold; relative: H[t-1] - H[t-2] >
    relative_threshold, with H[-1] = 0), or when the current patch already holds `cap` bytes.
    With `entropy_model=None` it runs the `fixed` rule (starts every `cap` bytes).
    """

    def __init__(
        self,
        entropy_model: EntropyModel | None,
        cap: int,
        threshold: float = 1.5,
        rule: str = "global",
        relative_threshold: float = 0.3,
    ) -> None:
        if rule not in ("global", "relative"):
            raise ValueError(f"unknown entropy rule {rule!r}")
        self.model, self.cap, self.threshold = entropy_model, cap, threshold
        self.rule, self.relative_threshold = rule, relative_threshold
        self.reset()

    def reset(self) -> None:
        self.caches = self.model.new_caches() if self.model is not None else None
        self.t = 0
        self.prev_id: torch.Tensor | None = None
        self.prev_ent: torch.Tensor | None = None  # H[t-1]
        self.prev2_ent: torch.Tensor | None = None  # H[t-2]
        self.length: torch.Tensor | None = None  # bytes in the current patch

    @torch.no_grad()
    def push(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.reshape(-1)
        B = ids.shape[0]
        if self.t == 0:
            start = torch.ones(B, dtype=torch.bool, device=ids.device)
        else:
            start = (ids >= NUM_BYTES) | (self.prev_id >= NUM_BYTES) | (self.length >= self.cap)
            if self.model is not None:
                if self.rule == "global":
                    start |= self.prev_ent > self.threshold
                else:
                    rise = self.prev_ent - (self.prev2_ent if self.prev2_ent is not None else 0.0)
                    start |= rise > self.relative_threshold
        self.length = torch.where(
            start,
            torch.ones_like(ids),
            self.length + 1 if self.length is not None else torch.ones_like(ids),
        )
        if self.model is not None:
            ent = self.model.entropies(ids[:, None], self.caches)[:, 0]
            self.prev2_ent, self.prev_ent = self.prev_ent, ent
        self.prev_id = ids
        self.t += 1
        return start

    def run(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, T) starts, pushing one column at a time."""
        self.reset()
        return torch.stack([self.push(ids[:, t]) for t in range(ids.shape[1])], dim=1)
