"""`curriculum.chain`: a ProntoQA proof walked back from the goal rule, in every layout."""

from __future__ import annotations

import re

import pytest

from coconutblt.data.chains import prontoqa_backward, written_chain
from coconutblt.data.reasoning import Example, load_examples
from coconutblt.data.stages import StageConfig, format_example
from coconutblt.data.synth_prontoqa import prontoqa
from coconutblt.errors import ConfigValueError, UserError
from coconutblt.train.config import CurriculumConfig, RunConfig, stage_config
from coconutblt.vocab import decode_text

_RULE = re.compile(
    r"^(?:Every|Each) (\w+) is (?:not )?(?:an? )?(\w+)\.$|^(\w+) are (?:not )?(\w+)\.$"
)


def _concept(word: str) -> str:
    word = word.lower()
    return word[:-2] if word.endswith("uses") else word


def _subject_object(rule: str) -> tuple[str, str]:
    m = _RULE.match(rule)
    assert m, rule
    subject, obj = (m[1], m[2]) if m[1] else (m[3], m[4])
    return _concept(subject), _concept(obj)


def _question_sentences(question: str) -> set[str]:
    return {s if s.endswith(".") else s + "." for s in question.split(". ")}


def _check_backward_walk(given: Example, walked: Example) -> None:
    """Each step but the conclusion quotes the question, the walk goes back link by link to
    the person, and the goal rule (which the given proof concludes from) opens it and comes
    again before the given conclusion."""
    steps, conclusion = walked.steps[:-1], walked.steps[-1]
    assert conclusion == given.steps[-1]
    assert len(steps) == len(given.steps) + 1
    assert walked.question == given.question and walked.answer == given.answer
    assert set(steps) <= _question_sentences(given.question)
    assert steps[0] == steps[-1]
    goal_subject, prop = _subject_object(steps[0])
    assert given.steps[-1].rstrip(".").endswith(prop)  # the conclusion names the goal property
    wanted = goal_subject
    for rule in steps[1:-2]:  # "Sterpuses are brimpuses." leads to the concept before it
        subject, obj = _subject_object(rule)
        assert obj == wanted, (rule, wanted)
        wanted = subject
    name = given.steps[-1].split(" ")[0]
    assert steps[-2] in (f"{name} is a {wanted}.", f"{name} is an {wanted}.")


@pytest.mark.parametrize("hops", [1, 2, 5])
def test_backward_walk_on_synthetic_proofs(hops):
    for ex in prontoqa(20, seed=hops, hops=hops, quote_properties=True):
        _check_backward_walk(ex, prontoqa_backward(ex))


def test_backward_walk_on_the_real_files(shared_data):
    for name in ("prontoqa_train.json", "prontoqa_valid.json"):
        examples = load_examples(shared_data / "prontoqa" / name)
        for ex in examples:
            _check_backward_walk(ex, prontoqa_backward(ex))


def test_written_chain_given_is_the_example_itself():
    ex = prontoqa(1, hops=2)[0]
    assert written_chain(ex, "given") is ex
    with pytest.raises(UserError, match="prontoqa_backward"):
        written_chain(ex, "forward")


def test_a_proof_of_another_form_gets_one_line_naming_the_fix():
    ex = Example("Q?", ["4 + 4 = 8", "8 * 2 = 16"], "16")
    with pytest.raises(UserError, match="curriculum.chain=given") as info:
        prontoqa_backward(ex)
    assert "\n" not in str(info.value)


def test_layout_at_every_stage_uses_the_backward_chain():
    """CoT writes the walked-back proof; stage k replaces its first k steps with thoughts
    (each trained to quote the sentence its step quotes); the repeated goal rule and the
    conclusion stay."""
    ex = prontoqa(1, seed=3, hops=5)[0]
    walked = prontoqa_backward(ex).steps
    cot = format_example(ex, 0, StageConfig(mode="cot", chain="prontoqa_backward"))
    assert decode_text(cot.target_ids) == "".join(s + "\n" for s in walked) + (
        f"### {ex.answer}<|eos|>"
    )
    cfg = StageConfig(
        max_latent_stage=6, markers=False, keep_last_steps=2, chain="prontoqa_backward"
    )
    for stage in range(1, 8):
        staged = format_example(ex, stage, cfg)
        k = min(stage, len(walked) - 2)
        assert staged.n_latents == k
        assert decode_text(staged.target_ids).startswith(walked[k] + "\n")
        assert staged.thought_quotes == tuple(walked[:k])
        evaluated = format_example(ex, stage, cfg, for_eval=True)
        assert evaluated.prompt_ids == staged.prompt_ids  # trained as evaluated


def test_the_run_config_carries_the_chain_to_every_layout():
    cfg = RunConfig()
    cfg.curriculum.chain = "prontoqa_backward"
    assert stage_config(cfg).chain == "prontoqa_backward"
    with pytest.raises(ConfigValueError, match="chain"):
        CurriculumConfig(chain="backward")
