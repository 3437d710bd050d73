"""`EntropyModel`: the small causal byte LM whose next-byte entropy decides patch boundaries.

Trained on its own (`coconutblt entropy train`), then frozen inside `HybridTransformer`. It
runs the same way in training and in generation (same window, same positions), so a byte
gets the same entropy whether the whole sequence or one new byte is fed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coconutblt.model.config import EntropyModelConfig
from coconutblt.model.layers import Block, KVCache, init_weights, rope_tables
from coconutblt.model.patching import entropy_from_logits

ROPE_THETA = 10000.0  # the entropy model's RoPE base (its config has no field for it)


class EntropyModel(nn.Module):
    def __init__(self, cfg: EntropyModelConfig, vocab_size: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(
            Block(cfg.d_model, cfg.n_heads, cfg.mlp_ratio, "swiglu", window=cfg.window)
            for _ in range(cfg.n_layers)
        )
        self.norm = nn.RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, vocab_size, bias=False)
        init_weights(self, init_std)

    def forward(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
    ) -> torch.Tensor:
        """ids (B, T) -> next-byte logits (B, T, V). Decoding passes `caches` (and, for rows of
        different lengths, their `positions` and `mask`)."""
        B, T = ids.shape
        if positions is None:
            start = caches[0].length if caches else 0
            positions = torch.arange(start, start + T, device=ids.device).expand(B, T)
        x = self.embed(ids)
        rope = rope_tables(positions, self.cfg.d_model // self.cfg.n_heads, ROPE_THETA)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, mask, caches[i] if caches else None)
        return self.head(self.norm(x))

    def entropies(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
    ) -> torch.Tensor:
        """ids (B, T) -> (B, T) entropy in nats of the prediction of the next byte."""
        return entropy_from_logits(self(ids, positions, mask, caches))

    def loss(self, ids: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
        """Mean next-byte cross-entropy (nats) over a batch of byte windows (B, T)."""
        logits = self(ids[:, :-1])
        return F.cross_entropy(
            logits.flatten(0, 1).float(), ids[:, 1:].flatten(), ignore_index=ignore_index
        )

    def new_caches(self) -> list[KVCache]:
        return [KVCache() for _ in self.blocks]
