"""The shared runtime: one device rule, one atomic writer."""

from __future__ import annotations

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
