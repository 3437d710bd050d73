"""torchrun + FSDP2 on the CPU (gloo): same losses as one process, stop/resume, world-size change."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from coconutblt.checkpoint import read_checkpoint
from coconutblt.runtime.metrics import read_metrics
from tests.conftest import TINY_RUN_MODEL as MODEL

pytestmark = pytest.mark.distributed


def run_args(corpus, global_batch: int, world: int, *extra: str) -> list[str]:
    return [
        "train",
        "configs/tiny.yaml",
        *MODEL,
        "data.kind=text",
        f"data.train=['{corpus}']",
        "data.seq_len=64",
        "training.steps=6",
        f"training.batch_size={global_batch // world}",
        "training.grad_accum=2",
        "training.log_every=1",
        "training.warmup_steps=2",
        *extra,
    ]


def torchrun(world: int, args: list[str], out) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={world}",
        "--standalone",
        "-m",
        "coconutblt.cli",
        *args,
        "--out",
        str(out),
        "--no-progress",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def single(args: list[str], out) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "coconutblt.cli", *args, "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-4000:]


def losses(out) -> list[float]:
    return [r["loss"] for r in read_metrics(out / "metrics.jsonl") if r["type"] == "train"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text(
        "the quick brown fox jumps over the lazy dog; pack my box with five dozen jugs. " * 200
    )
    return path


def test_two_processes_match_one_and_resume(corpus, tmp_path):
    single(run_args(corpus, 8, 1), tmp_path / "one")
    torchrun(2, run_args(corpus, 8, 2), tmp_path / "two")
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 6
    assert max(abs(a - b) for a, b in zip(one, two, strict=True)) < 1e-4
    assert two[-1] < two[0]

    # stop after 3 steps under 2 processes, resume under 2: the same losses
    torchrun(2, run_args(corpus, 8, 2, "training.max_steps_per_run=3"), tmp_path / "split")
    assert len(losses(tmp_path / "split")) == 3
    torchrun(2, run_args(corpus, 8, 2) + ["--resume"], tmp_path / "split")
    assert max(abs(a - b) for a, b in zip(losses(tmp_path / "split"), two, strict=True)) < 1e-5

    # a 2-process checkpoint resumes in one process (full state dicts)
    torchrun(2, run_args(corpus, 8, 2, "training.max_steps_per_run=3"), tmp_path / "cross")
    single(run_args(corpus, 8, 1) + ["--resume"], tmp_path / "cross")
    assert max(abs(a - b) for a, b in zip(losses(tmp_path / "cross"), one, strict=True)) < 1e-4
    a = read_checkpoint(tmp_path / "two" / "final.pt")["model"]
    b = read_checkpoint(tmp_path / "one" / "final.pt")["model"]
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
