"""The shared runtime: one device rule, one atomic writer."""

from __future__ import annotations

import itertools
import os
import stat

import pytest
import torch

from coconutblt.errors import UserError
from coconutblt.runtime.device import pick_device
from coconutblt.runtime.files import atomic_write, save_figure, save_torch


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    import coconutblt.runtime.device as device

    for cuda, mps, want in [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda c=cuda: c)
        monkeypatch.setattr(device, "mps_available", lambda m=mps: m)
        assert pick_device("auto").type == want


def test_bad_or_missing_devices_name_the_key(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"^training\.device 'gpu0' is not a device"):
        pick_device("gpu0", "training.device")
    with pytest.raises(UserError, match=r"^--device cuda:1: no CUDA device"):
        pick_device("cuda:1")
    import coconutblt.runtime.device as device

    monkeypatch.setattr(device, "mps_available", lambda: False)
    with pytest.raises(UserError, match="MPS is not available"):
        pick_device("mps")
    assert pick_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_files_get_the_permissions_the_umask_gives(tmp_path, umask):
    """A bare mkstemp leaves 0600: a checkpoint nobody else on the team can read."""
    old = os.umask(umask)
    try:
        paths = [
            atomic_write(tmp_path / "a.txt", "text"),
            atomic_write(tmp_path / "b.bin", b"\x00\x01"),
            save_torch({"x": torch.ones(2)}, tmp_path / "c.pt"),
        ]
    finally:
        os.umask(old)
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    assert (tmp_path / "a.txt").read_text() == "text"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert torch.load(tmp_path / "c.pt")["x"].sum() == 2


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = atomic_write(tmp_path / "r.md", "old")

    def fail(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(UserError, match="previous file is left as it was"):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.md"]
    with pytest.raises(UserError, match="nothing saved"):
        atomic_write(tmp_path / "new.md", fail)


def test_figures_are_written_as_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "f.png")
    plt.close(fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_schedule_warms_up_linearly_then_decays_to_the_floor():
    from coconutblt.runtime.optim import warmup_cosine

    lrs = [warmup_cosine(s, 110, 1.0, 10, 0.1) for s in range(111)]
    assert lrs[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert lrs[10] == pytest.approx(1.0) and lrs[110] == pytest.approx(0.1)
    assert lrs[60] == pytest.approx(0.55)  # half way through the decay: the mean of peak and floor
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert warmup_cosine(5, 10, 2.0, 0, 0.0) == pytest.approx(1.0)  # no warmup


def test_only_matrices_decay():
    from coconutblt.runtime.optim import build_adamw

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    decay, no_decay = build_adamw(model, 1e-3, 0.1).param_groups
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert len(no_decay["params"]) == 3  # linear bias, norm weight and bias


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_folders_get_the_umask_permissions_and_survive_a_failed_write(tmp_path, umask):
    from coconutblt.runtime.files import atomic_write_dir

    old = os.umask(umask)
    try:
        out = atomic_write_dir(tmp_path / "ckpt", lambda d: (d / "a.txt").write_text("one"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask  # a bare mkdtemp gives 0700

    def fail(folder):
        (folder / "a.txt").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write_dir(out, fail)
    assert (out / "a.txt").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp folder left behind
