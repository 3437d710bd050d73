"""Task accuracy: generate after each prompt, exact-match the text after `### `.

Used by the trainer's per-epoch validation, `coconutblt eval` and the demo, so every number
in a comparison table comes from the same code. `EvalResult` is also what the Hugging Face
evaluator (`coconutblt.hf.evaluate`) returns: there a generated unit is a token, not a byte.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from coconutblt.data.reasoning import Example
from coconutblt.data.stages import StageConfig, answer_matches, extract_answer, format_example
from coconutblt.vocab import NUM_BYTES, decode_text


@dataclass
class EvalRow:
    question: str
    answer: str
    prediction: str
    correct: bool
    generated: str  # what the model wrote after the prompt (specials shown as <|name|>)
    n_generated: int  # units (EvalResult.unit: bytes, or an HF model's tokens) before EOS
    n_thoughts: int  # continuous thoughts in the prompt


def score_row(example: Example, generated: str, n_generated: int, n_thoughts: int) -> EvalRow:
    """One generation scored: the answer after `### ` against the reference
    (`answer_matches`), as every evaluator scores it."""
    prediction = extract_answer(generated)
    return EvalRow(
        example.question,
        example.answer,
        prediction,
        answer_matches(prediction, example.answer),
        generated,
        n_generated,
        n_thoughts,
    )


@dataclass
class EvalResult:
    accuracy: float
    avg_generated: float  # units generated per answer, EOS not counted
    avg_thoughts: float
    seconds_per_example: float
    rows: list[EvalRow] = field(default_factory=list)
    max_new_tokens: int = 0  # the generation budget used, in units
    n_truncated: int = 0  # generations that hit the budget before writing `###`
    unit: str = "byte"  # what a generated unit is: "byte" (this model) or "token" (an HF model)

    @property
    def avg_bytes(self) -> float:
        """`avg_generated` under the byte-level evaluator's name; a token count is no byte
        count, so a result in tokens has none."""
        if self.unit != "byte":
            raise AttributeError(f"this result counts {self.unit}s, not bytes: use avg_generated")
        return self.avg_generated

    @property
    def n_correct(self) -> int:
        return sum(r.correct for r in self.rows)

    @property
    def total_seconds(self) -> float:
        return self.seconds_per_example * len(self.rows)

    @property
    def thoughts_label(self) -> str:
        """'' (none), '2 thoughts', or '1.8 thoughts on average' when counts differ."""
        counts = {r.n_thoughts for r in self.rows}
        if not any(counts):
            return ""
        if len(counts) == 1:
            return f"{counts.pop()} thoughts"
        return f"{self.avg_thoughts:.1f} thoughts on average"

    @classmethod
    def from_rows(
        cls,
        rows: list[EvalRow],
        seconds: float,
        max_new_tokens: int,
        n_truncated: int,
        unit: str = "byte",
    ) -> EvalResult:
        """The means over `rows`; `seconds` is the whole run's time."""
        n = max(len(rows), 1)
        return cls(
            accuracy=sum(r.correct for r in rows) / n,
            avg_generated=sum(r.n_generated for r in rows) / n,
            avg_thoughts=sum(r.n_thoughts for r in rows) / n,
            seconds_per_example=seconds / n,
            rows=rows,
            max_new_tokens=max_new_tokens,
            n_truncated=n_truncated,
            unit=unit,
        )

    def summary(self) -> dict:
        """The numbers, for metrics files: the count's key names its unit (`avg_bytes`,
        `avg_tokens`)."""
        return {
            "accuracy": self.accuracy,
            f"avg_{self.unit}s": self.avg_generated,
            "avg_thoughts": self.avg_thoughts,
            "seconds_per_example": self.seconds_per_example,
            "n_truncated": self.n_truncated,
            "per_answer": self.per_answer(),
        }

    def per_answer(self, max_classes: int = 4) -> dict[str, float]:
        """Accuracy per reference answer, for tasks with a few answer classes (True/False): a
        model that always says one class shows as 100% / 0%. Empty for open-ended answers."""
        classes: dict[str, list[bool]] = {}
        for r in self.rows:
            classes.setdefault(r.answer.strip(), []).append(r.correct)
        if not 1 < len(classes) <= max_classes:
            return {}
        return {k: sum(v) / len(v) for k, v in sorted(classes.items())}

    def warnings(self) -> list[str]:
        """One line per thing that makes the accuracy lower than the model's real skill."""
        out = []
        if self.n_truncated:
            out.append(
                f"warning: {self.n_truncated} of {len(self.rows)} generations hit the "
                f"{self.max_new_tokens}-{self.unit} budget before '###' (scored wrong); "
                "raise max_new_tokens"
            )
        return out


def generation_budget(examples: list[Example], stage_cfg: StageConfig, stage: int) -> int:
    """Bytes to generate so that the longest reference target at `stage` fits, with margin
    (a looping model still stops): 1.5x the longest target + 16."""
    longest = max(
        (len(format_example(ex, stage, stage_cfg, for_eval=True).target_ids) for ex in examples),
        default=0,
    )
    return int(longest * 1.5) + 16


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
    max_new_tokens: int = 0,
) -> EvalResult:
    """Accuracy of `model` on `examples` prompted as at `stage` (thoughts in the prompt).

    `max_new_tokens` 0 derives the budget from the data (`generation_budget`)."""
    if max_new_tokens <= 0:
        max_new_tokens = generation_budget(examples, stage_cfg, stage)
    was_training = model.training
    model.eval()
    rows: list[EvalRow] = []
    n_truncated = 0
    start = time.perf_counter()
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        staged = [format_example(ex, stage, stage_cfg, for_eval=True) for ex in chunk]
        outputs = generate_batch(model, [s.prompt_ids for s in staged], max_new_tokens)
        for ex, s, out in zip(chunk, staged, outputs, strict=True):
            text = decode_text(out)
            n_bytes = sum(1 for t in out if t < NUM_BYTES)
            n_truncated += len(out) >= max_new_tokens and "###" not in text
            rows.append(score_row(ex, text, n_bytes, s.n_latents))
    elapsed = time.perf_counter() - start
    model.train(was_training)
    return EvalResult.from_rows(rows, elapsed, max_new_tokens, n_truncated)
