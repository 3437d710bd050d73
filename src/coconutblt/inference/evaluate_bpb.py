"""Bits-per-byte of a `HybridTransformer` on a byte tensor, with the patch statistics.

The data is cut into non-overlapping windows of `seq_len` bytes (the tail, if at least two
bytes, is one more window). In each window every byte after the first is predicted from the
bytes before it in that window; bpb = sum of those next-byte NLLs in bits / their count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from coconutblt.errors import UserError
from coconutblt.runtime.files import save_figure


@dataclass
class BpbResult:
    """bpb: bits per predicted byte. bytes_per_patch: mean patch length over the windows.
    patch_hist[n]: number of patches of n bytes (index 0 unused)."""

    bpb: float
    bytes_per_patch: float
    patch_hist: list[int]
    n_predicted: int
    n_bytes: int
    n_windows: int

    @property
    def n_patches(self) -> int:
        return sum(self.patch_hist)


def _windows(data: torch.Tensor, seq_len: int, batch_size: int):
    """Yield (b, T) id batches: full windows in batches, then the tail alone."""
    n_full = len(data) // seq_len
    full = data[: n_full * seq_len].view(n_full, seq_len)
    for i in range(0, n_full, batch_size):
        yield full[i : i + batch_size]
    tail = data[n_full * seq_len :]
    if len(tail) >= 2:
        yield tail[None]


def bits_per_byte(
    model,
    data: torch.Tensor,
    seq_len: int = 1024,
    batch_size: int = 8,
    max_batches: int | None = None,
) -> BpbResult:
    """data (N,) byte ids (uint8 or long) -> BpbResult; `max_batches` caps the work.

    `seq_len` is clipped to the model's `max_seq_len`. The model is run under no_grad in eval
    mode and put back in the mode it had.
    """
    data = data.flatten()
    if len(data) < 2:
        raise UserError(f"{len(data)} bytes of data: bits-per-byte needs at least 2")
    seq_len = max(2, min(seq_len, model.config.max_seq_len))
    device = next(model.parameters()).device
    cap = model.config.patch_cap
    hist = torch.zeros(cap + 1, dtype=torch.long)
    nll_nats, n_pred, n_bytes, n_windows = 0.0, 0, 0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i, batch in enumerate(_windows(data, seq_len, batch_size)):
                if max_batches is not None and i >= max_batches:
                    break
                ids = batch.to(device=device, dtype=torch.long)  # (b, T)
                out = model(ids)
                logits = out.logits[:, :-1].float()  # (b, T-1, V)
                nll = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="sum")
                nll_nats += float(nll)
                n_pred += ids[:, 1:].numel()
                n_bytes += ids.numel()
                n_windows += ids.shape[0]
                lengths = out.layout.lengths.flatten().cpu()
                hist += torch.bincount(lengths[lengths > 0], minlength=cap + 1)[: cap + 1]
    finally:
        model.train(was_training)
    n_patches = int(hist.sum())
    return BpbResult(
        bpb=nll_nats / math.log(2) / max(n_pred, 1),
        bytes_per_patch=n_bytes / max(n_patches, 1),
        patch_hist=hist.tolist(),
        n_predicted=n_pred,
        n_bytes=n_bytes,
        n_windows=n_windows,
    )


def save_patch_histogram(result: BpbResult, path: str | Path, title: str = "") -> Path:
    """Bar chart of patch lengths as a PNG, written atomically (a temp file renamed over)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = list(range(1, len(result.patch_hist)))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(sizes, result.patch_hist[1:], color="tab:blue")
    ax.set_xlabel("patch length (bytes)")
    ax.set_ylabel("patches")
    ax.set_xticks(sizes)
    ax.set_title(title or f"mean {result.bytes_per_patch:.2f} bytes/patch, {result.bpb:.3f} bpb")
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=100)
    finally:
        plt.close(fig)
    return path
