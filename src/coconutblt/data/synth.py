"""Seeded generators of reasoning problems in the formats the real data sets use.

The training splits of GSM8k-Aug, N-by-N multiplication and ProsQA are not shipped, so these
generators make data of the same shape, plus `chain`, a task sized for the tiny CPU demo, and
`prontoqa` (in `synth_prontoqa`), the real set's structure at any number of hops.
Every generator takes `(n, seed, **options)`, draws only from its own `random.Random(seed)`
(same seed, same list; no global state) and returns `list[Example]`.

Options given as ``int | tuple[int, int]`` take either a fixed value or an inclusive range
drawn per example.
"""

from __future__ import annotations

import json
import random
import string
from collections import deque
from collections.abc import Callable, Hashable
from pathlib import Path

from coconutblt.data.reasoning import Example, join_icot_chain
from coconutblt.data.synth_prontoqa import prontoqa
from coconutblt.errors import UserError
from coconutblt.runtime.files import atomic_write

IntSpec = int | tuple[int, int]


def _pick(rng: random.Random, spec: IntSpec, name: str, low: int = 1) -> int:
    """A fixed value or a uniform draw from an inclusive range, checked against `low`."""
    lo, hi = (spec, spec) if isinstance(spec, int) else spec
    if lo < low or hi < lo:
        raise ValueError(f"{name}={spec!r}: need {low} <= min <= max")
    return rng.randint(lo, hi)


# ---------------------------------------------------------------------------------------------
# arith: GSM8k-Aug style word problems


_PEOPLE = [
    ("Mia", "she"),
    ("Liam", "he"),
    ("Ava", "she"),
    ("Noah", "he"),
    ("Zoe", "she"),
    ("Omar", "he"),
    ("Ines", "she"),
    ("Kai", "he"),
    ("Lena", "she"),
    ("Ravi", "he"),
]
_ITEMS = ["apples", "stickers", "marbles", "cookies", "pencils", "coins", "shells", "cards"]
_TIMES = {2: "doubles", 3: "triples", 4: "quadruples"}


def _arith_op(rng: random.Random, value: int, pronoun: str, item: str, cap: int):
    """One feasible operation on the running total: (sentence, calculator step, new value)."""
    options = ["add"] if value + 2 <= cap else []
    if value > 2:
        options.append("sub")
    if value * 2 <= cap:
        options.append("mul")
    if any(value % k == 0 for k in (2, 3, 4, 5)) and value > 1:
        options.append("div")
    op = rng.choice(options)
    if op == "add":
        k = rng.randint(2, max(2, min(99, cap - value)))
        return f"Then {pronoun} gets {k} more {item}.", f"<<{value}+{k}={value + k}>>", value + k
    if op == "sub":
        k = rng.randint(2, value - 1)
        return f"Then {pronoun} gives away {k} {item}.", f"<<{value}-{k}={value - k}>>", value - k
    if op == "mul":
        k = rng.choice([m for m in _TIMES if value * m <= cap])
        return f"Then {pronoun} {_TIMES[k]} the {item}.", f"<<{value}*{k}={value * k}>>", value * k
    k = rng.choice([d for d in (2, 3, 4, 5) if value % d == 0])
    sentence = f"Then {pronoun} shares the {item} equally among {k} boxes and keeps one box."
    return sentence, f"<<{value}/{k}={value // k}>>", value // k


def arith(n: int, seed: int = 0, steps: IntSpec = 3, max_value: int = 1000) -> list[Example]:
    """Word problems on one running quantity: each step is one small calculator operation.

    Steps look like GSM8k-Aug's (``<<48/2=24>>``); the answer is the final quantity. All
    intermediate values are integers in 1..max_value.
    """
    if max_value < 10:
        raise ValueError(f"max_value={max_value}: need at least 10")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        name, pronoun = rng.choice(_PEOPLE)
        item = rng.choice(_ITEMS)
        value = rng.randint(2, min(99, max_value))
        sentences = [f"{name} has {value} {item}."]
        chain = []
        for _ in range(_pick(rng, steps, "steps")):
            sentence, step, value = _arith_op(rng, value, pronoun, item, max_value)
            sentences.append(sentence)
            chain.append(step)
        sentences.append(f"How many {item} does {name} have now?")
        out.append(Example(" ".join(sentences), chain, str(value)))
    return out


# ---------------------------------------------------------------------------------------------
# mult: N-by-N multiplication, Internalize-CoT layout


def _digits(value: int, width: int) -> str:
    """`value` as `width` space-separated digits, least significant first, zero-padded."""
    text = str(value)[::-1]
    return " ".join(text + "0" * (width - len(text)))


def mult_steps(a: int, b: int, digits: int) -> list[str]:
    """The icot chain for a*b split into steps (see reasoning.split_icot_chain).

    Step i is the partial product a * b_i * 10**i written in N+1+i digits, followed for
    0 < i < N-1 by the running sum in the same width, exactly as the icot files write them.
    """
    steps, total = [], 0
    for i, d in enumerate(str(b)[::-1]):
        partial = a * int(d) * 10**i
        total += partial
        step = _digits(partial, digits + 1 + i)
        if 0 < i < digits - 1:
            step += f" ( {_digits(total, digits + 1 + i)} )"
        steps.append(step)
    return steps


def mult(n: int, seed: int = 0, digits: int = 4) -> list[Example]:
    """N-by-N multiplication with partial-product steps, digits least-significant first."""
    if digits < 1:
        raise ValueError(f"digits={digits}: need at least 1")
    rng = random.Random(seed)
    low, high = 10 ** (digits - 1), 10**digits - 1
    out = []
    for _ in range(n):
        a, b = rng.randint(low, high), rng.randint(low, high)
        question = f"{_digits(a, digits)} * {_digits(b, digits)}"
        out.append(Example(question, mult_steps(a, b, digits), _digits(a * b, 2 * digits)))
    return out


# ---------------------------------------------------------------------------------------------
# prosqa: reachability in a random concept graph


# Weights counted in the real ProsQA validation file (Coconut, Hao et al. 2024; 300 questions):
# the defaults draw from them so synthetic questions look like the real ones.
_PROSQA_HOPS = {3: 124, 4: 133, 5: 36, 6: 7}
_PROSQA_CONCEPTS = {15: 7, 16: 5, 17: 19, 18: 25, 19: 41, 20: 57, 21: 62, 22: 37, 23: 32, 24: 12}
_PROSQA_CONCEPTS[25] = 3
_PROSQA_PEOPLE = {2: 180, 3: 93, 4: 21, 5: 5, 6: 1}
# In-degrees of concepts from the ninth node on, where few nodes exist to cap them.
_PROSQA_PARENTS = {1: 1930, 2: 1416, 3: 721, 4: 236, 5: 73, 6: 16, 7: 3}
# Which of the two main people reach a new concept: the asked one (R), the other (O) or both.
_PROSQA_SIDES = {"R": 3325, "O": 2340, "RO": 387}
# What a further person is said to be: a concept of one of those kinds, or one of their own (-).
_PROSQA_EXTRA_FACTS = {1: 133, 2: 19, 3: 2}
_PROSQA_EXTRA_KINDS = {"R": 63, "RO": 48, "-": 41, "O": 25}

# The real file's people and its fixed list of made-up concepts, all of them.
_NAMES = ["Alex", "Bob", "Carol", "Davis", "Eva", "Fae", "Gabriel", "Jack", "Max", "Oliver"]
_NAMES += ["Polly", "Rex", "Sally", "Sam", "Stella", "Tom", "Wren"]
_CONCEPTS = """bompus boompus brimpus chorpus dumpus felpus fompus gerpus gorpus grimpus gwompus
hilpus impus jelpus jompus kerpus lempus lorpus numpus quimpus rempus rompus rorpus scrompus
shumpus sterpus storpus terpus timpus tumpus vumpus worpus wumpus yerpus yimpus yumpus zhorpus
zumpus""".split()


def _draw(rng: random.Random, spec: IntSpec | None, weights: dict[int, int], name: str, low: int):
    """`spec` as in `_pick`, or, when None, a draw from the real data's `weights`."""
    return _choose(rng, weights) if spec is None else _pick(rng, spec, name, low)


def _choose(rng: random.Random, weights: dict[object, int]):
    """A key of `weights` drawn in proportion to its value."""
    return rng.choices(list(weights), list(weights.values()))[0]


def _recent_first(rng: random.Random, pool: list[int], k: int) -> list[int]:
    """Up to `k` distinct members of `pool`, the i-th (0-based) drawn with weight i + 1.

    Uniform parents make graphs shallower than the real ones (an answer 4 hops deep in 17%
    of graphs, against about half); favouring recent concepts matches the real depths and
    edge spans.
    """
    pool, out = list(pool), []
    for _ in range(min(k, len(pool))):
        i = rng.choices(range(len(pool)), range(1, len(pool) + 1))[0]
        out.append(pool.pop(i))
    return out


def _prosqa_graph(rng: random.Random, concepts: int, extra_people: int):
    """A random concept DAG under two people, grown node by node as the real data seems to be.

    Node 0 is the asked person and node 1 the other one; concepts follow, then further people.
    Each new concept takes its parents (how many: the real in-degrees) from what only node 0
    reaches so far (side R), favouring recent ones (`_recent_first`), from what only node 1
    reaches (O), or, rarely, from both (RO; such concepts get no children, so R and O stay
    apart). Any R concept can thus be the answer and any O concept the wrong option, which is
    then mentioned but unreachable. Further people are said to be a few concepts, sometimes
    ones of their own (side -). Returns (edges, side of each concept).
    """
    kinds = [
        [_choose(rng, _PROSQA_EXTRA_KINDS) for _ in range(_choose(rng, _PROSQA_EXTRA_FACTS))]
        for _ in range(extra_people)
    ]
    own = sum(k.count("-") for k in kinds)
    pools: dict[str, list[int]] = {"R": [0], "O": [1]}
    side: dict[int, str] = {}
    edges = []
    for node in range(2, 2 + max(concepts - own, 2)):
        s, k = _choose(rng, _PROSQA_SIDES), _choose(rng, _PROSQA_PARENTS)
        if s == "RO":
            parents = [rng.choice(pools["R"]), rng.choice(pools["O"])]
            rest = [p for p in pools["R"] + pools["O"] if p not in parents]
            parents += rng.sample(rest, min(max(k - 2, 0), len(rest)))
        else:
            parents = _recent_first(rng, pools[s], k)
            pools[s].append(node)
        side[node] = s
        edges += [(p, node) for p in parents]
    node = 2 + len(side)
    for person, kind_list in enumerate(kinds, start=node + own):
        for kind in kind_list:
            if kind == "-":
                side[node], node = "-", node + 1
                edges.append((person, node - 1))
                continue
            choices = [c for c, s in side.items() if s == kind] or pools["R"][1:] or [2]
            edges.append((person, rng.choice(choices)))
    return list(dict.fromkeys(edges)), side


def _depths(edges: list[tuple[int, int]], start: int) -> dict[int, int]:
    succ: dict[int, list[int]] = {}
    for u, v in edges:
        succ.setdefault(u, []).append(v)
    depth, queue = {start: 0}, deque([start])
    while queue:
        u = queue.popleft()
        for v in succ.get(u, []):
            if v not in depth:
                depth[v] = depth[u] + 1
                queue.append(v)
    return depth


def shortest_path(edges: list[tuple[str, str]], start: str, goal: str) -> list[str] | None:
    """Nodes of a shortest path start..goal (BFS in edge order), or None if unreachable."""
    succ: dict[str, list[str]] = {}
    for u, v in edges:
        succ.setdefault(u, []).append(v)
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while parent[path[-1]] is not None:
                path.append(parent[path[-1]])
            return path[::-1]
        for nxt in succ.get(node, []):
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    return None


def _fact(u: str, v: str) -> str:
    return f"{u} is a {v}." if u[0].isupper() else f"Every {u} is a {v}."


def search_levels(
    edges: list[tuple[Hashable, Hashable]], start: Hashable, goals: set[Hashable]
) -> list[list[tuple[Hashable, Hashable]]] | None:
    """The edges a breadth-first search from `start` follows, level by level, up to the first
    edge that reaches one of `goals`; None if none is reachable.

    Level k (from 0) holds, in `edges`' order, every edge from a node k steps from `start` to
    one not reached yet. So each next edge is a local rule: the first later edge (in the given
    order) whose head the level before reached and whose tail is new; no look-ahead is needed,
    unlike choosing the one path that leads to a goal.
    """
    seen, frontier, levels = {start}, {start}, []
    while frontier:
        level, new = [], set()
        for u, v in edges:
            if u in frontier and v not in seen:
                seen.add(v)
                new.add(v)
                level.append((u, v))
                if v in goals:
                    return [*levels, level]
        levels.append(level)
        frontier = new
    return None


def backward_walk(
    edges: list[tuple[Hashable, Hashable]], start: Hashable, person: Hashable, people: set
) -> list[tuple[Hashable, Hashable]]:
    """The edges of a walk back from `start` to a person, in the order walked.

    Each step takes an edge into the node reached so far: `person`'s if there is one, else the
    first (in `edges`' order) from a concept, else the first from anyone. In a ProsQA graph
    every concept the asked person reaches has only such concepts (or people) as parents, so
    the walk back from the answer reaches the person whichever concept parent it takes (299
    of the real validation file's 300 questions; all of this generator's), and the walk from
    the wrong option never does: which option is the answer is read off where one walk ends,
    with no look-ahead, where a forward path must choose at each branch the one child that
    leads on.
    """
    walk, node = [], start
    while node not in people:
        into = [u for u, v in edges if v == node]
        if not into:
            break  # a concept without parents: the walk ends there
        concepts = [u for u in into if u not in people]
        parent = person if person in into else (concepts or into)[0]
        walk.append((parent, node))
        node = parent
    return walk


def prosqa(
    n: int,
    seed: int = 0,
    hops: IntSpec | None = None,
    concepts: IntSpec | None = None,
    people: IntSpec | None = None,
    tries: int = 1000,
    steps: str = "path",
    restate: bool = False,
) -> list[Example]:
    """ProsQA questions: "Every X is a Y. ... Tom is a X. ... Is Tom a A or B?".

    By default hops (answer path length), concepts and people per question are drawn from
    their distributions in the real validation file, with its words and names, so sizes
    match it (about 920 bytes and 35 facts a question; the real file: 937 and 36). The graph is `_prosqa_graph`'s; the answer is a
    concept without children exactly `hops` steps from the person and unreachable from the
    other main person, the wrong option a childless concept only that other person reaches.
    Graphs without such a pair are redrawn, up to `tries` times; then, unless `concepts` was
    given, so is the concept count (a 6-hop question rarely fits 15 concepts). The answer is
    "Tom is a A.". The steps, with `steps="path"` (the real data's form), are the facts along a
    shortest path ("Tom is a X.", "Every X is a Y.", ...), one a step. With `steps="search"`
    they are the facts a breadth-first search from the person reads (`search_levels`, in the
    question's order), a level a step, until it reaches an option: choosing the one path
    ahead needs look-ahead through the whole graph, a search needs none (about 280 bytes of
    steps, 3.8 levels, where a path is 91 bytes). With `steps="backward"` they are the facts
    of `backward_walk` from the first option the question names, one a step, in the order
    walked (that option first): it ends at the person exactly when that option is the answer,
    and each step is one fact of the question, found by its object alone.

    With `restate=True` a last step quotes the question's query ("Is Tom a A or B?") after the
    walk: the answer's decision (did the walk end at the asked person?) then compares two
    names a few bytes apart, and its options are bytes the decoder has just read, instead of
    a name ~20 patches back.
    """
    if steps not in ("path", "search", "backward"):
        raise ValueError(f"steps={steps!r}: use 'path', 'search' or 'backward'")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        h = _draw(rng, hops, _PROSQA_HOPS, "hops", 1)
        c = _draw(rng, concepts, _PROSQA_CONCEPTS, "concepts", h + 1)
        p = _draw(rng, people, _PROSQA_PEOPLE, "people", 2)
        if c > len(_CONCEPTS) or p > len(_NAMES):
            raise ValueError(f"concepts={c}, people={p}: at most {len(_CONCEPTS)}, {len(_NAMES)}")
        found = _prosqa_question_graph(rng, h, c, p, tries)
        for _ in range(20 if concepts is None else 0):  # a drawn size that rarely fits
            if found is not None:
                break
            c = _draw(rng, concepts, _PROSQA_CONCEPTS, "concepts", h + 1)
            found = _prosqa_question_graph(rng, h, c, p, tries)
        if found is None:
            raise ValueError(f"no {h}-hop question with {c} concepts in {tries} graphs")
        edges, side, answers, wrong = found
        target, negative = rng.choice(answers), rng.choice(wrong)
        label = dict(zip(sorted(side), rng.sample(_CONCEPTS, len(side)), strict=True))
        people_ids = [0, 1, *range(2 + len(side), len(side) + p)]
        label |= dict(zip(people_ids, rng.sample(_NAMES, p), strict=True))
        order = list(edges)
        rng.shuffle(order)  # the question's order of facts
        person, (a, b) = label[0], rng.sample([target, negative], 2)
        question = " ".join(_fact(label[u], label[v]) for u, v in order)
        query = f"Is {person} a {label[a]} or {label[b]}?"
        question += f" {query}"
        if steps == "path":
            nodes = shortest_path(edges, 0, target)
            written = [_fact(label[u], label[v]) for u, v in zip(nodes, nodes[1:], strict=False)]
        elif steps == "search":  # the one option the person reaches is the first one met
            levels = search_levels(order, 0, {target, negative})
            written = [" ".join(_fact(label[u], label[v]) for u, v in lv) for lv in levels]
        else:
            walk = backward_walk(order, a, 0, set(people_ids))
            written = [_fact(label[u], label[v]) for u, v in walk]
        if restate:
            written.append(query)
        out.append(Example(question, written, f"{person} is a {label[target]}."))
    return out


def _prosqa_question_graph(rng: random.Random, hops: int, concepts: int, people: int, tries: int):
    """(edges, side, answers, wrong options) of the first of up to `tries` graphs with a
    childless concept `hops` steps from the asked person that the other cannot reach, and a
    childless one only the other reaches; None when none of them has both."""
    for _ in range(tries):
        edges, side = _prosqa_graph(rng, concepts, people - 2)
        depth = _depths(edges, 0)
        sinks = set(side) - {u for u, _ in edges}
        answers = sorted(v for v in sinks if side[v] == "R" and depth[v] == hops)
        wrong = sorted(v for v in sinks if side[v] == "O")
        if answers and wrong:
            return edges, side, answers, wrong
    return None


# ---------------------------------------------------------------------------------------------
# chain: multi-hop pointer chasing for a tiny byte model


def _chain_facts(nodes: list[str]) -> list[tuple[str, str]]:
    return list(zip(nodes, nodes[1:], strict=False))


def chain(
    n: int,
    seed: int = 0,
    hops: IntSpec = 3,
    distractors: IntSpec = 6,
    letters: str = string.ascii_lowercase,
) -> list[Example]:
    """Pointer chasing: follow ``x=y`` facts from the asked letter until a letter has none.

    Question ``c=k;u=o;a=q;k=a;o=w;c>?`` (facts shuffled), steps ``c=k``, ``k=a``, ``a=q``
    (each a copy of the one fact whose left side is the previous step's right side), answer
    ``q``. Each step is a lookup-and-copy; composing the hops without writing them is the
    hard part. The `distractors` facts form their own chains of `hops` facts (the last one
    shorter if they do not divide evenly), each ending in its own fresh letter: every chain
    looks like the asked one, so shortcuts such as "the letter never on a left side" are
    right only by chance (1 in 3 with the defaults). Letters are distinct within a question,
    no letter has two facts and there are no cycles. The question is
    ``4 * (hops + distractors) + 3`` bytes long: 39 with the defaults.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        h = _pick(rng, hops, "hops")
        d = _pick(rng, distractors, "distractors", low=0)
        lengths = [h] * (d // h) + ([d % h] if d % h else [])
        need = h + 1 + sum(k + 1 for k in lengths)
        if need > len(letters):
            raise ValueError(f"hops={h}, distractors={d}: need {need} letters, have {len(letters)}")
        pool = rng.sample(letters, len(letters))
        main = [pool.pop() for _ in range(h + 1)]
        facts = _chain_facts(main)
        for k in lengths:
            facts += _chain_facts([pool.pop() for _ in range(k + 1)])
        rng.shuffle(facts)
        question = ";".join(f"{u}={v}" for u, v in facts) + f";{main[0]}>?"
        steps = [f"{u}={v}" for u, v in _chain_facts(main)]
        out.append(Example(question, steps, main[-1]))
    return out


# ---------------------------------------------------------------------------------------------
# Registry and writing


TASKS: dict[str, Callable[..., list[Example]]] = {
    "arith": arith,
    "mult": mult,
    "prosqa": prosqa,
    "prontoqa": prontoqa,
    "chain": chain,
}


def synthesize(task: str, n: int, seed: int = 0, **kwargs) -> list[Example]:
    """`n` examples of a registered task; `kwargs` are the generator's options."""
    if task not in TASKS:
        raise UserError(f"unknown synthetic task {task!r}; use one of {', '.join(TASKS)}")
    if n < 1:
        raise UserError(f"synthetic task {task}: asked for {n} examples; ask for at least 1")
    try:
        return TASKS[task](n, seed=seed, **kwargs)
    except (TypeError, ValueError) as exc:  # an unknown option or a value out of its range
        raise UserError(
            f"synthetic task {task}: {exc}; fix the generator options (--args of `data synth`, "
            "data.synth_args of `train`), see coconutblt.data.synth"
        ) from None


def _icot_line(example: Example) -> str:
    line = f"{example.question}||{join_icot_chain(example.steps)} #### {example.answer}"
    if "\n" in line or line.count("||") != 1 or line.count("####") != 1:
        raise ValueError(f"cannot write as an icot line (separator inside a field): {line[:60]!r}")
    return line


def write_examples(examples: list[Example], path: str | Path) -> Path:
    """Write examples as a JSON list (.json), JSONL (.jsonl) or icot lines (.txt).

    The JSON forms are the Coconut format `load_examples` reads back; parent folders are
    created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [
        {"question": e.question, "steps": list(e.steps), "answer": e.answer} for e in examples
    ]
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    elif suffix == ".txt":
        text = "".join(_icot_line(e) + "\n" for e in examples)
    else:
        text = json.dumps(records, ensure_ascii=False, indent=1) + "\n"
    atomic_write(path, text)
    return path
