"""ProntoQA-style problems with any number of hops, in the real data set's exact form.

`../shared/data/prontoqa` (the Coconut paper's "5-hop with distractors") has one structure in
every example, measured over its 9,000 training questions:

- a chain of 5 concepts the person belongs to (c0 -> c1 -> ... -> c4), each with one property;
  the last concept's property is the one the question asks about;
- at every chain concept a second "is a" rule to a dead-end concept (two at the last one),
  each dead end with a property but the last;
- a distractor: the person is also a d0, with a property and one "is a" rule to a dead end;
- an unreachable concept holding the asked property with the opposite sign;
- 23 rules in random order, then the person's two facts, then "True or false: NAME is (not) P.";
- the steps walk the chain, quoting each rule as written, and end with "NAME is (not) P.";
- the answer is "True" when the question's sign equals the goal rule's sign.

`prontoqa(n, hops=5)` makes the same structure with `hops` chain concepts, from the same 17
concept words, 45 properties, 9 names and rule wordings in the same proportions. Short chains
(1-3 hops) are a cheap curriculum: the same lookups, dead-end choices and final sign
comparison in a third of the bytes.
"""

from __future__ import annotations

import random

from coconutblt.data.reasoning import Example

IntSpec = int | tuple[int, int]

CONCEPTS = (
    "brimpus dumpus gorpus grimpus impus jompus lempus lorpus numpus rompus shumpus sterpus "
    "tumpus vumpus wumpus yumpus zumpus"
).split()
PROPERTIES = (
    "aggressive amenable angry bitter blue bright brown cold discordant dull earthy fast "
    "feisty floral fruity happy hot kind large liquid loud luminous mean melodic metallic "
    "moderate muffled nervous opaque orange overcast rainy red shy slow small snowy sour spicy "
    "sunny sweet temperate transparent windy wooden"
).split()
NAMES = "Alex Fae Max Polly Rex Sally Sam Stella Wren".split()
NEGATED_PROPERTY = 0.34  # share of property rules with "not" (36,715 of 108,000 in train)
GOAL_NEGATED = 0.46  # share of goal rules with "not" (1,392 of 3,000)
MAX_HOPS = (len(CONCEPTS) - 4) // 2  # 2 * hops + 4 concepts per question


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _plural(word: str) -> str:
    return word + "es"


def _rule(rng: random.Random, subject: str, target: str, negated: bool, is_concept: bool) -> str:
    """One rule in one of the three wordings the data set uses (half plural, a quarter each
    "Every" and "Each")."""
    not_ = "not " if negated else ""
    if rng.random() < 0.5:
        obj = _plural(target) if is_concept else target
        return f"{_plural(subject).capitalize()} are {not_}{obj}."
    quantifier = rng.choice(("Every", "Each"))
    obj = f"{_article(target)} {target}" if is_concept else target
    return f"{quantifier} {subject} is {not_}{obj}."


def _one(
    rng: random.Random,
    hops: int,
    overshoot: int = 0,
    quote_properties: bool = False,
    deep_dead_ends: bool = False,
) -> Example:
    """One question whose proof has `hops` chain concepts; with `overshoot` > 0 the chain goes
    on past the goal concept, so where to stop is only known from the goal rule itself; with
    `quote_properties` every step before the goal also quotes its concept's property rule; with
    `deep_dead_ends` the dead ends beside the chain get an "is a" rule of their own (see
    `prontoqa`)."""
    length = hops + overshoot
    concepts = rng.sample(CONCEPTS, 2 * length + 4)
    chain, rest = concepts[:length], concepts[length:]
    branches, (start_b, end_b, unreachable) = rest[: length + 1], rest[length + 1 :]
    props = rng.sample(PROPERTIES, 2 * length + 1)
    chain_props, branch_props, start_b_prop = props[:length], props[length : 2 * length], props[-1]
    goal = chain_props[hops - 1]
    goal_negated = rng.random() < GOAL_NEGATED
    query_negated = rng.random() < 0.5
    name = rng.choice(NAMES)

    def prop_rule(subject: str, prop: str, negated: bool | None = None) -> str:
        neg = rng.random() < NEGATED_PROPERTY if negated is None else negated
        return _rule(rng, subject, prop, neg, is_concept=False)

    main = [_rule(rng, a, b, False, True) for a, b in zip(chain, chain[1:], strict=False)]
    goal_rule = prop_rule(chain[hops - 1], goal, goal_negated)
    rules = [*main, goal_rule]
    other_props = {
        i: prop_rule(c, p)
        for i, (c, p) in enumerate(zip(chain, chain_props, strict=True))
        if i != hops - 1
    }
    rules += list(other_props.values())
    # a dead end beside every chain concept, two beside the last; all but the last have a
    # property
    owners = [*chain, chain[-1]]
    rules += [_rule(rng, c, b, False, True) for c, b in zip(owners, branches, strict=True)]
    rules += [prop_rule(b, p) for b, p in zip(branches, branch_props, strict=False)]
    rules += [prop_rule(start_b, start_b_prop), _rule(rng, start_b, end_b, False, True)]
    rules.append(prop_rule(unreachable, goal, not goal_negated))
    if deep_dead_ends:  # as many as the 17 concept words allow: 3 of the 4 at 5 hops
        unused = [c for c in CONCEPTS if c not in concepts]
        deepened = rng.sample(range(hops - 1), min(hops - 1, len(unused)))
        ends = rng.sample(unused, len(deepened))
        rules += [
            _rule(rng, branches[i], end, False, True) for i, end in zip(deepened, ends, strict=True)
        ]
    rng.shuffle(rules)
    facts = [f"{name} is {_article(c)} {c}." for c in (chain[0], start_b)]
    rng.shuffle(facts)
    query = f"{name} is {'not ' if query_negated else ''}{goal}."
    question = " ".join([*rules, *facts]) + f" True or false: {query}"
    quoted = [other_props[i] + " " if quote_properties else "" for i in range(hops - 1)]
    steps = [
        f"{name} is {_article(c)} {c}. {extra}{rule}"
        for c, extra, rule in zip(
            chain[:hops], [*quoted, ""], [*main[: hops - 1], goal_rule], strict=True
        )
    ]
    steps.append(f"{name} is {'not ' if goal_negated else ''}{goal}.")
    return Example(question, steps, "True" if query_negated == goal_negated else "False")


def prontoqa(
    n: int,
    seed: int = 0,
    hops: IntSpec = 5,
    overshoot: IntSpec = 0,
    quote_properties: bool = False,
    deep_dead_ends: bool = False,
) -> list[Example]:
    """`n` ProntoQA questions with `hops` chain concepts each (a range draws per example);
    5 is the real data set's shape.

    `overshoot` (default 0, the real shape) continues the chain that many concepts past the
    goal concept. In the real set the goal concept is always the chain's last, so a model can
    stop by counting hops or by seeing that every branch ahead is a dead end, and write the
    asked property without ever reading the goal rule's sign; with an overshoot the only
    signal to stop is the rule "GOAL-CONCEPT is (not) P" itself.

    `quote_properties` (default false, the real steps) writes each chain concept's property
    rule into its step ("Alex is a tumpus. Tumpuses are floral. Tumpuses are gorpuses."). In the
    real steps the only property rule quoted is the goal's, whose property the question already
    names, so a model can write it without looking the rule up and guess its sign; here four
    more per question must be found by their subject alone, the half of the goal-rule lookup
    the real steps never train.

    `deep_dead_ends` (default false, the real shape) gives the dead end beside each chain
    concept before the goal an "is a" rule to a concept with no rules (as many as the 17
    concept words allow: 3 of the 4 at 5 hops). In the real set only the first choice, between
    the person's two concepts, is a count (two "is a" rules against one); every later one is
    existence (two against none), and the first is where a from-scratch model fails
    (benchmarks/RESULTS.md, "The first branch is a count"). Here most later choices are counts
    too, so one question trains that decision up to five times instead of once."""
    lo, hi = (hops, hops) if isinstance(hops, int) else tuple(hops)
    olo, ohi = (overshoot, overshoot) if isinstance(overshoot, int) else tuple(overshoot)
    if not 1 <= lo <= hi <= MAX_HOPS:
        raise ValueError(f"hops={hops!r}: need 1 <= min <= max <= {MAX_HOPS}")
    if not 0 <= olo <= ohi or hi + ohi > MAX_HOPS:
        raise ValueError(
            f"overshoot={overshoot!r}: need 0 <= min <= max and hops + overshoot <= {MAX_HOPS}"
        )
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        h = rng.randint(lo, hi)
        overshot = rng.randint(olo, ohi) if ohi else 0
        out.append(_one(rng, h, overshot, quote_properties, deep_dead_ends))
    return out
