"""`coconutblt data synth --task T --n N --out FILE`, `data show FILE`, `data stats FILE [FILE2]`.

`stats` prints a table of lengths, steps, answers and vocabulary (`coconutblt.data.stats`); with
two files the columns sit side by side, to hold a synthetic set against the real one.
"""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("data", help="synthesize or inspect reasoning data")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    s = dsub.add_parser("synth", help="write a seeded synthetic reasoning data set")
    s.add_argument("--task", required=True, help="arith | mult | prosqa | prontoqa | chain")
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
    st = dsub.add_parser(
        "stats",
        help="lengths in bytes and patches, steps, answers and vocabulary; two files side by side",
    )
    st.add_argument("file")
    st.add_argument("file2", nargs="?", help="a second file, shown in a column next to the first")
    st.add_argument(
        "--patcher", default="space", help="fixed | space | word | sentence (default space)"
    )
    st.add_argument("--patch-size", type=int, default=4, help="patch size of the fixed patcher")
    st.add_argument("--max-patch-size", type=int, default=12, help="cap of the space patcher")
    st.add_argument("--json", action="store_true", help="print a JSON dict keyed by file instead")
    st.set_defaults(func=stats)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def synth(args: argparse.Namespace) -> int:
    from coconutblt.data.synth import synthesize, write_examples
    from coconutblt.errors import UserError

    try:
        options = json.loads(args.args)
    except json.JSONDecodeError as exc:
        raise UserError(f"--args is not JSON ({exc.msg}); e.g. --args '{{\"hops\": 4}}'") from None
    if not isinstance(options, dict):
        raise UserError(f"--args must be a JSON object, got {args.args!r}; e.g. '{{\"hops\": 4}}'")
    examples = synthesize(args.task, args.n, seed=args.seed, **options)
    path = write_examples(examples, args.out)
    print(f"wrote {len(examples)} {args.task} examples to {path}")
    return 0


def show(args: argparse.Namespace) -> int:
    from collections import Counter

    from coconutblt.data.reasoning import load_examples
    from coconutblt.data.stages import StageConfig, format_example
    from coconutblt.vocab import decode_text

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


def stats(args: argparse.Namespace) -> int:
    from coconutblt.data.stats import file_stats, format_table, stats_dict

    options = dict(
        patcher=args.patcher, patch_size=args.patch_size, max_patch_size=args.max_patch_size
    )
    files = [f for f in (args.file, args.file2) if f is not None]
    results = [file_stats(f, **options) for f in files]
    if args.json:
        print(json.dumps({s.path: stats_dict(s) for s in results}, indent=2, ensure_ascii=False))
    else:
        print(format_table(results))
    return 0
