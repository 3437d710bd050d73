"""The byte-level halves of the model.

`LocalEncoder`: bytes -> byte states (causal, optionally windowed) -> one vector per patch.
`LocalDecoder`: byte states + the latent state of the previous completed patch -> byte states
ready for the byte head. Neither knows how boundaries were chosen; they read a `PatchLayout`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from coconutblt.model.config import ModelConfig
from coconutblt.model.layers import MLP, Attention, Block, KVCache, RopeTables, rope_tables
from coconutblt.model.patching import PatchLayout, patch_bytes
from coconutblt.vocab import PAD_ID

_HASH_BASE = 263


def ngram_hashes(
    ids: torch.Tensor, n: int, buckets: int, context: torch.Tensor | None = None
) -> torch.Tensor:
    """Hash of the n bytes ending at each position: ids (B, T) -> (B, T) in [0, buckets).

    `context` (B, >= n-1) holds the ids just before `ids` (for one-step decoding); missing
    history counts as id 0.
    """
    B, T = ids.shape
    if T == 0:
        return torch.zeros_like(ids)
    if context is None:
        left = ids.new_zeros(B, n - 1)
    else:
        left = context[:, max(0, context.shape[1] - (n - 1)) :]  # (n - 1 = 0: none of it)
    if left.shape[1] < n - 1:
        left = torch.cat([ids.new_zeros(B, n - 1 - left.shape[1]), left], dim=1)
    full = torch.cat([left, ids], dim=1)  # (B, n-1+T)
    # h = (h * base + id + 1) % buckets over the n ids, written as one sum: the powers of the
    # base are taken mod buckets first, so the sum is exact in int64 and the result the same
    powers = torch.tensor(
        [pow(_HASH_BASE, n - 1 - i, buckets) for i in range(n)], device=ids.device
    )
    windows = full.long().unfold(1, n, 1)  # (B, T, n)
    return (((windows + 1) * powers).sum(-1) % buckets).to(ids.dtype)


def fold_ascii_case(ids: torch.Tensor) -> torch.Tensor:
    """ids with ASCII 'A'..'Z' mapped to 'a'..'z' (other ids unchanged)."""
    upper = (ids >= 65) & (ids <= 90)
    return torch.where(upper, ids + 32, ids)


def local_rope(positions: torch.Tensor, cfg: ModelConfig) -> RopeTables:
    """RoPE tables of byte positions (B, T) for the local encoder's and decoder's heads."""
    return rope_tables(positions, cfg.d_local // cfg.local_heads, cfg.rope_theta)


class LocalEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        dl = cfg.d_local
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, dl)
        self.ngram_embeds = nn.ModuleList(
            nn.Embedding(cfg.ngram_buckets, dl) for _ in cfg.ngram_sizes
        )
        self.blocks = nn.ModuleList(
            Block(
                dl,
                cfg.local_heads,
                cfg.local_mlp_ratio,
                "swiglu",
                cfg.local_window,
                cfg.norm_eps,
            )
            for _ in range(cfg.encoder_layers)
        )
        self.norm = nn.RMSNorm(dl, eps=cfg.norm_eps)
        self.pool_attn = (
            PatchCrossAttention(dl, cfg.local_heads, cfg.norm_eps)
            if cfg.use_byte_patch_attention
            else None
        )
        self.to_latent = nn.Linear(dl, cfg.d_model, bias=False)

    def embed_bytes(self, ids: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T) -> (B, T, d_local): byte embeddings plus hashed n-gram embeddings.

        `context` = the ids just before `ids` (one-step decoding). With `ngram_case_fold` the
        n-grams hash ASCII letters case-folded, so "Sterpuses" and "sterpus" share them.
        """
        x = self.embed(ids)
        if self.cfg.ngram_case_fold:
            ids = fold_ascii_case(ids)
            context = fold_ascii_case(context) if context is not None else None
        for n, table in zip(self.cfg.ngram_sizes, self.ngram_embeds, strict=True):
            x = x + table(ngram_hashes(ids, n, self.cfg.ngram_buckets, context))
        return x

    def byte_states(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """ids (B, T) -> byte states (B, T, d_local). Training passes whole sequences; decoding
        passes new ids with `caches`, their `mask` and `context` (earlier ids, for the n-gram
        hashes): one body for both."""
        x = self.embed_bytes(ids, context)
        rope = local_rope(positions, self.cfg)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, mask, caches[i] if caches else None)
        return x

    def pool(
        self, h: torch.Tensor, layout: PatchLayout, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """byte states (B, T, dl) -> patch vectors (B, P, d_model). With
        `context_free_patches` the vectors come from the patches' own bytes, ids (B, T)
        (`patch_states`), and `h` is not read."""
        if self.cfg.context_free_patches:
            if ids is None:
                raise ValueError("context_free_patches: pool needs the ids of the bytes")
            grouped, valid = self.patch_states(ids, layout)
        else:
            index, valid = layout.gather_index(self.cfg.patch_cap)  # (B, P, M)
            B, P, M = index.shape
            grouped = h.gather(1, index.reshape(B, P * M, 1).expand(-1, -1, h.shape[-1]))
            grouped = grouped.view(B, P, M, -1)  # (B, P, M, dl)
        grouped = self.norm(grouped)
        w = valid.unsqueeze(-1).to(grouped.dtype)
        count = w.sum(2).clamp(min=1)
        mean = (grouped * w).sum(2) / count  # (B, P, dl)
        if self.cfg.pooling == "max":
            neg = torch.finfo(grouped.dtype).min
            pooled = grouped.masked_fill(~valid.unsqueeze(-1), neg).amax(2)
            pooled = torch.where(valid.any(2, keepdim=True), pooled, torch.zeros_like(pooled))
        else:
            pooled = mean
        if self.pool_attn is not None:
            pooled = pooled + self.pool_attn(mean, grouped, valid)
        return self.to_latent(pooled)

    def patch_states(
        self, ids: torch.Tensor, layout: PatchLayout
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Byte states of each patch read alone: ids (B, T) -> (B, P, M, dl) and the slots in
        use (B, P, M), M the longest patch. The same layers as `byte_states`, from position 0
        of each patch, n-grams with no history before it, and whitespace (the space after a
        fact in the question, the newline after a written step) read as a space."""
        M = max(1, int(layout.lengths.max()))
        _, valid = layout.gather_index(M)  # (B, P, M)
        grouped = patch_bytes(ids, layout, M, PAD_ID)  # (B, P, M)
        white = (grouped == 10) | (grouped == 9) | (grouped == 13)
        grouped = grouped.masked_fill(white, 32)
        real = layout.lengths > 0  # (B, P): padding patches are not read
        alone = grouped[real]  # (N, M) one row per patch
        positions = torch.arange(M, device=ids.device).expand(alone.shape[0], M)
        states = self.byte_states(alone, positions)  # (N, M, dl)
        out = states.new_zeros(*grouped.shape, states.shape[-1])
        out[real] = states
        return out, valid


class PatchCrossAttention(nn.Module):
    """Each patch's query attends to that patch's own bytes only."""

    def __init__(self, dim: int, n_heads: int, eps: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm = nn.RMSNorm(dim, eps=eps)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(
        self, query: torch.Tensor, grouped: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """query (B, P, C); grouped (B, P, M, C) bytes of each patch; valid (B, P, M)."""
        B, P, M, C = grouped.shape
        H, hd = self.n_heads, C // self.n_heads
        q = self.q(self.norm(query)).view(B, P, H, hd)
        k, v = self.kv(grouped).view(B, P, M, 2, H, hd).unbind(3)  # (B, P, M, H, hd)
        scores = torch.einsum("bphd,bpmhd->bphm", q, k) / math.sqrt(hd)
        mask = valid.clone()
        mask[..., 0] |= ~valid.any(-1)  # empty padding patches: avoid an all-masked softmax
        scores = scores.masked_fill(~mask[:, :, None, :], float("-inf"))
        attn = scores.softmax(-1)
        out = torch.einsum("bphm,bpmhd->bphd", attn, v).reshape(B, P, C)
        return self.out(out)


class SlotCrossAttention(nn.Module):
    """Each byte attends over the k slots of its own context vector (k keys per position)."""

    def __init__(self, dim: int, n_heads: int, eps: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm = nn.RMSNorm(dim, eps=eps)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def keys_values(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """slots (B, T, K, C) -> keys, values (B, T, K, H, hd): they change only with the
        context, so decoding computes them once per patch."""
        B, T, K, C = slots.shape
        return self.kv(slots).view(B, T, K, 2, self.n_heads, C // self.n_heads).unbind(3)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x (B, T, C); kv: `keys_values` of the slots (B, T, K, C) -> (B, T, C)."""
        k, v = kv  # (B, T, K, H, hd)
        B, T, K, H, hd = k.shape
        q = self.q(self.norm(x)).view(B, T, H, hd)
        attn = (torch.einsum("bthd,btkhd->bthk", q, k) / math.sqrt(hd)).softmax(-1)
        return self.out(torch.einsum("bthk,btkhd->bthd", attn, v).reshape(B, T, H * hd))


class DecoderLayer(nn.Module):
    """Causal byte self-attention, cross-attention to the patch context slots, MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        dl = cfg.d_local
        self.attn_norm = nn.RMSNorm(dl, eps=cfg.norm_eps)
        self.attn = Attention(dl, cfg.local_heads, cfg.local_window)
        self.cross = SlotCrossAttention(dl, cfg.local_heads, cfg.norm_eps)
        self.mlp_norm = nn.RMSNorm(dl, eps=cfg.norm_eps)
        self.mlp = MLP(dl, int(dl * cfg.local_mlp_ratio), "swiglu")

    def forward(
        self,
        x: torch.Tensor,
        slots_kv: tuple[torch.Tensor, torch.Tensor],
        rope: RopeTables,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """slots_kv: `self.cross.keys_values` of the context slots; rope: `local_rope`."""
        x = x + self.attn(self.attn_norm(x), rope, mask, cache)
        x = x + self.cross(x, slots_kv)
        return x + self.mlp(self.mlp_norm(x))


class LocalDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dl = cfg.d_local
        self.ctx_in = nn.Linear(cfg.d_model, dl, bias=False)
        self.ctx_slots = nn.Linear(cfg.d_model, cfg.cross_attn_k * dl, bias=False)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.norm = nn.RMSNorm(dl, eps=cfg.norm_eps)

    def context_inputs(self, context: torch.Tensor) -> tuple[torch.Tensor, list]:
        """context (B, T, D) -> what the layers read of it: its input projection (B, T, dl)
        and each layer's slot keys and values. Decoding keeps them while a patch is open."""
        B, T, _ = context.shape
        slots = self.ctx_slots(context).view(B, T, self.cfg.cross_attn_k, -1)  # (B, T, K, dl)
        return self.ctx_in(context), [layer.cross.keys_values(slots) for layer in self.layers]

    def forward(
        self,
        h: torch.Tensor,
        context: torch.Tensor | None,
        positions: torch.Tensor,
        mask: torch.Tensor | None = None,
        caches: list[KVCache] | None = None,
        inputs: tuple[torch.Tensor, list] | None = None,
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """h (B, T, dl) byte states; context (B, T, D) latent state of each byte's previous
        patch -> (B, T, dl) states for the byte head. Decoding passes `caches` and `mask`, and
        may pass `inputs` = `context_inputs(context)` kept from an earlier step instead.
        `extra` (B, T, dl) is added to the input (the copy path's bytes)."""
        ctx, slots_kv = self.context_inputs(context) if inputs is None else inputs
        x = h + ctx if extra is None else h + ctx + extra
        rope = local_rope(positions, self.cfg)
        for i, layer in enumerate(self.layers):
            x = layer(x, slots_kv[i], rope, mask, caches[i] if caches else None)
        return self.norm(x)
