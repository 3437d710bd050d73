"""Teacher-forced step probe: which written step of a chain does a CoT checkpoint get wrong?

    python benchmarks/step_probe.py CKPT ../shared/data/prontoqa/prontoqa_valid.json --n 100

For every step k, the prompt is the question plus the gold steps before k; the model writes one
line greedily and it is compared with gold step k. A greedy chain is only as good as its worst
step, and this shows which one it is without the errors of earlier steps mixed in. For ProntoQA
the "sign" column checks the step's last sentence for "not" against the gold one: the goal
rule's sign decides the answer (benchmarks/RESULTS.md, "The goal rule is never looked up").

`--drop-distractor` removes from each question the rule that holds the asked property with the
other sign (ProntoQA's distractor), to tell "looked up the wrong rule" from "looked nothing up".
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from coconutblt.checkpoint import load_model  # noqa: E402
from coconutblt.data.reasoning import Example, load_examples  # noqa: E402
from coconutblt.data.stages import StageConfig, format_example  # noqa: E402
from coconutblt.inference.generate import generate  # noqa: E402
from coconutblt.vocab import decode_text  # noqa: E402


def drop_distractor(ex: Example) -> Example:
    """The question without the other rule that ends in the asked property (ProntoQA)."""
    body, query = ex.question.split(" True or false: ")
    prop = query.rstrip(".").split()[-1]
    goal = ex.steps[-2].split(". ", 1)[1]
    kept = [
        s
        for s in body.split(". ")
        if s.rstrip(".") == goal.rstrip(".") or not s.rstrip(".").endswith(" " + prop)
    ]
    return Example(". ".join(kept).rstrip(".") + ". True or false: " + query, ex.steps, ex.answer)


def negated(sentence_line: str) -> bool:
    return " not " in " " + sentence_line.split(". ")[-1]


@torch.no_grad()
def probe(model, examples: list[Example], batch_size: int = 32) -> dict[tuple[int, int], list]:
    """{(example index, step index): (exact, sign right)} for every step of every example."""
    cfg = StageConfig("cot")
    jobs = [(i, k) for i, e in enumerate(examples) for k in range(len(e.steps))]
    jobs.sort(
        key=lambda j: len(examples[j[0]].question) + sum(map(len, examples[j[0]].steps[: j[1]]))
    )
    results = {}
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        prompts = [
            format_example(examples[i], 0, cfg, for_eval=True).prompt_ids
            + list("".join(s + "\n" for s in examples[i].steps[:k]).encode())
            for i, k in chunk
        ]
        longest = max(len(examples[i].steps[k].encode()) for i, k in chunk)
        outs = generate(model, prompts, max_new_tokens=longest + 16).tokens
        for (i, k), out in zip(chunk, outs, strict=True):
            line, gold = decode_text(out).split("\n")[0], examples[i].steps[k]
            results[i, k] = (line == gold, negated(line) == negated(gold))
    return results


def table(examples: list[Example], results: dict) -> list[str]:
    """Rows by step index from the start, and the last two steps counted from the end (where
    chains differ in length, the goal rule of ProntoQA is always the second to last)."""
    groups: dict[str, list] = {}
    for (i, k), r in sorted(results.items()):
        groups.setdefault(f"{k}", []).append(r)
        back = len(examples[i].steps) - k
        if back <= 2:
            groups.setdefault(f"last - {back - 1}" if back > 1 else "last", []).append(r)
    lines = ["| step | examples | exact | last sentence's sign right |", "|---|---|---|---|"]
    for name, rs in groups.items():
        exact, sign = sum(r[0] for r in rs), sum(r[1] for r in rs)
        lines.append(
            f"| {name} | {len(rs)} | {exact} ({exact / len(rs):.0%}) | {sign} ({sign / len(rs):.0%}) |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("data")
    ap.add_argument("--n", type=int, default=100, help="first N examples (0 = all)")
    ap.add_argument("--drop-distractor", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint).eval()
    examples = load_examples(args.data)
    examples = examples[: args.n] if args.n else examples
    if args.drop_distractor:
        examples = [drop_distractor(e) for e in examples]
    print(f"{args.checkpoint} on {args.data} ({len(examples)} examples)")
    print("\n".join(table(examples, probe(model, examples))))
    lengths = Counter(len(e.steps) for e in examples)
    if len(lengths) > 1:
        print(f"(steps per example: {dict(sorted(lengths.items()))})")


if __name__ == "__main__":
    main()
