"""Where a Coconut model on the `prontoqa_search` chain goes wrong: its first written step.

Reads the printout of `coconutblt eval --ckpt CKPT --data VALID --max-examples N --examples N`
and, for each question, compares the generated steps with the search chain's steps after the
thoughts. Counts are split by how the chain opens: on a dead-end property rule (the next step
is then the other property rule) or on the goal rule (the next step is the rule leading to its
subject). Prints one line per group. Used for benchmarks/RESULTS.md, "ProntoQA as a written
search" (a stage-1 model, 80 validation questions).

    coconutblt eval --ckpt RUN/last.pt --data ../shared/data/prontoqa/prontoqa_valid.json \\
        --max-examples 80 --examples 80 > eval.txt
    python benchmarks/prontoqa_search_steps.py eval.txt ../shared/data/prontoqa/prontoqa_valid.json

With `--train FILE` it also prints how many of FILE's questions name the goal rule first.
"""

from __future__ import annotations

import argparse
import collections
import re

from coconutblt.data.chains import prontoqa_search
from coconutblt.data.reasoning import load_examples

_GENERATED = re.compile(r"^  (?P<name>.+?) \(coconut stage (?P<stage>\d+)\): (?P<text>.*)$")


def generated_lines(printout: str) -> list[tuple[int, str]]:
    """(stage, "step | step | ### answer ... (correct)") for each printed example."""
    found = []
    for line in printout.splitlines():
        m = _GENERATED.match(line)
        if m:
            found.append((int(m["stage"]), m["text"]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_output", help="a `coconutblt eval --examples N` printout")
    parser.add_argument("data", help="the evaluated file (its first N examples)")
    parser.add_argument("--train", help="also count goal-first questions in this file")
    args = parser.parse_args()

    with open(args.eval_output, encoding="utf-8") as f:
        generated = generated_lines(f.read())
    examples = load_examples(args.data)[: len(generated)]
    counts = collections.Counter()
    for example, (stage, text) in zip(examples, generated, strict=True):
        given = len(example.steps)
        searched = prontoqa_search(example).steps
        opening = "dead end first" if len(searched) == given + 3 else "goal rule first"
        written = [s.strip() for s in text.split(" | ")][:-1]  # the last part is "### answer"
        expected = searched[stage:]
        next_right = bool(written) and written[0] == expected[0]
        chain_right = written == expected
        correct = text.endswith("(correct)")
        counts[(opening, next_right, chain_right, correct)] += 1
    print(f"{len(generated)} examples")
    for (opening, next_right, chain_right, correct), n in sorted(counts.items()):
        print(
            f"{opening}: next step {'right' if next_right else 'wrong'}, "
            f"chain {'right' if chain_right else 'wrong'}, answer "
            f"{'right' if correct else 'wrong'}: {n}"
        )
    if args.train:
        train = load_examples(args.train)
        goal_first = sum(len(prontoqa_search(e).steps) == len(e.steps) + 2 for e in train)
        print(f"{args.train}: the goal rule is named first in {goal_first} of {len(train)}")


if __name__ == "__main__":
    main()
