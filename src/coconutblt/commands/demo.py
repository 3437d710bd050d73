"""`coconutblt demo`: the Coconut curriculum on a synthetic reasoning task, end to end on a CPU.

The demo is the `chain` recipe of `coconutblt reproduce` (configs/recipes/chain.yaml) written
to runs/demo: a seeded pointer-chasing task (follow shuffled `x=y` facts for 3 hops), CoT,
Coconut continued from CoT through the continuous-thought stages, No-CoT (answer only), and a
comparison on held-out problems with tables, examples and plots.

Two choices make the continuous thoughts learnable on the byte/patch model in minutes (measured,
see benchmarks/RESULTS.md): a thought head with the next-patch loss (`HybridTransformer.
next_patch_loss`), so that a fed-back state reads like the patch it replaces, and no
`<|start-latent|>` marker, whose fixed embedding would cut the question's last state off the
chain of thoughts.
"""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="train No-CoT, CoT and Coconut on a synthetic task and compare them"
    )
    p.add_argument(
        "--out", default=None, help="run folder (default runs/demo, with --quick runs/demo-quick)"
    )
    p.add_argument(
        "--quick", action="store_true", help="a smoke run in seconds (numbers not meaningful)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo in --out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from coconutblt.commands import reproduce

    recipe_args = argparse.Namespace(
        task="chain",
        data_dir=".",
        out=args.out or ("runs/demo-quick" if args.quick else "runs/demo"),
        test=[],
        resume=args.resume,
        quick=args.quick,
        seed=args.seed,
        threads=args.threads,
        examples=3,
        no_progress=args.no_progress,
        overrides=[],
    )
    return reproduce.run(recipe_args)
