"""`coconutblt hf ...`: Coconut on Hugging Face causal LMs (see coconutblt/hf/commands.py)."""

from coconutblt.hf.commands import add_hf_parser as register

__all__ = ["register"]
