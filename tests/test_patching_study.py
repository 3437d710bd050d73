"""The patching study: entropy-model training, threshold calibration, patch stats, curriculum.

One tiny entropy model is trained once (through the CLI) on a synthetic text whose entropy
structure is known: fixed phrases (predictable after their first byte) separated by random
digits (ln 10 nats each).
"""

from __future__ import annotations

import random

import pytest
import torch
import yaml

from coconutblt.checkpoint import read_checkpoint
from coconutblt.cli import main
from coconutblt.model.hybrid import HybridTransformer
from coconutblt.patching_study import (
    calibrate_threshold,
    install_entropy_model,
    load_entropy_model,
    window_entropies,
    windows_of,
)
from coconutblt.runtime.metrics import read_metrics
from coconutblt.train.patch_curriculum import curriculum_patch_starts, entropy_probability
from tests.conftest import tiny_config

PHRASES = [
    "the cat sat on the mat. ",
    "a dog ran far away! ",
    "all is well here; ",
    "we go home now, ",
]
SEQ = 64


def synthetic_text(n_bytes: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < n_bytes:
        piece = (
            rng.choice(PHRASES)
            + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 4)))
            + " "
        )
        out.append(piece)
        size += len(piece)
    return "".join(out).encode()[:n_bytes]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, above all on a shared, busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "synth.txt"
    path.write_bytes(synthetic_text(60_000))
    return path


@pytest.fixture(scope="module")
def entropy_dir(tmp_path_factory, text_file):
    """`coconutblt entropy train` on the synthetic text: a tiny model, a few seconds."""
    out = tmp_path_factory.mktemp("entropy")
    args = [
        "entropy",
        "train",
        "--data",
        str(text_file),
        "--out",
        str(out),
        "--steps",
        "150",
        "--seq-len",
        str(SEQ),
    ]
    args += [
        "--batch-size",
        "16",
        "--lr",
        "1e-2",
        "--d-model",
        "32",
        "--n-layers",
        "1",
        "--n-heads",
        "2",
    ]
    args += ["--window", "32", "--device", "cpu", "--quiet"]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def synth_windows(text_file):
    data = torch.frombuffer(bytearray(text_file.read_bytes()), dtype=torch.uint8)
    return windows_of(data, SEQ, max_bytes=30_000)


# ---------------------------------------------------------------------------- entropy train
def test_entropy_train_writes_a_loadable_checkpoint_with_a_falling_loss(entropy_dir):
    ckpt = read_checkpoint(entropy_dir / "entropy.pt")
    assert ckpt["kind"] == "entropy" and ckpt["format"] == "coconutblt" and ckpt["version"] == 1
    assert {"entropy_config", "model", "train_bytes", "heldout_bpb"} <= set(ckpt)
    assert ckpt["train_bytes"] == 150 * 16 * SEQ
    losses = [v for _, v in ckpt["losses"]]
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:2]) / 2
    assert ckpt["heldout_bpb"] < 4.0  # uniform over bytes would be 8
    model = load_entropy_model(entropy_dir)
    assert model.cfg.window == 32 and not any(p.requires_grad for p in model.parameters())
    # the same metrics.jsonl + metrics.png as the hybrid trainer: train records, then the eval
    records = read_metrics(entropy_dir / "metrics.jsonl")
    train = [r for r in records if r["type"] == "train"]
    assert [r["step"] for r in train] == [s + 1 for s, _ in ckpt["losses"]]
    assert [r["loss"] for r in train] == [v for _, v in ckpt["losses"]]
    assert records[-1] == {"type": "eval", "step": 150, "bpb": ckpt["heldout_bpb"]}
    assert (entropy_dir / "metrics.png").read_bytes()[:4] == b"\x89PNG"


def test_the_entropy_model_learned_the_known_structure(entropy_dir, synth_windows):
    model = load_entropy_model(entropy_dir)
    ent = window_entropies(model, synth_windows)[:, 8:-1]  # skip each window's context-free start
    nxt = synth_windows[:, 9:]  # the byte each entropy predicts
    digits = (nxt >= ord("0")) & (nxt <= ord("9"))
    # predicting a random digit is uncertain; predicting the inside of a phrase is not
    assert ent[digits].mean() > ent[~digits].mean() + 0.8


# ---------------------------------------------------------------------------- calibration
@pytest.mark.parametrize(("rule", "target"), [("global", 3.0), ("global", 4.5), ("relative", 4.5)])
def test_calibration_hits_the_target_within_5_percent(entropy_dir, synth_windows, rule, target):
    model = load_entropy_model(entropy_dir)
    ent = window_entropies(model, synth_windows)
    cal = calibrate_threshold(synth_windows, ent, target, rule, max_patch_size=16)
    assert cal.within, cal
    # the threshold really gives that size through the model's own patcher
    from coconutblt.model.patching import patch_starts

    starts = patch_starts(synth_windows, "entropy", 16, ent, cal.threshold, rule, cal.threshold)
    assert abs(starts.numel() / int(starts.sum()) - target) / target <= 0.05


def test_calibrate_writes_the_config_keeping_other_keys(entropy_dir, text_file, tmp_path):
    src = tmp_path / "in.yaml"
    src.write_text(
        "model:\n  d_model: 32\n  n_heads: 2\n  d_local: 32\n  local_heads: 2\n  max_patch_size: 12\n"
        "data:\n  kind: text\n  seq_len: 64\ntraining:\n  lr: 0.002\n  batch_size: 4\n"
    )
    out = tmp_path / "out.yaml"
    rc = main(
        [
            "patch",
            "calibrate",
            "--entropy-model",
            str(entropy_dir),
            "--data",
            str(text_file),
            "--target-bytes-per-patch",
            "4",
            "--config",
            str(src),
            "--out-config",
            str(out),
        ]
    )
    assert rc == 0
    tree = yaml.safe_load(out.read_text())
    assert (
        tree["model"]["d_model"] == 32
        and tree["training"]["lr"] == 0.002
        and tree["data"]["kind"] == "text"
    )
    assert tree["model"]["patcher"] == "entropy" and tree["model"]["max_patch_size"] == 12
    assert isinstance(tree["model"]["entropy_patcher"]["threshold"], float)
    assert tree["training"]["entropy_model"].endswith("entropy.pt")
    # the written config builds a hybrid model that takes the entropy model as is
    from coconutblt.train.config import load_run_config

    cfg = load_run_config(str(out))
    model = HybridTransformer(cfg.model)
    install_entropy_model(model, cfg.training.entropy_model)


# ---------------------------------------------------------------------------- patch stats
def test_patch_stats_writes_the_png_and_table(entropy_dir, text_file, tmp_path, capsys):
    rc = main(
        [
            "patch",
            "stats",
            "--data",
            str(text_file),
            "--entropy-model",
            str(entropy_dir),
            "--out",
            str(tmp_path / "s"),
        ]
    )
    assert rc == 0
    png = (tmp_path / "s" / "passage.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert (tmp_path / "s" / "histogram.png").is_file()
    out = capsys.readouterr().out
    assert "| fixed (4)" in out and "| space" in out and "| entropy (global" in out
    rc = main(
        [
            "patch",
            "stats",
            "--data",
            str(text_file),
            "--patcher",
            "space",
            "--out",
            str(tmp_path / "t"),
        ]
    )
    assert rc == 0 and (tmp_path / "t" / "passage.png").is_file()


# ---------------------------------------------------------------------------- CLI errors
@pytest.mark.parametrize(
    "argv",
    [
        ["patch", "calibrate", "--entropy-model", "/nonexistent/dir"],
        ["patch", "stats", "--patcher", "entropy"],
        ["patch", "stats", "--data", "/nonexistent/file.txt"],
        [
            "entropy",
            "train",
            "--out",
            "{tmp}/e",
            "--data",
            "{text}",
            "--d-model",
            "30",
            "--n-heads",
            "4",
        ],
        [
            "patch",
            "calibrate",
            "--entropy-model",
            "{ent}",
            "--data",
            "{text}",
            "--target-bytes-per-patch",
            "40",
        ],
        ["patch", "calibrate", "--entropy-model", "{text}", "--data", "{text}"],
    ],
)
def test_cli_mistakes_exit_2_with_one_line(argv, entropy_dir, text_file, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, text=text_file, ent=entropy_dir) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("coconutblt ") and "error:" in err and len(err.splitlines()) == 1, err


# ---------------------------------------------------------------------------- curriculum
def test_curriculum_probability_schedule():
    assert entropy_probability(0, 100) == 0.0 and entropy_probability(49, 100) == 0.0
    assert 0.0 < entropy_probability(60, 100) < entropy_probability(80, 100) < 1.0
    assert entropy_probability(99, 100) == 1.0 and entropy_probability(500, 100) == 1.0


def test_curriculum_moves_from_fixed_to_entropy_patches(entropy_dir, synth_windows):
    emodel = load_entropy_model(entropy_dir)
    cfg = tiny_config(
        patcher="entropy",
        patch_size=4,
        max_patch_size=8,
        entropy_patcher=dict(threshold=1.0, model=vars(emodel.cfg)),
    )
    model = HybridTransformer(cfg).eval()
    install_entropy_model(model, entropy_dir)
    ids = synth_windows[:16]
    from coconutblt.model.patching import patch_starts

    fixed = patch_starts(ids, "fixed", 4)
    by_entropy = model.boundaries(ids, emodel.entropies(ids))
    assert torch.equal(curriculum_patch_starts(model, ids, None, 10, 100), fixed)
    assert curriculum_patch_starts(model, ids, None, 100, 100) is None
    mid = curriculum_patch_starts(model, ids, None, 75, 100)
    rows = [
        ("fixed" if torch.equal(m, f) else "entropy" if torch.equal(m, e) else "?")
        for m, f, e in zip(mid, fixed, by_entropy, strict=True)
    ]
    assert "?" not in rows and "fixed" in rows and "entropy" in rows
    assert torch.equal(
        mid, curriculum_patch_starts(model, ids, None, 75, 100)
    )  # same step, same coins
    out = model(ids, ids, patch_starts_override=mid)  # the model takes them
    assert torch.isfinite(out.loss)
