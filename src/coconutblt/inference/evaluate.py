"""Task accuracy: generate after each prompt, exact-match the text after `### `.

Used by the trainer's per-epoch validation, `coconutblt eval` and the demo, so every number
in a comparison table comes from the same code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from coconutblt.data.reasoning import Example
from coconutblt.data.stages import StageConfig, extract_answer, format_example
from coconutblt.data.vocab import NUM_BYTES, decode_text


@dataclass
class EvalRow:
    question: str
    answer: str
    prediction: str
    correct: bool
    generated: str  # what the model wrote after the prompt (specials shown as <|name|>)
    n_bytes: int  # bytes generated (the EOS not counted)
    n_thoughts: int  # continuous thoughts in the prompt


@dataclass
class EvalResult:
    accuracy: float
    avg_bytes: float
    avg_thoughts: float
    seconds_per_example: float
    rows: list[EvalRow] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "avg_bytes": self.avg_bytes,
            "avg_thoughts": self.avg_thoughts,
            "seconds_per_example": self.seconds_per_example,
        }


def generate_batch(model, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """Greedy continuation of each prompt, stopping at EOS (kept) or `max_new_tokens`."""
    from coconutblt.inference.generate import generate

    return generate(model, prompts, max_new_tokens=max_new_tokens).tokens


@torch.no_grad()
def evaluate_examples(
    model,
    examples: list[Example],
    stage_cfg: StageConfig,
    stage: int,
    batch_size: int = 64,
    max_new_tokens: int = 64,
) -> EvalResult:
    """Accuracy of `model` on `examples` prompted as at `stage` (thoughts in the prompt)."""
    was_training = model.training
    model.eval()
    rows: list[EvalRow] = []
    start = time.perf_counter()
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        staged = [format_example(ex, stage, stage_cfg, for_eval=True) for ex in chunk]
        outputs = generate_batch(model, [s.prompt_ids for s in staged], max_new_tokens)
        for ex, s, out in zip(chunk, staged, outputs, strict=True):
            text = decode_text(out)
            pred = extract_answer(text)
            n_bytes = sum(1 for t in out if t < NUM_BYTES)
            rows.append(
                EvalRow(
                    ex.question,
                    ex.answer,
                    pred,
                    pred == ex.answer.strip(),
                    text,
                    n_bytes,
                    s.n_latents,
                )
            )
    elapsed = time.perf_counter() - start
    model.train(was_training)
    n = max(len(rows), 1)
    return EvalResult(
        accuracy=sum(r.correct for r in rows) / n,
        avg_bytes=sum(r.n_bytes for r in rows) / n,
        avg_thoughts=sum(r.n_thoughts for r in rows) / n,
        seconds_per_example=elapsed / n,
        rows=rows,
    )
