"""Patch-size statistics of a patcher on a corpus: mean, median, histogram, share at the cap."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from coconutblt.model.patching import layout_from_starts, patch_starts


@dataclass
class PatchStats:
    name: str  # e.g. "fixed (4)", "space", "entropy (global, 1.82)"
    cap: int  # longest possible patch
    n_bytes: int
    n_patches: int
    mean: float
    median: float
    histogram: list[int]  # histogram[k] = patches of k+1 bytes, k < cap
    share_at_cap: float  # patches of exactly `cap` bytes / all patches

    def row(self) -> list[str]:
        return [
            self.name,
            f"{self.mean:.2f}",
            f"{self.median:g}",
            f"{100 * self.share_at_cap:.1f}%",
            f"{self.n_patches:,}",
        ]


def patch_lengths(starts: torch.Tensor) -> torch.Tensor:
    """(W, T) bool starts -> 1-D lengths of every patch of every window."""
    layout = layout_from_starts(starts)
    return layout.lengths[layout.lengths > 0]


def stats_from_starts(name: str, starts: torch.Tensor, cap: int) -> PatchStats:
    lengths = patch_lengths(starts)
    hist = torch.bincount(lengths, minlength=cap + 1)[1 : cap + 1]
    return PatchStats(
        name=name,
        cap=cap,
        n_bytes=int(starts.numel()),
        n_patches=int(lengths.numel()),
        mean=starts.numel() / max(int(lengths.numel()), 1),
        median=float(lengths.float().median()) if lengths.numel() else 0.0,
        histogram=[int(h) for h in hist],
        share_at_cap=float((lengths == cap).float().mean()) if lengths.numel() else 0.0,
    )


def compare_patchers(
    windows: torch.Tensor,
    patch_size: int = 4,
    max_patch_size: int = 16,
    entropies: torch.Tensor | None = None,
    threshold: float = 1.5,
    rule: str = "global",
) -> dict[str, PatchStats]:
    """Stats of fixed, space and (when entropies are given) entropy patching on the same windows."""
    out = {
        "fixed": stats_from_starts(
            f"fixed ({patch_size})", patch_starts(windows, "fixed", patch_size), patch_size
        ),
        "space": stats_from_starts(
            "space", patch_starts(windows, "space", max_patch_size), max_patch_size
        ),
    }
    if entropies is not None:
        starts = patch_starts(
            windows, "entropy", max_patch_size, entropies, threshold, rule, threshold
        )
        out["entropy"] = stats_from_starts(
            f"entropy ({rule}, {threshold:.3f})", starts, max_patch_size
        )
    return out


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def comparison_table(stats: dict[str, PatchStats]) -> str:
    header = ["patcher", "mean bytes/patch", "median", "at max size", "patches"]
    return markdown_table(header, [s.row() for s in stats.values()])


def text_histogram(s: PatchStats, width: int = 40) -> str:
    """One line per patch length: count and a bar."""
    top = max(s.histogram) if s.histogram else 1
    lines = []
    for k, count in enumerate(s.histogram):
        bar = "#" * round(width * count / top) if top else ""
        lines.append(
            f"{k + 1:>3} bytes {count:>9,} {100 * count / max(s.n_patches, 1):5.1f}% {bar}"
        )
    return "\n".join(lines)
