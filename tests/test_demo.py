"""`coconutblt demo --quick`: the whole pipeline (data, CoT, Coconut from CoT, No-CoT, held-out
comparison, files) runs end to end, and its numbers are the evaluation of the saved models."""

from __future__ import annotations

import json

import pytest

from coconutblt.cli import main


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for name in ("No-CoT", "CoT", "Coconut (stage 3)"):
        assert f"{name}:" in printed
    assert "Ground truth" in printed

    results = json.loads((out / "results.json").read_text())["results"]
    assert set(results) == {"No-CoT", "CoT", "Coconut (stage 3)"}
    # what each model writes follows from its format: CoT writes the steps, Coconut (3 thoughts
    # at the last stage) and No-CoT only the answer
    assert results["Coconut (stage 3)"]["avg_thoughts"] == 3.0
    assert results["CoT"]["avg_thoughts"] == results["No-CoT"]["avg_thoughts"] == 0.0
    for r in results.values():
        assert 0.0 <= r["accuracy"] <= 1.0
    for name in ("cot", "coconut", "no_cot"):
        assert (out / name / "final.pt").is_file() and (out / name / "metrics.png").is_file()
    assert (out / "comparison.png").stat().st_size > 0
    assert "| method |" in (out / "results.md").read_text()
