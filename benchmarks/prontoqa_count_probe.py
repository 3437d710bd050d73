"""Linear probe: does a checkpoint's state at a person fact say which first concept is right?

    python benchmarks/prontoqa_count_probe.py CKPT FILE [--n 600]

A ProntoQA question ends with two facts about the person ("Alex is a tumpus. Alex is a
jompus."); the first step takes the concept with two "is a" rules, never the one with one
(`prontoqa_branch_counts.py`). Each person fact's patch sees every rule before it, so the count
could be read from its state. For the first N questions of FILE, a logistic regression (70/30
split, L2) reads "this is the right concept" from the encoder's patch vector and from the
latent transformer's output at each person-fact patch (benchmarks/RESULTS.md, "Where the
choice is not made").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from prontoqa_branch_counts import first_choice  # noqa: E402

from coconutblt.checkpoint import load_model  # noqa: E402
from coconutblt.data.reasoning import load_examples  # noqa: E402
from coconutblt.data.stages import StageConfig, format_example  # noqa: E402


@torch.no_grad()
def person_fact_states(model, examples) -> tuple[dict[str, list[torch.Tensor]], list[bool]]:
    """Encoder patch vectors and latent outputs at each person fact, and whether it is right.

    Read from the model's own forward: a CoT prompt has no thoughts, so the latent transformer
    runs once, on the patch vectors, and a hook on it sees both."""
    states: dict[str, list[torch.Tensor]] = {"encoder patch vector": [], "latent output": []}
    right_labels: list[bool] = []
    seen: dict[str, torch.Tensor] = {}

    def keep(module, args, output) -> None:
        seen["patches"], seen["latent"] = args[0], output  # (1, P, D) each

    hook = model.latent.register_forward_hook(keep)
    try:
        for ex in examples:
            ids = torch.tensor([format_example(ex, 0, StageConfig("cot")).input_ids])  # (1, T)
            layout = model(ids).layout
            texts = [
                bytes(b for b in ids[0, s : s + n].tolist() if b < 256).decode().strip()
                for s, n in zip(layout.starts[0].tolist(), layout.lengths[0].tolist(), strict=True)
            ]
            right, others = first_choice(ex)
            for i, text in enumerate(t.rstrip(".") for t in texts):
                if text.startswith("True or false"):
                    break
                if text == right or text in others:
                    states["encoder patch vector"].append(seen["patches"][0, i])
                    states["latent output"].append(seen["latent"][0, i])
                    right_labels.append(text == right)
    finally:
        hook.remove()
    return states, right_labels


def probe(vectors: list[torch.Tensor], labels: list[bool]) -> tuple[float, float]:
    """(train, test) accuracy of an L2 logistic regression on a 70/30 split."""
    X, y = torch.stack(vectors), torch.tensor(labels).float()
    k = int(len(y) * 0.7)
    X = (X - X[:k].mean(0)) / (X[:k].std(0) + 1e-6)
    w = torch.zeros(X.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(X[:k] @ w + b, y[:k]) + 1e-2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        hit = ((X @ w + b > 0).float() == y).float()
    return float(hit[:k].mean()), float(hit[k:].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("file", help="ProntoQA-format questions (real or synthetic)")
    ap.add_argument("--n", type=int, default=600, help="questions (two person facts each)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_model(args.ckpt).eval()
    states, labels = person_fact_states(model, load_examples(args.file)[: args.n])
    for name, vectors in states.items():
        train, test = probe(vectors, labels)
        print(f"{args.ckpt} {name}: n={len(labels)} train {train:.3f} test {test:.3f}")


if __name__ == "__main__":
    main()
