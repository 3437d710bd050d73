"""Bits-per-byte against a hand computation, patch statistics, and `coconutblt eval-bpb`."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from coconutblt.checkpoint import model_checkpoint
from coconutblt.cli import main
from coconutblt.inference.evaluate_bpb import bits_per_byte
from coconutblt.model import HybridTransformer
from coconutblt.runtime.files import save_torch
from tests.conftest import tiny_config

TEXT = (
    b"It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.\n"
    * 3
)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build(**overrides) -> HybridTransformer:
    torch.manual_seed(0)
    return HybridTransformer(tiny_config(init_std=0.2, **overrides))


def data() -> torch.Tensor:
    return torch.frombuffer(bytearray(TEXT), dtype=torch.uint8)


def test_bpb_matches_hand_computation():
    model = build(patcher="space")
    d, S = data(), 50
    res = bits_per_byte(model, d, seq_len=S, batch_size=3)
    nats, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(d), S):
            w = d[start : start + S].long()[None]
            if w.shape[1] < 2:
                continue
            logits = model(w).logits[0, :-1]
            nats += float(F.cross_entropy(logits, w[0, 1:], reduction="sum"))
            count += w.shape[1] - 1
    assert res.n_predicted == count
    assert res.n_windows == math.ceil(len(d) / S)
    assert res.bpb == pytest.approx(nats / math.log(2) / count, rel=1e-5)


def test_untrained_model_is_near_uniform():
    torch.manual_seed(0)
    model = HybridTransformer(tiny_config())  # init_std 0.02: almost uniform over 263 ids
    res = bits_per_byte(model, data(), seq_len=64)
    assert res.bpb == pytest.approx(math.log2(263), abs=0.05)


def test_patch_statistics_fixed_patches():
    model = build(patcher="fixed", patch_size=3)
    d = data()[:120]
    res = bits_per_byte(model, d, seq_len=12, batch_size=4)
    assert res.patch_hist == [0, 0, 0, 40]
    assert res.bytes_per_patch == 3.0 and res.n_patches == 40 and res.n_bytes == 120


def test_max_batches_seq_len_clip_and_mode_restored():
    model = build(max_seq_len=32)
    model.train()
    res = bits_per_byte(model, data(), seq_len=1000, batch_size=2, max_batches=2)
    assert res.n_windows == 4 and res.n_bytes == 4 * 32  # seq_len clipped to max_seq_len
    assert model.training
    with pytest.raises(Exception, match="at least 2"):
        bits_per_byte(model, data()[:1])


def test_cli_eval_bpb(tmp_path, capsys):
    ckpt = tmp_path / "run" / "final.pt"
    save_torch(model_checkpoint(build(patcher="space")), ckpt)
    text = tmp_path / "a.txt"
    text.write_bytes(TEXT)
    plot = tmp_path / "hist.png"
    args = ["eval-bpb", "--ckpt", str(ckpt), str(text), "--seq-len", "64", "--plot", str(plot)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "bits per byte:" in out and "bytes per patch:" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["eval-bpb", "--ckpt", str(ckpt), str(text), "--seq-len", "64"]) == 0
    assert (ckpt.parent / "patch_sizes.png").is_file()  # default: beside the checkpoint
    capsys.readouterr()
    assert main(["eval-bpb", "--ckpt", str(ckpt), str(tmp_path / "missing.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.txt" in err
    assert main(["eval-bpb", "--ckpt", str(tmp_path / "no.pt"), str(text)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
