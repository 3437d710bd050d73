"""`hf train --report-to`: TensorBoard and W&B get exactly the scalars of metrics.jsonl, and the
logs survive the checkpoint folder being replaced after every epoch."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from coconutblt.hf.tiny import build_tiny_base  # noqa: E402
from coconutblt.hf.train import train_stage, wandb_logs_dir  # noqa: E402
from coconutblt.runtime.metrics import read_metrics  # noqa: E402
from coconutblt.runtime.trackers import scalars  # noqa: E402
from tests.test_hf_distributed import toy_rows  # noqa: E402
from tests.test_trackers import jsonl_scalars, tensorboard_scalars  # noqa: E402


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in toy_rows(6)))
    base = tmp_path / "base"
    build_tiny_base(data=str(data), out=str(base), width=32, print_fn=lambda *a: None)
    return data, base


def train(data, base, out, report_to, **kw):
    return train_stage(
        base_model=str(base),
        load=None,
        data=str(data),
        stage=1,
        c_thought=1,
        out=str(out),
        epochs=2,
        lr=1e-3,
        batch_size=4,
        val_data=str(data),
        max_val_examples=2,
        max_new_tokens=4,
        report_to=report_to,
        print_fn=lambda *a: None,
        **kw,
    )


def records(folder) -> list[dict]:
    return read_metrics(folder / "metrics.jsonl")


def test_tensorboard_holds_metrics_jsonl_across_the_folder_swaps(tmp_path, setup):
    pytest.importorskip("tensorboard")
    data, base = setup
    out = tmp_path / "s1"
    train(data, base, out, ["tensorboard"])
    want, got = jsonl_scalars(out / "metrics.jsonl"), tensorboard_scalars(out / "tensorboard")
    # 2 batches x 2 epochs of train records, a validation per epoch
    assert len(want["train/loss"]) == 4 and len(want["eval/accuracy"]) == 2
    assert set(got) == set(want)
    for tag in want:
        assert [s for s, _ in got[tag]] == [s for s, _ in want[tag]], tag
        for (_, a), (_, b) in zip(got[tag], want[tag], strict=True):
            assert a == pytest.approx(b, rel=1e-6), tag  # TensorBoard stores float32
    # a new run into the same folder starts new logs (the old ones went with the old folder)
    train(data, base, out, ["tensorboard"], seed=1)
    got = tensorboard_scalars(out / "tensorboard")
    assert len(got["train/loss"]) == 4
    assert [v for _, v in got["train/loss"]] == pytest.approx(
        [v for _, v in jsonl_scalars(out / "metrics.jsonl")["train/loss"]], rel=1e-6
    )
    # without --report-to a rerun leaves no tracker logs behind
    train(data, base, out, [])
    assert not (out / "tensorboard").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders


def test_wandb_gets_every_record_offline(tmp_path, setup, fake_wandb):
    calls = fake_wandb
    data, base = setup
    out = tmp_path / "s1"
    train(data, base, out, ["wandb"])
    import os

    assert os.environ["WANDB_MODE"] == "offline"
    (init,) = [c[1] for c in calls if c[0] == "init"]
    assert init["id"] == "fake123"
    # W&B writes by path from its own process: its folder is beside the one replaced per epoch
    assert init["dir"] == str(wandb_logs_dir(out)) == str(tmp_path / "s1.wandb")
    assert not (out / "wandb").exists()
    assert (init["config"]["stage"], init["config"]["lr"]) == (1, 1e-3)
    logged = [(step, values) for kind, step, values in (c for c in calls if c[0] == "log")]
    assert logged == [(r["step"], scalars(r)) for r in records(out)] and len(logged) == 6
    assert calls[-1] == ("finish",)
    assert (out / "wandb_run_id").read_text().strip() == "fake123"  # kept through the swaps
    events = wandb_logs_dir(out) / "wandb" / "offline-run-fake123" / "events.log"
    assert events.read_text().split() == [str(r["step"]) for r in records(out)]
