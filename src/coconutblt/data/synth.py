"""Seeded generators of reasoning problems in the formats the real data sets use.

The training splits of GSM8k-Aug, N-by-N multiplication and ProsQA are not shipped, so these
generators make data of the same shape, plus `chain`, a task sized for the tiny CPU demo.
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
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from coconutblt.data.reasoning import Example, join_icot_chain
from coconutblt.errors import UserError

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


_NAMES = ["Alex", "Bob", "Davis", "Fae", "Gina", "Jack", "Max", "Polly", "Rex", "Sally", "Sam"]
_NAMES += ["Stella", "Tom", "Wren"]


@lru_cache(maxsize=1)
def _concept_words() -> tuple[str, ...]:
    """Made-up ``-pus`` words in ProsQA's style, built once on first use."""
    onsets = ["b", "br", "d", "dr", "f", "g", "gr", "j", "k", "l", "m", "n", "p", "r", "s"]
    onsets += ["sh", "sc", "st", "t", "tr", "v", "w", "y", "z"]
    vowels = ["a", "e", "i", "o", "u", "oo", "ai"]
    codas = ["m", "r", "l", ""]
    return tuple(o + v + c + "pus" for o in onsets for v in vowels for c in codas)


def _prosqa_edges(rng, root, path, concepts, others, extra_edges):
    """Edges of a DAG in which `path` is the only way from `root` to its last concept.

    Concepts are split into R (may be reachable from root) and U (never): root and R point
    only into R, so nothing in U is reachable; the negative option is a U concept that another
    person is said to be. Only U concepts and other people point into the path besides the
    path itself, so the path's length is the number of hops. Edges go from lower to higher random rank: no cycles.
    """
    rest = [c for c in concepts if c not in path]
    rng.shuffle(rest)
    cut = rng.randint(1, max(1, len(rest) - 1))
    unreachable, reach_ok = set(rest[:cut]), set(path) | set(rest[cut:])
    rank = {c: rng.random() for c in concepts}
    for c, r in zip(path, sorted(rank[c] for c in path), strict=True):
        rank[c] = r
    edges = [(root, path[0])] + list(zip(path, path[1:], strict=False))
    on_path = set(path)
    for _ in range(extra_edges):
        u, v = rng.sample(concepts, 2)
        if rank[u] > rank[v]:
            u, v = v, u
        if u in unreachable or (v in reach_ok and v not in on_path):
            edges.append((u, v))
    for person in others:
        for c in rng.sample(concepts, rng.randint(1, 2)):
            edges.append((person, c))
    negative = rng.choice(sorted(unreachable))
    edges.append((rng.choice(others), negative))
    side = sorted(reach_ok - on_path)
    if side and rng.random() < 0.5:
        edges.append((root, rng.choice(side)))
    return list(dict.fromkeys(edges)), negative


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


def prosqa(
    n: int,
    seed: int = 0,
    hops: IntSpec = (3, 5),
    concepts: int = 14,
    extra_edges: int = 14,
    people: int = 3,
) -> list[Example]:
    """ProsQA-style questions: "Every X is a Y. ... Tom is a X. ... Is Tom a A or B?".

    Exactly one option is reachable from the person; the steps are the facts along a
    shortest path to it ("Tom is a X.", "Every X is a Y.", ...), the answer "Tom is a A.".
    """
    if people < 2:
        raise ValueError(f"people={people}: need the asked person and at least one other")
    rng = random.Random(seed)
    words = _concept_words()
    out = []
    for _ in range(n):
        h = _pick(rng, hops, "hops")
        if concepts < h + 1:
            raise ValueError(f"concepts={concepts}: need at least hops+1={h + 1}")
        names = rng.sample(_NAMES, people)
        pool = rng.sample(words, concepts)
        path = pool[:h]
        edges, negative = _prosqa_edges(rng, names[0], path, pool, names[1:], extra_edges)
        target = path[-1]
        nodes = shortest_path(edges, names[0], target)
        facts = [_fact(u, v) for u, v in edges]
        rng.shuffle(facts)
        a, b = (target, negative) if rng.random() < 0.5 else (negative, target)
        question = " ".join(facts) + f" Is {names[0]} a {a} or {b}?"
        steps = [_fact(u, v) for u, v in zip(nodes, nodes[1:], strict=False)]
        out.append(Example(question, steps, f"{names[0]} is a {target}."))
    return out


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
    "chain": chain,
}


def synthesize(task: str, n: int, seed: int = 0, **kwargs) -> list[Example]:
    """`n` examples of a registered task; `kwargs` are the generator's options."""
    if task not in TASKS:
        raise UserError(f"unknown synthetic task {task!r}; use one of {', '.join(TASKS)}")
    return TASKS[task](n, seed=seed, **kwargs)


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
    path.write_text(text, encoding="utf-8")
    return path
