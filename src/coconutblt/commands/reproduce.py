"""`coconutblt reproduce TASK`: No-CoT, CoT and Coconut on a task, as the Coconut paper's Table 1.

Reads `configs/recipes/TASK.yaml` (prontoqa, prosqa, chain), trains the three methods (Coconut
continues from CoT), evaluates them on the validation file and on each `--test FILE`, prints
the table beside the paper's row, and writes OUT/{no_cot,cot,coconut}/final.pt, OUT/results.md
(with the `coconutblt train` lines it ran), OUT/results.json and plots.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from coconutblt.runtime.files import atomic_write


def register(sub) -> None:
    p = sub.add_parser(
        "reproduce", help="train and compare No-CoT, CoT and Coconut on a task (paper Table 1)"
    )
    p.add_argument("task", help="prontoqa | prosqa | chain, or a recipe YAML file")
    p.add_argument("--data-dir", default="../shared/data", help="folder the recipe's paths are in")
    p.add_argument("--out", default=None, help="run folder (default runs/reproduce-TASK)")
    p.add_argument("--test", nargs="*", default=[], help="more files to evaluate on, each a table")
    p.add_argument("--resume", action="store_true", help="continue the runs in --out")
    p.add_argument("--quick", action="store_true", help="a tiny recipe in seconds (a smoke test)")
    p.add_argument("--seed", type=int, default=0, help="training seed (and synthetic data seed)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    p.add_argument("--examples", type=int, default=2, help="side-by-side examples to print")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="key=value for every method's run config")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from coconutblt.data.reasoning import load_examples
    from coconutblt.inference.plots import plot_comparison, plot_validation_curves
    from coconutblt.inference.report import comparison_table, side_by_side, summary_lines
    from coconutblt.reproduce import (
        LABELS,
        evaluate_runs,
        load_recipe,
        paper_accuracy,
        plan_methods,
        prepare_data,
        train_methods,
    )

    recipe = load_recipe(args.task, quick=args.quick)
    recipe.data.seed += args.seed
    out = Path(args.out or f"runs/reproduce-{recipe.task}{'-quick' if args.quick else ''}")
    data = prepare_data(recipe, Path(args.data_dir), out, args.test)
    extra = [f"training.seed={args.seed}", *args.overrides]
    if args.threads:
        extra.append(f"training.num_threads={args.threads}")
    runs = plan_methods(recipe, data, out, extra)
    print(f"recipe {recipe.task}: {recipe.about}".rstrip(": "))
    print(f"train {data.train}, validation {data.val}; runs in {out}/")

    started = time.perf_counter()
    seconds = train_methods(runs, args.resume, show_progress=not args.no_progress)
    train_minutes = (time.perf_counter() - started) / 60

    eval_sets = {"validation": data.val, **data.tests}
    tables: dict[str, list] = {}
    for label, path in eval_sets.items():
        examples = load_examples(path)
        if recipe.data.eval_n:
            examples = examples[: recipe.data.eval_n]
        results = evaluate_runs(runs, examples)
        tables[label] = results
        paper = {name: paper_accuracy(recipe, name) for name, _ in results}
        chance = f", chance {recipe.chance:.0%}" if recipe.chance else ""
        print(f"\n== {label}: {len(examples)} examples from {path}{chance} ==")
        print(summary_lines(results))
        print()
        print(comparison_table(results, paper=paper if recipe.paper else None))
        for name, result in results:
            for line in result.warnings():
                print(f"{name}: {line}")
        if args.examples:
            print()
            print(side_by_side(results, args.examples))
    print(f"\ntraining took {train_minutes:.1f} min this call; results in {out}/results.md")

    write_results(out, recipe, runs, tables, eval_sets, seconds, train_minutes, args.quick)
    plot_comparison(tables["validation"], out / "comparison.png", f"{recipe.task}: validation")
    plot_validation_curves(
        {LABELS[r.name]: r.out / "metrics.jsonl" for r in runs},
        out / "curves.png",
        f"{recipe.task}: validation accuracy per epoch",
    )
    return 0


def write_results(out, recipe, runs, tables, eval_sets, seconds, train_minutes, quick) -> None:
    from coconutblt.inference.report import comparison_table
    from coconutblt.reproduce import paper_accuracy

    lines = [f"# reproduce {recipe.task}{' (--quick)' if quick else ''}", "", recipe.about, ""]
    for label, results in tables.items():
        paper = {name: paper_accuracy(recipe, name) for name, _ in results}
        n = len(results[0][1].rows) if results else 0
        lines += [f"## {label}: {n} examples from `{eval_sets[label]}`", ""]
        lines += [comparison_table(results, markdown=True, paper=paper if recipe.paper else None)]
        lines += [""]
    lines += [f"Training wall-clock this call: {train_minutes:.1f} min "]
    lines += [", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items()) or "(all resumed)"]
    lines += ["", "## The runs", "", "Each method is this `coconutblt train` call:", ""]
    for r in runs:
        lines += [f"- {r.name}:", "", "  ```bash", f"  {r.command}", "  ```", ""]
    atomic_write(out / "results.md", "\n".join(lines) + "\n")
    payload = {
        "task": recipe.task,
        "quick": quick,
        "train_minutes": train_minutes,
        "paper": recipe.paper,
        "results": {
            label: {name: r.summary() for name, r in results} for label, results in tables.items()
        },
        "commands": {r.name: r.command for r in runs},
    }
    atomic_write(out / "results.json", json.dumps(payload, indent=2))
