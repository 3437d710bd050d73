"""Task evaluation cannot silently read 0: the generation budget follows the data, truncated
generations are counted and warned about, and a constant answer shows per answer class."""

from __future__ import annotations

import re

import pytest
import torch

from coconutblt.data.reasoning import Example
from coconutblt.data.stages import StageConfig
from coconutblt.inference import evaluate as ev
from coconutblt.inference.evaluate import EvalResult, EvalRow, evaluate_examples, generation_budget
from coconutblt.model import HybridTransformer

from .conftest import tiny_config


def _examples() -> list[Example]:
    long_steps = ["x" * 40, "y" * 60]
    return [Example("q1", ["ab"], "True"), Example("q2", long_steps, "False")]


def test_budget_covers_the_longest_target_at_the_stage() -> None:
    cot = StageConfig("cot")
    # stage 0 CoT: 'xxx..\nyyy..\n### False' + EOS = 41 + 61 + 9 + 1 = 112 ids
    assert generation_budget(_examples(), cot, 0) == int(112 * 1.5) + 16
    # with every step a thought only '### False' + EOS remains
    coconut = StageConfig("coconut", max_latent_stage=2)
    assert generation_budget(_examples(), coconut, 3) == int(10 * 1.5) + 16


def test_truncated_generations_are_counted_and_warned(monkeypatch) -> None:
    def never_answers(model, prompts, max_new_tokens):
        return [[ord("z")] * max_new_tokens for _ in prompts]

    monkeypatch.setattr(ev, "generate_batch", never_answers)
    model = HybridTransformer(tiny_config())
    result = evaluate_examples(model, _examples(), StageConfig("cot"), 0, max_new_tokens=0)
    assert result.max_new_tokens == generation_budget(_examples(), StageConfig("cot"), 0)
    assert result.n_truncated == 2 and result.accuracy == 0.0
    (line,) = result.warnings()
    assert "2 of 2" in line and f"{result.max_new_tokens}-byte budget" in line


def test_an_answer_within_budget_is_not_truncated(monkeypatch) -> None:
    def answers_true(model, prompts, max_new_tokens):
        return [list(b"### True") for _ in prompts]

    monkeypatch.setattr(ev, "generate_batch", answers_true)
    model = HybridTransformer(tiny_config())
    result = evaluate_examples(model, _examples(), StageConfig("cot"), 0, max_new_tokens=8)
    assert result.n_truncated == 0 and result.warnings() == []
    # always "True": right on the True question, wrong on the False one
    assert result.accuracy == 0.5
    assert result.per_answer() == {"False": 0.0, "True": 1.0}
    assert result.summary()["per_answer"] == {"False": 0.0, "True": 1.0}


def test_per_answer_is_empty_for_open_ended_answers() -> None:
    rows = [EvalRow("q", str(i), str(i), True, "", 1, 0) for i in range(6)]
    assert EvalResult(1.0, 1.0, 0.0, 0.0, rows).per_answer() == {}
    one_class = [EvalRow("q", "a", "a", True, "", 1, 0)] * 3
    assert EvalResult(1.0, 1.0, 0.0, 0.0, one_class).per_answer() == {}


def test_real_generation_respects_the_budget() -> None:
    torch.manual_seed(0)
    model = HybridTransformer(tiny_config())
    result = evaluate_examples(model, _examples(), StageConfig("cot"), 0, max_new_tokens=5)
    assert all(len(r.generated.encode()) <= 5 * 8 for r in result.rows)  # specials print longer
    assert all(r.n_generated <= 5 for r in result.rows)


# (generated text, reference answer): both evaluators must score each the same way
SCORED = [
    ("steps\n### 1,000", "1000"),
    ("### 1000", "1,000"),
    ("###  True ", "True"),
    ("### False", "True"),
    ("no answer written", "True"),
    ("### ", " "),
    ("a\n### 7\n### 8", "8"),
]


def test_native_and_hf_evaluators_score_the_same_answers_the_same(monkeypatch) -> None:
    from types import SimpleNamespace

    from coconutblt.hf.evaluate import evaluate_model
    from coconutblt.hf.tiny import tiny_tokenizer
    from coconutblt.vocab import EOS_ID

    examples = [Example(f"q{i}", ["s"], ref) for i, (_, ref) in enumerate(SCORED)]
    texts = iter([text for text, _ in SCORED])
    monkeypatch.setattr(
        ev, "generate_batch", lambda m, prompts, n: [list(next(texts).encode()) + [EOS_ID]]
    )
    model = HybridTransformer(tiny_config())
    native = evaluate_examples(model, examples, StageConfig("cot"), 0, 1, max_new_tokens=64)

    tok = tiny_tokenizer()
    tok.pad_token = tok.eos_token  # as `CoconutForCausalLM` sets it

    class FakeHFModel(torch.nn.Module):
        """Writes SCORED's texts in order, as `CoconutForCausalLM.generate` returns them."""

        tokenizer, device = tok, torch.device("cpu")

        def __init__(self):
            super().__init__()
            self.texts = iter([text for text, _ in SCORED])

        def generate(self, ids, mask, max_new_tokens):
            out = torch.tensor([tok.encode(next(self.texts))])
            return SimpleNamespace(sequences=out, lengths=[out.shape[1]])

    hf = evaluate_model(FakeHFModel(), examples, lambda ex: (ex.question, 0), batch_size=1)
    native_correct = [r.correct for r in native.rows]
    assert [r.correct for r in hf.rows] == native_correct
    assert native_correct == [True, True, True, False, False, False, True]
    assert [r.prediction for r in hf.rows] == [r.prediction for r in native.rows]
    assert type(hf) is type(native) and (hf.unit, native.unit) == ("token", "byte")


def _fake_hf_model(texts: list[str]):
    """An HF model stand-in that writes `texts` in order (a batch of one each time), as
    `CoconutForCausalLM.generate` returns them: lengths count the tokens before EOS."""
    from types import SimpleNamespace

    from coconutblt.hf.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    tok.pad_token = tok.eos_token
    written = iter(texts)

    class FakeHFModel(torch.nn.Module):
        tokenizer, device = tok, torch.device("cpu")

        def generate(self, ids, mask, max_new_tokens):
            out = torch.tensor([tok.encode(next(written))[:max_new_tokens]])
            return SimpleNamespace(sequences=out, lengths=[out.shape[1]])

    return FakeHFModel(), tok


def test_hf_evaluator_counts_tokens_per_answer_class_and_truncation() -> None:
    from coconutblt.hf.evaluate import evaluate_model

    examples = [
        Example("q0", ["s"], "True"),
        Example("q1", ["s"], "False"),
        Example("q2", [], "True"),
    ]
    rambling = "z " * 40  # no '###' within the budget
    model, tok = _fake_hf_model(["### True", "### True", rambling])
    prompt_fn = lambda ex: (ex.question, 2)  # noqa: E731
    result = evaluate_model(model, examples, prompt_fn, max_new_tokens=6, batch_size=1)
    assert [r.correct for r in result.rows] == [True, False, False]
    assert result.n_correct == 1 and result.per_answer() == {"False": 0.0, "True": 0.5}
    assert result.rows[0].n_generated == len(tok.encode("### True"))
    assert result.rows[2].n_generated == 6 and result.n_truncated == 1
    (line,) = result.warnings()
    assert "1 of 3" in line and "6-token budget" in line
    assert result.thoughts_label == "2 thoughts" and result.avg_thoughts == 2.0
    summary = result.summary()
    assert summary["avg_tokens"] == result.avg_generated and "avg_bytes" not in summary
    with pytest.raises(AttributeError, match="tokens, not bytes"):
        _ = result.avg_bytes


def test_comparison_block_names_the_unit_and_compares_last_with_first() -> None:
    from coconutblt.inference.report import comparison_block

    def result(answers: list[str], n_generated: int, n_thoughts: int, unit: str) -> EvalResult:
        rows = [
            EvalRow("q", ref, a, a == ref, f"### {a}", n_generated, n_thoughts)
            for a, ref in zip(answers, ["True", "False"], strict=True)
        ]
        acc = sum(r.correct for r in rows) / 2
        return EvalResult(acc, n_generated, n_thoughts, 0.5, rows, 8, 0, unit)

    for unit in ("token", "byte"):
        a = result(["True", "True"], 10, 0, unit)
        b = result(["True", "False"], 4, 2, unit)
        out = comparison_block([("A", a), ("B", b)], "data.jsonl", show=1)
        assert out.startswith("2 examples from data.jsonl\n")
        assert re.search(rf"A: +Accuracy = +50\.00%  Avg {unit}s = +10\.0  Time = 1\.0s\n", out)
        assert re.search(
            rf"B: +Accuracy = 100\.00%  Avg {unit}s = +4\.0  Time = 1\.0s  \(2 thoughts\)", out
        )
        assert f"{unit}s generated" in out and "False 0%" in out and "True 100%" in out
        assert f"Efficiency gain: 60.0% fewer {unit}s (B vs A)" in out
        assert "Quality: +50.00% accuracy change" in out
        assert out.count("Example ") == 1 and "Ground truth" in out
