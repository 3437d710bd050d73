"""The patching study: train the entropy model, calibrate its threshold, measure patches.

- `train_entropy_model(EntropyTrainConfig, out_dir)` -> `DIR/entropy.pt`; `load_entropy_model(path)`
- `window_entropies` (entropies of byte windows, batched)
- `calibrate_threshold(ids, entropies, target, rule, max_patch_size)` -> `Calibration`
- `compare_patchers`, `stats_from_starts` -> `PatchStats`; `plot_passage`, `plot_histograms`
"""

from coconutblt.checkpoint import (
    install_entropy_model,
    load_entropy_model,
    read_entropy_checkpoint,
)
from coconutblt.patching_study.calibrate import (
    Calibration,
    calibrate_threshold,
    calibrated_config,
    write_config,
)
from coconutblt.patching_study.entropies import (
    window_entropies,
    windows_of,
)
from coconutblt.patching_study.entropy_train import (
    EntropyTrainConfig,
    EntropyTrainResult,
    heldout_bpb,
    train_entropy_model,
)
from coconutblt.patching_study.plots import plot_curves, plot_histograms, plot_passage
from coconutblt.patching_study.stats import (
    PatchStats,
    compare_patchers,
    comparison_table,
    stats_from_starts,
)

__all__ = [
    "Calibration",
    "EntropyTrainConfig",
    "EntropyTrainResult",
    "PatchStats",
    "calibrate_threshold",
    "calibrated_config",
    "compare_patchers",
    "comparison_table",
    "heldout_bpb",
    "install_entropy_model",
    "load_entropy_model",
    "plot_curves",
    "plot_histograms",
    "plot_passage",
    "read_entropy_checkpoint",
    "stats_from_starts",
    "train_entropy_model",
    "window_entropies",
    "write_config",
    "windows_of",
]
