"""coconutblt: byte-level language models that reason in a continuous latent space."""

from coconutblt.model import EntropyModel, HybridTransformer, ModelConfig

__all__ = ["Coconut", "EntropyModel", "HybridTransformer", "ModelConfig"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Coconut":  # the lucidrains-style facade, built on the same model
        from coconutblt.facade import Coconut

        return Coconut
    raise AttributeError(name)
