"""Recipes: No-CoT, CoT and Coconut on one task, trained and compared with one call.

A recipe (`configs/recipes/TASK.yaml`) names the data, the run overrides every method shares,
each method's own overrides and the paper's Table 1 row. `run_recipe` trains CoT, continues it
through the continuous-thought stages (Coconut), trains No-CoT, evaluates every model on the
validation file and on any test files, and writes the tables, the exact `coconutblt train`
lines it ran, and plots to the run folder. Every run resumes from its `last.pt`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coconutblt.config_tree import merge_into, read_yaml
from coconutblt.data.reasoning import Example
from coconutblt.errors import UserError
from coconutblt.runtime.progress import progress_bar
from coconutblt.train.config import RunConfig, context_limit, load_run_config

RECIPE_DIR = Path(__file__).resolve().parents[2] / "configs" / "recipes"
METHODS = ("cot", "coconut", "no_cot")
LABELS = {"warmup": "Warm-up", "no_cot": "No-CoT", "cot": "CoT", "coconut": "Coconut"}


@dataclass
class RecipeData:
    """Where the examples come from. Paths are relative to the data folder (`--data-dir`); an
    empty `train` synthesizes it (and an empty `val` too) into the run folder."""

    train: str = ""
    val: str = ""
    synth_task: str = ""
    synth_n: int = 0
    synth_val_n: int = 300
    synth_test_n: int = 0  # > 0: also a synthetic held-out test set, evaluated like --test
    synth_args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    max_train: int = 0  # 0 = all
    train_val_n: int = 0  # > 0: per-epoch validation on this many (the final table uses all)
    eval_n: int = 0  # > 0: the final tables use only this many examples of each file (--quick)


@dataclass
class WarmupRecipe:
    """An optional first run on short synthetic problems of the same kind, written steps
    included (mode cot), whose weights CoT and No-CoT both start from.

    Why: the paper's GPT-2 arrives able to copy from its context; a byte model from scratch
    must first grow that skill, and it grows in fewer optimizer steps on short questions with
    few facts than on the full task (measured in benchmarks/RESULTS.md)."""

    synth_task: str = ""  # "" = no warm-up
    synth_n: int = 0
    synth_val_n: int = 100
    synth_args: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # on top of common


@dataclass
class QuickRecipe:
    """What `--quick` changes: overrides on top of each section, and smaller data."""

    common: dict[str, Any] = field(default_factory=dict)
    cot: dict[str, Any] = field(default_factory=dict)
    coconut: dict[str, Any] = field(default_factory=dict)
    no_cot: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    warmup: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    task: str = ""
    about: str = ""
    paper: dict[str, float] = field(default_factory=dict)  # Table 1: method label -> accuracy %
    chance: float = 0.0  # accuracy of guessing, for the table's note (0 = not printed)
    data: RecipeData = field(default_factory=RecipeData)
    warmup: WarmupRecipe = field(default_factory=WarmupRecipe)
    common: dict[str, Any] = field(default_factory=dict)  # dotted overrides for every method
    cot: dict[str, Any] = field(default_factory=dict)
    coconut: dict[str, Any] = field(default_factory=dict)
    no_cot: dict[str, Any] = field(default_factory=dict)
    quick: QuickRecipe = field(default_factory=lambda: QuickRecipe())  # with --quick


def recipe_path(task: str) -> Path:
    """`TASK` names configs/recipes/TASK.yaml; a path to a YAML file is used as it is."""
    if task.endswith((".yaml", ".yml")):
        return Path(task)
    path = RECIPE_DIR / f"{task}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
        raise UserError(f"no recipe {task!r} in {RECIPE_DIR}; use one of {', '.join(known)}")
    return path


def load_recipe(task: str, quick: bool = False) -> Recipe:
    path = recipe_path(task)
    recipe = merge_into(Recipe(), read_yaml(path), "", str(path))
    if quick:
        q = recipe.quick
        for name in ("common", *METHODS):
            setattr(recipe, name, {**getattr(recipe, name), **getattr(q, name)})
        recipe.data = merge_into(recipe.data, q.data, "quick.data", str(path))
        recipe.warmup = merge_into(recipe.warmup, q.warmup, "quick.warmup", str(path))
    return recipe


def override_text(key: str, value: Any) -> str:
    """A recipe's `key: value` as the `key=value` override `coconutblt train` reads."""
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, list):
        value = "[" + ",".join(str(v) for v in value) + "]"
    return f"{key}={value}"


@dataclass
class MethodRun:
    """One method of a recipe: its folder, its override lines and its resolved config."""

    name: str
    out: Path
    overrides: list[str]
    cfg: RunConfig

    @property
    def command(self) -> str:
        return "coconutblt train " + " ".join(self.overrides) + f" --out {self.out}"


@dataclass
class Prepared:
    train: Path
    val: Path
    tests: dict[str, Path]  # label -> file, evaluated after validation
    warmup: tuple[Path, Path] | None = None  # (train, val) of the warm-up run


def _synthesize_once(task: str, sizes: dict[str, int], seed: int, args: dict, folder: Path):
    """Write `folder/NAME.jsonl` for each (name, size) from one seeded draw, unless present."""
    from coconutblt.data.synth import synthesize, write_examples

    paths = {name: folder / f"{name}.jsonl" for name in sizes}
    if all(p.is_file() for p in paths.values()):
        return paths
    examples = synthesize(task, sum(sizes.values()), seed=seed, **args)
    start = 0
    for name, size in sizes.items():
        write_examples(examples[start : start + size], paths[name])
        start += size
    return paths


def prepare_data(recipe: Recipe, data_dir: Path, out: Path, tests: list[str]) -> Prepared:
    """Resolve the recipe's files, synthesizing what it asks for into OUT/data."""
    d = recipe.data
    test_files = {f"test {Path(t).name}": Path(t) for t in tests}
    for path in test_files.values():
        if not path.is_file():
            raise UserError(f"--test {path}: file not found; give a reasoning data file")
    real_val = data_dir / d.val if d.val else None
    if d.train:
        train = data_dir / d.train
    else:
        if not d.synth_task:
            raise UserError(f"recipe {recipe.task}: data needs `train` or `synth_task`")
        sizes = {"train": d.synth_n}
        if not real_val:
            sizes["val"] = d.synth_val_n
        if d.synth_test_n:
            sizes["test"] = d.synth_test_n
        train = _synthesize_once(d.synth_task, sizes, d.seed, d.synth_args, out / "data")["train"]
        if d.synth_test_n:
            test_files = {"held-out test": out / "data" / "test.jsonl", **test_files}
    val = real_val if real_val else out / "data" / "val.jsonl"
    for path, what in ((train, "training"), (val, "validation")):
        if not path.is_file():
            raise UserError(
                f"recipe {recipe.task}: {what} file {path} not found; point --data-dir at the "
                "folder that holds it"
            )
    warmup = None
    w = recipe.warmup
    if w.synth_task:
        sizes = {"warmup_train": w.synth_n, "warmup_val": w.synth_val_n}
        files = _synthesize_once(w.synth_task, sizes, d.seed + 1, w.synth_args, out / "data")
        warmup = (files["warmup_train"], files["warmup_val"])
    return Prepared(train, val, test_files, warmup)


def plan_methods(recipe: Recipe, data: Prepared, out: Path, extra: list[str]) -> list[MethodRun]:
    """The runs in training order: the warm-up (if any), then CoT and No-CoT from it, and
    Coconut from CoT's final weights at stage 1."""
    common = [override_text(k, v) for k, v in recipe.common.items()]
    shared = [*common, f"data.train=[{data.train}]", f"data.val=[{data.val}]"]
    if recipe.data.max_train:
        shared.append(f"data.max_examples={recipe.data.max_train}")
    if recipe.data.train_val_n:
        shared.append(f"data.max_val_examples={recipe.data.train_val_n}")
    runs = []
    if data.warmup is not None:
        train, val = data.warmup
        own = [override_text(k, v) for k, v in recipe.warmup.overrides.items()]
        overrides = [*common, f"data.train=[{train}]", f"data.val=[{val}]", "curriculum.mode=cot"]
        overrides += [*own, *extra]
        runs.append(
            MethodRun("warmup", out / "warmup", overrides, load_run_config(None, overrides))
        )
    for name in METHODS:
        own = [override_text(k, v) for k, v in getattr(recipe, name).items()]
        mode = [f"curriculum.mode={name}"]
        if name == "coconut":
            mode += [f"curriculum.init_from={out / 'cot' / 'final.pt'}", "curriculum.start_stage=1"]
        elif data.warmup is not None:
            mode += [f"curriculum.init_from={out / 'warmup' / 'final.pt'}"]
        overrides = [*shared, *mode, *own, *extra]
        runs.append(MethodRun(name, out / name, overrides, load_run_config(None, overrides)))
    return runs


def planned_steps(cfg: RunConfig, n_train: int) -> int:
    t = cfg.training
    per_epoch = min(n_train, cfg.data.examples_per_epoch or n_train)
    return math.ceil(math.ceil(per_epoch / t.batch_size) / t.grad_accum) * cfg.curriculum.num_epochs


def train_methods(
    runs: list[MethodRun], resume: bool, show_progress: bool, log=print
) -> dict[str, float]:
    """Train (or resume, or skip when finished) each run; one bar with the whole recipe's ETA."""
    from coconutblt.train.data_setup import load_reasoning
    from coconutblt.train.loop import Trainer

    for run in runs:
        if not resume and (run.out / "last.pt").is_file():
            raise UserError(
                f"{run.out} already holds a run; add --resume to continue it or pick another --out"
            )
    n_train = {}
    for run in runs:
        data = load_reasoning(run.cfg)
        n_train[run.name] = len(data.train)
        left_out = data.left_out_warning(context_limit(run.cfg))
        if left_out:
            log(f"{run.name}: {left_out}")
    totals = {run.name: planned_steps(run.cfg, n_train[run.name]) for run in runs}
    bar = progress_bar(sum(totals.values()), desc="recipe", disable=not show_progress)
    seconds: dict[str, float] = {}
    try:
        for run in runs:
            if (run.out / "final.pt").is_file():
                bar.update(totals[run.name])
                log(f"== {run.name}: finished earlier ({run.out / 'final.pt'}), skipped ==")
                continue
            resuming = resume and (run.out / "last.pt").is_file()
            log(f"== {run.name}: {'resuming' if resuming else 'training'} -> {run.out} ==")
            started = time.perf_counter()
            trainer = Trainer(run.cfg, run.out, resume=resuming, show_progress=show_progress)
            bar.set_description(run.name)
            bar.update(trainer.state.step)
            trainer.fit(bar=bar)
            trainer.close()
            seconds[run.name] = time.perf_counter() - started
    finally:
        bar.close()
    return seconds


def evaluate_runs(
    runs: list[MethodRun], examples: list[Example], batch_size: int = 64
) -> list[tuple[str, Any]]:
    """No-CoT, CoT, then Coconut after each of its stages (the last row is the final model)."""
    from coconutblt.checkpoint import model_from_checkpoint, read_checkpoint
    from coconutblt.inference.evaluate import evaluate_examples
    from coconutblt.train.config import run_config_from_dict, stage_config

    by_name = {r.name: r for r in runs}
    coconut = by_name["coconut"].out
    final = read_checkpoint(coconut / "final.pt")
    final_stage = int(final["stage"])
    final_run = run_config_from_dict(final["run_config"], source=str(coconut / "final.pt"))
    stages = sorted(int(p.stem[5:]) for p in coconut.glob("stage*.pt") if p.stem[5:].isdigit())
    paths = [
        ("No-CoT", by_name["no_cot"].out / "final.pt"),
        ("CoT", by_name["cot"].out / "final.pt"),
        *((f"Coconut stage {k}", coconut / f"stage{k}.pt") for k in stages if k < final_stage),
        (final_label(final_stage, final_run.curriculum.max_latent_stage), coconut / "final.pt"),
    ]
    results = []
    for label, path in paths:
        ckpt = final if path == coconut / "final.pt" else read_checkpoint(path)
        cfg = run_config_from_dict(ckpt["run_config"], source=str(path))
        model = model_from_checkpoint(ckpt, path)
        budget = cfg.training.eval_max_new_tokens  # 0: derived from the data
        result = evaluate_examples(
            model, examples, stage_config(cfg), int(ckpt["stage"]), batch_size, budget
        )
        results.append((label, result))
    return results


def final_label(final_stage: int, max_latent_stage: int) -> str:
    """The final Coconut model's row: its stage, or, after the extra epoch(s) past the last
    stage (every remaining step latent, the official schedule), "final" and no stage number
    that the curriculum does not have."""
    if final_stage > max_latent_stage:
        return "Coconut (final, every step latent)"
    return f"Coconut (stage {final_stage})"


def paper_accuracy(recipe: Recipe, label: str) -> float | None:
    key = "Coconut" if label.startswith("Coconut (") else label
    return recipe.paper.get(key)
