"""Experiment trackers: the scalars of `metrics.jsonl`, mirrored into TensorBoard and/or
Weights & Biases.

Both are optional dependencies and off by default; nothing here needs the network (W&B runs
in offline mode unless `WANDB_MODE` says otherwise; `wandb sync` uploads later).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from coconutblt.errors import UserError
from coconutblt.runtime.files import atomic_write

TRACKERS = ("tensorboard", "wandb")
_INSTALL = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_trackers(names: list[str] | tuple[str, ...]) -> list[str]:
    """The problems with a `report_to` list, each with its fix (empty: all fine)."""
    return [
        f"unknown tracker {name!r}; use any of {', '.join(TRACKERS)} (or [] for none)"
        for name in names
        if name not in TRACKERS
    ]


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """`{"type": "train", "step": 10, "loss": 2.1}` -> `{"train/loss": 2.1}`: every numeric
    field but the step, under the record's type."""
    kind = record.get("type", "metrics")
    return {
        f"{kind}/{k}": float(v)
        for k, v in record.items()
        if k not in ("type", "step") and isinstance(v, int | float) and not isinstance(v, bool)
    }


class Trackers:
    """The trackers a run reports to; `log(record)` for each metrics record, `close()` at the
    end. With no names it does nothing and imports nothing."""

    def __init__(
        self,
        names: list[str] | tuple[str, ...],
        run_dir: str | Path,
        config: dict[str, Any] | None = None,
        resume_step: int | None = None,
        key: str = "training.report_to",
        wandb_dir: str | Path | None = None,
    ) -> None:
        problems = check_trackers(names)
        if problems:
            raise UserError(f"{key}: {problems[0]}")
        self.run_dir = Path(run_dir)
        # W&B's own process creates files under its dir by path at any time: a caller that
        # replaces run_dir (hf train, after every epoch) gives it a folder outside
        self.wandb_dir = self.run_dir if wandb_dir is None else Path(wandb_dir)
        self.tensorboard = self.wandb = None
        if "tensorboard" in names:
            self.tensorboard = self._tensorboard(resume_step, key)
        if "wandb" in names:
            self.wandb = self._wandb(config or {}, resume_step, key)

    @staticmethod
    def _missing(name: str, key: str) -> UserError:
        return UserError(
            f"{key} includes {name} but the {name} package is not installed; "
            f"pip install {_INSTALL[name]} (or drop it from {key})"
        )

    def _tensorboard(self, resume_step: int | None, key: str):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise self._missing("tensorboard", key) from None
        # on resume, events past the checkpoint's step are dropped, as in metrics.jsonl
        purge = None if resume_step is None else resume_step + 1
        return SummaryWriter(log_dir=str(self.run_dir / "tensorboard"), purge_step=purge)

    def _wandb(self, config: dict[str, Any], resume_step: int | None, key: str):
        try:
            import wandb
        except ImportError:
            raise self._missing("wandb", key) from None
        os.environ.setdefault("WANDB_MODE", "offline")
        self.wandb_dir.mkdir(parents=True, exist_ok=True)
        run_id_file = self.run_dir / "wandb_run_id"
        if resume_step is not None and run_id_file.is_file():
            run_id = run_id_file.read_text().strip()
        else:
            run_id = wandb.util.generate_id()
            atomic_write(run_id_file, run_id + "\n")
        return wandb.init(
            project=os.environ.get("WANDB_PROJECT", "coconutblt"),
            name=self.run_dir.name,
            dir=str(self.wandb_dir),
            config=config,
            id=run_id,
            resume="allow",
        )

    def log(self, record: dict[str, Any]) -> None:
        values, step = scalars(record), int(record.get("step", 0))
        if self.tensorboard is not None:
            for tag, value in values.items():
                self.tensorboard.add_scalar(tag, value, step)
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def flush(self) -> None:
        """Write what is queued now. TensorBoard appends from a background thread, by path:
        a caller about to move the run folder (`hf train` replaces it after every epoch) flushes
        first, so no append lands in the moment the folder is away."""
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
