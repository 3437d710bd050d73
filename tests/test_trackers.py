"""training.report_to: TensorBoard and W&B get exactly the scalars metrics.jsonl holds."""

from __future__ import annotations

import sys

import pytest

from coconutblt.errors import ConfigValueError, UserError
from coconutblt.runtime.metrics import read_metrics
from coconutblt.runtime.trackers import Trackers, scalars
from coconutblt.train.loop import Trainer
from tests.test_train import text_cfg


def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def jsonl_scalars(path) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for record in read_metrics(path):
        for tag, value in scalars(record).items():
            out.setdefault(tag, []).append((record["step"], value))
    return out


def test_tensorboard_holds_what_metrics_jsonl_holds_across_a_resume(tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    cfg = text_cfg(tmp_path, "training.report_to=[tensorboard]", "training.max_steps_per_run=3")
    Trainer(cfg, run, show_progress=False).fit()
    cfg = text_cfg(tmp_path, "training.report_to=[tensorboard]")
    Trainer(cfg, run, show_progress=False, resume=True).fit()
    want = jsonl_scalars(run / "metrics.jsonl")
    got = tensorboard_scalars(run / "tensorboard")
    assert [s for s, _ in want["train/loss"]] == list(range(1, 7))  # steps 1..6, once each
    assert set(got) == set(want)
    for tag in want:
        # the resumed half's events replace nothing and repeat nothing
        assert sorted(s for s, _ in got[tag]) == [s for s, _ in want[tag]], tag
        for (_, a), (_, b) in zip(sorted(got[tag]), want[tag], strict=True):
            assert a == pytest.approx(b, rel=1e-6), tag  # TensorBoard stores float32


def test_wandb_runs_offline_and_logs_every_record(tmp_path, fake_wandb):
    calls = fake_wandb
    run = tmp_path / "run"
    Trainer(text_cfg(tmp_path, "training.report_to=[wandb]"), run, show_progress=False).fit()
    import os

    assert os.environ["WANDB_MODE"] == "offline"
    (init,) = [c[1] for c in calls if c[0] == "init"]
    assert init["id"] == "fake123" and init["dir"] == str(run)
    assert init["config"]["training"]["report_to"] == ["wandb"]
    logged = [(step, values) for kind, step, values in (c for c in calls if c[0] == "log")]
    want = [(r["step"], scalars(r)) for r in read_metrics(run / "metrics.jsonl")]
    assert logged == want and len(want) > 6
    assert calls[-1] == ("finish",)


def test_unknown_or_missing_trackers_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigValueError, match=r"training\.report_to: unknown tracker 'mlflow'"):
        text_cfg(tmp_path, "training.report_to=[mlflow]")
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(UserError, match=r"^--report-to includes wandb but .* pip install wandb"):
        Trackers(["wandb"], tmp_path, key="--report-to")
    quiet = tmp_path / "quiet"
    assert Trackers([], quiet).tensorboard is None  # none: nothing imported, nothing written
    assert not quiet.exists()


def test_flush_puts_every_logged_scalar_on_disk_before_close(tmp_path):
    """`Trackers.flush`: what was logged is in the event file while the writer stays open (the
    HF trainer flushes before it replaces the run folder)."""
    pytest.importorskip("tensorboard")
    trackers = Trackers(["tensorboard"], tmp_path)
    for step in range(1, 4):
        trackers.log({"type": "train", "step": step, "loss": 1.0 / step})
    trackers.flush()
    got = tensorboard_scalars(tmp_path / "tensorboard")
    trackers.close()
    assert [(s, round(v, 6)) for s, v in got["train/loss"]] == [(1, 1.0), (2, 0.5), (3, 0.333333)]
