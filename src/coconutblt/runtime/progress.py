"""The progress bar every trainer shows: steps done, ETA, and loss with throughput."""

from __future__ import annotations

from tqdm.auto import tqdm


def progress_bar(
    total: int, *, initial: int = 0, desc: str | None = None, disable: bool = False
) -> tqdm:
    """A step counter with ETA that fits the terminal."""
    return tqdm(
        total=total, initial=initial, desc=desc, disable=disable, unit="step", dynamic_ncols=True
    )


def show_rate(bar: tqdm, loss: float, per_second: float, unit: str = "bytes", **extra) -> None:
    """Put `loss=..., bytes_s=...` (and `extra`, e.g. the stage) after the bar, in one format
    for every trainer."""
    bar.set_postfix(**extra, loss=f"{loss:.3f}", **{f"{unit}_s": f"{per_second:,.0f}"})
