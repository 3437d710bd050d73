"""Reasoning examples `{question, steps, answer}` and loaders for the formats they come in.

Coconut's curriculum needs every problem as a question, a list of reasoning steps and an
answer. Public data sets ship in three layouts, all read here into `Example`:

* ``coconut``: a JSON list, or JSONL, of ``{"question", "steps": [...], "answer"}`` (the
  Coconut repository's ProsQA/ProntoQA/GSM files); extra keys are ignored.
* ``icot``: Internalize-CoT text lines ``question||chain #### answer``. The chain is split
  into steps by `split_icot_chain`:

  - GSM8k-Aug chains are calculator groups separated by spaces, ``<<4-2=2>> <<2/.5=4>>``: one
    step per ``<<...>>`` group, brackets kept (as the Coconut preprocessing does). Commas are
    removed from the answer, as Coconut's evaluation does before comparing.
  - N-by-N multiplication chains (digits least-significant first) read
    ``p0 + p1 ( s1 ) + p2 ( s2 ) + ... + p{N-1}``: the chain is split on ``" + "``, so step i
    is the i-th shifted partial product followed, for 0 < i < N-1, by the running sum through
    it in parentheses; the last step has no running sum because the answer is that sum. An
    N-by-N problem thus has N steps, and ``" + ".join(steps)`` is the original chain.
* ``gsm8k``: GSM8k's own JSONL ``{"question", "answer"}``, where the answer is rationale lines
  with ``<<a*b=c>>`` annotations and a final ``#### N``. Steps are the annotations in order
  (what GSM8k-Aug did); a rationale without annotations uses its non-empty lines instead. The
  answer is the text after ``#### `` without commas.

Every malformed record raises `UserError` naming ``file:line`` and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from coconutblt.errors import UserError

FORMATS = ("auto", "coconut", "gsm8k", "icot")

_CALC = re.compile(r"<<.*?>>")
_FIX_COCONUT = 'each record needs "question" (string), "steps" (list of strings), "answer"'
_FIX_ICOT = "each line must read `question||step step ... #### answer`"


@dataclass(frozen=True)
class Example:
    """One reasoning problem: the curriculum removes `steps` from the front, stage by stage."""

    question: str
    steps: list[str]
    answer: str


# ---------------------------------------------------------------------------------------------
# Chain splitting (shared with the synthetic generators and writers)


def split_icot_chain(chain: str) -> list[str]:
    """Split an Internalize-CoT chain into steps (rule in the module docstring).

    Calculator chains (``<<...>>``) give one step per group; anything else is split on
    ``" + "``, which yields one partial product (with its running sum) per step for the
    multiplication files.
    """
    chain = chain.strip()
    if not chain:
        return []
    if "<<" in chain:
        return _CALC.findall(chain)
    return [part.strip() for part in chain.split(" + ")]


def join_icot_chain(steps: list[str]) -> str:
    """Inverse of `split_icot_chain`: spaces between calculator groups, else `` + ``."""
    if steps and all(_CALC.fullmatch(s) for s in steps):
        return " ".join(steps)
    return " + ".join(steps)


def _gsm_answer(text: str) -> str:
    """GSM answers are compared as numbers written without thousands separators."""
    return text.replace(",", "").strip()


# ---------------------------------------------------------------------------------------------
# Reading


def _read_text(path: Path) -> str:
    if not path.exists():
        raise UserError(f"{path}: no such file; check the path to the data file")
    if not path.is_file():
        raise UserError(f"{path}: is not a file; give the path of a .json, .jsonl or .txt file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8"
        ) from None


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Non-empty lines with 1-based numbers, split on "\\n" only.

    `str.splitlines` would also split on U+2028 and friends, which occur inside a GSM8k
    question.
    """
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield number, line


def _iter_jsonl(path: Path, text: str) -> Iterator[tuple[int, object]]:
    for number, line in _lines(text):
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(
                f"{path}:{number}: invalid JSON ({e.msg}, column {e.colno}); "
                "each line must be one JSON object"
            ) from None


def _iter_json_list(path: Path, text: str) -> Iterator[tuple[int, object]]:
    """Elements of a top-level JSON list with the line each starts on, for error messages."""
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "[":
        raise UserError(f"{path}:1: expected a JSON list of records; wrap the records in [ ]")
    line, counted = 1, 0
    pos = _skip_ws(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg}); fix the syntax") from None
        line += text.count("\n", counted, pos)
        counted = pos
        yield line, obj
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            break
        line_at = text.count("\n", 0, pos) + 1
        raise UserError(f"{path}:{line_at}: expected ',' or ']' in the JSON list; fix the syntax")
    rest = _skip_ws(text, pos + 1)
    if rest < len(text):
        line_at = text.count("\n", 0, rest) + 1
        raise UserError(f"{path}:{line_at}: text after the JSON list; remove it")


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


# ---------------------------------------------------------------------------------------------
# Record parsing


def _text_field(record: dict, key: str, where: str, fix: str) -> str:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int):
        if key not in record:
            raise UserError(f"{where}: record has no {key!r}; {fix}")
        raise UserError(f"{where}: {key!r} is {type(value).__name__}, not a string; {fix}")
    return str(value)


def _coconut_record(record: dict, where: str) -> Example:
    question = _text_field(record, "question", where, _FIX_COCONUT)
    answer = _text_field(record, "answer", where, _FIX_COCONUT)
    steps = record.get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        what = "missing" if "steps" not in record else "not a list of strings"
        raise UserError(f"{where}: 'steps' is {what}; {_FIX_COCONUT}")
    return Example(question, list(steps), answer)


def gsm8k_steps(rationale: str) -> list[str]:
    """Calculator annotations in order, or the non-empty rationale lines if there are none."""
    found = _CALC.findall(rationale)
    if found:
        return found
    return [line.strip() for line in rationale.split("\n") if line.strip()]


def _gsm8k_record(record: dict, where: str) -> Example:
    fix = 'each record needs "question" and an "answer" ending in a "#### N" line'
    question = _text_field(record, "question", where, fix)
    answer = _text_field(record, "answer", where, fix)
    rationale, sep, final = answer.rpartition("####")
    if not sep or not final.strip():
        raise UserError(f"{where}: the answer has no final '#### N' line; {fix}")
    return Example(question, gsm8k_steps(rationale), _gsm_answer(final))


def _record(record: object, where: str, fmt: str) -> Example:
    if not isinstance(record, dict):
        raise UserError(
            f"{where}: record is {type(record).__name__}, not an object; {_FIX_COCONUT}"
        )
    if fmt == "coconut" or (fmt == "auto" and "steps" in record):
        return _coconut_record(record, where)
    if fmt == "gsm8k" or (fmt == "auto" and "####" in str(record.get("answer", ""))):
        return _gsm8k_record(record, where)
    raise UserError(
        f"{where}: record has no 'steps' list and its 'answer' has no '#### N' line; "
        f"{_FIX_COCONUT}, or use GSM8k's question/answer form"
    )


def parse_icot_line(line: str, where: str = "<line>") -> Example:
    """One ``question||chain #### answer`` line -> `Example` (steps per `split_icot_chain`)."""
    question, sep, rest = line.rpartition("||")
    if not sep:
        raise UserError(f"{where}: no '||' between question and chain; {_FIX_ICOT}")
    chain, sep, answer = rest.rpartition("####")
    if not sep:
        raise UserError(f"{where}: no '####' before the answer; {_FIX_ICOT}")
    answer = answer.strip()
    if not question.strip() or not answer:
        raise UserError(f"{where}: empty question or answer; {_FIX_ICOT}")
    steps = split_icot_chain(chain)
    if "<<" in chain:
        leftover = _CALC.sub("", chain).strip()
        if leftover:
            raise UserError(
                f"{where}: text outside <<...>> groups in the chain ({leftover[:20]!r}); "
                f"{_FIX_ICOT}"
            )
        answer = _gsm_answer(answer)
    return Example(question.strip(), steps, answer)


# ---------------------------------------------------------------------------------------------
# Public entry points


def _detect(path: Path, text: str) -> str:
    """'json', 'jsonl' or 'icot' from the extension, else from the first character."""
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return "icot"
    if suffix == ".jsonl":
        return "jsonl"
    head = text.lstrip()[:1]
    if head == "[":
        return "json"
    if head == "{":
        return "jsonl"
    first = next((line for _, line in _lines(text)), "")
    if "||" in first:
        return "icot"
    raise UserError(
        f"{path}: cannot tell the data format; name it .json (a list of question/steps/answer "
        "objects), .jsonl (one object a line) or .txt (question||steps #### answer lines)"
    )


def load_examples(path: str | Path, format: str = "auto") -> list[Example]:
    """Read reasoning examples from any supported file (see the module docstring).

    `format` is "auto" (extension, then content), "coconut", "gsm8k" or "icot".
    """
    if format not in FORMATS:
        raise UserError(f"unknown data format {format!r}; use one of {', '.join(FORMATS)}")
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise UserError(f"{path}: no examples in the file (it is empty); give a file of examples")
    layout = "icot" if format == "icot" else _detect(path, text)
    if format in ("coconut", "gsm8k") and layout == "icot":
        layout = "json" if text.lstrip().startswith("[") else "jsonl"
    if layout == "icot":
        examples = [parse_icot_line(line, f"{path}:{n}") for n, line in _lines(text)]
    else:
        records = _iter_json_list(path, text) if layout == "json" else _iter_jsonl(path, text)
        examples = [_record(rec, f"{path}:{n}", format) for n, rec in records]
    if not examples:
        raise UserError(f"{path}: no examples in the file; check that it is the right file")
    return examples


def normalize_question(question: str) -> str:
    """Whitespace-insensitive key, so re-wrapped copies of a question still count as equal."""
    return " ".join(question.split())


def exclude_questions(examples: Iterable[Example], other: Iterable[Example | str]) -> list[Example]:
    """`examples` without those whose question occurs in `other` (Examples or strings).

    Guards against leakage: all 500 GSM8k-Aug validation questions are also GSM8k train
    questions, so training on converted GSM8k train must drop them before validating.
    """
    banned = {normalize_question(o if isinstance(o, str) else o.question) for o in other}
    return [e for e in examples if normalize_question(e.question) not in banned]
