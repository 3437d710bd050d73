"""Loaders on the real data files and on small malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coconutblt.data.reasoning import (
    Example,
    exclude_questions,
    join_icot_chain,
    load_examples,
    split_icot_chain,
)
from coconutblt.errors import UserError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def real(rel: str) -> Path:
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"real data file {path} is absent")
    return path


@pytest.fixture(scope="module")
def gsm_train() -> list[Example]:
    return load_examples(real("gsm8k/train.jsonl"))


@pytest.mark.parametrize(
    ("rel", "count"),
    [
        ("gsm8k/test.jsonl", 1319),
        ("icot/gsm8k/valid.txt", 500),
        ("icot/4_by_4_mult/valid.txt", 1000),
        ("icot/5_by_5_mult/valid.txt", 1000),
        ("prosqa/prosqa_valid.json", 300),
        ("prontoqa/prontoqa_train.json", 9000),
        ("prontoqa/prontoqa_valid.json", 200),
    ],
)
def test_real_file_counts(rel: str, count: int) -> None:
    examples = load_examples(real(rel))
    assert len(examples) == count
    assert all(e.question and e.answer for e in examples)
    # six GSM8k-Aug lines have an empty chain (`question|| #### answer`); all else has steps
    assert sum(not e.steps for e in examples) == (6 if rel.startswith("icot/gsm8k") else 0)


def test_gsm8k_train(gsm_train: list[Example]) -> None:
    assert len(gsm_train) == 7473
    first = gsm_train[0]
    assert first.question.startswith("Natalia sold clips")
    assert first.steps == ["<<48/2=24>>", "<<48+24=72>>"]
    assert first.answer == "72"
    assert all("," not in e.answer for e in gsm_train)
    # the question with U+2028 inside survives (no splitlines)
    assert sum("\u2028" in e.question for e in gsm_train) == 1


def test_gsm8k_without_annotations_uses_lines(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    record = {"question": "Q?", "answer": "First 2 and 3.\n\nSo 5 in total.\n#### 1,005"}
    path.write_text(json.dumps(record) + "\n")
    [ex] = load_examples(path)
    assert ex == Example("Q?", ["First 2 and 3.", "So 5 in total."], "1005")


def test_icot_gsm8k() -> None:
    examples = load_examples(real("icot/gsm8k/valid.txt"))
    assert examples[0].steps == ["<<4-2=2>>", "<<2/.5=4>>", "<<12/4=3>>", "<<100*3=300>>"]
    assert examples[0].answer == "300"
    assert examples[0].question.endswith("How much does he pay per year?")
    assert all("," not in e.answer for e in examples)  # "5,000" in the file -> "5000"
    assert "5000" in {e.answer for e in examples}


@pytest.mark.parametrize("digits", [4, 5])
def test_icot_mult_steps(digits: int) -> None:
    path = real(f"icot/{digits}_by_{digits}_mult/valid.txt")
    lines = [line for line in path.read_text().split("\n") if line]
    examples = load_examples(path)
    for line, ex in zip(lines, examples, strict=True):
        assert len(ex.steps) == digits
        assert f"{ex.question}||{' + '.join(ex.steps)} #### {ex.answer}" == line
        assert all(" + " not in s for s in ex.steps)
        assert "(" not in ex.steps[0] and "(" not in ex.steps[-1]
        assert all("(" in s for s in ex.steps[1:-1])


def test_prosqa_and_prontoqa() -> None:
    prosqa = load_examples(real("prosqa/prosqa_valid.json"))
    assert prosqa[0].steps == [
        "Tom is a terpus.",
        "Every terpus is a brimpus.",
        "Every brimpus is a lempus.",
    ]
    assert prosqa[0].answer == "Tom is a lempus."
    pronto = load_examples(real("prontoqa/prontoqa_valid.json"))
    assert {e.answer for e in pronto} == {"True", "False"}


def test_leakage_exclusion(gsm_train: list[Example]) -> None:
    valid = load_examples(real("icot/gsm8k/valid.txt"))
    kept = exclude_questions(gsm_train, valid)
    assert len(kept) == len(gsm_train) - 500
    assert len(exclude_questions(gsm_train, [valid[0].question + "  "])) == len(gsm_train) - 1


def test_json_list_and_jsonl_and_extra_keys(tmp_path: Path) -> None:
    records = [
        {"question": "a", "steps": ["s"], "answer": "b", "idx": 3},
        {"question": "c", "steps": [], "answer": 4},
    ]
    expected = [Example("a", ["s"], "b"), Example("c", [], "4")]
    as_list = tmp_path / "x.json"
    as_list.write_text(json.dumps(records, indent=2))
    as_lines = tmp_path / "x.jsonl"
    as_lines.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    jsonl_named_json = tmp_path / "y.json"
    jsonl_named_json.write_text(as_lines.read_text())
    no_suffix = tmp_path / "data"
    no_suffix.write_text(as_list.read_text())
    for path in (as_list, as_lines, jsonl_named_json, no_suffix):
        assert load_examples(path) == expected
    assert load_examples(as_list, format="coconut") == expected


def test_unusual_line_breaks_inside_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    rows = [{"question": f"q{i}\u2028\x85\x0c", "steps": ["s"], "answer": "a"} for i in range(3)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    examples = load_examples(path)
    assert [e.question for e in examples] == [r["question"] for r in rows]


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        load_examples(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and ";" in message
    return message


GOOD = '{"question": "q", "steps": ["s"], "answer": "a"}'


@pytest.mark.parametrize(
    ("name", "text", "line", "words"),
    [
        ("a.jsonl", f"{GOOD}\n\n{{not json\n", 3, "invalid JSON"),
        ("a.jsonl", f'{GOOD}\n{{"question": "q", "answer": "a"}}\n', 2, "steps"),
        ("a.jsonl", f'{GOOD}\n{{"question": "q", "steps": "s", "answer": "a"}}\n', 2, "steps"),
        ("a.jsonl", f'{GOOD}\n{{"question": 1.5, "steps": [], "answer": "a"}}\n', 2, "question"),
        ("a.jsonl", '{"question": "q", "answer": "no final line"}\n', 1, "####"),
        ("a.jsonl", "[1, 2]\n", 1, "not an object"),
        ("a.json", f'[\n {GOOD},\n {GOOD},\n {{"question": "q"}}\n]', 4, "steps"),
        ("a.json", f"[\n {GOOD},\n {GOOD}\n {GOOD}\n]", 4, "expected ','"),
        ("a.json", f"[\n {GOOD},\n {{oops}}\n]", 3, "invalid JSON"),
        ("a.json", f"[{GOOD}] trailing", 1, "after the JSON list"),
        ("a.txt", "q||<<1+1=2>> #### 2\nq <<1+1=2>> #### 2\n", 2, "'||'"),
        ("a.txt", "q||<<1+1=2>> #### 2\n\nq||<<1+1=2>> 2\n", 3, "'####'"),
        ("a.txt", "q||<<1+1=2>> so <<2*2=4>> #### 4\n", 1, "outside"),
        ("a.txt", "q||1 + 2 ####   \n", 1, "empty"),
    ],
)
def test_malformed_records_name_file_and_line(
    tmp_path: Path, name: str, text: str, line: int, words: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    message = error_of(path)
    assert message.startswith(f"{path}:{line}: ")
    assert words in message


def test_file_level_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    assert str(missing) in error_of(missing)
    assert "format" in error_of(missing, format="yaml")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert "no examples" in error_of(empty)
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe{}")
    assert "UTF-8" in error_of(binary)
    unknown = tmp_path / "notes.md"
    unknown.write_text("hello\n")
    assert "format" in error_of(unknown)
    assert "file" in error_of(tmp_path)
    gsm_forced = tmp_path / "g.jsonl"
    gsm_forced.write_text(GOOD + "\n")
    assert "####" in error_of(gsm_forced, format="gsm8k")


_digit_words = st.lists(st.sampled_from("0123456789"), min_size=1, max_size=6).map(" ".join)


@given(st.lists(_digit_words, min_size=1, max_size=6))
def test_mult_chain_round_trip(steps: list[str]) -> None:
    assert split_icot_chain(join_icot_chain(steps)) == steps


@given(st.lists(st.from_regex(r"<<[0-9+*/.-]{1,8}=[0-9]{1,4}>>", fullmatch=True), max_size=5))
def test_calculator_chain_round_trip(steps: list[str]) -> None:
    assert split_icot_chain(join_icot_chain(steps)) == steps
