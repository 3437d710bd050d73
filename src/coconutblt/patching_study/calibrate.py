"""Find the entropy threshold that gives a target mean patch size, and write it into a config.

Entropies are computed once (`window_entropies`); the mean patch size is then a monotone step
function of the threshold (a higher threshold forces fewer starts), so bisection over the
threshold finds it. Boundaries are computed by `model.patching.patch_starts` itself, so the
size measured here is the size the model will see on windows of the same length.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from coconutblt.config_tree import dump_yaml
from coconutblt.errors import UserError
from coconutblt.model.patching import patch_starts
from coconutblt.runtime.files import atomic_write


@dataclass
class Calibration:
    rule: str  # "global" (threshold) or "relative" (relative_threshold)
    threshold: float
    target: float  # bytes per patch wanted
    achieved: float  # bytes per patch at `threshold`
    max_patch_size: int
    n_bytes: int
    iterations: int

    @property
    def rel_error(self) -> float:
        return abs(self.achieved - self.target) / self.target

    @property
    def within(self) -> bool:
        """Within 5% of the target."""
        return self.rel_error <= 0.05


def starts_at(
    ids: torch.Tensor, entropies: torch.Tensor, threshold: float, rule: str, cap: int
) -> torch.Tensor:
    """Entropy-patcher boundaries for one threshold value of `rule`."""
    return patch_starts(
        ids, "entropy", cap, entropies, threshold=threshold, rule=rule, relative_threshold=threshold
    )


def mean_patch_size(starts: torch.Tensor) -> float:
    return starts.numel() / max(int(starts.sum()), 1)


def calibrate_threshold(
    ids: torch.Tensor,
    entropies: torch.Tensor,
    target: float,
    rule: str = "global",
    max_patch_size: int = 16,
    iterations: int = 60,
    tol: float = 0.002,
) -> Calibration:
    """Bisection over the threshold so that the mean bytes per patch on `ids` is closest to `target`.

    ids, entropies (W, T): windows and their entropies (`window_entropies`). Returns the best
    threshold seen (its `achieved` size may miss the target when the size jumps over it, e.g.
    on tiny data; `Calibration.within` says whether it is within 5%).
    """
    if rule not in ("global", "relative"):
        raise UserError(f"--rule {rule!r}: use global or relative")
    if max_patch_size < 1:
        raise UserError("--max-patch-size must be >= 1")
    if ids.numel() == 0:
        raise UserError("no text to calibrate on; pass --data with at least one window of text")
    if rule == "global":
        values = entropies[:, :-1]
    else:
        values = torch.cat([entropies[:, :1], entropies[:, 1:-1] - entropies[:, :-2]], dim=1)
    lo, hi = float(values.min()) - 1.0, float(values.max()) + 1.0
    smallest = mean_patch_size(starts_at(ids, entropies, lo, rule, max_patch_size))
    largest = mean_patch_size(starts_at(ids, entropies, hi, rule, max_patch_size))
    if not smallest * 0.95 <= target <= largest * 1.05:
        raise UserError(
            f"--target-bytes-per-patch {target:g} is out of reach: on this text with --max-patch-size "
            f"{max_patch_size} the mean patch size ranges over [{smallest:.2f}, {largest:.2f}]"
        )
    best = (abs(largest - target), hi, largest)
    n = 0
    for n in range(1, iterations + 1):  # noqa: B007 - n is reported
        mid = (lo + hi) / 2
        size = mean_patch_size(starts_at(ids, entropies, mid, rule, max_patch_size))
        if abs(size - target) < best[0]:
            best = (abs(size - target), mid, size)
        if abs(size - target) / target <= tol:
            break
        if size < target:
            lo = mid  # too many starts: raise the threshold
        else:
            hi = mid
    _, threshold, achieved = best
    return Calibration(rule, threshold, target, achieved, max_patch_size, ids.numel(), n)


def _set(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def calibrated_config(
    base: dict[str, Any], cal: Calibration, entropy_model_path: str, entropy_config: dict[str, Any]
) -> dict[str, Any]:
    """A copy of config tree `base` with the entropy patcher set from `cal`; other keys kept as they are."""
    tree = copy.deepcopy(base)
    _set(tree, "model.patcher", "entropy")
    _set(tree, "model.max_patch_size", int(cal.max_patch_size))
    _set(tree, "model.entropy_patcher.estimator", "model")
    _set(tree, "model.entropy_patcher.rule", cal.rule)
    key = "threshold" if cal.rule == "global" else "relative_threshold"
    _set(tree, f"model.entropy_patcher.{key}", round(float(cal.threshold), 6))
    for k, v in entropy_config.items():  # the hybrid must build the same entropy model
        _set(tree, f"model.entropy_patcher.model.{k}", v)
    _set(tree, "training.entropy_model", str(entropy_model_path))
    return tree


def write_config(tree: dict[str, Any], path: str | Path) -> None:
    """Validate `tree` as a run config, then write it as YAML (key order kept)."""
    from coconutblt.train.config import run_config_from_dict

    run_config_from_dict(tree, source=str(path))  # raises UserError naming a bad key
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, dump_yaml(tree))
