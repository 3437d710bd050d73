"""Presets, the parameter estimate, and one-line errors from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coconutblt import HybridTransformer, ModelConfig
from coconutblt.cli import main
from coconutblt.model.params import estimate_counts, exact_counts
from coconutblt.train.config import load_run_config

PRESETS = sorted(str(p) for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_closed_form_matches_meta_count(preset):
    cfg = load_run_config(preset).model
    est, exact = sum(estimate_counts(cfg).values()), sum(exact_counts(cfg).values())
    assert abs(est - exact) / exact < 0.02


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(patcher="entropy"),
        dict(patcher="entropy", entropy_patcher=dict(estimator="learned")),
        dict(
            use_byte_patch_attention=True,
            latent_module_every=2,
            ngram_sizes=[3, 4],
            mlp_type="gelu",
        ),
        dict(thought_head=True),
        dict(
            patcher="sentence",
            closed_patch_context=True,
            copy_path=True,
            copy_into_thoughts=True,
            thought_head=True,
        ),
    ],
)
def test_closed_form_per_component(overrides):
    cfg = ModelConfig(d_model=64, n_layers=4, n_heads=2, d_local=32, local_heads=2, **overrides)
    assert estimate_counts(cfg) == exact_counts(cfg)


def test_1b_preset_is_one_billion(capsys):
    cfg = ModelConfig.from_yaml("configs/model_1b.yaml")
    total = sum(exact_counts(cfg).values())
    assert 0.95e9 <= total <= 1.05e9
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, int(cfg.d_model * cfg.mlp_ratio)) == (
        2048,
        20,
        16,
        8192,
    )
    assert cfg.entropy_patcher.estimator == "learned" and cfg.use_byte_patch_attention
    assert load_run_config("configs/model_1b.yaml").training.train_estimator
    assert main(["estimate-params", "configs/model_1b.yaml", "--memory"]) == 0
    out = capsys.readouterr().out
    assert "1.034B" in out and "per-GPU memory plan" in out and "8192" in out


def test_seed_flags_estimate(capsys):
    assert main(["estimate-params", "--d_model", "2048", "--n_layers", "20"]) == 0
    assert "1.008B" in capsys.readouterr().out


def test_both_constructors():
    a = HybridTransformer(ModelConfig.from_yaml("configs/tiny.yaml"))
    b = HybridTransformer(d_model=64, n_layers=2, n_heads=2, use_byte_patch_attention=True)
    assert b.config.use_byte_patch_attention and a.config.d_model == 256
    out = b(torch.tensor([list(b"hello")]), labels=torch.tensor([list(b"hello")]))
    assert out.logits.shape == (1, 5, b.config.vocab_size) and out.loss.ndim == 0


def test_ids_out_of_range_are_a_clear_error():
    model = HybridTransformer(d_model=32, n_layers=1, n_heads=2, d_local=32, local_heads=2)
    with pytest.raises(ValueError, match="input id 999 is outside the vocabulary"):
        model(torch.tensor([[1, 2, 999]]))


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["estimate-params", "configs/tiny.yaml", "d_modl=3"], "unknown config key 'model.d_modl'"),
        (
            ["estimate-params", "configs/missing.yaml"],
            "configs/missing.yaml: config file not found",
        ),
        (
            ["estimate-params", "configs/tiny.yaml", "patcher=bytes"],
            "'model.patcher' must be one of",
        ),
        (
            ["estimate-params", "configs/tiny.yaml", "n_layers=two"],
            "'model.n_layers' must be an integer",
        ),
    ],
)
def test_cli_errors_are_one_line_with_status_2(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.strip().count("\n") == 0


def test_bad_yaml_names_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  d_model: 64\n  n_layers: [2\n")
    assert main(["estimate-params", str(bad)]) == 2
    assert f"{bad}:" in capsys.readouterr().err


def test_throughput_plan_follows_flops_per_byte(capsys):
    from coconutblt.model.params import flops_per_byte

    argv = ["estimate-params", "configs/model_1b.yaml", "--memory", "--bytes-per-patch", "4.5"]
    assert main([*argv, "--seq-lens", "4096", "--peak-tflops", "100", "--mfu", "0.5"]) == 0
    out = capsys.readouterr().out
    row = next(
        line
        for line in out.split("throughput plan")[1].splitlines()
        if line.strip().startswith("4096")
    )
    cfg = ModelConfig.from_yaml("configs/model_1b.yaml")
    expect = 100e12 * 0.5 / flops_per_byte(cfg, 4096, 4.5)
    assert int(row.split()[2].replace(",", "")) == round(expect)


def test_train_without_a_preset_takes_overrides_only(tmp_path, capsys):
    """`coconutblt train key=value ... --out DIR`: the dataclass defaults are the base, as the
    lines `coconutblt reproduce` writes to results.md."""
    from tests.conftest import TINY_RUN_MODEL

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 50)
    args = ["train", *TINY_RUN_MODEL, "data.kind=text", f"data.train=[{corpus}]", "data.seq_len=64"]
    args += ["training.steps=2", "training.batch_size=2", "--out", str(tmp_path / "run")]
    assert main([*args, "--no-progress"]) == 0
    saved = load_run_config(str(tmp_path / "run" / "config.yaml"))
    assert saved.model.d_model == 32 and saved.training.steps == 2
    assert saved.training.lr == load_run_config(None).training.lr  # default, no preset
