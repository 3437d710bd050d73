"""`coconutblt eval --ckpt A [B ...] --data FILE`: accuracy, bytes, latency; one table."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("eval", help="task accuracy of one or more checkpoints on reasoning data")
    p.add_argument("--ckpt", nargs="+", required=True, help="checkpoint files or run folders")
    p.add_argument(
        "--data", required=True, help="reasoning examples (JSON/JSONL, Internalize-CoT .txt, GSM8k)"
    )
    p.add_argument("--names", nargs="*", help="a label per checkpoint (default: its path and mode)")
    p.add_argument(
        "--stage", type=int, default=None, help="prompt at this stage (default: the checkpoint's)"
    )
    p.add_argument("--max-examples", type=int, default=0, help="use the first N (0 = all)")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=0,
        help="generation budget (0 = 1.5x the longest reference target at the stage, + 16)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--examples", type=int, default=3, help="side-by-side examples to print")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def evaluate_checkpoint(path: str, examples, stage: int | None, args: argparse.Namespace):
    """Load a trainer checkpoint and evaluate it the way it was trained (mode, c_thought, stage)."""
    from coconutblt.checkpoint import model_from_checkpoint, read_checkpoint
    from coconutblt.inference.evaluate import evaluate_examples
    from coconutblt.train.config import run_config_from_dict, stage_config

    ckpt = read_checkpoint(path)
    model = model_from_checkpoint(ckpt, path, args.device)
    cfg = run_config_from_dict(ckpt.get("run_config", {}), source=f"{path} (run_config)")
    use_stage = stage if stage is not None else int(ckpt.get("stage", 0))
    result = evaluate_examples(
        model, examples, stage_config(cfg), use_stage, args.batch_size, args.max_new_tokens
    )
    return f"{cfg.curriculum.mode} stage {use_stage}", result


def run(args: argparse.Namespace) -> int:
    from coconutblt.data.reasoning import load_examples
    from coconutblt.errors import UserError
    from coconutblt.inference.report import comparison_block

    if args.names and len(args.names) != len(args.ckpt):
        raise UserError(
            f"--names has {len(args.names)} labels for {len(args.ckpt)} checkpoints; give one each"
        )
    for flag, value, low, what in (
        ("--max-examples", args.max_examples, 0, "0 = all"),
        ("--max-new-tokens", args.max_new_tokens, 0, "0 = from the data"),
        ("--batch-size", args.batch_size, 1, "examples generated at once"),
        ("--stage", 0 if args.stage is None else args.stage, 0, "0 = the full chain of thought"),
    ):
        if value < low:
            raise UserError(f"{flag} {value}: give N >= {low} ({what})")
    examples = load_examples(args.data)
    if args.max_examples:
        examples = examples[: args.max_examples]
    results = []
    for i, path in enumerate(args.ckpt):
        label, result = evaluate_checkpoint(path, examples, args.stage, args)
        name = (
            args.names[i] if args.names else f"{Path(path).parent.name}/{Path(path).name} ({label})"
        )
        results.append((name, result))
    print(comparison_block(results, args.data, args.examples))
    return 0
