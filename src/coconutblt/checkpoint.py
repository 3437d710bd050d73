"""Checkpoints: one file, written atomically (`runtime.files.save_torch`), loaded with
`weights_only=True`; read, checked and built into a model here, below training, generation
and export, which all read them.

A checkpoint is a dict of plain containers and tensors: `format`, `version`, `kind`
("hybrid"), `model_config` (dict), `model` (state dict) and, for training checkpoints,
`train_state` (optimizer, scheduler, step, stage, data position, RNG states, config).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from coconutblt.errors import UserError
from coconutblt.model.config import EntropyModelConfig
from coconutblt.model.entropy import EntropyModel
from coconutblt.vocab import VOCAB_SIZE

FORMAT = "coconutblt"
VERSION = 1
ENTROPY_CHECKPOINT_NAME = "entropy.pt"  # what `entropy train --out DIR` writes in DIR


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


def entropy_checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file, or a folder holding `entropy.pt`."""
    path = Path(path)
    if path.is_dir():
        if not (path / ENTROPY_CHECKPOINT_NAME).is_file():
            raise UserError(
                f"{path}: folder holds no {ENTROPY_CHECKPOINT_NAME}; train one with `coconutblt entropy train --out {path}`"
            )
        return path / ENTROPY_CHECKPOINT_NAME
    return path


def read_entropy_checkpoint(path: str | Path) -> dict:
    ckpt = read_checkpoint(entropy_checkpoint_path(path))
    if ckpt.get("kind") != "entropy":
        raise UserError(
            f"{path}: checkpoint holds a '{ckpt.get('kind')}' model, not an entropy model; pass `entropy train --out` DIR"
        )
    return ckpt


def load_entropy_model(path: str | Path, device: str | torch.device = "cpu") -> EntropyModel:
    """`DIR` (holding entropy.pt) or the .pt file -> frozen `EntropyModel` in eval mode.

    The returned model carries `train_seq_len` (the window length it was trained on) and
    `heldout_bpb` from its checkpoint.
    """
    ckpt = read_entropy_checkpoint(path)
    try:
        cfg = EntropyModelConfig(**ckpt["entropy_config"])
    except TypeError as exc:
        raise UserError(f"{path}: entropy_config does not fit this coconutblt ({exc})") from None
    model = EntropyModel(cfg, VOCAB_SIZE)
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise UserError(
            f"{path}: weights do not fit the entropy config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.train_seq_len = int(ckpt.get("seq_len", 0))
    model.heldout_bpb = float(ckpt.get("heldout_bpb", float("nan")))
    model.requires_grad_(False)
    return model.to(device).eval()


def install_entropy_model(hybrid, path: str | Path) -> None:
    """Load a trained entropy model into `HybridTransformer.entropy_model` (patcher=entropy).

    The hybrid's `entropy_patcher.model` config must match the checkpoint's (`patch calibrate
    --out-config` writes it); a mismatch is a one-line `UserError`.
    """
    if getattr(hybrid, "entropy_model", None) is None:
        raise UserError(
            "the model has no entropy model to load: set model.patcher=entropy and entropy_patcher.estimator=model"
        )
    loaded = load_entropy_model(path)
    want, have = dataclasses.asdict(loaded.cfg), dataclasses.asdict(hybrid.entropy_model.cfg)
    if want != have:
        diff = {k: (have[k], want[k]) for k in want if want[k] != have.get(k)}
        raise UserError(
            f"{path}: entropy model config {diff} (config, checkpoint) differs from model.entropy_patcher.model; "
            "copy the checkpoint's entropy_config into the config (`coconutblt patch calibrate --out-config` does)"
        )
    dev = next(hybrid.entropy_model.parameters()).device
    hybrid.entropy_model.load_state_dict(loaded.state_dict())
    hybrid.entropy_model.to(dev).eval().requires_grad_(False)
