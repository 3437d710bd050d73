"""Coconut on Hugging Face causal LMs (GPT-2, Llama, ...).

Names resolve lazily so that `import coconutblt.hf` (and the rest of the package) works without
transformers installed; the import happens on first use of a name.
"""

_EXPORTS = {
    "CoconutForCausalLM": "coconutblt.hf.coconut_lm",
    "CoconutOutput": "coconutblt.hf.coconut_lm",
    "GenerateOutput": "coconutblt.hf.coconut_lm",
    "LatentTokenIds": "coconutblt.hf.coconut_lm",
    "LATENT_TOKENS": "coconutblt.hf.coconut_lm",
    "add_special_tokens": "coconutblt.hf.coconut_lm",
    "load_pretrained": "coconutblt.hf.coconut_lm",
    "add_hf_parser": "coconutblt.hf.commands",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
