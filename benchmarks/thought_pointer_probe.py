"""Probe: where a Coconut stage loses the copy pointer, and why a thought is not its step.

    python benchmarks/thought_pointer_probe.py CKPT TRAIN_FILE [--n 32] [--stages 0 1 2 3]

For the first N examples of TRAIN_FILE at each stage (thoughts replacing the first steps, as
`coconutblt train` formats them, no markers), the copy pointer's loss (nats) at the k-th row
that has a target, k = 0 being the first written step after the thoughts. Then, at stage 0,
the cosine between each written step's patch vector and the vector of the question patch it
quotes, and how much of the step vectors a least-squares linear map from the quoted vectors
explains on a held-out fifth (benchmarks/RESULTS.md, "Why the first thought loses the walk").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from coconutblt.checkpoint import load_model  # noqa: E402
from coconutblt.data.reasoning import load_examples  # noqa: E402
from coconutblt.data.stages import StageConfig, collate, format_example  # noqa: E402
from coconutblt.model.copy import copy_targets, target_mass  # noqa: E402


def batches(examples, stage: int, size: int = 16):
    cfg = StageConfig("coconut", 1, 6, False, 0.0, False)
    for i in range(0, len(examples), size):
        yield collate([format_example(e, stage, cfg) for e in examples[i : i + size]])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ckpt")
    p.add_argument("train_file")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--stages", type=int, nargs="+", default=[0, 1, 2, 3])
    args = p.parse_args()
    model = load_model(args.ckpt).eval()
    seen: dict[str, torch.Tensor] = {}
    pointer, pool = model.copy_pointer, model.encoder.pool
    model.copy_pointer = lambda *a: seen.setdefault("pointer", pointer(*a))
    model.encoder.pool = lambda *a: seen.setdefault("patches", pool(*a))
    examples = load_examples(args.train_file)[: args.n]

    for stage in args.stages:
        per_row: dict[int, list[float]] = {}
        for b in batches(examples, stage):
            seen.clear()
            with torch.no_grad():
                out = model(b["input_ids"], labels=b["labels"])
            targets = copy_targets(b["input_ids"], out.layout)  # (B, P - 1, P)
            loss = -target_mass(seen["pointer"][:, :-1], targets)  # (B, P - 1)
            rows = targets.any(-1)
            k = rows.long().cumsum(1) - 1  # the k-th row with a target
            for bi, r in zip(*torch.nonzero(rows, as_tuple=True), strict=True):
                per_row.setdefault(int(k[bi, r]), []).append(float(loss[bi, r]))
        line = "  ".join(
            f"row {j}: {sum(v) / len(v):.2f} (n {len(v)})" for j, v in sorted(per_row.items())
        )
        print(f"stage {stage}: pointer loss, nats: {line}")

    steps, quoted = [], []
    for b in batches(examples, 0):
        seen.clear()
        with torch.no_grad():
            out = model(b["input_ids"], labels=b["labels"])
        vectors = seen["patches"]  # (B, P, D)
        for bi, r, j in torch.nonzero(copy_targets(b["input_ids"], out.layout)).tolist():
            steps.append(vectors[bi, r + 1])  # the written step
            quoted.append(vectors[bi, j])  # the question's patch it quotes
    y, x = torch.stack(steps), torch.stack(quoted)
    cos = torch.cosine_similarity(y, x, dim=1).mean()
    xa = torch.cat([x, torch.ones(len(x), 1)], 1)
    cut = int(0.8 * len(x))
    fit = torch.linalg.solve(xa[:cut].T @ xa[:cut] + torch.eye(xa.shape[1]), xa[:cut].T @ y[:cut])
    rest = y[cut:] - xa[cut:] @ fit
    r2 = 1 - rest.pow(2).sum() / (y[cut:] - y[:cut].mean(0)).pow(2).sum()
    print(f"{len(x)} step / quoted-patch pairs: cosine {cos:.2f}; linear map, held-out R2 {r2:.2f}")


if __name__ == "__main__":
    main()
