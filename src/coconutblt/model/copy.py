"""`CopyPath`: a pointer from each latent position to an earlier patch, whose bytes, aligned by
offset, the local decoder reads while it writes the next patch.

Why: a written reasoning step often quotes a fact of the question byte for byte ("Brimpuses
are not brown."). Without a copy path, the one latent vector that decodes the next patch must
carry all of it. Measured on ProntoQA (benchmarks/RESULTS.md, "A copy path"), the latent stack
learned to route a rule's subject and object that way, but not its sign, in 2,000+ steps.

How:
- A pointer (one attention head with its own query and key maps over the final latent states)
  gives, for latent row r, a distribution over the patches j <= r.
- At byte b, the decoder is writing patch r+1 at some offset o. It reads the byte that each
  patch j holds at offset o (or "none" past its end), weighted by the pointer, through a byte
  embedding. The embedding starts at zero, so a model begins exactly as it would without the
  path.
- `copy_targets` supplies the pointer's training signal. Where the next patch equals an earlier
  one (whitespace aside), an auxiliary loss (`model.copy_loss_weight`) asks the pointer to
  point at it. Pointer-generator networks (See et al., 2017) copy words this way.

The path needs `closed_patch_context`: then a byte's latent row is the one that decodes its
next byte's patch, and so that byte's offset is known.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from coconutblt.model.patching import PatchLayout
from coconutblt.vocab import NUM_BYTES

_SPACE, _NEWLINE = 32, 10


class CopyPath(nn.Module):
    def __init__(self, d_model: int, d_local: int, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.none_id = vocab_size  # "the source patch has no byte at this offset"
        self.query = nn.Linear(d_model, dim, bias=False)
        self.key = nn.Linear(d_model, dim, bias=False)
        self.byte_embed = nn.Embedding(vocab_size + 1, d_local)

    def init_weights(self) -> None:
        """Zero byte embeddings: the path adds nothing until training finds it useful."""
        nn.init.zeros_(self.byte_embed.weight)

    def log_probs(
        self, queries: torch.Tensor, keys: torch.Tensor, visible: torch.Tensor
    ) -> torch.Tensor:
        """queries (B, Q, D), keys (B, K, D) latent states; visible (B, Q, K) bool -> pointer
        log-probabilities (B, Q, K), -inf where not visible (a row that sees nothing: all -inf)."""
        q = self.query(queries).float()  # (B, Q, dim)
        k = self.key(keys).float()  # (B, K, dim)
        scores = (q @ k.transpose(1, 2)) / math.sqrt(q.shape[-1])  # (B, Q, K)
        scores = scores.masked_fill(~visible, float("-inf"))
        out = scores.log_softmax(-1)
        return torch.where(visible.any(-1, keepdim=True), out, torch.full_like(out, -math.inf))

    def byte_features(self, probs: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """probs (..., K) pointer weights; source (..., K) the id each pointed patch holds at the
        offset being written (`none_id` past its end) -> (..., d_local) decoder input."""
        dist = probs.new_zeros(*probs.shape[:-1], self.byte_embed.num_embeddings)
        dist = dist.scatter_add(-1, source, probs)  # (..., V + 1) weight on each source id
        return (dist @ self.byte_embed.weight.float()).to(self.byte_embed.weight.dtype)


def patch_bytes(ids: torch.Tensor, layout: PatchLayout, cap: int, none_id: int) -> torch.Tensor:
    """ids (B, T) -> (B, P, cap): each patch's ids from its first byte, `none_id` past its end."""
    index, valid = layout.gather_index(cap)  # (B, P, cap)
    B, P = layout.lengths.shape
    got = ids.gather(1, index.view(B, -1)).view(B, P, cap)
    return got.masked_fill(~valid, none_id)


def byte_rows_and_offsets(
    layout: PatchLayout, closes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every byte b (B, T): the latent row that decodes byte b+1 (-1 before any patch has
    closed) and byte b+1's offset in its patch. closes (B, T): byte b is known to end its patch
    (`closed_patch_context`), so byte b+1 starts the next one, at offset 0."""
    B, T = layout.patch_id.shape
    pos = torch.arange(T, device=closes.device).expand(B, T)
    row = layout.patch_id - 1 + closes.long()  # (B, T)
    own_start = layout.starts.gather(1, layout.patch_id)  # (B, T)
    offset = torch.where(closes, torch.zeros_like(pos), pos + 1 - own_start)
    return row, offset


def source_at(table: torch.Tensor, offset: torch.Tensor, none_id: int) -> torch.Tensor:
    """table (B, K, cap) patch ids; offset (B, T) -> (B, T, K): the id of every patch at each
    byte's offset (`none_id` at or past cap)."""
    B, K, cap = table.shape
    T = offset.shape[1]
    idx = offset.clamp(max=cap - 1)[:, :, None].expand(B, T, K)  # (B, T, K)
    got = table.transpose(1, 2).gather(1, idx)  # (B, T, K)
    return got.masked_fill((offset >= cap)[:, :, None], none_id)


def copy_targets(ids: torch.Tensor, layout: PatchLayout) -> torch.Tensor:
    """(B, P - 1, P) bool: row r's next patch (r+1) has the same bytes as patch j <= r, spaces
    and newlines aside (a quoted fact ends in a newline where the question has a space).
    Patches holding a special id (a thought, a marker, padding) are neither."""
    B, T = ids.shape
    pos = torch.arange(T, device=ids.device).expand(B, T)
    offset = (pos - layout.starts.gather(1, layout.patch_id)).clamp(0, 255)  # (B, T)
    gen = torch.Generator().manual_seed(0)
    weights = torch.randint(1, 2**31 - 1, (256,), generator=gen, dtype=torch.long)
    weights = weights.to(ids.device)
    content = (ids != _SPACE) & (ids != _NEWLINE)
    contrib = (ids + 1) * weights[offset] * content  # (B, T) an id times a weight per offset
    P = layout.lengths.shape[1]
    digest = torch.zeros(B, P, dtype=torch.long, device=ids.device)
    digest = digest.scatter_add(1, layout.patch_id, contrib)  # (B, P) one number per patch
    special = torch.zeros(B, P, dtype=torch.long, device=ids.device)
    special = special.scatter_add(1, layout.patch_id, (ids >= NUM_BYTES).long())  # (B, P)
    # thoughts, markers and padding are never quoted
    real = (layout.lengths > 0) & (digest != 0) & (special == 0)  # (B, P)
    r = torch.arange(P, device=ids.device)
    causal = r[None, :] <= r[:, None]  # (P, P): j <= r
    same = digest[:, 1:, None] == digest[:, None, :]  # (B, P - 1, P)
    return same & causal[None, :-1] & real[:, None, :] & real[:, 1:, None]


def copy_loss(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
    """log_probs (B, P, P) pointer; targets (B, P - 1, P) -> mean over the rows with a target of
    -log(pointer mass on the target patches); None when no row has one."""
    rows = targets.any(-1)  # (B, P - 1)
    if not bool(rows.any()):
        return None
    picked = log_probs[:, :-1].masked_fill(~targets, float("-inf")).logsumexp(-1)  # (B, P - 1)
    return -picked[rows].mean()
