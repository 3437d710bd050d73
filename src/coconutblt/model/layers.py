"""Transformer parts shared by every stack in the model: RoPE, attention with a KV cache, MLP.

Attention takes RoPE tables (computed once per stack call from explicit positions) and an
optional boolean mask, so the same block serves full causal training, left-aligned batches of
continuous thoughts, and one-position decoding steps with a cache.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KVCache:
    """Keys and values of one attention layer, grown along the sequence dimension.

    Tensors are `(B, H, S, hd)`. Autograd flows through the cache, which is what lets the
    continuous-thought passes train end to end.
    """

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=2)
            self.v = torch.cat([self.v, v], dim=2)
        return self.k, self.v

    def select(self, rows: torch.Tensor) -> None:
        """Keep only batch rows `rows` (used when finished sequences leave a batch)."""
        if self.k is not None:
            self.k, self.v = self.k[rows], self.v[rows]


RopeTables = tuple[torch.Tensor, torch.Tensor]
"""(cos, sin) of RoPE for one positions tensor, each (B, T, 1, 1, head_dim // 2) float32."""


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> RopeTables:
    """positions (B, T) int -> cos, sin of shape (B, T, 1, 1, head_dim // 2), float32 (they
    broadcast against q and k as (B, T, 2, H, head_dim // 2)).

    A stack computes them once per call and hands them to each of its blocks: every layer of a
    stack rotates by the same positions."""
    inv_freq = 1.0 / (
        theta
        ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    )
    angles = positions.to(torch.float32)[..., None] * inv_freq  # (B, T, hd/2)
    return angles.cos()[:, :, None, None], angles.sin()[:, :, None, None]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1, x2) of the last dim; x (B, H, T, hd) (or any shape cos, sin
    broadcast to)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.type_as(x)


def causal_mask(
    q_pos: torch.Tensor, k_pos: torch.Tensor, window: int = 0, key_valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Boolean attention mask (B, 1, Tq, Tk): key index <= query index, inside the window.

    q_pos (B, Tq) and k_pos (B, Tk) are indices in the attended sequence (not RoPE positions).
    A query may always see itself, so padded rows never have an empty softmax.
    """
    diff = q_pos[:, :, None] - k_pos[:, None, :]  # (B, Tq, Tk)
    allowed = diff >= 0
    if window > 0:
        allowed &= diff < window
    if key_valid is not None:
        allowed &= key_valid[:, None, :]
        allowed |= diff == 0
    return allowed[:, None]


def sliding_window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int
) -> torch.Tensor:
    """Causal attention over each query's last `window` keys (itself included), in O(T * window).

    q, k, v (B, H, T, hd) -> (B, H, T, hd). Queries go in blocks of `window`; a block sees its
    own keys and the previous block's, masked to the window, so the result is that of
    `causal_mask(.., window)` over the whole sequence without the (T, T) score matrix.
    """
    B, H, T, hd = q.shape
    W = window
    nb = -(-T // W)  # blocks
    pad = nb * W - T
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    qb, kb, vb = (t.view(B, H, nb, W, hd) for t in (q, k, v))  # (B, H, nb, W, hd)

    def with_previous(t: torch.Tensor) -> torch.Tensor:  # (B, H, nb, 2W, hd)
        return torch.cat([torch.cat([t.new_zeros(B, H, 1, W, hd), t[:, :, :-1]], 2), t], 3)

    i = torch.arange(W, device=q.device)[:, None]
    j = torch.arange(2 * W, device=q.device)[None, :]
    allowed = ((j > i) & (j <= i + W)).expand(nb, W, 2 * W).clone()  # key j-W of the block
    allowed[0, :, :W] = False  # the first block has no previous one
    y = F.scaled_dot_product_attention(qb, with_previous(kb), with_previous(vb), attn_mask=allowed)
    return y.reshape(B, H, nb * W, hd)[:, :, :T]


class Attention(nn.Module):
    """Multi-head self-attention with RoPE, SDPA, an optional KV cache and sliding window.

    The RoPE tables come from the caller (`rope_tables`, once per stack), not from here.

    `sink=True` adds an attention sink: one extra key per head with a learned score (the same for
    every query, no position) and a zero value. Softmax weighs the keys a query matches only
    against the other keys it sees, so one match and two read alike when little else scores;
    the sink is a fixed reference, so the weight the matches take, and the output's size, grows
    with their number (a ProntoQA first step picks the concept with more rules). Not with a
    sliding window.
    """

    def __init__(self, dim: int, n_heads: int, window: int = 0, sink: bool = False) -> None:
        super().__init__()
        if sink and window > 0:
            raise ValueError("an attention sink is not implemented with a sliding window")
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.window = window
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.sink_logit = nn.Parameter(torch.zeros(n_heads)) if sink else None

    def forward(
        self,
        x: torch.Tensor,
        rope: RopeTables,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """x (B, T, C); rope: `rope_tables` of the T positions; mask (B, 1, T, S) bool or None
        for causal.

        With a cache and no mask, the new positions follow the cached ones; a single new
        position sees every cached key (the last `window` of them with a window)."""
        B, T, C = x.shape
        H, hd = self.n_heads, self.head_dim
        qkv = self.qkv(x).view(B, T, 3, H, hd)
        qk = apply_rope(qkv[:, :, :2], *rope)  # q and k rotated in one go: (B, T, 2, H, hd)
        q, k = qk.transpose(1, 3).unbind(2)  # (B, H, T, hd) each
        v = qkv[:, :, 2].transpose(1, 2)
        if cache is not None:
            past = cache.length
            k, v = cache.append(k, v)  # (B, H, S, hd), S = past + T
            if mask is None and T == 1:  # one query: every key it may see, no mask
                if self.window > 0 and k.shape[2] > self.window:
                    k, v = k[:, :, -self.window :], v[:, :, -self.window :]
                y = self._attend(q, k, v, None, causal=False)
                return self.out(y.transpose(1, 2).reshape(B, T, C))
            if mask is None and (past > 0 or self.window > 0):
                idx = torch.arange(k.shape[2], device=x.device).expand(B, -1)
                mask = causal_mask(idx[:, past:], idx, self.window)
        elif mask is None and 0 < self.window < T:  # (within the window: plain causal)
            y = sliding_window_attention(q, k, v, self.window)  # (B, H, T, hd)
            return self.out(y.transpose(1, 2).reshape(B, T, C))
        y = self._attend(q, k, v, mask, causal=True)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, H, T, hd) -> (B, T, C)
        return self.out(y)

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask, causal: bool
    ) -> torch.Tensor:
        """SDPA of q (B, H, T, hd) over k, v (B, H, S, hd) -> (B, H, T, hd); mask (B, 1, T, S)
        bool, or None for causal (T == S) or, with causal=False, every key."""
        if self.sink_logit is None:
            if mask is None:
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        B, H, T, hd = q.shape
        S = k.shape[2]
        if mask is None:
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device)
            if causal:
                mask = mask.tril(S - T)
        # the sink as key 0: zero key and value, its score the learned logit (an additive mask)
        bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device)
        bias = bias.masked_fill(~mask, float("-inf")).expand(B, H, T, S)  # (B, H, T, S)
        sink = self.sink_logit.to(q.dtype)[None, :, None, None].expand(B, H, T, 1)
        bias = torch.cat([sink, bias], dim=-1)  # (B, H, T, 1 + S)
        k = torch.cat([k.new_zeros(B, H, 1, hd), k], dim=2)
        v = torch.cat([v.new_zeros(B, H, 1, hd), v], dim=2)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


class MLP(nn.Module):
    """SwiGLU (three matrices) or GELU (two) feed-forward."""

    def __init__(self, dim: int, hidden: int, kind: str = "swiglu") -> None:
        super().__init__()
        self.kind = kind
        self.up = nn.Linear(dim, 2 * hidden if kind == "swiglu" else hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "swiglu":
            gate, up = self.up(x).chunk(2, dim=-1)
            return self.down(F.silu(gate) * up)
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)).

    `activation_checkpointing = True` recomputes the block's activations in backward instead of
    keeping them. A flag rather than a wrapper module, so parameter names (and checkpoints,
    optimizer states) are the same with and without it.
    """

    activation_checkpointing: bool = False

    def __init__(
        self,
        dim: int,
        n_heads: int,
        mlp_ratio: float,
        mlp_type: str = "swiglu",
        window: int = 0,
        eps: float = 1e-5,
        sink: bool = False,
    ) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(dim, eps=eps)
        self.attn = Attention(dim, n_heads, window, sink)
        self.mlp_norm = nn.RMSNorm(dim, eps=eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio), mlp_type)

    def forward(
        self,
        x: torch.Tensor,
        rope: RopeTables,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """x (B, T, C); rope: `rope_tables` of the T positions (see `Attention.forward`)."""
        # passes that fill a KV cache run normally: recomputing would append to the cache twice
        if self.activation_checkpointing and cache is None and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(self._forward, x, rope, mask, None, use_reentrant=False)
        return self._forward(x, rope, mask, cache)

    def _forward(self, x, rope, mask, cache):
        x = x + self.attn(self.attn_norm(x), rope, mask, cache)
        return x + self.mlp(self.mlp_norm(x))


def init_weights(module: nn.Module, std: float) -> None:
    """Normal(0, std) for linear and embedding weights, zeros for biases, ones for norms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
        elif isinstance(m, nn.RMSNorm) and m.weight is not None:
            nn.init.ones_(m.weight)
