"""Probe data sets of benchmarks/RESULTS.md ("Where the lookups come from"), from a ProntoQA file.

    python benchmarks/prontoqa_probe_data.py thin ../shared/data/prontoqa/prontoqa_train.json p0_train.json
    python benchmarks/prontoqa_probe_data.py repeat ../shared/data/prontoqa/prontoqa_train.json rep_train.json
    python benchmarks/prontoqa_probe_data.py quote ../shared/data/prontoqa/prontoqa_train.json pqv_train.json

`thin` (runs p0, c0, s0) drops every question sentence that no step quotes, keeping the last
(the query); `repeat` (runs r0, r1) makes a pure copy task: 8 of a question's sentences,
shuffled, as the question and again as the steps; `quote` (run v2, "A copy path") writes each
chain concept's property rules into its step, as `data synth --task prontoqa` does with
`quote_properties`, but on the real questions. Validation files: the same on
prontoqa_valid.json with seed 1 (training files use seed 0).
"""

from __future__ import annotations

import argparse
import json
import random
import re


def sentences(question: str) -> list[str]:
    return [s.strip() for s in re.findall(r"[^.]*\.", question)]


def thin(example: dict, rng: random.Random, keep: float = 0.0) -> dict:
    steps = " ".join(example["steps"])
    sents = sentences(example["question"])
    kept = [
        s for i, s in enumerate(sents) if s in steps or i == len(sents) - 1 or rng.random() < keep
    ]
    return {**example, "question": " ".join(kept)}


def repeat(example: dict, rng: random.Random, k: int = 8) -> dict:
    sents = sentences(example["question"])
    rng.shuffle(sents)
    chosen = sents[:k]
    answer = chosen[-1].split()[-1].rstrip(".")
    return {"question": " ".join(chosen), "steps": chosen, "answer": answer}


def _subject(rule: str) -> str:
    """ "Every gorpus is ..." / "Gorpuses are ..." -> "gorpus"."""
    words = rule.rstrip(".").split()
    word = words[1] if words[0] in ("Every", "Each") else words[0].lower()
    return word[:-2] if word.endswith("uses") else word


def quote(example: dict, rng: random.Random) -> dict:
    """Each step but the last quotes its concept's property rules (the goal rule stays last)."""
    rules = [
        s
        for s in sentences(example["question"])[:-1]
        if " a " not in s and not s.rstrip(".").endswith("uses")  # not "X is a Y"
    ]
    steps = []
    for step in example["steps"][:-1]:
        first, rule = step.split(". ", 1)
        concept = first.split()[-1]
        extra = [r for r in rules if _subject(r) == concept and r != rule]
        steps.append(" ".join([first + ".", *extra, rule]))
    return {**example, "steps": [*steps, example["steps"][-1]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=("thin", "repeat", "quote"))
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    make = {"thin": thin, "repeat": repeat, "quote": quote}[args.kind]
    out = [make(e, rng) for e in json.load(open(args.src))]
    with open(args.dst, "w") as f:
        json.dump(out, f)
    print(f"wrote {len(out)} examples to {args.dst}")


if __name__ == "__main__":
    main()
