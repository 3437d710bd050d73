"""Seed script: train a tiny hybrid byte model on text and watch the loss fall.

    python scripts/train_toy.py --steps 200 --device cpu
    python scripts/train_toy.py --patcher entropy --use_learned_estimator --max_patch_size 8 --steps 20
    python scripts/train_toy.py --patcher entropy --use_learned_estimator --train_estimator --est_loss_weight 1.0

Text: --data files/folders, else the Python standard library's sources (on every machine).
Writes OUT/final.pt (default checkpoints/), which `scripts/generate.py --ckpt` reads.
"""

import argparse
import sys

from coconutblt.cli import main


def parse(argv: list[str]) -> list[str]:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--device", default="auto")
    p.add_argument("--patcher", choices=["fixed", "space", "entropy"], default="fixed")
    p.add_argument(
        "--use_learned_estimator", action="store_true", help="entropy from a head trained online"
    )
    p.add_argument(
        "--train_estimator", action="store_true", help="add the estimator's auxiliary loss"
    )
    p.add_argument("--est_loss_weight", type=float, default=1.0)
    p.add_argument("--max_patch_size", type=int, default=8)
    p.add_argument("--patch_size", type=int, default=4)
    p.add_argument("--entropy_model", default="", help="checkpoint from `coconutblt entropy train`")
    p.add_argument("--threshold", type=float, default=None, help="entropy threshold (nats)")
    p.add_argument(
        "--data",
        nargs="*",
        default=[],
        help="text files or folders (default: Python stdlib sources)",
    )
    p.add_argument("--config", default="configs/tiny.yaml")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--seq_len", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="checkpoints")
    a = p.parse_args(argv)
    over = [
        "data.kind=text",
        f"data.seq_len={a.seq_len}",
        f"training.steps={a.steps}",
        f"training.device={a.device}",
        f"training.batch_size={a.batch_size}",
        f"training.lr={a.lr}",
        f"training.seed={a.seed}",
        "training.warmup_steps=20",
        "training.log_every=10",
        f"model.patcher={a.patcher}",
        f"model.patch_size={a.patch_size}",
        f"model.max_patch_size={a.max_patch_size}",
        f"training.train_estimator={str(a.train_estimator).lower()}",
        f"training.est_loss_weight={a.est_loss_weight}",
    ]
    if a.patcher == "entropy":
        over.append(
            f"model.entropy_patcher.estimator={'learned' if a.use_learned_estimator else 'model'}"
        )
        if a.entropy_model:
            over.append(f"training.entropy_model={a.entropy_model}")
    if a.threshold is not None:
        over.append(f"model.entropy_patcher.threshold={a.threshold}")
    if a.data:
        over.append("data.train=[" + ",".join(f"'{d}'" for d in a.data) + "]")
    return ["train", a.config, *over, "--out", a.out]


if __name__ == "__main__":
    sys.exit(main(parse(sys.argv[1:])))
