"""`coconutblt` command line: parses, calls the library, prints.

Each subcommand lives in `coconutblt/commands/<name>.py` with a `register(subparsers)` that
adds its parser and sets `func`. A `UserError` anywhere ends the command with one line on
stderr and exit status 2; a warning is one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from coconutblt.errors import UserError

COMMAND_MODULES = [
    "coconutblt.commands.demo",
    "coconutblt.commands.reproduce",
    "coconutblt.commands.train",
    "coconutblt.commands.evaluate",
    "coconutblt.commands.generate",
    "coconutblt.commands.eval_bpb",
    "coconutblt.commands.export_hf",
    "coconutblt.commands.estimate",
    "coconutblt.commands.data",
    "coconutblt.commands.patching",
    "coconutblt.commands.hf",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coconutblt",
        description="Byte-level language models that reason in a continuous latent space (BLT + Coconut).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # command not built yet in this checkout
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `key=value` overrides may also come after options (`train CFG --out DIR training.lr=1e-3`)
    stray = [e for e in extra if e.startswith("-") or "=" not in e]
    if extra and (stray or not isinstance(getattr(args, "overrides", None), list)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    if not getattr(args, "func", None):
        parser.print_help()
        return 2

    def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"coconutblt {args.command}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():  # a warning is one line too, not a source excerpt
            warnings.showwarning = one_line_warning
            result = args.func(args)
    except UserError as exc:
        message = " ".join(str(exc).splitlines())
        print(f"coconutblt {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"coconutblt {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
