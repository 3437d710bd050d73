"""Seed script: the config-driven runner, e.g.

    python scripts/train.py --config configs/model_1b.yaml --out runs/1b training.steps=1000

Same code as `coconutblt train` (also under `torchrun --nproc_per_node=N`).
"""

import sys

from coconutblt.cli import main


def translate(argv: list[str]) -> list[str]:
    args, config = [], None
    it = iter(argv)
    for a in it:
        if a == "--config":
            config = next(it)
        elif a.startswith("--config="):
            config = a.split("=", 1)[1]
        else:
            args.append(a)
    if config is None:
        positional = [a for a in args if not a.startswith("-") and "=" not in a]
        config = positional[0] if positional else "configs/tiny.yaml"
        if positional:
            args.remove(config)
    if "--out" not in args and not any(a.startswith("--out=") for a in args):
        args += ["--out", "checkpoints"]
    return ["train", config, *args]


if __name__ == "__main__":
    sys.exit(main(translate(sys.argv[1:])))
