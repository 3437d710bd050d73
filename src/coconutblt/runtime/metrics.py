"""JSONL metrics and the PNG plot of loss and accuracy per stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coconutblt.runtime.files import atomic_write, save_figure
from coconutblt.runtime.trackers import Trackers


class MetricsLog:
    """Append-only `metrics.jsonl`. On resume, records past the checkpoint's step are dropped,
    so a resumed run's log reads exactly like an uninterrupted one. Each record also goes to
    `trackers` (TensorBoard / W&B) when given."""

    def __init__(
        self, path: str | Path, resume_step: int | None = None, trackers: Trackers | None = None
    ) -> None:
        self.path = Path(path)
        self.trackers = trackers
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            atomic_write(self.path, "")
        elif self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            atomic_write(self.path, jsonl_text(kept))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(jsonl_text([record]))
        if self.trackers is not None:
            self.trackers.log(record)

    def close(self) -> None:
        if self.trackers is not None:
            self.trackers.close()


def jsonl_text(records: list[dict[str, Any]]) -> str:
    """Records as metrics.jsonl holds them: one JSON object per line."""
    return "".join(json.dumps(r) + "\n" for r in records)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    records = []
    for line in Path(path).read_text().split("\n"):
        if line.strip():
            records.append(json.loads(line))
    return records


def plot_metrics(metrics_path: str | Path, out_png: str | Path, title: str = "") -> Path:
    """Training loss per step (coloured by stage) and validation accuracy per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    train = [r for r in records if r.get("type") == "train"]
    evals = [r for r in records if r.get("type") == "eval"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    stages = sorted({r.get("stage", 0) for r in train})
    for s in stages:
        pts = [r for r in train if r.get("stage", 0) == s]
        ax_loss.plot([r["step"] for r in pts], [r["loss"] for r in pts], label=f"stage {s}", lw=1)
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("training loss (nats/byte)")
    ax_loss.set_yscale("log")
    if stages:
        ax_loss.legend()
    key = "accuracy" if any("accuracy" in r for r in evals) else "bpb"
    for s in sorted({r.get("stage", 0) for r in evals}):
        pts = [r for r in evals if r.get("stage", 0) == s and key in r]
        ax_acc.plot([r["step"] for r in pts], [r[key] for r in pts], "o-", label=f"stage {s}")
    ax_acc.set_xlabel("optimizer step")
    ax_acc.set_ylabel("validation accuracy" if key == "accuracy" else "held-out bits per byte")
    if evals:
        ax_acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    save_figure(fig, out_png, dpi=110)
    plt.close(fig)
    return out_png
