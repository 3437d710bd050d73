"""The hybrid byte model: torch only, no I/O."""

from coconutblt.model.config import EntropyModelConfig, EntropyPatcherConfig, ModelConfig
from coconutblt.model.entropy import EntropyModel
from coconutblt.model.hybrid import HybridOutput, HybridTransformer

__all__ = [
    "EntropyModel",
    "EntropyModelConfig",
    "EntropyPatcherConfig",
    "HybridOutput",
    "HybridTransformer",
    "ModelConfig",
]
