"""`curriculum.chain`: a ProntoQA proof walked back from the goal rule, in every layout."""

from __future__ import annotations

import re

import pytest

from coconutblt.data.chains import prontoqa_backward, prontoqa_search, written_chain
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


def _check_search(given: Example, searched: Example) -> None:
    """The search opens with the first rule the question names for the asked property; from
    the goal rule on it is the backward walk, and a dead-end rule comes before it only when
    the question names it first (and then nothing in the question leads to its subject)."""
    back = prontoqa_backward(given)
    prop = given.steps[-1].rstrip(".").split(" ")[-1]
    rules = [
        s
        for s in given.question.split(". ")
        if ":" not in s and re.search(rf"^(?:Every|Each|\w+ are).* (?:not )?{prop}\.?$", s)
    ]
    rules = [r if r.endswith(".") else r + "." for r in rules]
    assert len(rules) == 2 and searched.steps[0] == rules[0]
    if rules[0] == back.steps[0]:
        assert searched.steps == back.steps
        return
    assert searched.steps[1:] == back.steps
    dead_end, _ = _subject_object(rules[0])
    objects = {_subject_object(s)[1] for s in _question_sentences(given.question) if _RULE.match(s)}
    assert dead_end not in objects


def _check_search_on(examples: list[Example]) -> int:
    """Checks each example's search; returns how many open on a dead-end rule."""
    opened_on_a_dead_end = 0
    for ex in examples:
        searched = prontoqa_search(ex)
        _check_search(ex, searched)
        opened_on_a_dead_end += len(searched.steps) == len(ex.steps) + 2
        assert written_chain(ex, "prontoqa_search") == searched
    return opened_on_a_dead_end


def test_search_on_synthetic_proofs():
    examples = prontoqa(200, seed=7, hops=[1, 5])
    assert 0.3 < _check_search_on(examples) / len(examples) < 0.7  # the order is not a tell


def test_search_on_the_real_files(shared_data):
    for name in ("prontoqa_train.json", "prontoqa_valid.json"):
        examples = load_examples(shared_data / "prontoqa" / name)
        assert 0.3 < _check_search_on(examples) / len(examples) < 0.7


def test_search_names_the_fix_when_the_question_has_other_rules():
    ex = prontoqa(1, seed=2, hops=2)[0]
    prop = ex.steps[-1].rstrip(".").split(" ")[-1]
    odd = Example(ex.question.replace(f" {prop}.", " blue."), ex.steps, ex.answer)
    with pytest.raises(UserError, match="exactly two rules") as info:
        prontoqa_search(odd)
    assert "\n" not in str(info.value) and "curriculum.chain=given" in str(info.value)


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
