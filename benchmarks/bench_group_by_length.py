"""Step time of the training step's variants: random vs length-grouped reasoning batches
(`data.group_by_length`), and with `--compile` compiled blocks (`training.compile`).

    python benchmarks/bench_group_by_length.py DATA.json [--recipe prontoqa] [--batches 30] [--compile]

The model and batch size are the recipe's (`common`), the examples DATA's. It reports the
share of real bytes in the first epoch's padded batches, then times one training forward and
backward per batch, the arms interleaved batch by batch (the machine is shared: interleaving
spreads its load over all), and writes the medians to benchmarks/RESULTS.md. The compiled arm
reads the random arm's batches with a second, compiled copy of the model; its first batches
(compilation) are left out of the timing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import write_section  # noqa: E402

from coconutblt.reproduce import load_recipe, override_text  # noqa: E402
from coconutblt.train.batches import ReasoningBatches  # noqa: E402
from coconutblt.train.config import load_run_config  # noqa: E402
from coconutblt.train.loop import Trainer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="a reasoning file, e.g. a synthetic ProntoQA warm-up set")
    ap.add_argument("--recipe", default="prontoqa")
    ap.add_argument("--batches", type=int, default=30, help="timed batches per arm")
    ap.add_argument("--group", type=int, default=25, help="data.group_by_length of the arm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time training.compile=true")
    args = ap.parse_args()

    recipe = load_recipe(args.recipe)
    overrides = [override_text(k, v) for k, v in recipe.common.items()]
    overrides += [f"data.train=[{args.data}]", "curriculum.mode=cot", "data.group_by_length=0"]
    overrides += [f"training.num_threads={args.threads}"]
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(load_run_config(None, overrides), out, show_progress=False)
        plain = trainer.batches
        grouped = ReasoningBatches(
            plain.examples,
            plain.stage_cfg,
            plain.batch_size,
            plain.seed,
            epoch_size=plain.epoch_size,
            group_by_length=args.group,
        )
        # arm -> (its batches, the trainer whose step it times)
        arms = {"random": (plain, trainer), f"grouped ({args.group})": (grouped, trainer)}
        if args.compile:
            compiled = load_run_config(None, [*overrides, "training.compile=true"])
            arms["random, compiled"] = (plain, Trainer(compiled, out + "/c", show_progress=False))
        n = len(plain)
        share = {}
        for batches in {id(b): b for b, _ in arms.values()}.values():  # each batch order once
            made = [batches.batch(0, i, 0) for i in range(n)]
            padded = sum(b["input_ids"].numel() for b in made)
            share[id(batches)] = sum(int(b["n_bytes"]) for b in made) / padded
        seconds: dict[str, list[float]] = {name: [] for name in arms}
        warm = 3 if args.compile else 0  # compilation, and the recompile for a second length
        for i in range(min(args.batches + warm, n)):
            for name, (batches, timed) in arms.items():
                b = batches.batch(0, i, 0)
                start = time.perf_counter()
                # the step's own loss, on the fields the trainer's loop hands it
                fields = ("input_ids", "labels", "question_labels", "answer_labels")
                loss, _ = timed._micro_loss(*(b[f] for f in fields), b["thought_quotes"])
                loss.backward()
                if i >= warm:
                    seconds[name].append(time.perf_counter() - start)
                timed.model.zero_grad(set_to_none=True)
    base = statistics.median(seconds["random"])
    rows = [
        "| batches | real bytes / padded bytes | median s (forward + backward) | time vs random |",
        "|---|---|---|---|",
    ]
    for name, (batches, _) in arms.items():
        med = statistics.median(seconds[name])
        rows.append(f"| {name} | {share[id(batches)]:.3f} | {med:.3f} | {med / base:.2f} |")
    body = (
        f"{args.data}: {len(plain.examples)} examples, batch {plain.batch_size}, an epoch of {n}"
        f" batches; {len(seconds['random'])} timed per arm, interleaved, "
        f"{torch.get_num_threads()} threads.\n\n" + "\n".join(rows)
    )
    print(body)
    write_section(
        "group_by_length",
        "Training step variants: length-grouped batches, compiled blocks (bench_group_by_length.py)",
        body,
        "python benchmarks/" + Path(__file__).name + " " + " ".join(sys.argv[1:]),
    )


if __name__ == "__main__":
    main()
