"""Which device a run uses: one rule for every trainer and command."""

from __future__ import annotations

import torch

from coconutblt.errors import UserError


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(name: str, key: str = "--device") -> torch.device:
    """'auto' -> cuda, else Apple's mps, else cpu; anything else must name a usable device.

    `key` is how the user spelled the choice (`--device`, `training.device`), so the error
    names it.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(
            f"{key} {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{key} {name}: no CUDA device is visible here; use cpu or auto")
    if device.type == "mps" and not mps_available():
        raise UserError(f"{key} {name}: Apple's MPS is not available here; use cpu or auto")
    return device
