"""`coconutblt reproduce TASK --quick` on the real data sets: the three methods train, every
model is evaluated on the validation file (and --test files), and the table carries the
paper's Table 1 row and the exact `coconutblt train` lines."""

from __future__ import annotations

import json

import pytest

from coconutblt.cli import main
from coconutblt.reproduce import final_label, load_recipe


@pytest.mark.parametrize("task", ["prontoqa", "prosqa"])
def test_quick_recipe_on_real_validation(task, shared_data, tmp_path, capsys):
    out = tmp_path / task
    extra = []
    if task == "prontoqa":  # a second table from a --test file
        extra = ["--test", str(shared_data / "prontoqa" / "prontoqa_valid.json")]
    args = ["reproduce", task, "--quick", "--data-dir", str(shared_data), "--out", str(out)]
    assert main([*args, "--no-progress", *extra]) == 0
    printed = capsys.readouterr().out
    recipe = load_recipe(task, quick=True)
    payload = json.loads((out / "results.json").read_text())
    tables = payload["results"]
    assert list(tables)[0] == "validation"
    assert len(tables) == (2 if extra else 1)
    rows = tables["validation"]
    last = recipe.coconut["curriculum.max_latent_stage"]
    final = final_label(recipe.coconut["curriculum.num_epochs"], last)
    assert list(rows)[:2] == ["No-CoT", "CoT"] and list(rows)[-1] == final
    assert rows["CoT"]["avg_thoughts"] == 0.0 and rows[final]["avg_thoughts"] > 0
    for r in rows.values():
        assert 0.0 <= r["accuracy"] <= 1.0
        assert set(r["per_answer"]) <= {"True", "False"}  # ProsQA's answers are open-ended
    md = (out / "results.md").read_text()
    for label, value in recipe.paper.items():
        assert f"{value:.1f}%" in md, label
    warm = bool(recipe.warmup.synth_task)
    assert md.count("coconutblt train ") == 3 + warm and "curriculum.init_from=" in md
    if warm:  # CoT and No-CoT start from the warm-up's weights, Coconut from CoT's
        warm_final = str(out / "warmup" / "final.pt")
        assert payload["commands"]["cot"].count(warm_final) == 1
        assert payload["commands"]["no_cot"].count(warm_final) == 1
        assert warm_final not in payload["commands"]["coconut"]
        assert (out / "data" / "warmup_train.jsonl").is_file()
    assert f"{recipe.paper['Coconut']:.1f}%" in printed
    for name in ("no_cot", "cot", "coconut"):
        assert (out / name / "final.pt").is_file()
    assert (out / "comparison.png").is_file() and (out / "curves.png").is_file()
    if task == "prosqa":  # trained on the generator only: its files are in the run folder
        assert (out / "data" / "train.jsonl").is_file()
        assert not (out / "data" / "val.jsonl").exists()


def test_missing_data_dir_is_one_line(tmp_path, capsys):
    args = [
        "reproduce",
        "prontoqa",
        "--quick",
        "--data-dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--data-dir" in err and len(err.strip().splitlines()) == 1


def test_final_row_names_no_stage_beyond_the_curriculum():
    # the extra epoch after the last stage (every step latent) is not a stage of its own
    assert final_label(4, 3) == "Coconut (final, every step latent)"
    assert final_label(3, 3) == "Coconut (stage 3)"
