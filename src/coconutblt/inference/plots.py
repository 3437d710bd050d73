"""PNG figures of a comparison: accuracy / bytes (or tokens) / latency bars, and validation
curves."""

from __future__ import annotations

from pathlib import Path

from coconutblt.runtime.files import save_figure


def plot_comparison(results, path: Path, title: str = "") -> Path:
    """Bars per method: accuracy, bytes generated per answer, ms per example."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, _ in results]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = [
        ([r.accuracy * 100 for _, r in results], "accuracy (%)"),
        ([r.avg_generated for _, r in results], f"{results[0][1].unit}s generated per answer"),
        ([r.seconds_per_example * 1e3 for _, r in results], "ms per example (batched)"),
    ]
    colors = ["#999999", "#4C72B0"] + ["#DD8452"] * (len(names) - 2)
    for ax, (values, label) in zip(axes, panels, strict=True):
        ax.bar(names, values, color=colors[: len(names)])
        ax.set_title(label)
        ax.tick_params(axis="x", labelsize=7, rotation=20)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_validation_curves(runs: dict[str, Path], path: Path, title: str = "") -> Path:
    """Validation accuracy after each epoch of each run (from its metrics.jsonl), on one axis of
    cumulative epochs, so the recipe's whole course reads left to right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from coconutblt.runtime.metrics import read_metrics

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, metrics in runs.items():
        if not metrics.is_file():
            continue
        evals = [r for r in read_metrics(metrics) if r.get("type") == "eval" and "accuracy" in r]
        if evals:
            x = [r["epoch"] + 1 for r in evals]
            ax.plot(x, [100 * r["accuracy"] for r in evals], "o-", label=name)
    ax.set_xlabel("epoch of the run")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path
