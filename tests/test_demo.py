"""`coconutblt demo --quick` and `coconutblt reproduce TASK --quick`: the whole pipeline (data,
CoT, Coconut from CoT, No-CoT, comparison tables, files) runs end to end, and its numbers are
the evaluation of the saved models."""

from __future__ import annotations

import json

import pytest

from coconutblt.cli import main


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    names = ["No-CoT", "CoT", "Coconut stage 1", "Coconut stage 2", "Coconut (stage 3)"]
    for name in names:
        assert f"{name}:" in printed
    assert "Ground truth" in printed and "held-out test" in printed

    payload = json.loads((out / "results.json").read_text())
    for table in ("validation", "held-out test"):
        results = payload["results"][table]
        assert list(results) == names
        # the prompt follows from the format: Coconut stage k replaces k steps with k thoughts
        for k, name in enumerate(names[2:], start=1):
            assert results[name]["avg_thoughts"] == float(k)
        assert results["CoT"]["avg_thoughts"] == results["No-CoT"]["avg_thoughts"] == 0.0
        for r in results.values():
            assert 0.0 <= r["accuracy"] <= 1.0
    for name in ("cot", "coconut", "no_cot"):
        assert (out / name / "final.pt").is_file() and (out / name / "metrics.png").is_file()
    assert (out / "comparison.png").stat().st_size > 0
    assert (out / "curves.png").stat().st_size > 0
    md = (out / "results.md").read_text()
    assert "| method |" in md and "coconutblt train " in md

    # a second call resumes: every run is finished, so nothing trains and the table is the same
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "--resume"]) == 0
    again = json.loads((out / "results.json").read_text())["results"]
    assert without_timings(again) == without_timings(payload["results"])

    # the same seed from scratch in the same process: the same data, training and table
    out2 = tmp_path / "demo2"
    assert main(["demo", "--quick", "--out", str(out2), "--no-progress"]) == 0
    fresh = json.loads((out2 / "results.json").read_text())["results"]
    assert without_timings(fresh) == without_timings(payload["results"])
    # and the models are the same bit for bit, not only their scores
    import torch

    for name in ("cot", "coconut", "no_cot"):
        a = torch.load(out / name / "final.pt", map_location="cpu", weights_only=False)["model"]
        b = torch.load(out2 / name / "final.pt", map_location="cpu", weights_only=False)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def without_timings(tables: dict) -> dict:
    """Result tables with the latency column dropped (wall-clock varies run to run)."""
    return {
        table: {
            name: {k: v for k, v in row.items() if k != "seconds_per_example"}
            for name, row in rows.items()
        }
        for table, rows in tables.items()
    }


def test_quick_demo_default_folder_is_not_the_full_demos(monkeypatch, tmp_path):
    # `make demo ARGS=--quick` after a full demo must not overwrite runs/demo
    from coconutblt.commands import reproduce

    seen = {}
    monkeypatch.setattr(reproduce, "run", lambda args: seen.setdefault("out", args.out) and 0)
    main(["demo", "--quick"])
    assert seen["out"] == "runs/demo-quick"
    seen.clear()
    main(["demo"])
    assert seen["out"] == "runs/demo"


def test_reproduce_refuses_an_occupied_folder(tmp_path, capsys):
    out = tmp_path / "r"
    (out / "cot").mkdir(parents=True)
    (out / "cot" / "last.pt").write_bytes(b"x")
    assert main(["reproduce", "chain", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_reproduce_unknown_recipe(capsys):
    assert main(["reproduce", "nosuchtask"]) == 2
    err = capsys.readouterr().err
    assert "nosuchtask" in err and "prontoqa" in err
