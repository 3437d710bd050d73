"""Figures: a passage with its per-byte entropy and patch starts, patch-size histograms, bpb curves.

matplotlib runs headless (Agg); every function writes one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from coconutblt.patching_study.stats import PatchStats
from coconutblt.runtime.files import save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def byte_label(b: int) -> str:
    """A printable tick label for one byte."""
    if b == 32:
        return "␣"
    if b == 10:
        return "⏎"
    if b == 9:
        return "⇥"
    if 33 <= b < 127:
        return chr(b)
    return f"{b:02x}"


def plot_passage(
    path: str | Path,
    passage: Sequence[int],
    starts: Sequence[bool],
    entropies: Sequence[float] | None = None,
    threshold: float | None = None,
    title: str = "",
) -> Path:
    """Per-byte entropy H(x_t | x_<t) (line), the threshold, and a mark at each patch start.

    `entropies[t]` is the entropy of predicting byte t of the passage (from the bytes before it).
    Without entropies only the bytes and their patch starts are drawn.
    """
    plt = _pyplot()
    n = len(passage)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.16 * n), 3.6))
    xs = list(range(n))
    if entropies is not None:
        ax.plot(
            xs,
            list(entropies),
            color="tab:blue",
            marker="o",
            markersize=2.5,
            linewidth=1.2,
            label="entropy (nats)",
        )
        if threshold is not None:
            ax.axhline(
                threshold,
                color="tab:red",
                linestyle="--",
                linewidth=1,
                label=f"threshold {threshold:.2f}",
            )
        ax.set_ylabel("next-byte entropy (nats)")
        top = max(max(entropies), threshold or 0.0) * 1.08 + 0.05
        ax.set_ylim(0, top)
    else:
        ax.set_yticks([])
        ax.set_ylim(0, 1)
    for i, s in enumerate(starts):
        if s:
            ax.axvline(i - 0.5, color="tab:gray", linewidth=0.9, alpha=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels([byte_label(b) for b in passage], fontsize=7, family="monospace")
    ax.tick_params(axis="x", length=0)
    ax.set_xlim(-0.8, n - 0.2)
    n_patches = sum(bool(s) for s in starts)
    ax.set_title(title or f"{n} bytes, {n_patches} patches (grey lines: patch starts)", fontsize=9)
    if entropies is not None:
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=130)
    plt.close(fig)
    return path


def plot_histograms(path: str | Path, stats: Sequence[PatchStats]) -> Path:
    """One bar chart per patcher: share of patches of each length."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(stats), figsize=(3.6 * len(stats), 2.8), squeeze=False)
    for ax, s in zip(axes[0], stats, strict=True):
        total = max(s.n_patches, 1)
        ax.bar(range(1, s.cap + 1), [h / total for h in s.histogram], color="tab:blue")
        ax.set_title(f"{s.name}\nmean {s.mean:.2f}, at cap {100 * s.share_at_cap:.0f}%", fontsize=8)
        ax.set_xlabel("bytes per patch", fontsize=8)
    axes[0][0].set_ylabel("share of patches", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(
    path: str | Path,
    curves: dict[str, list[tuple[float, float]]],
    xlabel: str = "training time (s)",
    ylabel: str = "held-out bits per byte",
    hlines: dict[str, float] | None = None,
    title: str = "",
    logx: bool = False,
) -> Path:
    """One line per arm: (x, y) points; optional labelled horizontal reference lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, pts in curves.items():
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
    for i, (name, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, color=f"C{7 + i % 3}", linestyle=":", linewidth=1, label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def passage_entropies(window_entropies: torch.Tensor, offset: int, length: int) -> list[float]:
    """Entropy of predicting each byte of window[offset:offset+length] (row: one window's entropies)."""
    # entropies[t] predicts byte t+1, so byte t's entropy is entropies[t-1]
    if offset < 1:
        raise ValueError("the first byte of a window has no entropy; use offset >= 1")
    return window_entropies[offset - 1 : offset + length - 1].tolist()
