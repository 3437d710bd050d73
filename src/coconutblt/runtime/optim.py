"""AdamW with decoupled weight decay on matrices only, and a warmup + cosine schedule: the
optimizer of every trainer here (the hybrid model's and the entropy model's)."""

from __future__ import annotations

import math

import torch


def build_adamw(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
) -> torch.optim.AdamW:
    """Matrices and embeddings decay; norms, gates, biases and single vectors do not. Fused
    kernels when every parameter is on CUDA."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = all(p.is_cuda for p in decay + no_decay) and bool(decay + no_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def warmup_cosine(
    step: int, total_steps: int, lr: float, warmup_steps: int, min_lr_ratio: float
) -> float:
    """Linear warmup over `warmup_steps`, then cosine decay to `min_lr_ratio * lr` at the end."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    floor = lr * min_lr_ratio
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
