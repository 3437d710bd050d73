"""Where a ProsQA CoT checkpoint errs: the written walk, or the answer after it.

    python benchmarks/prosqa_cot_errors.py CKPT [--data ../shared/data/prosqa/prosqa_valid.json]
        [--keep-last-steps N] [--pad-latent-to-max {true,false}]

Evaluates CKPT as `coconutblt eval` does and sorts each wrong answer: no `###` within the
budget; a written step that is not a fact of the question; a walk that does not start at the
first option or does not chain; a walk that stops at a concept; else the walk's answer (the
first option if it ended at the asked person, the other if not) against the answer written
(benchmarks/RESULTS.md, "Where ProsQA's CoT errs"). `--keep-last-steps` evaluates a Coconut
checkpoint with another `curriculum.keep_last_steps` than it trained with (its thought count
per prompt; RESULTS, "A restated query"), `--pad-latent-to-max` with or without thoughts
padded to `max_latent_stage`. The accuracy line, and the accuracy by the data's step count and
by which option is the answer, hold for any checkpoint.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from coconutblt.checkpoint import model_from_checkpoint, read_checkpoint  # noqa: E402
from coconutblt.data.reasoning import load_examples  # noqa: E402
from coconutblt.inference.evaluate import evaluate_examples  # noqa: E402
from coconutblt.train.config import run_config_from_dict, stage_config  # noqa: E402

FACT = re.compile(r"(?:Every )?(\w+) is an? (\w+)\.")
QUERY = re.compile(r"Is (\w+) an? (\w+) or (?:an? )?(\w+)\?")


def classify(question: str, answer: str, generated: str) -> str:
    person, first, second = QUERY.search(question).groups()
    facts = set(FACT.findall(question))
    if "###" not in generated:
        return "no ### within the budget"
    body, written = generated.split("###", 1)
    steps = FACT.findall(body)
    if not steps or any(s not in facts for s in steps):
        return "a step that is not a fact of the question"
    if steps[0][1] != first or any(a[0] != b[1] for a, b in pairwise(steps)):
        return "the walk does not start at the first option, or does not chain"
    end = steps[-1][0]
    if not end[0].isupper():
        return "the walk stops at a concept"
    implied = first if end == person else second
    truth = FACT.search(answer).group(2)
    said = FACT.search(written)
    if implied != truth:
        return "the walk implies the wrong answer"
    where = "the asked person" if end == person else "another person"
    if said and said.groups() == (person, second if implied == first else first):
        return f"the walk is right; the answer names the option it rules out (ended at {where})"
    return "the walk is right; the answer names another person or concept"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ckpt")
    p.add_argument("--data", default="../shared/data/prosqa/prosqa_valid.json")
    p.add_argument("--keep-last-steps", type=int, default=None, help="default: the checkpoint's")
    p.add_argument(
        "--pad-latent-to-max",
        choices=("true", "false"),
        default=None,
        help="default: the checkpoint's",
    )
    args = p.parse_args()
    ckpt = read_checkpoint(args.ckpt)
    model = model_from_checkpoint(ckpt, args.ckpt)
    cfg = run_config_from_dict(ckpt["run_config"], source=f"{args.ckpt} (run_config)")
    examples = load_examples(args.data)
    stages = stage_config(cfg)
    if args.keep_last_steps is not None:
        stages = replace(stages, keep_last_steps=args.keep_last_steps)
    if args.pad_latent_to_max is not None:
        stages = replace(stages, pad_latent_to_max=args.pad_latent_to_max == "true")
    result = evaluate_examples(model, examples, stages, int(ckpt.get("stage", 0)))
    counts = collections.Counter(
        classify(e.question, e.answer, r.generated)
        for e, r in zip(examples, result.rows, strict=True)
        if not r.correct
    )
    print(
        f"accuracy {100 * result.accuracy:.1f}% of {len(examples)} in {result.avg_bytes:.1f} "
        f"bytes; {sum(counts.values())} wrong:"
    )
    for what, n in counts.most_common():
        print(f"{n:4d}  {what}")
    groups: dict[str, list[bool]] = collections.defaultdict(list)
    for e, r in zip(examples, result.rows, strict=True):
        first = QUERY.search(e.question).group(2)
        groups[f"{len(e.steps)} steps in the data"].append(r.correct)
        which = "first" if FACT.search(e.answer).group(2) == first else "second"
        groups[f"the answer is the {which} option"].append(r.correct)
    for what in sorted(groups):
        ok = groups[what]
        print(f"{what:32s} {100 * sum(ok) / len(ok):5.1f}% of {len(ok)}")


if __name__ == "__main__":
    main()
