"""`coconutblt data stats`: exact numbers on a hand-made file, two files side by side, real data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from coconutblt.cli import main
from coconutblt.data.stats import DataStats, Summary, file_stats, format_table, patch_counts

# three ProsQA-like problems, small enough to count by hand (numbers in `test_exact_counts`)
TINY = [
    {"question": "Tom is a cat. Is Tom a cat?", "steps": ["a b", "c"], "answer": "yes"},
    {
        "question": "Ann is a dog. Every dog is a pet. Is Ann a pet?",
        "steps": ["x"],
        "answer": "no",
    },
    {"question": "Bob is a cat.", "steps": ["a", "b"], "answer": "yes"},
]
OTHER = [{"question": "Eve is a fox.", "steps": ["1", "2", "3", "4", "5"], "answer": "maybe"}]


def write(path: Path, records: list[dict]) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def table(text: str) -> dict[str, list[str]]:
    """metric -> cells of a printed table (columns are at least two spaces apart)."""
    rows = (re.split(r"\s{2,}", line.strip()) for line in text.splitlines())
    return {cells[0]: cells[1:] for cells in rows if len(cells) > 1}


@pytest.fixture
def tiny(tmp_path: Path) -> DataStats:
    return file_stats(write(tmp_path / "tiny.json", TINY))


def test_exact_counts(tiny: DataStats) -> None:
    assert tiny.n_examples == 3
    assert tiny.patcher == "space (max 12)"
    # question bytes 27, 47, 13; steps text "a b\nc\n", "x\n", "a\nb\n"; answers 3, 2, 3
    assert tiny.bytes["question"] == Summary(29.0, 27.0, 47.0, 47.0)
    assert tiny.bytes["steps"] == Summary(4.0, 4.0, 6.0, 6.0)
    assert tiny.bytes["answer"] == Summary(8 / 3, 3.0, 3.0, 3.0)
    # one patch per word under `space`: 8, 13 and 4 words; steps "a ", "b\n", "c\n" etc.
    assert tiny.patches["question"] == Summary(25 / 3, 8.0, 13.0, 13.0)
    assert tiny.patches["steps"] == Summary(2.0, 2.0, 3.0, 3.0)
    assert tiny.patches["answer"] == Summary(1.0, 1.0, 1.0, 1.0)
    assert tiny.step_counts == {1: 1, 2: 2}
    assert (tiny.n_answers, tiny.answers) == (2, {"yes": 2, "no": 1})
    assert tiny.longest_bytes == 47 + 2 + 2
    assert tiny.longest_question == TINY[1]["question"]
    assert tiny.facts == Summary(4 / 3, 1.0, 2.0, 2.0)
    assert tiny.names == ["Ann", "Bob", "Tom"]
    # words: {tom is a cat}, {ann is a dog every pet}, {bob is a cat}; concepts: cat | dog pet
    assert tiny.words == Summary(14 / 3, 4.0, 6.0, 6.0)
    assert tiny.concepts == Summary(4 / 3, 1.0, 2.0, 2.0)
    assert (tiny.vocabulary, tiny.n_concepts) == (9, 3)


def test_patch_counts_of_known_strings() -> None:
    # "Tom |is |a |cat." under space; a cap of 3 splits "Tom " and "cat." in two each
    assert patch_counts(["Tom is a cat."], "space", 12) == [4]
    assert patch_counts(["Tom is a cat."], "space", 3) == [6]
    assert patch_counts(["Tom is a cat.", ""], "fixed", 4) == [4, 0]
    # batching pads shorter texts; the counts must not depend on it
    texts = ["", "a", "Größe über alles", "x = y + 1;\nz", "Tom is a cat. " * 9]
    for mode, cap in (("space", 5), ("fixed", 3)):
        alone = [patch_counts([t], mode, cap)[0] for t in texts]
        assert patch_counts(texts, mode, cap, chunk=2) == alone


def test_two_files_side_by_side(tmp_path: Path, tiny: DataStats) -> None:
    other = file_stats(write(tmp_path / "other.json", OTHER))
    rows = table(format_table([tiny, other]))
    assert rows["metric"] == [tiny.path, other.path]
    assert rows["question bytes (mean/median/p95/max)"] == [
        "29.0 / 27 / 47 / 47",
        "13.0 / 13 / 13 / 13",
    ]
    assert rows["examples"] == ["3", "1"]
    assert rows["examples with 1 step"] == ["1", "0"]
    assert rows["examples with 5 steps"] == ["0", "1"]
    assert rows["answer 'yes'"] == ["2", "0"]
    assert rows["answer 'maybe'"] == ["0", "1"]
    assert rows["person names (distinct)"] == ["3", "1"]
    assert rows["longest example (bytes)"] == ["51", str(13 + 10 + 5)]


def test_cli_table_json_and_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = write(tmp_path / "a.json", TINY), write(tmp_path / "b.json", OTHER)
    assert main(["data", "stats", str(a), str(b), "--patcher", "fixed", "--patch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "fixed (2)" in out and str(a) in out and str(b) in out
    assert "person names: Ann, Bob, Tom" in out

    assert main(["data", "stats", str(a), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[str(a)]["step_counts"] == {"1": 1, "2": 2}
    assert data[str(a)]["answers"] == {"yes": 2, "no": 1}

    assert main(["data", "stats", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.json: no such file" in err
    assert main(["data", "stats", str(a), "--max-patch-size", "0"]) == 2
    assert "must be at least 1" in capsys.readouterr().err

    def unreadable(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("coconutblt.data.stats.load_examples", unreadable)
    assert main(["data", "stats", str(a)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read (Permission denied)" in err


def test_cli_on_real_prontoqa(shared_data: Path, capsys: pytest.CaptureFixture) -> None:
    path = shared_data / "prontoqa" / "prontoqa_valid.json"
    assert main(["data", "stats", str(path)]) == 0
    rows = table(capsys.readouterr().out)
    assert rows["examples"] == ["200"]
    assert int(rows["answer 'True'"][0]) + int(rows["answer 'False'"][0]) == 200
    assert rows["examples with 6 steps"] == ["200"]
