"""Shared test helpers: tiny model configs, the real-data folder, deterministic torch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coconutblt.model.config import ModelConfig

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

torch.set_num_threads(2)


# the same tiny model as `train` overrides, for trainer and torchrun tests
TINY_RUN_MODEL = [
    "model.d_model=32",
    "model.n_layers=2",
    "model.n_heads=2",
    "model.d_local=32",
    "model.local_heads=2",
    "model.max_seq_len=256",
    "model.patch_size=4",
    "model.max_patch_size=4",
]


def tiny_config(**overrides) -> ModelConfig:
    """A model small enough that a forward over a few hundred bytes takes milliseconds."""
    base = dict(
        d_model=32,
        n_layers=2,
        n_heads=2,
        d_local=32,
        local_heads=2,
        encoder_layers=1,
        decoder_layers=1,
        max_seq_len=512,
        patch_size=3,
        max_patch_size=5,
        entropy_patcher=dict(model=dict(d_model=16, n_layers=1, n_heads=2)),
    )
    base.update(overrides)
    return ModelConfig(**base)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def fake_wandb(monkeypatch) -> list[tuple]:
    """A stand-in `wandb` module (the trackers' tests run offline and without the package):
    returns the list of calls it receives, ("init", kwargs), ("log", step, values), ("finish",);
    its run id is "fake123"; each log appends its step to `DIR/wandb/offline-run-fake123/events.log`
    by path, DIR being init's `dir`."""
    import sys
    import types
    from pathlib import Path

    calls: list[tuple] = []

    class FakeRun:
        def __init__(self, dir):
            # W&B's own process appends to files under `dir` by path, as this does
            self.events = Path(dir) / "wandb" / "offline-run-fake123" / "events.log"
            self.events.parent.mkdir(parents=True, exist_ok=True)

        def log(self, values, step):
            calls.append(("log", step, values))
            with open(self.events, "a") as f:
                f.write(f"{step}\n")

        def finish(self):
            calls.append(("finish",))

    fake = types.ModuleType("wandb")
    fake.util = types.SimpleNamespace(generate_id=lambda: "fake123")
    fake.init = lambda **kw: calls.append(("init", kw)) or FakeRun(kw["dir"])
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return calls
