"""`coconutblt demo`: the Coconut curriculum on a synthetic reasoning task, end to end on a CPU.

1. generate a seeded pointer-chasing task (`chain`: follow shuffled `x=y` facts for 3 hops);
2. train a CoT model (written steps), then continue it through the continuous-thought stages
   (stage k: the first k steps become k x c_thought fed-back thoughts) = Coconut;
3. train a No-CoT model (answer only) with the same number of optimizer steps;
4. evaluate them on held-out problems (Coconut after each stage): accuracy, bytes generated,
   thoughts, latency, side-by-side answers; write the table, JSON and plots to the output folder.

Two choices make the continuous thoughts learnable on the byte/patch model in minutes (measured,
see benchmarks/RESULTS.md): a thought head with the next-patch loss (`HybridTransformer.
next_patch_loss`), so that a fed-back state reads like the patch it replaces, and no
`<|start-latent|>` marker, whose fixed embedding would cut the question's last state off the
chain of thoughts. The thought stages also use half the CoT learning rate.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of one demo run, chosen so the full run fits ~10 minutes on 2 CPU cores."""

    n_train: int
    n_test: int
    cot_epochs: int
    epochs_per_stage: int
    batch_size: int
    model: tuple[str, ...]
    hops: int = 3
    distractors: int = 6
    lr: float = 2e-3
    coconut_lr: float = 1e-3
    final_epochs: int = 1  # more epochs with every step a thought, after the last stage

    @property
    def coconut_epochs(self) -> int:
        return self.hops * self.epochs_per_stage + self.final_epochs  # stages 1..hops, then more


MODEL = (
    "model.d_model=128",
    "model.n_layers=4",
    "model.n_heads=4",
    "model.d_local=64",
    "model.local_heads=2",
    "model.max_seq_len=128",
    "model.patcher=fixed",
    "model.patch_size=4",
    "model.max_patch_size=4",
    # hashed byte 2/3-grams tell a fact's key ("k=") from its value ("=s") inside a 4-byte patch:
    # without them the CoT lookups stayed near 5% after 3 epochs, with them 99% after 4
    "model.ngram_sizes=[2,3]",
    "model.ngram_buckets=2048",
    # a 2-layer local decoder can finish a lookup from the bytes it has already written
    "model.decoder_layers=2",
    # a fed-back state is mapped by a learned head trained to point at the next patch's vector:
    # without it the stage-2 thoughts stayed at 16% (the stage-1 skill did not carry over)
    "model.thought_head=true",
    "model.next_patch_loss_weight=0.3",
)
FULL = DemoPlan(
    n_train=12000, n_test=300, cot_epochs=4, epochs_per_stage=1, batch_size=64, model=MODEL
)
QUICK = DemoPlan(
    n_train=600,
    n_test=40,
    cot_epochs=1,
    epochs_per_stage=1,
    batch_size=32,
    model=(
        "model.d_model=64",
        "model.n_layers=2",
        "model.n_heads=2",
        "model.d_local=32",
        "model.local_heads=2",
        "model.max_seq_len=128",
        "model.patch_size=4",
        "model.max_patch_size=4",
        "model.ngram_sizes=[2,3]",
        "model.ngram_buckets=512",
        "model.thought_head=true",
        "model.next_patch_loss_weight=0.3",
    ),
    final_epochs=0,
)


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="train No-CoT, CoT and Coconut on a synthetic task and compare them"
    )
    p.add_argument("--out", default="runs/demo")
    p.add_argument(
        "--quick", action="store_true", help="a ~2-minute smoke run (numbers not meaningful)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all cores)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def overrides(
    plan: DemoPlan, data_dir: Path, seed: int, mode: str, epochs: int, threads: int
) -> list[str]:
    return [
        *plan.model,
        f"data.train=['{data_dir / 'train.jsonl'}']",
        f"data.val=['{data_dir / 'val.jsonl'}']",
        f"data.max_val_examples={min(plan.n_test, 200)}",
        "data.seq_len=128",
        f"training.batch_size={plan.batch_size}",
        f"training.lr={plan.lr}",
        "training.warmup_steps=30",
        f"training.seed={seed}",
        "training.eval_max_new_tokens=32",
        "training.log_every=10",
        f"training.num_threads={threads}",
        f"curriculum.mode={mode}",
        f"curriculum.num_epochs={epochs}",
        f"curriculum.epochs_per_stage={plan.epochs_per_stage}",
        f"curriculum.max_latent_stage={plan.hops}",
        "curriculum.c_thought=1",
        "curriculum.markers=false",
    ]


def run(args: argparse.Namespace) -> int:
    from coconutblt.data.reasoning import load_examples
    from coconutblt.data.synth import synthesize, write_examples
    from coconutblt.inference.report import comparison_table, side_by_side, summary_lines
    from coconutblt.train.config import load_run_config
    from coconutblt.train.loop import Trainer

    plan = QUICK if args.quick else FULL
    out = Path(args.out)
    data_dir = out / "data"
    task = {"hops": plan.hops, "distractors": plan.distractors}
    examples = synthesize("chain", plan.n_train + 2 * plan.n_test, seed=args.seed, **task)
    train, val, test = (
        examples[: plan.n_train],
        examples[plan.n_train : plan.n_train + plan.n_test],
        examples[plan.n_train + plan.n_test :],
    )
    for name, part in (("train", train), ("val", val), ("test", test)):
        write_examples(part, data_dir / f"{name}.jsonl")
    print(
        f"task: chain ({plan.hops} hops, {plan.distractors} distractor facts), e.g. {train[0].question!r} -> "
        f"{' / '.join(train[0].steps)} ### {train[0].answer}"
    )
    print(
        f"data: {len(train)} train / {len(val)} validation / {len(test)} test problems in {data_dir}"
    )

    started = time.perf_counter()
    runs: dict[str, Path] = {}

    def train_run(name: str, mode: str, epochs: int, *extra: str) -> Path:
        cfg = load_run_config(
            None, [*overrides(plan, data_dir, args.seed, mode, epochs, args.threads), *extra]
        )
        print(f"\n== {name}: mode {mode}, {epochs} epochs ==")
        trainer = Trainer(cfg, out / name, show_progress=not args.no_progress)
        trainer.fit()
        runs[name] = out / name
        return out / name

    cot_dir = train_run("cot", "cot", plan.cot_epochs)
    train_run(
        "coconut",
        "coconut",
        plan.coconut_epochs,
        f"curriculum.init_from={cot_dir / 'final.pt'}",
        "curriculum.start_stage=1",
        f"training.lr={plan.coconut_lr}",
    )
    no_cot_epochs = plan.cot_epochs + plan.coconut_epochs  # same number of optimizer steps
    train_run("no_cot", "no_cot", no_cot_epochs)
    train_seconds = time.perf_counter() - started

    from coconutblt.inference.evaluate import evaluate_examples
    from coconutblt.train.checkpoint import model_from_checkpoint, read_checkpoint
    from coconutblt.train.config import run_config_from_dict, stage_config

    test_examples = load_examples(data_dir / "test.jsonl")
    coconut = runs["coconut"]
    evaluated = [("No-CoT", runs["no_cot"] / "final.pt"), ("CoT", runs["cot"] / "final.pt")]
    evaluated += [(f"Coconut stage {k}", coconut / f"stage{k}.pt") for k in range(1, plan.hops)]
    evaluated.append((f"Coconut stage {plan.hops}", coconut / "final.pt"))
    results = []
    for label, path in evaluated:
        ckpt = read_checkpoint(path)
        cfg = run_config_from_dict(ckpt["run_config"], source=str(path))
        model = model_from_checkpoint(ckpt, path)
        result = evaluate_examples(
            model, test_examples, stage_config(cfg), int(ckpt["stage"]), 64, 32
        )
        results.append((label, result))

    chance = 1 / 3  # three chains in every question: guessing an end letter
    print(
        f"\n== held-out test: {len(test_examples)} new problems (chance by guessing a chain end: {chance:.0%}) =="
    )
    print(summary_lines(results))
    print()
    print(comparison_table(results))
    print()
    print(side_by_side(results, 3))
    print(f"\ntraining took {train_seconds / 60:.1f} min; runs, plots and results in {out}/")
    write_outputs(out, results, plan, train_seconds, args.quick)
    return 0


def write_outputs(out: Path, results, plan: DemoPlan, seconds: float, quick: bool) -> None:
    from coconutblt.inference.report import comparison_table

    payload = {
        "plan": plan.__dict__,
        "quick": quick,
        "train_minutes": seconds / 60,
        "results": {name: r.summary() for name, r in results},
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=list))
    (out / "results.md").write_text(comparison_table(results, markdown=True) + "\n")
    plot_comparison(results, out / "comparison.png")


def plot_comparison(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, _ in results]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = [
        ("accuracy", [r.accuracy * 100 for _, r in results], "held-out accuracy (%)"),
        ("bytes", [r.avg_bytes for _, r in results], "bytes generated per answer"),
        ("latency", [r.seconds_per_example * 1e3 for _, r in results], "ms per example (batched)"),
    ]
    for ax, (_, values, label) in zip(axes, panels, strict=True):
        colors = ["#999999", "#4C72B0"] + ["#DD8452"] * (len(names) - 2)
        ax.bar(names, values, color=colors)
        ax.set_title(label)
        ax.tick_params(axis="x", labelsize=7, rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
