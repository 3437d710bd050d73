"""Statistics of a reasoning data file, to compare synthetic data with the real set it imitates.

A generator is only useful if its examples look like the validation file the model is judged
on: same lengths in bytes and in patches (what sets `seq_len` and the latent transformer's
cost), same number of steps (what the curriculum removes), same answer classes (what chance
is) and, for ProsQA-like questions, the same number of facts, concepts and people. Everything
here is a pure function of the examples; `coconutblt data stats` prints the result.

Definitions, kept generic so that they mean something on any data set:

* steps text: every step followed by "\\n", as the training layout writes them;
* facts: sentences of the question that end with "." (ProsQA: "Every X is a Y.", "Tom is a X.");
* words: runs of letters (an apostrophe inside a word is kept), case-folded;
* person names: capitalized words written as the subject of " is" ("Tom is a wumpus."), less
  function words such as "It" or "There";
* concept words: words that are neither function words nor person names;
* vocabulary: distinct words over all questions.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from coconutblt.data.reasoning import Example, load_examples
from coconutblt.errors import UserError
from coconutblt.model.patching import patch_starts

# the patchers that need no model: the ones statistics of a text file can apply
TEXT_PATCHERS = ("fixed", "space", "word", "sentence")

MAX_ANSWER_CLASSES = 10  # more distinct answers than this are reported as a count only
MAX_NAMES_LISTED = 20
QUESTION_PREVIEW = 80  # characters of the longest example's question that are shown

_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
_SUBJECT = re.compile(r"\b([A-Z][a-z]+) is\b")
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")
FUNCTION_WORDS = frozenset(
    "a an the is are was were be been am not no nor or and but if then so of to in on at by "
    "for from with as into than that this these those there here it its he she they his her "
    "their we you i every each all some any both either neither true false does do did what "
    "which who whom whose how when where why one".split()
)


@dataclass(frozen=True)
class Summary:
    """Mean, median, 95th percentile (nearest rank: always an observed value) and maximum."""

    mean: float
    median: float
    p95: float
    max: float

    def cell(self) -> str:
        return f"{self.mean:.1f} / {self.median:g} / {self.p95:g} / {self.max:g}"


@dataclass(frozen=True)
class DataStats:
    """Everything `coconutblt data stats` reports about one file."""

    path: str
    n_examples: int
    patcher: str  # e.g. "space (max 12)" or "fixed (4)"
    bytes: dict[str, Summary]  # "question" | "steps" | "answer" -> UTF-8 length
    patches: dict[str, Summary]  # same keys -> patches under `patcher`
    step_counts: dict[int, int]  # number of steps -> examples
    n_answers: int  # distinct answers
    answers: dict[str, int] | None  # answer -> examples, when n_answers <= MAX_ANSWER_CLASSES
    longest_bytes: int  # question + steps text + answer, of the longest example
    longest_question: str  # its first QUESTION_PREVIEW characters
    facts: Summary  # per question
    words: Summary  # distinct words per question
    concepts: Summary  # distinct concept words per question
    vocabulary: int  # distinct words over all questions
    n_concepts: int  # distinct concept words over all questions
    names: list[str]  # person names over all questions, sorted


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        return Summary(0.0, 0.0, 0.0, 0.0)
    ordered = sorted(values)
    p95 = ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]
    return Summary(
        statistics.fmean(ordered), float(statistics.median(ordered)), float(p95), float(ordered[-1])
    )


def steps_text(steps: list[str]) -> str:
    return "".join(s + "\n" for s in steps)


def patch_counts(texts: Sequence[str], mode: str, cap: int, chunk: int = 256) -> list[int]:
    """Patches in each text's UTF-8 bytes under `patch_starts(mode, cap)`; 0 for an empty text.

    Texts are padded into batches: patching is causal, so the starts within a text's own length
    do not depend on the padding after it. Sorting by length keeps the padding small.
    """
    data = [t.encode("utf-8") for t in texts]
    counts = [0] * len(data)
    order = sorted(range(len(data)), key=lambda i: len(data[i]))
    for lo in range(0, len(order), chunk):
        idx = order[lo : lo + chunk]
        T = len(data[idx[-1]])
        if T == 0:
            continue
        ids = torch.full((len(idx), T), ord(" "), dtype=torch.long)  # (B, T)
        lengths = torch.tensor([len(data[i]) for i in idx])  # (B,)
        for row, i in enumerate(idx):
            ids[row, : len(data[i])] = torch.tensor(list(data[i]), dtype=torch.long)
        starts = patch_starts(ids, mode, cap)  # (B, T) bool
        inside = torch.arange(T) < lengths[:, None]  # (B, T)
        for row, n in zip(idx, (starts & inside).sum(1).tolist(), strict=True):
            counts[row] = n
    return counts


def count_facts(question: str) -> int:
    return sum(s.endswith(".") for s in _SENTENCE_END.split(question.strip()))


def words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def person_names(question: str) -> set[str]:
    return {n for n in _SUBJECT.findall(question) if n.lower() not in FUNCTION_WORDS}


def compute_stats(
    examples: Sequence[Example],
    path: str = "<examples>",
    patcher: str = "space",
    patch_size: int = 4,
    max_patch_size: int = 12,
) -> DataStats:
    """Stats of `examples`; `patch_size` is the fixed patcher's size, `max_patch_size` the cap
    of the space patcher."""
    if patcher not in TEXT_PATCHERS:
        raise UserError(f"unknown patcher {patcher!r}; use one of {', '.join(TEXT_PATCHERS)}")
    cap = patch_size if patcher == "fixed" else max_patch_size
    if cap < 1:
        what = "fixed patch size" if patcher == "fixed" else "maximum patch size"
        raise UserError(f"the {what} must be at least 1, not {cap}")
    fields = {
        "question": [e.question for e in examples],
        "steps": [steps_text(e.steps) for e in examples],
        "answer": [e.answer for e in examples],
    }
    byte_lengths = {k: [len(t.encode("utf-8")) for t in v] for k, v in fields.items()}
    totals = [sum(lens) for lens in zip(*byte_lengths.values(), strict=True)]
    longest = max(range(len(examples)), key=totals.__getitem__) if examples else None
    answers = Counter(e.answer for e in examples)

    question_words = [words(e.question) for e in examples]
    question_names = [person_names(e.question) for e in examples]
    names = set().union(*question_names)
    skip = FUNCTION_WORDS | {n.lower() for n in names}
    concepts = [w - skip for w in question_words]

    return DataStats(
        path=str(path),
        n_examples=len(examples),
        patcher=f"fixed ({cap})" if patcher == "fixed" else f"{patcher} (max {cap})",
        bytes={k: summarize(v) for k, v in byte_lengths.items()},
        patches={k: summarize(patch_counts(v, patcher, cap)) for k, v in fields.items()},
        step_counts=dict(sorted(Counter(len(e.steps) for e in examples).items())),
        n_answers=len(answers),
        answers=dict(answers.most_common()) if len(answers) <= MAX_ANSWER_CLASSES else None,
        longest_bytes=totals[longest] if longest is not None else 0,
        longest_question=examples[longest].question[:QUESTION_PREVIEW] if examples else "",
        facts=summarize([count_facts(e.question) for e in examples]),
        words=summarize([len(w) for w in question_words]),
        concepts=summarize([len(c) for c in concepts]),
        vocabulary=len(set().union(*question_words)),
        n_concepts=len(set().union(*concepts)),
        names=sorted(names),
    )


def file_stats(path: str | Path, **options) -> DataStats:
    """`compute_stats` of a data file in any format `load_examples` reads."""
    try:
        examples = load_examples(path)
    except OSError as exc:  # permissions, I/O errors: `load_examples` reports the rest
        raise UserError(f"{path}: cannot read ({exc.strerror or exc}); check the file") from None
    return compute_stats(examples, str(path), **options)


def stats_dict(stats: DataStats) -> dict:
    """JSON-ready form (step counts keyed by strings, as JSON requires)."""
    out = asdict(stats)
    out["step_counts"] = {str(k): v for k, v in stats.step_counts.items()}
    return out


# ---------------------------------------------------------------------------------------------
# Text table


def _answer_label(answer: str) -> str:
    shown = answer if len(answer) <= 30 else answer[:27] + "..."
    return f"answer {shown!r}"


def table_rows(all_stats: Sequence[DataStats]) -> list[list[str]]:
    """[metric, value per file] rows; step counts and answers are the union over the files."""
    rows = [["metric", *(s.path for s in all_stats)]]

    def add(metric: str, get) -> None:
        rows.append([metric, *(str(get(s)) for s in all_stats)])

    add("examples", lambda s: s.n_examples)
    add("patcher", lambda s: s.patcher)
    for kind in ("question", "steps", "answer"):
        add(f"{kind} bytes (mean/median/p95/max)", lambda s, k=kind: s.bytes[k].cell())
    for kind in ("question", "steps", "answer"):
        add(f"{kind} patches (mean/median/p95/max)", lambda s, k=kind: s.patches[k].cell())
    add("longest example (bytes)", lambda s: s.longest_bytes)
    for n in sorted({n for s in all_stats for n in s.step_counts}):
        label = f"examples with {n} step" + ("" if n == 1 else "s")
        add(label, lambda s, n=n: s.step_counts.get(n, 0))
    add("distinct answers", lambda s: s.n_answers)
    listed = dict.fromkeys(a for s in all_stats for a in (s.answers or {}))
    for a in listed:
        add(_answer_label(a), lambda s, a=a: "-" if s.answers is None else s.answers.get(a, 0))
    add("facts per question (mean/median/p95/max)", lambda s: s.facts.cell())
    add("words per question (mean/median/p95/max)", lambda s: s.words.cell())
    add("concept words per question (mean/median/p95/max)", lambda s: s.concepts.cell())
    add("vocabulary (distinct words)", lambda s: s.vocabulary)
    add("concept words (distinct)", lambda s: s.n_concepts)
    add("person names (distinct)", lambda s: len(s.names))
    return rows


def format_table(all_stats: Sequence[DataStats]) -> str:
    """The rows as an aligned table, then per file its longest question and (<= 20) names."""
    rows = table_rows(all_stats)
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for s in all_stats:
        lines.append(f"{s.path}: longest question starts {s.longest_question!r}")
        if 0 < len(s.names) <= MAX_NAMES_LISTED:
            lines.append(f"{s.path}: person names: {', '.join(s.names)}")
    return "\n".join(lines)
