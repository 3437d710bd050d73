"""Byte-level vs fixed-size vs entropy patching at an equal training budget, on real text.

Question: on this machine, for the same training wall-clock (and, separately, the same
training FLOPs), which patching gives the lowest held-out bits-per-byte?

Arms (the same `HybridTransformer` sizes, the same batches, the same optimizer):
  byte     every byte is a latent position (patcher fixed, patch_size 1)
  fixed-4  fixed patches of 4 bytes
  entropy  entropy patches (max 8 bytes), threshold calibrated to 4 bytes/patch on the training
           text; the entropy model is trained first, its cost reported on its own row, and it
           runs inside the model's forward (its inference FLOPs are counted in the arm)
Reference: gzip, bzip2 and xz at their highest levels on the same held-out text.

Each arm trains for `--budget-s` seconds of training time (evaluations excluded) at a constant
learning rate after warmup, so held-out bpb measured along the way is comparable across arms.
Equal FLOPs: the budget F* is the smallest arm's total training FLOPs (params.flops_per_byte x
bytes seen); each arm's bpb at F* is measured when the arm crosses the first arm's total, else
interpolated in log-FLOPs between evaluations.

Run:  .venv/bin/python benchmarks/bench_patching.py          (~15 min on 2 shared CPU cores)
      .venv/bin/python benchmarks/bench_patching.py --quick  (smoke run, ~1 min, writes nothing)
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import lzma
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from benchmarks.results import write_section  # noqa: E402
from coconutblt.data.corpora import ByteWindows  # noqa: E402
from coconutblt.model.config import ModelConfig  # noqa: E402
from coconutblt.model.hybrid import HybridTransformer  # noqa: E402
from coconutblt.model.params import flops_per_byte  # noqa: E402
from coconutblt.patching_study import (  # noqa: E402
    EntropyTrainConfig,
    calibrate_threshold,
    heldout_bpb,
    train_entropy_model,
    window_entropies,
    windows_of,
)
from coconutblt.patching_study.stats import markdown_table  # noqa: E402
from coconutblt.vocab import VOCAB_SIZE  # noqa: E402

TEXT = ROOT.parent / "shared" / "data" / "text"
PNG = Path(__file__).resolve().parent / "patching_bpb.png"
LN2 = math.log(2.0)

LATENT = dict(
    d_model=128,
    n_layers=2,
    n_heads=4,
    d_local=64,
    local_heads=2,
    encoder_layers=1,
    decoder_layers=1,
)
ENTROPY = dict(d_model=64, n_layers=2, n_heads=2, window=128)


@dataclass
class Arm:
    name: str
    cfg: ModelConfig
    curve: list[tuple[float, float, float]] = field(
        default_factory=list
    )  # (train s, FLOPs, bpb on val_small)
    snapshots: list[tuple[float, dict]] = field(
        default_factory=list
    )  # (FLOPs, weights) at each curve point
    steps: int = 0
    bytes_seen: int = 0
    train_s: float = 0.0
    flops: float = 0.0
    mean_patch: float = 0.0
    flops_per_byte: float = 0.0
    extra_flops_per_byte: float = 0.0  # entropy-model inference, per byte
    final_bpb: float = float("nan")


def text_files() -> list[Path]:
    return sorted(TEXT.glob("austen/*.txt")) + sorted(TEXT.glob("shakespeare/*_gut.txt"))


def load_text(holdout: float) -> tuple[torch.Tensor, bytes]:
    """Train bytes (all files but their tails) and held-out bytes (the tail of every file)."""
    train, held = [], []
    for f in text_files():
        data = f.read_bytes()
        cut = int(len(data) * (1 - holdout))
        train.append(data[:cut])
        held.append(data[cut:])
    blob = b"\n".join(train)
    return torch.frombuffer(bytearray(blob), dtype=torch.uint8), b"\n".join(held)


def compressor_bpb(text: bytes) -> dict[str, float]:
    return {
        "gzip -9": 8 * len(gzip.compress(text, compresslevel=9)) / len(text),
        "bzip2 -9": 8 * len(bz2.compress(text, compresslevel=9)) / len(text),
        "xz -9e": 8 * len(lzma.compress(text, preset=9 | lzma.PRESET_EXTREME)) / len(text),
    }


def entropy_inference_flops(cfg: dict, seq_len: int) -> float:
    """Forward FLOPs per byte of the entropy model: 2 x matmul params + attention scores and values."""
    d, n = cfg["d_model"], cfg["n_layers"]
    dense = n * (4 * d * d + 3 * d * 4 * d) + d * VOCAB_SIZE
    keys = min(cfg["window"] or seq_len, seq_len) / 2
    return 2 * dense + 4 * n * d * keys


def entropy_train_flops(cfg: dict, seq_len: int) -> float:
    return 3 * entropy_inference_flops(cfg, seq_len)


@torch.no_grad()
def evaluate(model: HybridTransformer, windows: torch.Tensor, batch_size: int = 32) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        x = windows[i : i + batch_size]
        n = x.shape[0] * (x.shape[1] - 1)
        total += float(model(x, x).loss) * n
        count += n
    model.train()
    return total / count / LN2


def train_arm(
    arm: Arm,
    data: ByteWindows,
    val_small: torch.Tensor,
    args,
    entropy_model=None,
    flops_mark: float | None = None,
):
    """Train for `args.budget_s` seconds; evaluate at fixed fractions of the budget and at `flops_mark`."""
    torch.manual_seed(0)
    model = HybridTransformer(arm.cfg)
    if entropy_model is not None:
        model.entropy_model.load_state_dict(entropy_model.state_dict())
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    other = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
    )
    marks = [f * args.budget_s for f in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)]
    snap_marks = [i / 50 * args.budget_s for i in range(1, 50)]  # weights every 2% of the budget
    patches = 0
    model.train()
    while arm.train_s < args.budget_s:
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (arm.steps + 1) / args.warmup)
        x = data.batch(arm.steps)
        t0 = time.perf_counter()
        out = model(x, x)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        arm.train_s += time.perf_counter() - t0
        arm.steps += 1
        arm.bytes_seen += x.numel()
        patches += int(out.layout.n_patches.sum())
        arm.mean_patch = arm.bytes_seen / patches
        arm.flops_per_byte = (
            flops_per_byte(arm.cfg, x.shape[1], arm.mean_patch) + arm.extra_flops_per_byte
        )
        arm.flops = arm.bytes_seen * arm.flops_per_byte
        crossed = (
            flops_mark is not None
            and arm.flops >= flops_mark
            and not any(f >= flops_mark for _, f, _ in arm.curve)
        )
        if snap_marks and arm.train_s >= snap_marks[0]:
            while snap_marks and arm.train_s >= snap_marks[0]:
                snap_marks.pop(0)
            snapshot(arm, model)
        if (marks and arm.train_s >= marks[0]) or crossed:
            while marks and arm.train_s >= marks[0]:
                marks.pop(0)
            record(arm, model, val_small)
            print(
                f"  {arm.name:8s} {arm.train_s:6.1f}s step {arm.steps:5d}  bpb {arm.curve[-1][2]:.3f}",
                flush=True,
            )
    record(arm, model, val_small)
    return model


def record(arm: Arm, model: HybridTransformer, val_small: torch.Tensor) -> None:
    arm.curve.append((arm.train_s, arm.flops, evaluate(model, val_small)))
    snapshot(arm, model)


def snapshot(arm: Arm, model: HybridTransformer) -> None:
    if arm.snapshots and arm.snapshots[-1][0] == arm.flops:
        return
    arm.snapshots.append(
        (arm.flops, {k: v.detach().clone() for k, v in model.state_dict().items()})
    )


def bpb_at_flops(
    arm: Arm, model: HybridTransformer, val: torch.Tensor, target: float
) -> tuple[float, str]:
    """(bpb on `val`, how) at training FLOPs `target`: the snapshot within 2% of it, else log-linear
    interpolation between the two snapshots around it."""

    def score(state: dict) -> float:
        model.load_state_dict(state)
        return evaluate(model, val)

    f, state = min(arm.snapshots, key=lambda fs: abs(fs[0] - target))
    if abs(f - target) <= 0.02 * target:
        return score(state), "measured"
    snaps = sorted(arm.snapshots, key=lambda fs: fs[0])
    for (f0, s0), (f1, s1) in zip(snaps, snaps[1:], strict=False):
        if f0 <= target <= f1:
            w = (math.log(target) - math.log(f0)) / (math.log(f1) - math.log(f0))
            return score(s0) + w * (score(s1) - score(s0)), "interpolated"
    return float("nan"), "out of range"


def plot(arms: list[Arm], refs: dict[str, float], ent_bpb: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for arm in arms:
        t, f, b = zip(*arm.curve, strict=True)
        axes[0].plot(t, b, marker="o", markersize=3, label=arm.name)
        axes[1].plot(f, b, marker="o", markersize=3, label=arm.name)
    for ax in axes:
        for i, (name, y) in enumerate(refs.items()):
            ax.axhline(y, color=f"C{6 + i}", linestyle=":", linewidth=1, label=name)
        ax.axhline(
            ent_bpb, color="grey", linestyle="--", linewidth=1, label="entropy model (byte LM)"
        )
        ax.set_ylabel("held-out bits per byte")
        ax.grid(alpha=0.3)
    axes[0].set_xlabel("training time (s, evaluation excluded)")
    axes[1].set_xlabel("training FLOPs")
    axes[1].set_xscale("log")
    axes[1].xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].legend(fontsize=7)
    fig.suptitle(
        "Patching at equal training time and FLOPs (held-out Austen + Shakespeare)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-s", type=float, default=180.0, help="training seconds per arm")
    p.add_argument(
        "--entropy-budget-s",
        type=float,
        default=120.0,
        help="training seconds for the entropy model",
    )
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--target-bytes-per-patch", type=float, default=4.0)
    p.add_argument(
        "--eval-bytes", type=int, default=131_072, help="held-out bytes scored at the end"
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a busy shared CPU)"
    )
    p.add_argument("--curves-json", help="also dump the curves here (for replotting)")
    p.add_argument("--quick", action="store_true", help="tiny budgets, no RESULTS.md / PNG")
    args = p.parse_args()
    if args.quick:
        args.budget_s, args.entropy_budget_s, args.eval_bytes = 8.0, 8.0, 16_384
    if not text_files():
        print(
            f"bench_patching: {TEXT} is absent; skipping (it needs real text: austen/*.txt, shakespeare/*_gut.txt)"
        )
        return 0
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    wall0 = time.perf_counter()
    T = args.seq_len

    train, held = load_text(holdout=0.03)
    val = windows_of(torch.frombuffer(bytearray(held), dtype=torch.uint8), T, args.eval_bytes)
    val_small = val[: max(len(val) // 4, 8)]
    scored = val.flatten().to(torch.uint8).numpy().tobytes()
    refs = compressor_bpb(scored)
    print(
        f"train {len(train):,} bytes, held-out scored {len(scored):,} bytes; "
        + ", ".join(f"{k} {v:.3f}" for k, v in refs.items())
    )

    # 1. the entropy model: probe its step time, then train for its budget
    ecfg = EntropyTrainConfig(
        seq_len=T, batch_size=args.batch_size, lr=3e-3, warmup_steps=30, **ENTROPY, device="cpu"
    )
    probe = train_entropy_model(
        EntropyTrainConfig(**{**vars(ecfg), "steps": 4, "warmup_steps": 1}),
        progress=False,
        corpus=train[:400_000].numpy().tobytes(),
    )
    steps = max(int(args.entropy_budget_s / (probe.seconds / 4)), 20)
    ecfg.steps = steps
    ecfg.holdout = 0.005
    print(f"entropy model: {steps} steps (~{args.entropy_budget_s:.0f}s)", flush=True)
    eres = train_entropy_model(ecfg, progress=False, corpus=train.numpy().tobytes())
    emodel = eres.model
    ent_bpb = heldout_bpb(emodel, torch.frombuffer(bytearray(scored), dtype=torch.uint8), T)
    print(f"  trained in {eres.seconds:.0f}s, held-out {ent_bpb:.3f} bpb", flush=True)

    # 2. calibrate the threshold on training text, windows of the training length
    cal_windows = windows_of(train, T, 300_000)
    cal_t0 = time.perf_counter()
    cal = calibrate_threshold(
        cal_windows, window_entropies(emodel, cal_windows), args.target_bytes_per_patch, "global", 8
    )
    cal_s = time.perf_counter() - cal_t0
    print(
        f"  threshold {cal.threshold:.3f} nats -> {cal.achieved:.2f} bytes/patch ({cal_s:.0f}s)",
        flush=True,
    )

    # 3. the three arms
    base = dict(LATENT, max_seq_len=T)
    arms = [
        Arm("byte", ModelConfig(**base, patcher="fixed", patch_size=1, max_patch_size=1)),
        Arm("fixed-4", ModelConfig(**base, patcher="fixed", patch_size=4, max_patch_size=4)),
        Arm(
            "entropy",
            ModelConfig(
                **base,
                patcher="entropy",
                max_patch_size=8,
                entropy_patcher=dict(threshold=cal.threshold, model=ENTROPY),
            ),
            extra_flops_per_byte=entropy_inference_flops(ENTROPY, T),
        ),
    ]
    data = ByteWindows(train, T, args.batch_size, seed=0)
    mark = None
    models = {}
    for arm in arms:
        print(f"arm {arm.name}", flush=True)
        models[arm.name] = model = train_arm(
            arm, data, val_small, args, emodel if arm.name == "entropy" else None, mark
        )
        arm.final_bpb = evaluate(model, val)
        mark = mark or arm.flops
        print(
            f"  {arm.name}: {arm.steps} steps, {arm.bytes_seen / arm.train_s:,.0f} bytes/s, final bpb {arm.final_bpb:.3f}",
            flush=True,
        )

    # 4. report
    f_star = min(a.flops for a in arms)
    header = [
        "arm",
        "bytes/patch",
        "FLOPs/byte",
        "train bytes/s",
        "steps",
        "bytes seen",
        "held-out bpb, equal time",
        "bpb at equal FLOPs",
    ]
    rows = []
    at_f_star = {}
    for a in arms:
        b, how = bpb_at_flops(a, models[a.name], val, f_star)
        at_f_star[a.name] = b
        note = "" if how == "measured" else f" ({how})"
        rows.append(
            [
                a.name,
                f"{a.mean_patch:.2f}",
                f"{a.flops_per_byte / 1e6:.2f}M",
                f"{a.bytes_seen / a.train_s:,.0f}",
                str(a.steps),
                f"{a.bytes_seen / 1e6:.2f}M",
                f"{a.final_bpb:.3f}",
                f"{b:.3f}{note}",
            ]
        )
    e_fpb = entropy_train_flops(ENTROPY, T)
    rows.append(
        [
            "entropy model alone (byte LM)",
            "1",
            f"{e_fpb / 1e6:.2f}M",
            f"{eres.bytes_per_second:,.0f}",
            str(steps),
            f"{eres.train_bytes / 1e6:.2f}M",
            f"{ent_bpb:.3f}",
            "-",
        ]
    )
    for k, v in refs.items():
        rows.append([k, "-", "-", "-", "-", "-", f"{v:.3f}", "-"])
    table = markdown_table(header, rows)
    by_time = sorted(arms, key=lambda a: a.final_bpb)
    by_flops = sorted(arms, key=lambda a: at_f_star[a.name])
    spread = max(a.flops for a in arms) / f_star - 1
    agree = [a.name for a in by_time] == [a.name for a in by_flops]
    falling = all(len(a.curve) > 1 and a.curve[-1][2] < a.curve[-2][2] for a in arms)
    best_ref = min(refs, key=refs.get)
    reading = (
        f"Reading: at equal time {' < '.join(f'{a.name} ({a.final_bpb:.3f})' for a in by_time)} bpb; "
        f"at equal FLOPs {' < '.join(f'{a.name} ({at_f_star[a.name]:.3f})' for a in by_flops)}. "
        f"The arms' total FLOPs differ by up to {100 * spread:.0f}%, and the two orders "
        f"{'agree' if agree else 'differ'}. The small entropy model on its own ({ent_bpb:.3f} bpb) "
        f"{'beats' if ent_bpb < by_time[0].final_bpb else 'trails'} the best hybrid at this tiny scale and "
        f"budget; the best compressor here is {best_ref} ({refs[best_ref]:.3f}). "
        + (
            "Every curve is still falling at the end: these are short runs, not converged models."
            if falling
            else "Not every curve is still falling at the end."
        )
    )
    n_params = sum(p.numel() for p in HybridTransformer(arms[1].cfg).parameters())
    body = f"""Held-out: the last 3% of each of the 13 texts (Austen, Shakespeare), {len(scored):,} bytes scored in
windows of {T} bytes (each window scored from its own start; the compressors see the same bytes as one stream).
Training: the rest, random windows of {T} x batch {args.batch_size}, AdamW lr {args.lr} constant after {args.warmup}
warmup steps, {args.budget_s:.0f} s of training time per arm (evaluation excluded), {args.threads} torch thread.
Model ({n_params / 1e6:.2f}M parameters): latent d_model {LATENT["d_model"]} x {LATENT["n_layers"]} layers, local d {LATENT["d_local"]},
1 encoder + 1 decoder layer. FLOPs/byte: `model.params.flops_per_byte` at the arm's mean patch size; the entropy
arm adds the entropy model's forward ({entropy_inference_flops(ENTROPY, T) / 1e6:.2f}M/byte).
Entropy model: d_model {ENTROPY["d_model"]}, {ENTROPY["n_layers"]} layers, window {ENTROPY["window"]}, trained first for
{eres.seconds:.0f} s ({steps} steps, {eres.train_bytes / 1e6:.1f}M bytes, ~{e_fpb * eres.train_bytes:.2g} FLOPs; not in the entropy
arm's budget); threshold {cal.threshold:.3f} nats calibrated to {cal.achieved:.2f} bytes/patch (max 8) in {cal_s:.0f} s.
Equal FLOPs: F* = {f_star:.3g} FLOPs (the smallest arm's total); each arm's weights at F* (of the snapshots
kept every 2% of the budget, the one within 2% of F*, else interpolated between the two around it) scored on the same held-out bytes. The plot's curves are scored
on the first quarter of those bytes.

{table}

{reading}

![bpb vs time](patching_bpb.png)

Load average at start {load0:.1f}, at end {os.getloadavg()[0]:.1f} (2 cores shared with other jobs: the wall-clock
columns are noisy; the FLOPs column is not). Whole run {(time.perf_counter() - wall0) / 60:.1f} min.
"""
    print(body)
    if args.quick:
        return 0
    plot(arms, refs, ent_bpb, PNG)
    if args.curves_json:
        import json

        curves = {a.name: a.curve for a in arms}
        Path(args.curves_json).write_text(
            json.dumps({"curves": curves, "refs": refs, "entropy_model_bpb": ent_bpb})
        )
    write_section(
        "patching",
        "Patching: byte-level vs fixed vs entropy at an equal budget",
        body,
        "python benchmarks/bench_patching.py",
    )
    print(f"wrote {PNG} and the 'patching' section of benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
