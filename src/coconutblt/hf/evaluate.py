"""`hf eval`: accuracy, generated tokens and time of Coconut checkpoints on one data set, side
by side (the comparison block of the plan's milestone 6).

Why not the official evaluation: it generates one example at a time without a cache and
reports no per-stage accuracy. Here every checkpoint answers the same questions with batched,
cached, greedy generation, prompted with the layout its own stage trained on (read from the
checkpoint's metadata) unless `n_thoughts` overrides it. `evaluate_model` is also the per-epoch
validation of `hf train`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from coconutblt.data.stages import answer_matches, extract_answer
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
from coconutblt.runtime.device import pick_device


@dataclass
class EvalResult:
    """One checkpoint on one data set; tokens are generated tokens before EOS."""

    accuracy: float
    n_correct: int
    avg_tokens: float
    seconds: float
    thoughts: list[int]
    predictions: list[str]
    texts: list[str]
    correct: list[bool]

    @property
    def thoughts_label(self) -> str:
        """'' (none), '2 thoughts', or '1.8 thoughts on average' when counts differ."""
        if not any(self.thoughts):
            return ""
        if len(set(self.thoughts)) == 1:
            return f"{self.thoughts[0]} thoughts"
        return f"{sum(self.thoughts) / len(self.thoughts):.1f} thoughts on average"


def evaluate_model(
    model, examples, prompt_fn, max_new_tokens: int = 64, batch_size: int = 16
) -> EvalResult:
    """Greedy, batched, cached generation on every question; exact match after `### `.

    prompt_fn(example) -> (prompt text, number of thoughts in it). Rows of a batch may hold
    different thought counts: the forward handles any layout.
    """
    tok = model.tokenizer
    dev = model.device
    was_training = model.training
    model.eval()
    texts, preds, correct, thoughts, n_tokens = [], [], [], [], 0
    start = time.perf_counter()
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        prompts = []
        for ex in chunk:
            text, n = prompt_fn(ex)
            prompts.append(encode_prompt(tok, text))
            thoughts.append(n)
        ids, mask = pad_prompts(prompts, tok.pad_token_id)
        out = model.generate(ids.to(dev), mask.to(dev), max_new_tokens=max_new_tokens)
        for b, ex in enumerate(chunk):
            n = int(out.lengths[b])
            # special tokens stay visible: a generated marker is a fact worth seeing
            text = tok.decode(out.sequences[b, :n].tolist())
            pred = extract_answer(text)
            texts.append(text)
            preds.append(pred)
            correct.append(answer_matches(pred, ex.answer))
            n_tokens += n
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    model.train(was_training)
    n_correct = sum(correct)
    return EvalResult(
        accuracy=n_correct / len(examples),
        n_correct=n_correct,
        avg_tokens=n_tokens / len(examples),
        seconds=seconds,
        thoughts=thoughts,
        predictions=preds,
        texts=texts,
        correct=correct,
    )


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
    print_comparison(names, results, examples, data, show, print_fn)
    return results


def print_comparison(names, results, examples, data, show: int = 3, print_fn=print) -> None:
    """One line per checkpoint, the last one's token saving and accuracy change against the
    first, then `show` questions with every checkpoint's answer and the ground truth."""
    width = max(len(n) for n in names) + 1
    print_fn(f"{len(examples)} examples from {data}")
    for name, r in zip(names, results, strict=True):
        extra = f"  ({r.thoughts_label})" if r.thoughts_label else ""
        print_fn(
            f"{name + ':':<{width}}  Accuracy = {100 * r.accuracy:.2f}%  "
            f"Avg tokens = {r.avg_tokens:.1f}  Time = {r.seconds:.1f}s{extra}"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        if first.avg_tokens > 0:
            gain = 100 * (first.avg_tokens - last.avg_tokens) / first.avg_tokens
            print_fn(f"\nEfficiency gain: {gain:.1f}% fewer tokens ({names[-1]} vs {names[0]})")
        print_fn(f"Quality: {100 * (last.accuracy - first.accuracy):+.2f}% accuracy change")
    for i, ex in enumerate(examples[:show]):
        print_fn(f"\nExample {i + 1}:")
        print_fn(f"Question: {ex.question}")
        for name, r in zip(names, results, strict=True):
            verdict = "correct" if r.correct[i] else "wrong"
            shown = r.texts[i] if len(r.texts[i]) <= 120 else r.texts[i][:117] + "..."
            print_fn(f"{name} answer: {r.predictions[i] or '(none)'} ({verdict})  {shown!r}")
        print_fn(f"Ground truth: {ex.answer}")
