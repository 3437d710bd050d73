"""What a ProntoQA branch choice needs: each candidate concept's count of "is a" rules.

    python benchmarks/prontoqa_branch_counts.py ../shared/data/prontoqa/prontoqa_train.json
    python benchmarks/prontoqa_branch_counts.py FILE --ckpt CKPT --n 100

From the question text alone (no model): at the first step, the rule count of the person's
right concept against the other's; at each step's rule choice, the count of the concept the
step's last sentence names against its siblings'. With `--ckpt`, also how often the
checkpoint's greedy first fact is the right one, the other one, or neither
(benchmarks/RESULTS.md, "The first branch is a count").
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from coconutblt.data.reasoning import Example, load_examples  # noqa: E402

_RULE = re.compile(r"(?:Every |Each )?(\w+) (?:is|are) (not )?(?:a |an )?(\w+)$")


def concept(word: str) -> str:
    """'Tumpuses' / 'tumpus.' -> 'tumpus'."""
    word = word.lower().rstrip(".")
    return word[:-2] if word.endswith("uses") else word


def is_a_rules(question: str) -> dict[str, list[str]]:
    """concept -> the concepts its "is a" rules name (properties and negations left out)."""
    rules: dict[str, list[str]] = {}
    for sentence in question.split(" True or false")[0].split(". "):
        m = _RULE.match(sentence.rstrip("."))
        if m and not m.group(2) and m.group(3).lower().endswith(("pus", "puses")):
            rules.setdefault(concept(m.group(1)), []).append(concept(m.group(3)))
    return rules


def first_choice(ex: Example) -> tuple[str, list[str]]:
    """(the right first fact, the person's other "X is a Y" facts), without final periods."""
    right = ex.steps[0].split(". ")[0].rstrip(".")
    person = right.split(" is a")[0]
    facts = [s.rstrip(".") for s in ex.question.split(". ") if s.startswith(person + " is a")]
    return right, [f for f in facts if f != right]


def counts(examples: list[Example]) -> Counter:
    out: Counter = Counter()
    for ex in examples:
        rules = is_a_rules(ex.question)
        right, others = first_choice(ex)
        first = [len(rules.get(concept(f.split()[-1]), [])) for f in (right, *others)]
        out[("first step", first[0], tuple(first[1:]))] += 1
        for step in ex.steps[:-1]:
            sentences = step.split(". ")
            chosen = concept(sentences[-1].split()[-1])
            parent = concept(sentences[0].split()[-1])
            if len(sentences) < 2 or chosen not in rules.get(parent, []):
                continue  # the step ends on a property, not a rule choice
            siblings = [c for c in rules[parent] if c != chosen]
            out[
                (
                    "rule choice",
                    len(rules.get(chosen, [])),
                    tuple(len(rules.get(c, [])) for c in siblings),
                )
            ] += 1
    return out


def model_first_choices(ckpt: str, examples: list[Example]) -> Counter:
    import torch

    from coconutblt.checkpoint import load_model
    from coconutblt.data.stages import StageConfig, format_example
    from coconutblt.inference.generate import generate
    from coconutblt.vocab import decode_text

    torch.set_num_threads(2)
    model = load_model(ckpt).eval()
    prompts = [format_example(e, 0, StageConfig("cot"), for_eval=True).prompt_ids for e in examples]
    outs = generate(model, prompts, max_new_tokens=40).tokens
    out: Counter = Counter()
    for ex, ids in zip(examples, outs, strict=True):
        written = decode_text(ids).split("\n")[0].split(". ")[0].rstrip(".")
        right, others = first_choice(ex)
        out["right" if written == right else "other fact" if written in others else "neither"] += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--ckpt", help="also count a checkpoint's greedy first facts")
    ap.add_argument("--n", type=int, default=100, help="examples per file for --ckpt")
    args = ap.parse_args()
    for path in args.files:
        examples = load_examples(path)
        print(f"{path} ({len(examples)} examples): (where, right's rules, others' rules) -> count")
        for key, n in sorted(counts(examples).items(), key=str):
            print(f"  {key}: {n}")
        if args.ckpt:
            print(
                f"  {args.ckpt}, greedy first fact on {args.n}:",
                dict(model_first_choices(args.ckpt, examples[: args.n])),
            )


if __name__ == "__main__":
    main()
