"""The ProntoQA generator makes the real data set's structure, at any number of hops.

One checker, `check_structure`, is applied to the generated examples and to the real
validation file alike: the generator is right when both pass and their statistics agree.
"""

from __future__ import annotations

import re
import statistics
from collections import defaultdict

import pytest

from coconutblt.data.reasoning import Example, load_examples
from coconutblt.data.synth import synthesize
from coconutblt.data.synth_prontoqa import CONCEPTS, NAMES, PROPERTIES
from coconutblt.errors import UserError

RULE = re.compile(
    r"^(?:(?:Every|Each) (?P<one>\w+) is|(?P<many>\w+)es are) (?P<neg>not )?(?:an? )?(?P<obj>\w+)$"
)


def singular(word: str) -> str:
    return word[:-2] if word.endswith("puses") else word


def check_structure(ex: Example, overshoot: int = 0, deep: bool = False) -> int:
    """Assert the real set's structure; return the number of hops (chain concepts).

    `overshoot`: the chain goes on that many concepts past the goal concept. `deep`: the dead
    ends beside the chain before the goal lead on to a concept with no rules, as many as the
    concept words allow (`deep_dead_ends`)."""
    body, query = ex.question.split(" True or false: ")
    sentences = [s.rstrip(".") for s in body.split(". ")]
    name = query.split()[0]
    facts = [s for s in sentences if s.startswith(name + " is ")]
    rules = [s for s in sentences if s not in facts]
    assert len(facts) == 2 and name in NAMES
    isa, props = defaultdict(list), defaultdict(list)
    for rule in rules:
        m = RULE.match(rule)
        assert m, rule
        subject = (m["one"] or m["many"]).lower()
        obj = singular(m["obj"])
        assert subject in CONCEPTS
        if obj in CONCEPTS:
            assert not m["neg"]
            isa[subject].append(obj)
        else:
            assert obj in PROPERTIES
            props[subject].append((obj, bool(m["neg"])))
    hops = len(ex.steps) - 1
    deepened = min(hops - 1, len(CONCEPTS) - 2 * (hops + overshoot) - 4) if deep else 0
    assert len(rules) == 4 * (hops + overshoot) + 3 + deepened
    dead_end_rules = []
    chain = [step.split(". ")[0].split()[-1] for step in ex.steps[:-1]]
    for i, (concept, step) in enumerate(zip(chain, ex.steps, strict=False)):
        quoted = step.split(". ", 1)[1]
        assert quoted.rstrip(".") in rules  # each step quotes a rule as written
        assert len(isa[concept]) == 2 and len(props[concept]) == 1
        if i + 1 < hops:
            assert singular(RULE.match(quoted.rstrip("."))["obj"]) == chain[i + 1]
            dead_end = next(c for c in isa[concept] if c != chain[i + 1])
            dead_end_rules.append(len(isa[dead_end]))
            assert all(isa[c] == [] and c not in chain for c in isa[dead_end])
    # the choice at each chain concept: two "is a" rules ahead against one (deepened) or none
    assert sorted(dead_end_rules) == [0] * (hops - 1 - deepened) + [1] * deepened
    goal, goal_negated = props[chain[-1]][0]
    ahead = [c for c in isa[chain[-1]] if isa[c]]  # "is a" targets that lead on
    assert len(ahead) == (1 if overshoot else 0)
    query_negated = " not " in query
    assert query.rstrip(".").split()[-1] == goal
    assert ex.steps[-1] == f"{name} is {'not ' if goal_negated else ''}{goal}."
    holders = [(c, neg) for c, ps in props.items() for p, neg in ps if p == goal]
    others = [(c, neg) for c, neg in holders if c != chain[-1]]
    # the asked property once more, with the other sign, on a concept nothing leads to
    assert len(holders) == 2 and len(others) == 1 and others[0][1] is not goal_negated
    assert all(others[0][0] not in targets for targets in isa.values())
    start = [f.split()[-1] for f in facts if f.split()[-1] != chain[0]]
    assert len(start) == 1 and len(isa[start[0]]) == 1 and isa[isa[start[0]][0]] == []
    assert ex.answer == ("True" if query_negated == goal_negated else "False")
    return hops


@pytest.mark.parametrize("hops", [1, 2, 3, 5, 6])
def test_generated_questions_have_the_real_structure(hops):
    examples = synthesize("prontoqa", 50, seed=hops, hops=hops)
    assert [check_structure(e) for e in examples] == [hops] * 50
    answers = [e.answer for e in examples]
    assert 10 < answers.count("True") < 40


def test_the_checker_accepts_the_real_file_and_the_five_hop_default_matches_it(shared_data):
    real = load_examples(shared_data / "prontoqa" / "prontoqa_valid.json")
    assert {check_structure(e) for e in real} == {5}
    made = synthesize("prontoqa", 400, seed=0)
    assert {check_structure(e) for e in made} == {5}
    for field in (lambda e: len(e.question), lambda e: len("\n".join(e.steps))):
        real_mean = statistics.mean(map(field, real))
        assert statistics.mean(map(field, made)) == pytest.approx(real_mean, rel=0.02)


def test_overshoot_continues_the_chain_past_the_goal_concept():
    """With an overshoot the goal concept leads on like any chain concept: only its goal rule
    says the proof stops there."""
    for overshoot in (1, 2):
        made = synthesize("prontoqa", 40, seed=overshoot, hops=(1, 3), overshoot=overshoot)
        assert {check_structure(e, overshoot) for e in made} == {1, 2, 3}
    assert synthesize("prontoqa", 5, seed=3, overshoot=0) == synthesize("prontoqa", 5, seed=3)
    with pytest.raises(UserError, match="overshoot"):
        synthesize("prontoqa", 2, hops=5, overshoot=2)


def test_seeded_ranges_and_bad_options():
    assert synthesize("prontoqa", 5, seed=3) == synthesize("prontoqa", 5, seed=3)
    assert synthesize("prontoqa", 5, seed=3) != synthesize("prontoqa", 5, seed=4)
    mixed = {len(e.steps) - 1 for e in synthesize("prontoqa", 60, seed=1, hops=(1, 3))}
    assert mixed == {1, 2, 3}
    with pytest.raises(UserError, match="hops=9"):
        synthesize("prontoqa", 2, hops=9)


def test_quote_properties_writes_each_chain_concepts_property_rule():
    """Every step before the goal quotes, between "NAME is a C." and the chain rule, the
    question's property rule about C; the question and the rest are unchanged."""
    plain = synthesize("prontoqa", 30, seed=5, hops=(1, 5))
    quoted = synthesize("prontoqa", 30, seed=5, hops=(1, 5), quote_properties=True)
    for p, q in zip(plain, quoted, strict=True):
        assert (p.question, p.answer, p.steps[-2:]) == (q.question, q.answer, q.steps[-2:])
        rules = q.question.split(" True or false: ")[0].split(". ")
        rules = {r.rstrip(".") + "." for r in rules}
        for ps, qs in zip(p.steps[:-2], q.steps[:-2], strict=True):
            first, rule = ps.split(". ", 1)
            concept = first.rstrip(".").split()[-1]
            assert qs.startswith(first + ". ") and qs.endswith(" " + rule)
            quote = qs[len(first) + 2 : -len(rule) - 1]
            assert quote in rules and concept in quote.lower()
            assert not quote.rstrip(".").endswith("uses") and " a " not in quote


def test_deep_dead_ends_make_the_later_choices_counts_like_the_first():
    """With `deep_dead_ends` the dead end beside a chain concept has one "is a" rule (to a
    concept with none), so the choice there is two rules against one, as the person's first
    choice is; without it the choice is two against none, the real set's shape."""
    for hops in (1, 2, 4, 5):
        made = synthesize("prontoqa", 30, seed=hops, hops=hops, deep_dead_ends=True)
        assert {check_structure(e, deep=True) for e in made} == {hops}
    with_overshoot = synthesize(
        "prontoqa", 30, seed=7, hops=(1, 3), overshoot=1, deep_dead_ends=True
    )
    assert {check_structure(e, 1, deep=True) for e in with_overshoot} == {1, 2, 3}
    assert synthesize("prontoqa", 5, seed=3, deep_dead_ends=False) == synthesize(
        "prontoqa", 5, seed=3
    )
