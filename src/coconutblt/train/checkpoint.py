"""Checkpoints: one file, written atomically, loaded with `weights_only=True`.

A checkpoint is a dict of plain containers and tensors: `format`, `version`, `kind`
("hybrid"), `model_config` (dict), `model` (state dict) and, for training checkpoints,
`train_state` (optimizer, scheduler, step, stage, data position, RNG states, config).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from coconutblt.errors import UserError

FORMAT = "coconutblt"
VERSION = 1


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename over `path`.

    A crash mid-write leaves the previous file intact; a failed write (disk full, no
    permission) is a `UserError` that says so.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # no space, no permission, a folder gone: the user's to fix
            before = "the previous file is left as it was" if path.is_file() else "nothing saved"
            raise UserError(
                f"{path}: could not save ({exc.strerror or exc}); {before}; free disk space or "
                "check the folder's permissions"
            ) from None
        raise


def model_checkpoint(
    model, kind: str = "hybrid", extra: dict | None = None, state: dict | None = None
) -> dict:
    """The part of a checkpoint that `load_model` needs. `state`: an already gathered state dict
    (an FSDP-sharded model's own `state_dict()` holds shards)."""
    if state is None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    out = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "model_config": model.config.to_dict(),
        "model": state,
    }
    out.update(extra or {})
    return out


def read_checkpoint(path: str | Path) -> dict:
    """Load and check a coconutblt checkpoint file; every problem is a one-line `UserError`."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt", "final.pt", "model.pt"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise UserError(
                f"{path}: folder holds no best.pt/last.pt/final.pt; pass the checkpoint file"
            )
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found; pass the .pt file a training run wrote")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user mistake
        raise UserError(
            f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}); pass a coconutblt .pt file"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(
            f"{path}: not a coconutblt checkpoint (another architecture?); train one with `coconutblt train`"
        )
    if ckpt.get("version", 0) > VERSION:
        raise UserError(
            f"{path}: checkpoint version {ckpt['version']} is newer than this coconutblt; upgrade it"
        )
    return ckpt


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Checkpoint file (or run folder) -> HybridTransformer in eval mode."""
    return model_from_checkpoint(read_checkpoint(path), path, device)


def model_from_checkpoint(ckpt: dict, path: str | Path, device: str | torch.device = "cpu"):
    """A checkpoint already read by `read_checkpoint` (from `path`, named in errors) ->
    HybridTransformer in eval mode: for callers that also need the checkpoint's other keys."""
    from coconutblt.model import HybridTransformer, ModelConfig

    if ckpt.get("kind") != "hybrid":
        raise UserError(
            f"{path}: checkpoint holds a '{ckpt.get('kind')}' model, not the hybrid byte model"
        )
    cfg = ModelConfig.from_dict(ckpt["model_config"], source=f"{path} (model_config)")
    model = HybridTransformer(cfg)
    try:
        missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    except RuntimeError as exc:  # a tensor of another shape than the config says
        raise UserError(
            f"{path}: weights do not fit the checkpoint's model config "
            f"({str(exc).splitlines()[-1].strip()[:160]}); the file is damaged or edited"
        ) from None
    if missing or unexpected:
        raise UserError(
            f"{path}: weights do not fit the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.to(device).eval()
