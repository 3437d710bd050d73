"""How a reasoning chain is written: the steps as given, or rewritten from them.

`curriculum.chain` picks one; every layout (training, validation, `coconutblt eval`) goes
through `written_chain`, so a checkpoint is always evaluated with the chain it was trained on.

``prontoqa_backward`` rewrites a ProntoQA proof so that it needs no look-ahead. The given
steps walk forward from the person ("Alex is a tumpus. Tumpuses are gorpuses.", ...,
"Alex is happy."), and their first choice, between the person's two concepts, is decided by
which one has more rules in the question: a count that a byte model trained from scratch
learns in some runs within the hour and not in others (benchmarks/RESULTS.md). Walked back
from the asked property, the same proof has no branch at all. Over the 9,000 training
questions of ``../shared/data/prontoqa``, exactly two rules name the asked property, with
opposite signs; the subject of one is the object of no rule (nothing leads to it) and the
other's walk back reaches the person without a single branch. The rewritten chain quotes,
one sentence a step, the goal rule, the chain's rules from the last to the first, the person's
fact, the goal rule again, and ends with the given conclusion:

    Brimpuses are happy. / Sterpuses are brimpuses. / ... / Tumpuses are gorpuses. /
    Alex is a tumpus. / Brimpuses are happy. / Alex is happy.

The last two steps are the given proof's own ending (its last step quotes the goal rule, then
concludes): the repeated goal rule's sign is copied from the question's own sentence, the
conclusion takes it from the step just before, and the answer compares two sentences that are
equal exactly when it is "True" ("True or false: Alex is happy."). So the sign never has to
travel through the thoughts that replace the walk. (Without the conclusion, the answer compared
the repeated rule's sign with the query's, "Brimpuses are not happy." against "Alex is happy.",
and 1,400 warm-up steps left it a constant.) The rewrite uses the given steps only (their
first and last sentences), never the question: it needs no solver, and it has as many steps as
the given chain plus two.

Measured (benchmarks/RESULTS.md, "ProntoQA walked back from the goal rule"): on the recipe's
synthetic warm-up the backward chain stayed at chance for 13 epochs where the forward chain
reached 82-88%; the choice of the first rule is not learned there. The recipe does not
use it.

``prontoqa_search`` removes that first choice the way ProsQA's walked-back steps do (its recipe's
CoT reaches 97-99% on the real file): the chain opens with the first rule the question names
for the asked property, a position rather than a choice. When that rule is the goal rule, the
chain is ``prontoqa_backward``'s. Otherwise nothing leads to its subject, and the next step
quotes the other property rule, the goal rule, from which the walk back goes on as before:

    Every lorpus is not happy. / Brimpuses are happy. / Sterpuses are brimpuses. / ... /
    Alex is a tumpus. / Brimpuses are happy. / Alex is happy.

Every step is then one lookup by the current rule's subject, or, where the question has none,
the other property rule: an existence test made on a rule already written, not a comparison
of two rules before either is read. It needs the question's sentences to find the first
property rule, and raises where the question does not name the asked property in exactly two
rules (all 9,200 questions of the real files do, and the generator's).
"""

from __future__ import annotations

from dataclasses import replace

from coconutblt.data.reasoning import Example
from coconutblt.errors import UserError


def _sentences(step: str) -> list[str]:
    """ "Alex is a tumpus. Tumpuses are gorpuses." -> ["Alex is a tumpus.", "Tumpuses are
    gorpuses."]"""
    parts = [p.strip() for p in step.strip().split(". ")]
    return [p if p.endswith(".") else p + "." for p in parts if p]


def prontoqa_backward(example: Example) -> Example:
    """The ProntoQA proof of `example` walked back from the goal rule (module docstring).

    The given steps must read "NAME is a C. [...] RULE." for each chain concept, the last of
    them quoting the goal rule, then the conclusion "NAME is (not) P." (the data set's and
    `data.synth_prontoqa`'s form).
    """
    steps = example.steps
    if len(steps) < 2:
        raise UserError(
            f"curriculum.chain=prontoqa_backward: a ProntoQA proof has >= 2 steps, got "
            f"{len(steps)} for question {example.question[-60:]!r}; use curriculum.chain=given "
            "for other data"
        )
    walk = [_sentences(s) for s in steps[:-1]]
    if any(len(s) < 2 for s in walk):
        raise UserError(
            "curriculum.chain=prontoqa_backward: every step but the last must read "
            f"'NAME is a C. ... RULE.', got {steps[:-1]!r}; use curriculum.chain=given for "
            "other data"
        )
    goal_rule = walk[-1][-1]
    chain_rules = [s[-1] for s in reversed(walk[:-1])]  # last "is a" rule first
    person_fact = walk[0][0]
    conclusion = steps[-1].strip()
    return replace(example, steps=[goal_rule, *chain_rules, person_fact, goal_rule, conclusion])


def _property_rules(question: str, name: str, prop: str) -> list[str]:
    """The question's sentences that give a concept the property `prop` or its negation, in
    question order ("Every lorpus is not happy.", "Brimpuses are happy.")."""
    sentences = [s for s in _sentences(question) if ":" not in s]
    return [
        s
        for s in sentences
        if not s.startswith(name + " ") and (s.endswith(f" {prop}.") or s.endswith(f" not {prop}."))
    ]


def prontoqa_search(example: Example) -> Example:
    """The backward proof, started from the first rule the question names for the asked
    property: a written search with no look-ahead (module docstring, "prontoqa_search").

    When that rule is the goal rule, this is `prontoqa_backward`. When it is the other one, the
    chain quotes it first; nothing leads to its subject, so the next step quotes the goal rule
    and the walk back continues from there. Each step is then a lookup by the current rule's
    subject, or, where none exists, the other property rule: the existence test ProsQA's walked-
    back steps learn, in place of a choice between two rules made before either is read.
    """
    back = prontoqa_backward(example)
    goal_rule, conclusion = back.steps[0], back.steps[-1]
    name, _, predicate = conclusion.rstrip(".").partition(" is ")
    prop = predicate.removeprefix("not ")
    rules = _property_rules(example.question, name, prop)
    if len(rules) != 2 or goal_rule not in rules:
        raise UserError(
            f"curriculum.chain=prontoqa_search: a ProntoQA question names the asked property "
            f"{prop!r} in exactly two rules, one of them the proof's goal rule {goal_rule!r}; "
            f"found {rules!r} in {example.question[-80:]!r}; use curriculum.chain=given for "
            "other data"
        )
    if rules[0] == goal_rule:
        return back
    return replace(back, steps=[rules[0], *back.steps])


_REWRITES = {"prontoqa_backward": prontoqa_backward, "prontoqa_search": prontoqa_search}
CHAINS = ("given", *_REWRITES)


def written_chain(example: Example, chain: str) -> Example:
    """`example` with its steps as `curriculum.chain` writes them."""
    if chain == "given":
        return example
    if chain in _REWRITES:
        return _REWRITES[chain](example)
    raise UserError(f"curriculum.chain={chain!r}: use one of {', '.join(CHAINS)}")
