"""What the Hugging Face recipe reads: reasoning examples from a file, and each example's text at
one curriculum stage.

Why its own file: training, evaluation and `tiny-base` read the same files and must lay an
example out the same way (a validation prompt at stage k is exactly the training prompt at
stage k), so the layout is chosen here once, on top of the data modules' `StageConfig`.
"""

from __future__ import annotations

from pathlib import Path

from coconutblt.data.reasoning import load_examples
from coconutblt.data.stages import StageConfig, format_text, stage_counts
from coconutblt.errors import UserError


def check_positive(name: str, value: int | float | None) -> None:
    """Refuse a count or rate that is not positive (None means "not given"); `name` is the
    flag the message names, e.g. `--batch-size`."""
    if value is not None and value <= 0:
        raise UserError(f"{name} must be positive, got {value}")


def load_examples_file(path: str | Path, max_examples: int | None, what: str = "--data"):
    """The examples of a GSM8k .jsonl, Coconut .json or iCoT .txt file, the first
    `max_examples` of them; a missing or empty file is a one-line `UserError` naming `what`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(
            f"{what} file {p} does not exist; pass a .jsonl, .json or .txt reasoning data file"
        )
    examples = list(load_examples(p))
    if max_examples is not None:
        examples = examples[:max_examples]
    if not examples:
        raise UserError(f"{what} file {p} holds no examples; check the file")
    return examples


def stage_config(
    stage: int, c_thought: int, max_latent_stage: int, pad_latent_to_max=False, uniform_prob=0.0
):
    """The data module's StageConfig for one stage of this recipe.

    Stage 0 is plain CoT without markers (the plan's stage-0 format, and the official GSM8k
    CoT checkpoint that stage 1 starts from); stages from 1 on are Coconut with markers.
    """
    return StageConfig(
        mode="cot" if stage == 0 else "coconut",
        c_thought=c_thought,
        max_latent_stage=max_latent_stage,
        pad_latent_to_max=pad_latent_to_max,
        uniform_prob=uniform_prob,
    )


def stage_texts(example, stage: int, cfg, rng=None, for_eval=False) -> tuple[str, str, int]:
    """(prompt, target, n_thoughts) of one example at one stage, in the data module's layout.

    `for_eval` gives the official generation prompt: thoughts min(stage, steps) × c_thought
    (all of `max_latent_stage` with `pad_latent_to_max`) and no stage mixing.
    """
    n_skip, n_latents = stage_counts(example, stage, cfg, rng, for_eval=for_eval)
    prompt, target = format_text(example, n_skip, n_latents, cfg.uses_markers)
    return prompt, target, n_latents


def thought_prompt(example, n_thoughts: int) -> tuple[str, int]:
    """--n-thoughts N: the question, then markers around exactly N thoughts."""
    return format_text(example, len(example.steps), n_thoughts, markers=True)[0], n_thoughts
