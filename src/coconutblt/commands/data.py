"""`coconutblt data synth --task T --n N --out FILE` and `coconutblt data show FILE`."""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("data", help="synthesize or inspect reasoning data")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    s = dsub.add_parser("synth", help="write a seeded synthetic reasoning data set")
    s.add_argument("--task", required=True, help="arith | mult | prosqa | chain")
    s.add_argument("--n", type=int, required=True)
    s.add_argument(
        "--out", required=True, help=".json (list), .jsonl, or .txt (Internalize-CoT lines)"
    )
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--args", default="{}", help="generator options as JSON, e.g. '{\"hops\": 4}'")
    s.set_defaults(func=synth)
    v = dsub.add_parser(
        "show", help="load a data file and print statistics and examples at stages 0 and 1"
    )
    v.add_argument("file")
    v.add_argument("--c-thought", type=int, default=1)
    v.set_defaults(func=show)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def synth(args: argparse.Namespace) -> int:
    from coconutblt.data.synth import synthesize, write_examples
    from coconutblt.errors import UserError

    try:
        options = json.loads(args.args)
    except json.JSONDecodeError as exc:
        raise UserError(f"--args is not JSON ({exc.msg}); e.g. --args '{{\"hops\": 4}}'") from None
    try:
        examples = synthesize(args.task, args.n, seed=args.seed, **options)
    except TypeError as exc:
        raise UserError(
            f"--args: {exc}; see the generator's options in coconutblt.data.synth"
        ) from None
    path = write_examples(examples, args.out)
    print(f"wrote {len(examples)} {args.task} examples to {path}")
    return 0


def show(args: argparse.Namespace) -> int:
    from collections import Counter

    from coconutblt.data.reasoning import load_examples
    from coconutblt.data.stages import StageConfig, format_example
    from coconutblt.data.vocab import decode_text

    examples = load_examples(args.file)
    steps = Counter(len(e.steps) for e in examples)
    print(
        f"{args.file}: {len(examples)} examples; steps per example: {dict(sorted(steps.items()))}"
    )
    if not examples:
        return 0
    ex = examples[0]
    print(f"raw: {json.dumps({'question': ex.question, 'steps': ex.steps, 'answer': ex.answer})}")
    cfg = StageConfig(mode="coconut", c_thought=args.c_thought)
    for stage in (0, 1):
        print(f"\nstage {stage}:\n{decode_text(format_example(ex, stage, cfg).input_ids)}")
    return 0
