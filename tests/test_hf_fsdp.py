"""`hf train` under torchrun with FSDP2 (gloo on the CPU) on a tiny Llama: the losses and the
weights of one process at the same global batch, for full fine-tuning and for LoRA, and a
checkpoint that `hf eval` reads in one process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("peft")

from coconutblt.hf.lora import LoraSettings  # noqa: E402
from coconutblt.hf.tiny import build_tiny_base  # noqa: E402
from coconutblt.hf.train import train_stage  # noqa: E402
from tests.test_hf_distributed import toy_rows, train_losses  # noqa: E402

pytestmark = pytest.mark.distributed

# One torchrun start for three runs: the script owns the process group, so each train_stage
# call leaves it up for the next (a torchrun start costs more than a tiny run).
SCRIPT = """
import sys
import torch.distributed as dist
from coconutblt.hf.lora import LoraSettings
from coconutblt.hf.train import train_stage

base, data, out = sys.argv[1:4]
dist.init_process_group("gloo")
common = dict(base_model=base, load=None, data=data, stage=1, c_thought=1, epochs=2, lr=1e-3,
              batch_size=2, grad_accum=2, device="cpu", print_fn=print)
train_stage(out=out + "/full", **common)
train_stage(out=out + "/lora", lora=LoraSettings(r=4), merge_lora=out + "/merged",
            gradient_checkpointing=True, **common)
train_stage(out=out + "/ddp", parallel="ddp", **common)
dist.destroy_process_group()
"""


def max_weight_diff(a, b) -> float:
    from safetensors.torch import load_file

    w1, w2 = load_file(a), load_file(b)
    assert w1.keys() == w2.keys()
    return max(float((w1[k] - w2[k]).abs().max()) for k in w1)


def test_fsdp2_matches_one_process_full_and_lora(tmp_path):
    """9 examples, global batch 4 (2 per rank x 2 ranks vs 4 in one process), 2 micro-batches
    per step, stage 1 (a thought pass inside FSDP's root forward, so every layer is gathered
    once per pass); the LoRA run also recomputes activations (no-cache thought passes).
    Tolerances: the same float32 arithmetic summed in another order (two per-rank token sums
    instead of one, gloo's reduce-scatter instead of a local sum) differs by rounding only:
    up to 6.4e-7 measured on the losses, 5e-8 on the weights: the bounds leave 3x and 10x."""
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in toy_rows(9)))
    base = tmp_path / "base"
    build_tiny_base(data=str(data), out=str(base), arch="llama", width=32, print_fn=print)
    script = tmp_path / "fsdp_runs.py"
    script.write_text(textwrap.dedent(SCRIPT))
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*cmd, str(script), str(base), str(data), str(two)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "2 processes (cpu), global batch 4, FSDP2" in done.stdout
    assert "2 processes (cpu), global batch 4, DDP" in done.stdout

    one = tmp_path / "one"
    common = dict(base_model=str(base), load=None, data=str(data), stage=1, c_thought=1)
    common.update(epochs=2, lr=1e-3, batch_size=4, grad_accum=2, device="cpu")
    quiet = dict(print_fn=lambda *a, **k: None)
    train_stage(out=str(one / "full"), **common, **quiet)
    lora = dict(lora=LoraSettings(r=4), gradient_checkpointing=True)
    train_stage(out=str(one / "lora"), **lora, **common, **quiet)

    for name, ref in (("full", "full"), ("ddp", "full"), ("lora", "lora")):
        a, b = train_losses(one / ref), train_losses(two / name)
        assert len(a) == len(b) == 6  # 3 batches (4, 4, 1 rows) x 2 epochs
        diff = max(abs(x - y) for x, y in zip(a, b, strict=True))
        print(f"{name}: max |loss(1 process) - loss(2 processes)| = {diff:.2e}")
        assert diff < 2e-6, (name, a, b)
    assert train_losses(two / "lora")[1:] != train_losses(two / "full")[1:]  # distinct runs
    meta = json.loads((two / "full" / "coconut.json").read_text())
    assert (meta["world_size"], meta["global_batch"], meta["steps"], meta["parallel"]) == (
        2,
        4,
        4,
        "fsdp",
    )
    # rank 0 wrote full (unsharded) weights and adapters, equal to one process's
    full = max_weight_diff(one / "full/model.safetensors", two / "full/model.safetensors")
    lora = max_weight_diff(
        one / "lora/adapter_model.safetensors", two / "lora/adapter_model.safetensors"
    )
    print(f"max weight difference: full {full:.2e}, LoRA adapter {lora:.2e}")
    assert full < 5e-7 and lora < 5e-7
    assert (two / "merged" / "model.safetensors").is_file()  # --merge-lora under FSDP

    # and `hf eval` reads the FSDP checkpoints in a single process
    from coconutblt.hf.evaluate import evaluate_checkpoints

    results = evaluate_checkpoints(
        [str(two / "full"), str(two / "lora"), str(two / "merged")],
        data=str(data),
        max_new_tokens=4,
        print_fn=lambda *a: None,
    )
    texts = [[row.generated for row in r.rows] for r in results]
    assert texts[1] == texts[2]  # adapter and merged model answer alike
