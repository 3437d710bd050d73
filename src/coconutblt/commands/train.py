"""`coconutblt train [CONFIG.yaml] key=value ... --out DIR [--resume]`.

Without a preset the dataclass defaults are the base (as `coconutblt reproduce` runs them)."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train from a YAML preset (text pretraining or the Coconut curriculum)"
    )
    p.add_argument("config", help="YAML preset, e.g. configs/tiny.yaml (optional: overrides only)")
    p.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. data.train=[a.json] training.lr=3e-4"
    )
    p.add_argument(
        "--out", required=True, help="run folder: checkpoints, metrics.jsonl, metrics.png"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue exactly from OUT/last.pt (training.steps, curriculum.num_epochs and "
        "training.lr may be raised or changed to train longer)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in an OUT that holds another run's checkpoints (they are removed)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from coconutblt.train.config import load_run_config
    from coconutblt.train.loop import Trainer

    config, overrides = args.config, list(args.overrides)
    if "=" in config and not config.endswith((".yaml", ".yml")):  # no preset, overrides only
        config, overrides = None, [config, *overrides]
    cfg = load_run_config(config, overrides)
    cfg.check("command line" if overrides else str(config))  # before the run folder is touched
    trainer = Trainer(
        cfg,
        args.out,
        resume=args.resume,
        show_progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    try:
        if trainer.ctx.is_main:
            n = sum(p.numel() for p in trainer.model.parameters())
            where = (
                f"{trainer.ctx.world_size} processes (FSDP2)"
                if trainer.ctx.enabled
                else str(trainer.device)
            )
            print(
                f"model: {n / 1e6:.2f}M parameters, patcher {cfg.model.patcher}, {where}; run folder {args.out}"
            )
            data = getattr(trainer, "data", None)
            if data is not None:
                from coconutblt.train.config import context_limit

                print(f"data: {len(data.train)} training / {len(data.val)} validation examples")
                left_out = data.left_out_warning(context_limit(cfg))
                if left_out:
                    print(left_out)
                if len(data.train) < cfg.training.batch_size * trainer.ctx.world_size:
                    print(
                        f"warning: {len(data.train)} training examples fill less than one batch "
                        f"of training.batch_size={cfg.training.batch_size}: each batch repeats "
                        "examples"
                    )
            text = getattr(trainer, "text", None)
            if text is not None:
                print(
                    f"data: {len(text.train):,} training / {len(text.heldout):,} held-out bytes, "
                    f"windows of {cfg.data.seq_len}"
                )
        summary = trainer.fit()
    finally:
        trainer.close()
    if trainer.ctx.is_main:
        print(json.dumps({k: v for k, v in summary.items() if k != "history"}, default=str))
    return 0
