"""`coconutblt estimate-params CONFIG [--memory]`: closed form vs exact meta-device count."""

from __future__ import annotations

import argparse

from coconutblt.model.config import ModelConfig
from coconutblt.model.params import (
    COMPONENTS,
    estimate_counts,
    exact_counts,
    flops_per_byte,
    memory_plan,
    planned_bytes_per_patch,
)


def register(sub) -> None:
    p = sub.add_parser(
        "estimate-params", help="parameter count (closed form vs exact) and training memory"
    )
    p.add_argument(
        "config", nargs="?", help="YAML preset (its model: section); omit to use the flags"
    )
    p.add_argument("overrides", nargs="*", help="model overrides key=value, e.g. d_model=2048")
    p.add_argument("--d_model", "--d-model", type=int, dest="d_model")
    p.add_argument("--n_layers", "--n-layers", type=int, dest="n_layers")
    p.add_argument("--n_heads", "--n-heads", type=int, dest="n_heads")
    p.add_argument(
        "--memory", action="store_true", help="print the per-GPU memory plan at 4K/8K bytes"
    )
    p.add_argument("--seq-lens", type=int, nargs="+", default=[4096, 8192])
    p.add_argument("--world-size", type=int, default=1)
    p.add_argument(
        "--bytes-per-patch",
        type=float,
        default=None,
        help="mean patch size for the plan (default: the fixed size, or max_patch_size / 2)",
    )
    p.add_argument(
        "--peak-tflops", type=float, default=989.0, help="GPU bf16 dense peak (H100 SXM: 989)"
    )
    p.add_argument(
        "--mfu", type=float, default=0.4, help="model FLOPs utilisation assumed by the plan"
    )
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> ModelConfig:
    from coconutblt.config_tree import parse_overrides

    overrides = parse_overrides(args.overrides) if args.overrides else {}
    for key in ("d_model", "n_layers", "n_heads"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.config:
        return ModelConfig.from_yaml(args.config, overrides)
    # flags alone describe the seed's design: head dim 128 and a 4x two-matrix MLP (12*H^2 a layer)
    if "d_model" in overrides and "n_heads" not in overrides:
        overrides["n_heads"] = max(overrides["d_model"] // 128, 1)
    overrides.setdefault("mlp_type", "gelu")
    return ModelConfig.from_dict(overrides, source="command line")


def fmt(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3f}{unit}"
    return f"{n:.0f}"


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    est, exact = estimate_counts(cfg), exact_counts(cfg)
    print(f"{'component':<10} {'closed form':>14} {'exact (meta)':>14} {'diff':>8}")
    for name in COMPONENTS:
        e, x = est[name], exact[name]
        diff = 0.0 if x == 0 else (e - x) / x * 100
        print(f"{name:<10} {e:>14,} {x:>14,} {diff:>7.2f}%")
    te, tx = sum(est.values()), sum(exact.values())
    print(
        f"{'total':<10} {te:>14,} {tx:>14,} {(te - tx) / tx * 100:>7.2f}%   (~{fmt(tx)} parameters)"
    )
    print(
        f"training memory, bf16 compute + AdamW: fp32 params {gib(4 * tx)}, grads {gib(4 * tx)}, "
        f"AdamW moments {gib(8 * tx)} = {gib(16 * tx)} of model state (bf16 weights only: {gib(2 * tx)})"
    )
    if args.memory:
        print(
            f"\nper-GPU memory plan (world size {args.world_size}, batch 1 sequence per GPU, estimate):"
        )
        print(
            f"{'seq bytes':>9} {'act.ckpt':>8} {'params':>10} {'grads':>10} {'optimizer':>10} {'activations':>12} {'total':>10}"
        )
        for seq in args.seq_lens:
            for ac in (False, True):
                m = memory_plan(cfg, seq, 1, ac, args.world_size, args.bytes_per_patch)
                print(
                    f"{seq:>9} {'yes' if ac else 'no':>8} {gib(m.params):>10} {gib(m.grads):>10} "
                    f"{gib(m.optimizer):>10} {gib(m.activations):>12} {gib(m.total):>10}"
                )
        per_patch = args.bytes_per_patch or planned_bytes_per_patch(cfg)
        rate = args.peak_tflops * 1e12 * args.mfu
        print(
            f"\nthroughput plan ({per_patch:g} bytes per patch, {args.peak_tflops:g} TFLOP/s bf16 peak at "
            f"{args.mfu:.0%} MFU; activation checkpointing adds one forward, ~+33% FLOPs):"
        )
        print(f"{'seq bytes':>9} {'FLOPs/byte':>12} {'bytes/s/GPU':>12} {'patches/s/GPU':>14}")
        for seq in args.seq_lens:
            fpb = flops_per_byte(cfg, seq, per_patch)
            print(f"{seq:>9} {fpb:>12.3g} {rate / fpb:>12,.0f} {rate / fpb / per_patch:>14,.0f}")
    return 0
