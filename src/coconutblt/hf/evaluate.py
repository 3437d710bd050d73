"""`hf eval`: accuracy, generated tokens and time of Coconut checkpoints on one data set, side
by side (the comparison block of the plan's milestone 6), as the native evaluator's
`EvalResult` printed by its report (`coconutblt.inference.report`).

Why not the official evaluation: it generates one example at a time without a cache and
reports no per-stage accuracy. Here every checkpoint answers the same questions with batched,
cached, greedy generation, prompted with the layout its own stage trained on (read from the
checkpoint's metadata) unless `n_thoughts` overrides it. `evaluate_model` is also the per-epoch
validation of `hf train`.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from coconutblt.errors import UserError
from coconutblt.hf.batching import encode_prompt, pad_prompts
from coconutblt.hf.coconut_lm import CoconutForCausalLM
from coconutblt.hf.data import (
    check_positive,
    load_examples_file,
    stage_config,
    stage_texts,
    thought_prompt,
)
from coconutblt.inference.evaluate import EvalResult, EvalRow, score_row
from coconutblt.inference.report import comparison_block
from coconutblt.runtime.device import pick_device


def evaluate_model(
    model, examples, prompt_fn, max_new_tokens: int = 64, batch_size: int = 16
) -> EvalResult:
    """Greedy, batched, cached generation on every question; exact match after `### `.

    prompt_fn(example) -> (prompt text, number of thoughts in it). Rows of a batch may hold
    different thought counts: the forward handles any layout. The result is the native
    evaluator's, counting tokens (`unit="token"`) where it counts bytes.
    """
    tok = model.tokenizer
    dev = model.device
    was_training = model.training
    model.eval()
    rows: list[EvalRow] = []
    n_truncated = 0
    start = time.perf_counter()
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        prompts, thoughts = [], []
        for ex in chunk:
            text, n = prompt_fn(ex)
            prompts.append(encode_prompt(tok, text))
            thoughts.append(n)
        ids, mask = pad_prompts(prompts, tok.pad_token_id)
        out = model.generate(ids.to(dev), mask.to(dev), max_new_tokens=max_new_tokens)
        for b, ex in enumerate(chunk):
            n = int(out.lengths[b])  # tokens before EOS: the budget only if none came
            # special tokens stay visible: a generated marker is a fact worth seeing
            text = tok.decode(out.sequences[b, :n].tolist())
            n_truncated += n >= max_new_tokens and "###" not in text
            rows.append(score_row(ex, text, n, thoughts[b]))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    model.train(was_training)
    return EvalResult.from_rows(rows, seconds, max_new_tokens, n_truncated, unit="token")


def stage_prompt_fn(stage: int, cfg):
    """How a model trained at `stage` is prompted: the official evaluation layout of that
    stage (no stage mixing), as `evaluate_model`'s prompt_fn."""

    def prompt_fn(ex):
        prompt, _, n = stage_texts(ex, stage, cfg, for_eval=True)
        return prompt, n

    return prompt_fn


def _checkpoint_prompt_fn(meta: dict, n_thoughts: int | None):
    """How a checkpoint is prompted: --n-thoughts N, else the layout its stage trained on."""
    if n_thoughts is not None:
        return lambda ex: thought_prompt(ex, n_thoughts)
    stage = int(meta.get("stage") or 0)
    cfg = stage_config(
        stage,
        int(meta.get("c_thought") or 1),
        int(meta.get("max_latent_stage", 3)),
        bool(meta.get("pad_latent_to_max", False)),
    )
    return stage_prompt_fn(stage, cfg)


def evaluate_checkpoints(
    ckpts: list[str],
    *,
    data: str,
    max_examples: int | None = None,
    n_thoughts: int | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 64,
    show: int = 3,
    device: str = "auto",
    base_model: str | None = None,
    print_fn=print,
) -> list[EvalResult]:
    """Print the comparison block of the plan's milestone 6 and return the results.

    A LoRA checkpoint loads its base model and then its adapter (`base_model` overrides the
    base folder recorded in it)."""
    check_positive("--max-examples", max_examples)
    check_positive("--batch-size", batch_size)
    check_positive("--max-new-tokens", max_new_tokens)
    if n_thoughts is not None and n_thoughts < 0:
        raise UserError(f"--n-thoughts must be 0 or more, got {n_thoughts}")
    dev = pick_device(device)
    examples = load_examples_file(data, max_examples)
    results, names = [], []
    for path in ckpts:
        model = CoconutForCausalLM.from_pretrained(path, base_model=base_model)
        model.to(dev)
        prompt_fn = _checkpoint_prompt_fn(model.metadata, n_thoughts)
        with torch.no_grad():
            results.append(evaluate_model(model, examples, prompt_fn, max_new_tokens, batch_size))
        stage = model.metadata.get("stage")
        label = f"Stage {stage}" if stage is not None else "Base"
        names.append(f"{label} ({Path(path).name})")
        del model
    print_fn(comparison_block(list(zip(names, results, strict=True)), data, show))
    return results
