"""Patch boundaries from bytes (and entropies), and the index layout the model needs.

Every rule is causal: whether byte t starts a patch depends only on bytes <= t (and on
entropies computed from bytes < t), so the boundaries of a prefix are a prefix of the
boundaries of the whole. Special ids (>= 256) are always a patch of their own.

The length cap is applied in closed form: between two forced starts, a new patch begins every
`cap` bytes. That equals the sequential rule "start a new patch when the current one is full"
and needs no Python loop over positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from coconutblt.vocab import LATENT_ID, NUM_BYTES, PAD_ID


def _word_byte_table(device: torch.device) -> torch.Tensor:
    """(512,) bool: ASCII letters/digits, '_' and UTF-8 bytes >= 0x80 count as word bytes."""
    table = torch.zeros(512, dtype=torch.bool, device=device)
    for lo, hi in ((48, 58), (65, 91), (97, 123), (128, 256)):
        table[lo:hi] = True
    table[95] = True
    return table


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """(..., V) logits -> (...) entropy in nats of the softmax distribution."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def patch_starts(
    ids: torch.Tensor,
    mode: str,
    cap: int,
    entropies: torch.Tensor | None = None,
    threshold: float = 1.5,
    rule: str = "global",
    relative_threshold: float = 0.3,
) -> torch.Tensor:
    """ids (B, T) -> starts (B, T) bool, True where a new patch begins.

    `entropies[b, t]` is the entropy of the prediction of byte t+1 made at position t (from
    bytes <= t); the entropy rule looks at entropies[t-1] to decide about byte t.
    """
    return patch_starts_announced(ids, mode, cap, entropies, threshold, rule, relative_threshold)[0]


def patch_starts_announced(
    ids: torch.Tensor,
    mode: str,
    cap: int,
    entropies: torch.Tensor | None = None,
    threshold: float = 1.5,
    rule: str = "global",
    relative_threshold: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (B, T) -> (starts (B, T), announced (B, T + 1)), both bool.

    `announced[t]`: byte t starts a patch, and that follows from the bytes before it alone
    (a length cap, an entropy, the `word` rule, a special id at t-1), so the patch ending at
    t-1 is known to be complete once byte t-1 is read and its latent state can already
    decode byte t. A start that depends on byte t itself (a special id at t, the `space`
    rule) is not announced. Column T is the byte after the sequence: whether the last patch
    is complete. announced[t] implies starts[t] for t < T.
    """
    B, T = ids.shape
    dev = ids.device
    ids = F.pad(ids, (0, 1))  # a placeholder for byte T: announced[T] never reads it
    if entropies is not None:
        entropies = F.pad(entropies, (0, 1))
    special = ids >= NUM_BYTES
    # a run of padding is one patch (up to the cap), not a patch per byte: a batch that pads
    # short examples to its longest would otherwise hand the latent transformer hundreds of
    # padding positions per row
    pad = ids == PAD_ID
    ahead = torch.zeros_like(special)  # starts the bytes before decide
    ahead[:, 0] = True
    ahead[:, 1:] |= special[:, :-1] & ~pad[:, :-1]  # the byte after a special, but padding
    now = torch.zeros_like(special)  # starts that depend on the byte itself
    now[:, 1:] |= special[:, 1:] & ~(pad[:, 1:] & pad[:, :-1])  # a special, but padding on
    now[:, 1:] |= pad[:, :-1] & ~pad[:, 1:]  # the byte after padding
    if mode == "space":  # a word byte after a non-word byte
        word = _word_byte_table(dev)[ids.clamp(0, 511)]
        now[:, 1:] |= word[:, 1:] & ~word[:, :-1]
    elif mode in ("word", "sentence"):
        white = (ids == 32) | (ids == 10) | (ids == 9) | (ids == 13)
        if mode == "word":  # the byte after a whitespace byte: a patch ends with its space
            ahead[:, 1:] |= white[:, :-1]
        else:  # the byte after a newline, or after the space that follows . ? ! : or #
            # ("### " is the answer marker: the answer is decoded from the latent state of a
            # patch of its own, which can read the question and the whole chain)
            stop = (ids == 46) | (ids == 63) | (ids == 33) | (ids == 58) | (ids == 35)
            ahead[:, 1:] |= ids[:, :-1] == 10
            ahead[:, 2:] |= white[:, 1:-1] & stop[:, :-2]
    elif mode == "entropy":
        if entropies is None:
            raise ValueError("entropy patching needs entropies")
        prev = entropies[:, :-1]  # entropy of predicting byte t, for t >= 1
        if rule == "global":
            ahead[:, 1:] |= prev > threshold
        elif rule == "relative":
            rise = prev.clone()
            rise[:, 1:] = prev[:, 1:] - prev[:, :-1]
            ahead[:, 1:] |= rise > relative_threshold
        else:
            raise ValueError(f"unknown entropy rule {rule!r}")
    elif mode != "fixed":
        raise ValueError(f"unknown patcher {mode!r}")
    forced = ahead | now
    pos = torch.arange(T + 1, device=dev).expand(B, T + 1)
    last_forced = torch.where(forced, pos, torch.zeros_like(pos)).cummax(dim=1).values
    starts = forced | ((pos - last_forced) % cap == 0)
    # the cap fires at t unless t is forced: counted from the last forced byte before t
    before = F.pad(last_forced[:, :-1], (1, 0))
    announced = ahead | ((pos - before) % cap == 0)
    return starts[:, :T], announced


@dataclass
class PatchLayout:
    """Where each patch lies in the byte sequence.

    patch_id (B, T): index of the patch holding each byte;
    starts, lengths (B, P): first byte and byte count of each patch (0 length = padding);
    n_patches (B,): real patches per row; P = max over rows.
    """

    patch_id: torch.Tensor
    starts: torch.Tensor
    lengths: torch.Tensor
    n_patches: torch.Tensor

    @property
    def num_patches(self) -> int:
        return self.starts.shape[1]

    def gather_index(self, cap: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, P, cap) byte index of each patch slot, and a mask of the slots in use."""
        offs = torch.arange(cap, device=self.starts.device)
        index = self.starts[:, :, None] + offs  # (B, P, cap)
        valid = offs < self.lengths[:, :, None]
        T = self.patch_id.shape[1]
        return index.clamp(max=T - 1), valid


def patch_bytes(ids: torch.Tensor, layout: PatchLayout, cap: int, none_id: int) -> torch.Tensor:
    """ids (B, T) -> (B, P, cap): each patch's ids from its first byte, `none_id` past its end."""
    index, valid = layout.gather_index(cap)  # (B, P, cap)
    B, P = layout.lengths.shape
    got = ids.gather(1, index.view(B, -1)).view(B, P, cap)
    return got.masked_fill(~valid, none_id)


def layout_from_starts(starts: torch.Tensor) -> PatchLayout:
    """starts (B, T) bool -> PatchLayout."""
    B, T = starts.shape
    patch_id = starts.long().cumsum(dim=1) - 1  # (B, T)
    n_patches = patch_id[:, -1] + 1
    P = int(n_patches.max())
    pos = torch.arange(T, device=starts.device).expand(B, T)
    dump = torch.full_like(patch_id, P)  # non-start bytes write to a spare column
    first = torch.zeros(B, P + 1, dtype=torch.long, device=starts.device)
    first.scatter_(1, torch.where(starts, patch_id, dump), pos)
    lengths = torch.zeros(B, P, dtype=torch.long, device=starts.device)
    lengths.scatter_add_(1, patch_id, torch.ones_like(patch_id))
    return PatchLayout(patch_id, first[:, :P], lengths, n_patches)


def thought_patches(ids: torch.Tensor, layout: PatchLayout) -> torch.Tensor:
    """(B, P) bool: patches that are a `<|latent|>` id (a continuous thought)."""
    first_ids = ids.gather(1, layout.starts)
    return (first_ids == LATENT_ID) & (layout.lengths > 0)
