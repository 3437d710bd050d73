"""`LatentTransformer`: the large decoder-only stack over patch vectors.

Optionally, every `latent_module_every` layers, a `ContinuousLatentModule`: a bank of
`c_thought` learned vectors that each patch position writes to (the slots attend causally over
the prefix) and reads from (the position attends over its written slots), added through a
learned gate that starts closed, so the module begins as the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from coconutblt.model.config import ModelConfig
from coconutblt.model.layers import Block, KVCache, causal_mask, rope_tables


class ContinuousLatentModule(nn.Module):
    def __init__(self, dim: int, c_thought: int, inner: int, n_heads: int, eps: float) -> None:
        super().__init__()
        self.c, self.inner = c_thought, inner
        self.n_heads = max(1, min(n_heads, inner // 8))
        while inner % self.n_heads:
            self.n_heads -= 1
        self.bank = nn.Parameter(torch.zeros(c_thought, inner))
        self.norm = nn.RMSNorm(dim, eps=eps)
        self.write_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.read_q = nn.Linear(dim, inner, bias=False)
        self.out = nn.Linear(inner, dim, bias=False)
        self.gate = nn.Parameter(torch.zeros(dim))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None
    ) -> torch.Tensor:
        """x (B, T, D); mask (B, 1, T, S) bool over the cached+new positions, or None = causal."""
        B, T, _ = x.shape
        H, c = self.n_heads, self.c
        hd = self.inner // H
        xn = self.norm(x)
        k, v = self.write_kv(xn).view(B, T, 2, H, hd).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, hd)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.append(k, v)  # (B, H, S, hd)
        S = k.shape[2]
        m_w = None  # one new position after cached ones sees every key: no mask
        if mask is None and not (T == 1 and cache is not None):
            idx = torch.arange(S, device=x.device).expand(B, -1)
            mask = causal_mask(idx[:, past:], idx)  # (B, 1, T, S)
        if mask is not None:
            m_w = mask.repeat_interleave(c, dim=2)  # (B, 1, T*c, S)
        # write: every slot of every position attends over that position's prefix
        q_w = self.bank.view(c, H, hd).transpose(0, 1)  # (H, c, hd)
        q_w = q_w[None, :, None].expand(B, H, T, c, hd).reshape(B, H, T * c, hd)
        written = F.scaled_dot_product_attention(q_w.to(k.dtype), k, v, attn_mask=m_w)
        slots = written.view(B, H, T, c, hd) + q_w.view(B, H, T, c, hd)  # (B, H, T, c, hd)
        # read: each position attends over its own c written slots
        q_r = self.read_q(xn).view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        attn = (torch.einsum("bhtd,bhtcd->bhtc", q_r, slots) / hd**0.5).softmax(-1)
        read = torch.einsum("bhtc,bhtcd->bhtd", attn, slots).transpose(1, 2).reshape(B, T, -1)
        return x + torch.tanh(self.gate) * self.out(read)


class LatentTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(
            Block(
                cfg.d_model,
                cfg.n_heads,
                cfg.mlp_ratio,
                cfg.mlp_type,
                0,
                cfg.norm_eps,
                cfg.latent_attention_sink,
            )
            for _ in range(cfg.n_layers)
        )
        every = cfg.latent_module_every
        self.module_after = [i for i in range(cfg.n_layers) if every > 0 and (i + 1) % every == 0]
        self.latent_modules = nn.ModuleList(
            ContinuousLatentModule(
                cfg.d_model, cfg.c_thought, cfg.module_dim, cfg.n_heads, cfg.norm_eps
            )
            for _ in self.module_after
        )
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)

    def new_caches(self) -> list[KVCache]:
        """One cache per block, then one per continuous-latent module."""
        return [KVCache() for _ in range(len(self.blocks) + len(self.latent_modules))]

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
    ) -> torch.Tensor:
        """x (B, T, D) patch vectors -> (B, T, D) normalised final states."""
        # under autocast the patch vectors come out of a bf16 projection: the residual stream is
        # kept in the parameters' dtype (fp32 under autocast, bf16 under FSDP's mixed precision),
        # as it is in a transformer fed by an embedding table; in bf16 it would round every
        # block's update away and the norms would miss their fused kernel (seen on an H200)
        x = x.to(self.norm.weight.dtype)
        n = len(self.blocks)
        m = 0
        rope = rope_tables(positions, self.cfg.d_model // self.cfg.n_heads, self.cfg.rope_theta)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, mask, caches[i] if caches else None)
            if m < len(self.module_after) and self.module_after[m] == i:
                x = self.latent_modules[m](x, mask, caches[n + m] if caches else None)
                m += 1
        return self.norm(x)
