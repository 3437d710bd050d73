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

Into thoughts (`model.copy_into_thoughts`): a continuous thought replaces a written step, and
the written step quoted a patch the pointer picked. Its input then adds, through a map that
starts at zero (or, `model.thought_read_init=identity`, as the identity: the thought then
starts as if the quoted step were written), the vector of the patch the pointer picks from the
state before it, so a thought can carry what the quote carried (a rule's sign: RESULTS.md,
"A copy path").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from coconutblt.model.patching import PatchLayout
from coconutblt.vocab import NUM_BYTES

_SPACE, _NEWLINE = 32, 10


class CopyPath(nn.Module):
    def __init__(
        self,
        d_model: int,
        d_local: int,
        dim: int,
        vocab_size: int,
        into_thoughts: bool = False,
        thought_read_init: str = "zero",
    ) -> None:
        super().__init__()
        self.thought_read_init = thought_read_init
        self.none_id = vocab_size  # "the source patch has no byte at this offset"
        self.query = nn.Linear(d_model, dim, bias=False)
        self.key = nn.Linear(d_model, dim, bias=False)
        self.byte_embed = nn.Embedding(vocab_size + 1, d_local)
        self.thought_read = nn.Linear(d_model, d_model, bias=False) if into_thoughts else None

    def init_weights(self) -> None:
        """Zero byte embeddings: the path adds nothing until training finds it useful. The
        thought map starts at zero too, or, with `thought_read_init="identity"`, passes the
        picked patch's vector on unchanged."""
        nn.init.zeros_(self.byte_embed.weight)
        if self.thought_read is not None:
            if self.thought_read_init == "identity":
                nn.init.eye_(self.thought_read.weight)
            else:
                nn.init.zeros_(self.thought_read.weight)

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

    def thought_reading(
        self,
        state: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        visible: torch.Tensor,
    ) -> torch.Tensor:
        """state (B, D) the latent output a thought follows; keys (B, K, D) the latent outputs
        of the patches before it, values (B, K, D) their input vectors, visible (B, K) the
        written ones -> ((B, D) added to the thought's input: the vector of the patch the
        pointer picks, mapped (zero where nothing is visible); the pointer (B, K), log-probs)."""
        log_probs = self.log_probs(state[:, None], keys, visible[:, None])  # (B, 1, K)
        picked = (log_probs.exp().to(values.dtype) @ values)[:, 0]  # (B, D)
        return self.thought_read(picked), log_probs[:, 0]

    def byte_features(self, probs: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """probs (..., K) pointer weights; source (..., K) the id each pointed patch holds at the
        offset being written (`none_id` past its end) -> (..., d_local) decoder input."""
        dist = probs.new_zeros(*probs.shape[:-1], self.byte_embed.num_embeddings)
        dist = dist.scatter_add(-1, source, probs)  # (..., V + 1) weight on each source id
        return (dist @ self.byte_embed.weight.float()).to(self.byte_embed.weight.dtype)


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


def _byte_digests(ids: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """ids, offset (..., T) -> (..., T): each byte's share of its text's digest: its id times a
    fixed random weight per offset; spaces, newlines and special ids count 0."""
    gen = torch.Generator().manual_seed(0)
    weights = torch.randint(1, 2**31 - 1, (256,), generator=gen, dtype=torch.long)
    weights = weights.to(ids.device)
    content = (ids != _SPACE) & (ids != _NEWLINE) & (ids < NUM_BYTES)
    return (ids + 1) * weights[offset.clamp(0, 255)] * content


def patch_digests(ids: torch.Tensor, layout: PatchLayout) -> torch.Tensor:
    """ids (B, T) -> (B, P): one number per patch, equal for patches with the same bytes,
    spaces and newlines aside (a quoted fact ends in a newline where the question has a
    space); 0 for patches holding a special id (a thought, a marker, padding): never quoted."""
    B, T = ids.shape
    pos = torch.arange(T, device=ids.device).expand(B, T)
    offset = pos - layout.starts.gather(1, layout.patch_id)  # (B, T)
    P = layout.lengths.shape[1]
    digest = torch.zeros(B, P, dtype=torch.long, device=ids.device)
    digest = digest.scatter_add(1, layout.patch_id, _byte_digests(ids, offset))  # (B, P)
    special = torch.zeros(B, P, dtype=torch.long, device=ids.device)
    special = special.scatter_add(1, layout.patch_id, (ids >= NUM_BYTES).long())  # (B, P)
    return digest.masked_fill((special > 0) | (layout.lengths == 0), 0)


def text_digests(texts: torch.Tensor) -> torch.Tensor:
    """texts (..., L) byte ids from offset 0, padded with special ids -> (...) digests in the
    scale of `patch_digests` (0 for an empty text)."""
    offset = torch.arange(texts.shape[-1], device=texts.device).expand_as(texts)
    return _byte_digests(texts, offset).sum(-1)


def copy_targets(ids: torch.Tensor, layout: PatchLayout) -> torch.Tensor:
    """(B, P - 1, P) bool: row r's next patch (r+1) has the same bytes as patch j <= r, spaces
    and newlines aside. Patches holding a special id (a thought, a marker, padding) are
    neither (`patch_digests`)."""
    digest = patch_digests(ids, layout)  # (B, P)
    real = digest != 0
    P = digest.shape[1]
    r = torch.arange(P, device=ids.device)
    causal = r[None, :] <= r[:, None]  # (P, P): j <= r
    same = digest[:, 1:, None] == digest[:, None, :]  # (B, P - 1, P)
    return same & causal[None, :-1] & real[:, None, :] & real[:, 1:, None]


def swap_in_quoted(patches: torch.Tensor, targets: torch.Tensor, prob: float) -> torch.Tensor:
    """patches (B, P, D) input vectors; targets (B, P - 1, P) `copy_targets` -> (B, P, D) where
    each patch that repeats an earlier one takes, with probability `prob`, the vector of the
    first patch it repeats (`model.quote_swap_prob`: the latent stack sees a quoted fact in
    both forms, the step's own and the question's, the one a thought reads)."""
    B, P, D = patches.shape
    quotes = targets.any(-1)  # (B, P - 1)
    first = targets.float().argmax(-1)  # (B, P - 1) the earliest patch repeated
    swap = quotes  # (B, P - 1)
    if prob < 1.0:
        draw = torch.rand(quotes.shape, device=patches.device)
        swap = quotes & (draw < prob)
    source = patches.gather(1, first[:, :, None].expand(B, P - 1, D))  # (B, P - 1, D)
    later = torch.where(swap[:, :, None], source, patches[:, 1:])  # (B, P - 1, D)
    return torch.cat([patches[:, :1], later], dim=1)


def first_repeat(
    ids: torch.Tensor, earlier: torch.Tensor, real: torch.Tensor, none_id: int
) -> torch.Tensor:
    """ids (r, L) one patch per row, from offset 0, `none_id` past its end; earlier (r, K, L')
    the same for the patches before it; real (r, K) which of those count -> (r,) the index
    of the first earlier patch with its bytes (`copy_targets`' rule: whitespace aside, never a
    patch holding a special id), -1 where there is none: `swap_in_quoted` one patch at a time,
    as decoding closes it."""

    def digests(texts: torch.Tensor) -> torch.Tensor:  # (..., L) -> (...)
        special = ((texts >= NUM_BYTES) & (texts != none_id)).any(-1)
        return text_digests(texts).masked_fill(special, 0)

    own = digests(ids)  # (r,)
    same = (digests(earlier) == own[:, None]) & real & (own != 0)[:, None]  # (r, K)
    return torch.where(same.any(1), same.float().argmax(1), torch.full_like(own, -1))


def target_mass(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log_probs (..., K) a pointer; targets (..., K) bool -> (...) log of the pointer's mass on
    the targets (-inf where there is none): the copy losses of bytes and of thoughts."""
    return log_probs.masked_fill(~targets, float("-inf")).logsumexp(-1)


def copy_loss(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
    """log_probs (B, P, P) pointer; targets (B, P - 1, P) -> mean over the rows with a target of
    -log(pointer mass on the target patches); None when no row has one."""
    rows = targets.any(-1)  # (B, P - 1)
    if not bool(rows.any()):
        return None
    return -target_mass(log_probs[:, :-1], targets)[rows].mean()  # over (B, P - 1) rows


def thought_quote_loss(
    readings: list[tuple[torch.Tensor, torch.Tensor]],
    digests: torch.Tensor,
    is_thought: torch.Tensor,
    quote_digests: torch.Tensor,
) -> torch.Tensor | None:
    """The thoughts' pointers (`model.copy_into_thoughts`) trained like the byte pointer: the
    n-th thought of a row should read the patch that the step it replaces quotes.

    readings: per thought pass, (column (B,) of the thought in each row, pointer log-probs
    (B, P) over that row's patches); digests (B, P) `patch_digests`; is_thought (B, P);
    quote_digests (B, N) `text_digests` of each row's n-th thought's quote (0: none). Mean
    of -log(pointer mass on the quoted patches) over the thoughts whose quote is a patch
    before them; None when there is none."""
    B, P = digests.shape
    N = quote_digests.shape[1]
    ordinal = is_thought.long().cumsum(1) - 1  # (B, P) each thought's index in its row
    rows = torch.arange(B, device=digests.device)
    terms = []
    for column, log_probs in readings:
        col = column.clamp(0, P - 1)  # (B,) rows aligned past it have no thought there
        n = ordinal[rows, col]  # (B,)
        here = is_thought[rows, col] & (column >= 0) & (column < P) & (n < N)  # (B,)
        n = n.clamp(0, max(N - 1, 0))
        quote = quote_digests[rows, n] if N else torch.zeros_like(n)  # (B,)
        before = torch.arange(P, device=digests.device)[None] < column[:, None]  # (B, P)
        target = (digests == quote[:, None]) & (quote != 0)[:, None] & before
        has = here & target.any(1)
        if bool(has.any()):
            terms.append(-target_mass(log_probs, target)[has])  # over (B,) rows
    return torch.cat(terms).mean() if terms else None
