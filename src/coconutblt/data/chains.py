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
reached 82-88%; the choice of the first rule is not learned there. The recipe keeps the
given chain.
"""

from __future__ import annotations

from dataclasses import replace

from coconutblt.data.reasoning import Example
from coconutblt.errors import UserError

CHAINS = ("given", "prontoqa_backward")


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


def written_chain(example: Example, chain: str) -> Example:
    """`example` with its steps as `curriculum.chain` writes them."""
    if chain == "given":
        return example
    if chain == "prontoqa_backward":
        return prontoqa_backward(example)
    raise UserError(f"curriculum.chain={chain!r}: use one of {', '.join(CHAINS)}")
