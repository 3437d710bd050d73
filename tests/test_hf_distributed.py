"""`hf train` under torchrun (DDP, gloo on the CPU) gives the losses of one process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from coconutblt.hf.tiny import build_tiny_base  # noqa: E402

pytestmark = pytest.mark.distributed


def toy_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = 3 + i, 2 + 2 * i
        steps = f"<<{a}+{b}={a + b}>>{a + b}\n" + (f"<<{a + b}*2={2 * (a + b)}>>\n" * (i % 2))
        answer = a + b if i % 2 == 0 else 2 * (a + b)
        question = f"Ann has {a} apples and buys {b} more." + (" Then doubles them." * (i % 2))
        rows.append({"question": question + " How many?", "answer": f"{steps}#### {answer}"})
    return rows


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def train_losses(folder) -> list[float]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["type"] == "train"]


def test_two_processes_match_one_at_the_global_batch(tmp_path):
    """9 examples, global batch 4 (2 per rank x 2 ranks vs 4 in one process), 2 micro-batches
    per step: the last batch holds 1 row, so one rank trains a no-loss stand-in row; stage 1
    runs the thought passes inside DDP's forward."""
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in toy_rows(9)))
    base = tmp_path / "base"
    build_tiny_base(data=str(data), out=str(base), width=32, print_fn=lambda *a: None)
    train = f"hf train --base-model {base} --data {data} --stage 1 --c-thought 1 "
    train += "--epochs 2 --lr 1e-3 --grad-accum 2 --device cpu"
    cli = [sys.executable, "-m", "coconutblt.cli"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    torchrun += ["--nproc_per_node=2", "-m", "coconutblt.cli"]

    one = run([*cli, *train.split(), "--batch-size", "4", "--out", str(tmp_path / "one")])
    two = run([*torchrun, *train.split(), "--batch-size", "2", "--out", str(tmp_path / "two")])

    a, b = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    assert len(a) == len(b) == 6  # 3 batches (4, 4, 1 rows) x 2 epochs
    diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
    print(f"max |loss(1 process, batch 4) - loss(2 processes, batch 2)| = {diff:.2e}")
    assert diff < 1e-4, (a, b)
    assert "2 processes (cpu), global batch 4" in two.stdout
    assert two.stdout.count("saved ") == 1  # rank 0 alone prints and saves
    meta = json.loads((tmp_path / "two" / "coconut.json").read_text())
    assert (meta["world_size"], meta["global_batch"], meta["steps"]) == (2, 4, 4)
    assert one.stdout.count("saved ") == 1
    # the weights after 4 optimizer steps agree too: DDP's averaged gradients are the global ones
    from safetensors.torch import load_file

    w1 = load_file(tmp_path / "one" / "model.safetensors")
    w2 = load_file(tmp_path / "two" / "model.safetensors")
    assert w1.keys() == w2.keys()
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders
