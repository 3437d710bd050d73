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
    names = ["No-CoT", "CoT", "Coconut stage 1", "Coconut stage 2", "Coconut stage 3"]
    for name in names:
        assert f"{name}:" in printed
    assert "Ground truth" in printed

    results = json.loads((out / "results.json").read_text())["results"]
    assert list(results) == names
    # the prompt follows from the format: Coconut stage k replaces k steps with k thoughts
    for k in (1, 2, 3):
        assert results[f"Coconut stage {k}"]["avg_thoughts"] == float(k)
    assert results["CoT"]["avg_thoughts"] == results["No-CoT"]["avg_thoughts"] == 0.0
    for r in results.values():
        assert 0.0 <= r["accuracy"] <= 1.0
    for name in ("cot", "coconut", "no_cot"):
        assert (out / name / "final.pt").is_file() and (out / name / "metrics.png").is_file()
    assert (out / "comparison.png").stat().st_size > 0
    assert "| method |" in (out / "results.md").read_text()
