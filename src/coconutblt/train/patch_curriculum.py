"""Patch-size curriculum: fixed patches first, entropy patches by the end.

The rule (`training.patch_curriculum_steps = N > 0`, `hold_fraction = h`):

- p(step), the probability that a sequence is patched by entropy, is 0 for step < h*N, rises
  linearly to 1 at step N, and stays 1 after;
- each sequence of a batch draws its own coin from a generator seeded by (seed, step), so a
  batch mixes the two kinds of patching and a resumed run draws the same coins;
- a sequence that is not entropy-patched gets fixed patches of `model.config.patch_size` bytes
  (capped by `max_patch_size`), which the latent transformer sees as the same kind of input,
  only with regular boundaries;
- from step N on the function returns None: the model's own patcher decides.

The early latent transformer thus learns on regular patches of the mean size it will later
see, and is moved over to entropy boundaries gradually instead of at once.
"""

from __future__ import annotations

import torch

from coconutblt.errors import UserError
from coconutblt.model.patching import patch_starts


def entropy_probability(step: int, total_steps: int, hold_fraction: float = 0.5) -> float:
    """Probability that a sequence is entropy-patched at `step` (0 during the hold, then linear to 1)."""
    if total_steps <= 0:
        return 1.0
    hold = hold_fraction * total_steps
    if step < hold:
        return 0.0
    return min(1.0, (step - hold + 1) / max(total_steps - hold, 1))


@torch.no_grad()
def model_entropies(model, ids: torch.Tensor) -> torch.Tensor:
    """(B, T) next-byte entropies as `HybridTransformer.forward` computes them (frozen model or
    learned head): `HybridTransformer.entropies` decides which."""
    h = None
    if model.estimator is not None:  # the learned head reads the byte states
        B, T = ids.shape
        h = model.encoder.byte_states(ids, torch.arange(T, device=ids.device).expand(B, T))
    ent, _ = model.entropies(ids, h)
    if ent is None:
        raise UserError("patch curriculum needs model.patcher=entropy")
    return ent


def curriculum_patch_starts(
    model,
    ids: torch.Tensor,
    entropies: torch.Tensor | None,
    step: int,
    total_steps: int,
    *,
    hold_fraction: float = 0.5,
    seed: int = 0,
) -> torch.Tensor | None:
    """Boundaries (B, T) bool for `HybridTransformer.forward(..., patch_starts_override=...)` at `step`.

    `entropies` (B, T) may be None: they are computed (without gradients) only when some
    sequence of the batch is entropy-patched. Returns None once the curriculum is over
    (step >= total_steps): pass it on as is and the model patches by entropy itself.
    """
    cfg = model.config
    if cfg.patcher != "entropy":
        raise UserError(
            f"training.patch_curriculum_steps > 0 needs model.patcher=entropy (got {cfg.patcher!r})"
        )
    if step >= total_steps:
        return None
    p = entropy_probability(step, total_steps, hold_fraction)
    B = ids.shape[0]
    size = min(cfg.patch_size, cfg.max_patch_size)
    fixed = patch_starts(ids, "fixed", size)
    if p <= 0.0:
        return fixed
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    use_entropy = (torch.rand(B, generator=gen) < p).to(ids.device)
    if not bool(use_entropy.any()):
        return fixed
    if entropies is None:
        entropies = model_entropies(model, ids)
    ep = cfg.entropy_patcher
    by_entropy = patch_starts(
        ids, "entropy", cfg.max_patch_size, entropies, ep.threshold, ep.rule, ep.relative_threshold
    )
    return torch.where(use_entropy[:, None], by_entropy, fixed)
