"""Coconut on Hugging Face causal LMs (GPT-2, Llama, ...): the library under `coconutblt hf`.

    coconut_lm.py     the model wrapper: tokens, thought passes, generation, save/load
    batching.py       token ids, labels and thought-aligned batches
    data.py           example files, and an example's text at one curriculum stage
    tokens_report.py  what adding the Coconut tokens changes (`hf tokens`)
    train.py          one curriculum stage: one process, FSDP2 or DDP (`hf train`)
    lora.py           LoRA adapters through PEFT: attach, save, load, merge (`hf merge-lora`)
    memory.py         the memory plan of a config: full fine-tuning vs LoRA (`hf train --plan`)
    evaluate.py       accuracy, tokens and time of checkpoints side by side (`hf eval`)
    tiny.py           tiny random base models for smoke runs and tests (`hf tiny-base`)

The command line (argparse) is `coconutblt.commands.hf`; nothing here imports it.

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
    "tokens_report": "coconutblt.hf.tokens_report",
    "train_stage": "coconutblt.hf.train",
    "plan_stage": "coconutblt.hf.train",
    "LoraSettings": "coconutblt.hf.lora",
    "merge_checkpoint": "coconutblt.hf.lora",
    "plan_for_config": "coconutblt.hf.memory",
    "evaluate_model": "coconutblt.hf.evaluate",
    "evaluate_checkpoints": "coconutblt.hf.evaluate",
    "build_tiny_base": "coconutblt.hf.tiny",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
