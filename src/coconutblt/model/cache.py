"""Incremental decoding state for `HybridTransformer`: prefill once, then one id per step.

Three caches, each a `RaggedKV` (one buffer per attention layer, rows of different lengths):
the byte caches (local encoder and decoder layers share the byte positions), the entropy
model's cache (when it drives patching), and the latent transformer's cache (one position
per closed patch). Per new id only that position is computed:

1. local encoder on the new id (n-gram hashes read the last ids kept in the state);
2. the patch rule on the last three ids and entropies (`patch_starts_announced`, the model's
   own rule)
   plus the length cap: if the id starts a new patch, the open patch closes: its byte states
   are pooled (or, for a `<|latent|>` patch, the previous latent output is fed back) and the
   latent transformer runs that one position;
3. with `closed_patch_context`, if the bytes so far say the next id starts a patch, the open
   patch closes now, so its own state decodes the next id;
4. local decoder on the new byte state with the latest latent output as context (the state
   of the latest completed patch, as `previous_patch_context` in hybrid.py), then lm_head.

Rows of a batch keep their own lengths, so they close patches at different times and stay
exact: every row's keys sit at columns 0..len-1 of its buffer, and the masks compare each
query's own position with key columns. Stale columns past a row's length are always masked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coconutblt.model.copy import first_repeat
from coconutblt.model.patching import (
    PatchLayout,
    layout_from_starts,
    patch_bytes,
    thought_patches,
)
from coconutblt.vocab import LATENT_ID, PAD_ID

_NO_CAP = 1 << 30  # `patch_starts` cap that never fires: the length cap is applied here


class RaggedKV:
    """K/V buffers `(B, H, capacity, hd)` of a stack of attention layers; row b holds
    `lengths[b]` positions at columns 0..lengths[b]-1 (its own positions 0, 1, ...).

    A call is `positions, mask = begin(rows, T)`, the stack's forward with `views` as caches
    and `mask`, then `commit(rows, counts)`. `rows` None means every row. With `window` > 0
    only the columns some query can see are handed to attention.
    """

    def __init__(
        self, n_layers: int, batch: int, window: int, device: torch.device, reserve: int = 0
    ) -> None:
        self.batch, self.window, self.device = batch, window, device
        self.reserve = reserve  # columns to allocate beyond the first call's (no regrowth)
        self.lengths = [0] * batch
        self.k: list[torch.Tensor | None] = [None] * n_layers
        self.v: list[torch.Tensor | None] = [None] * n_layers
        self.views = [_LayerView(self, i) for i in range(n_layers)]
        self._rows: torch.Tensor | None = None
        self._starts: list[int] = []
        self._equal = True  # every row of the call has the same length
        self._span = (0, 0, 0)  # lo, hi (key columns handed out), T

    def begin(self, rows: list[int] | None, T: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> RoPE positions (b, T) of the new ids, attention mask (b, 1, T, hi - lo), or None
        when the layers' own masks are right: no row has cached positions yet, or every row
        has the same length (and one new id, or no window cut), so the handed columns are
        exactly the cached ones."""
        self._rows = None if rows is None else torch.tensor(rows, device=self.device)
        starts = self.lengths if rows is None else [self.lengths[r] for r in rows]
        self._starts = starts
        first, top = starts[0], max(starts)
        self._equal = equal = all(s == first for s in starts)
        lo = max(0, min(starts) - self.window + 1) if self.window > 0 else 0
        hi = top + T
        self._span = (lo, hi, T)
        if equal:
            q_pos = torch.arange(first, first + T, device=self.device).expand(len(starts), T)
            if top == 0 or T == 1 or lo == 0:
                return q_pos, None
        else:
            q_pos = torch.tensor(starts, device=self.device)[:, None] + torch.arange(
                T, device=self.device
            )
            if top == 0:  # nothing cached yet: the layers' own causal (windowed) masks
                return q_pos, None
        k_pos = torch.arange(lo, hi, device=self.device)
        diff = q_pos[:, :, None] - k_pos[None, None, :]  # (b, T, S)
        allowed = diff >= 0
        if self.window > 0:
            allowed &= diff < self.window
        return q_pos, allowed[:, None]

    def commit(self, rows: list[int] | None, counts: list[int] | int) -> None:
        """Rows `rows` now hold `counts` more positions (padding beyond them is overwritten)."""
        rows = range(self.batch) if rows is None else rows
        for i, r in enumerate(rows):
            self.lengths[r] += counts if isinstance(counts, int) else counts[i]

    def keep(self, rows: list[int]) -> None:
        """Keep only batch rows `rows` (finished rows leave the batch)."""
        index = torch.tensor(rows, device=self.device)
        self.k = [None if t is None else t[index] for t in self.k]
        self.v = [None if t is None else t[index] for t in self.v]
        self.lengths = [self.lengths[r] for r in rows]
        self.batch = len(rows)

    def _write(self, i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store layer i's new k, v (b, H, T, hd) at each row's next columns; return the keys
        and values of columns lo..hi for the rows of this call."""
        lo, hi, T = self._span
        buf_k, buf_v = self.k[i], self.v[i]
        if buf_k is None or buf_k.shape[2] < hi:
            cap = max(hi + self.reserve, 64) if buf_k is None else max(hi, 2 * buf_k.shape[2])
            B, H, _, hd = self.batch, k.shape[1], k.shape[2], k.shape[3]
            new_k = k.new_zeros(B, H, cap, hd)  # zeros: masked columns must stay finite
            new_v = v.new_zeros(B, H, cap, hd)
            if buf_k is not None:
                new_k[:, :, : buf_k.shape[2]] = buf_k
                new_v[:, :, : buf_v.shape[2]] = buf_v
            self.k[i], self.v[i] = buf_k, buf_v = new_k, new_v
        rows, starts = self._rows, self._starts
        if self._equal:
            s = starts[0]
            if rows is None:
                buf_k[:, :, s : s + T] = k
                buf_v[:, :, s : s + T] = v
            else:
                buf_k[rows, :, s : s + T] = k
                buf_v[rows, :, s : s + T] = v
        else:
            r = torch.arange(self.batch, device=self.device) if rows is None else rows
            cols = torch.tensor(starts, device=self.device)[:, None] + torch.arange(
                T, device=self.device
            )
            buf_k[r[:, None], :, cols] = k.transpose(1, 2)  # (b, T, H, hd) into (b, T) slots
            buf_v[r[:, None], :, cols] = v.transpose(1, 2)
        if rows is None:
            return buf_k[:, :, lo:hi], buf_v[:, :, lo:hi]
        return buf_k[rows, :, lo:hi], buf_v[rows, :, lo:hi]


class _LayerView:
    """What `Attention` and `ContinuousLatentModule` see as a layer's cache."""

    def __init__(self, owner: RaggedKV, i: int) -> None:
        self.owner, self.i = owner, i

    @property
    def length(self) -> int:
        return max(self.owner._starts, default=0)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.owner._write(self.i, k, v)


class DecodeState:
    """Caches and per-row patch state of a batch being decoded by a `HybridTransformer`.

    `logits = state.prefill(prompts)` runs every prompt once; `logits = state.step(ids)` feeds
    one id per row; both return the next-id logits (b, V) of each row. `keep(rows)` drops
    finished rows. Outputs equal the full forward's logits at the same positions.
    """

    def __init__(self, model, reserve: int = 0) -> None:
        self.model = model
        self.reserve = reserve  # ids expected after the prompts: caches are sized once
        self.cfg = model.config
        self.device = next(model.parameters()).device
        self.batch = 0

    # ------------------------------------------------------------------ the model's own modules
    def _encode(self, ids: torch.Tensor, positions, mask, context) -> torch.Tensor:
        """ids (b, T) -> byte states (b, T, dl) from the encoder layers' caches."""
        n_enc = len(self.model.encoder.blocks)
        caches = self.bytes.views[:n_enc]
        return self.model.encoder.byte_states(ids, positions, mask, caches, context)

    def _decode(
        self, h: torch.Tensor, context, positions, mask, inputs=None, extra=None
    ) -> torch.Tensor:
        """h (b, T, dl), context (b, T, D) (or the decoder's `inputs` of it), extra (b, T, dl)
        the copy path's input or None -> next-id logits (b, T, V) from the decoder's caches."""
        caches = self.bytes.views[len(self.model.encoder.blocks) :]
        x = self.model.decoder(h, context, positions, mask, caches, inputs, extra)
        return self.model.lm_head(x)

    def _context_inputs(self):
        """The decoder's inputs from every row's latest latent output, computed once per
        change of it (a patch closing), not once per byte."""
        if self._ctx is None:
            self._ctx = self.model.decoder.context_inputs(self.last_out[:, None])
        return self._ctx

    def _entropies(self, ids: torch.Tensor, h: torch.Tensor, T: int) -> torch.Tensor | None:
        """Next-byte entropies (b, T) for the entropy patcher (None for the other patchers)."""
        positions = mask = caches = None
        if self.ent is not None:
            positions, mask = self.ent.begin(None, T)
            caches = self.ent.views
        return self.model.entropies(ids, h, positions, mask, caches)[0]

    def _latent(self, rows: list[int] | None, x: torch.Tensor) -> torch.Tensor:
        """x (b, T, D) patch vectors of rows `rows` -> latent outputs (b, T, D), cached."""
        positions, mask = self.latent.begin(rows, x.shape[1])
        out = self.model.latent(x, positions, mask, self.latent.views)
        self.latent.commit(rows, x.shape[1])
        return out

    # ------------------------------------------------------------------ prefill
    def prefill(self, prompts: list[list[int]]) -> torch.Tensor:
        """Run every prompt (non-empty id lists) once -> next-id logits (B, V)."""
        model, cfg, dev = self.model, self.cfg, self.device
        B, lens = len(prompts), [len(p) for p in prompts]
        T = max(lens)
        self.batch = B
        n_enc = len(model.encoder.blocks)
        R = self.reserve
        self.bytes = RaggedKV(n_enc + len(model.decoder.layers), B, cfg.local_window, dev, R)
        self.latent = RaggedKV(len(model.latent.new_caches()), B, 0, dev, R)
        em = model.entropy_model if model.estimator is None else None
        self.ent = RaggedKV(len(em.blocks), B, em.cfg.window, dev, R) if em is not None else None
        ids = torch.full((B, T), PAD_ID, dtype=torch.long, device=dev)
        for b, p in enumerate(prompts):
            ids[b, : lens[b]] = torch.tensor(p, device=dev)

        positions, mask = self.bytes.begin(None, T)
        h = self._encode(ids, positions, mask, None)  # (B, T, dl)
        ent = self._entropies(ids, h, T)  # (B, T) or None
        if self.ent is not None:
            self.ent.commit(None, lens)

        cap, D = cfg.patch_cap, cfg.d_model
        self.open_h = h.new_zeros(B, cap, h.shape[-1])  # byte states of each row's open patch
        self.open_len = torch.zeros(B, dtype=torch.long, device=dev)
        self.open_thought = torch.zeros(B, dtype=torch.bool, device=dev)
        self.last_out = model.bos_latent.detach().expand(B, D).clone()  # latest latent output
        self._ctx = None  # the decoder's inputs from last_out (None: to compute)
        # every row's patches at once: the patch rule is causal, so the padding after a
        # shorter prompt changes none of its boundaries (PAD, a special id, is a patch of its own)
        starts, announced = model.boundaries_announced(ids, ent)
        layout = layout_from_starts(starts)
        patches = model.encoder.pool(h, layout, ids)  # (B, P, D)
        patches = model.quoted_inputs(patches, ids, layout)  # (B, P, D)
        closes = announced[:, 1:] if cfg.closed_patch_context else None  # (B, T)
        rows = torch.arange(B, device=dev)
        last = torch.tensor(lens, device=dev) - 1
        n_real = layout.patch_id[rows, last] + 1  # (B,) patches of each prompt
        # the last patch stays open unless the prompt's last byte is known to end it
        last_closed = (
            torch.zeros_like(last, dtype=torch.bool) if closes is None else closes[rows, last]
        )
        closed = n_real - (~last_closed).long()  # (B,) closed patches of each prompt
        C = int(closed.max())
        col = torch.arange(C, device=dev)
        is_thought = thought_patches(ids, layout)[:, :C] & (col < closed[:, None])
        written = (col < closed[:, None]) & ~is_thought  # (B, C) what a thought may read
        outs = self._prefill_latent(patches[:, :C], is_thought, closed.tolist(), written)
        table = F.pad(outs, (0, 0, 0, layout.num_patches - C))  # padding bytes' patches too
        context = model.previous_patch_context(table, layout, closes)  # (B, T, D)
        if C:  # rows with no closed patch keep bos_latent, the context before any patch
            latest = outs[rows, (closed - 1).clamp(min=0)]  # (B, D)
            self.last_out = torch.where((closed > 0)[:, None], latest, self.last_out)
        open_start = layout.starts[rows, n_real - 1]  # (B,) first byte of the last patch
        self.open_thought = ids[rows, open_start] == LATENT_ID
        self.open_len = torch.where(last_closed, 0, last + 1 - open_start)
        self.open_ids = torch.full((B, cap), PAD_ID, dtype=torch.long, device=dev)
        for b, (s, n) in enumerate(zip(open_start.tolist(), self.open_len.tolist(), strict=True)):
            self.open_h[b, :n] = h[b, s : s + n]
            self.open_ids[b, :n] = ids[b, s : s + n]
        self.open_thought &= self.open_len > 0
        copy_in = None
        if model.copy is not None:
            copy_in = self._prefill_copy(ids, layout, closes, outs, closed)  # (B, T, dl)
            self.copy_values = patches[:, :C]  # (B, C, D) input vectors of the closed patches
            self.copy_written = written  # (B, C)
        logits = self._decode(h, context, positions, mask, extra=copy_in)  # (B, T, V)
        self.bytes.commit(None, lens)

        K = max([2, *[n - 1 for n in cfg.ngram_sizes]])
        self.recent = torch.zeros(B, K, dtype=torch.long, device=dev)  # last ids, 0 = none
        self.recent_ent = torch.zeros(B, 2, device=dev)  # entropies at the last two positions
        for b, L in enumerate(lens):
            n = min(K, L)
            self.recent[b, K - n :] = ids[b, L - n : L]
            if ent is not None:
                m = min(2, L)
                self.recent_ent[b, 2 - m :] = ent[b, L - m : L]
        last = torch.tensor(lens, device=dev) - 1
        return logits[torch.arange(B, device=dev), last]

    def _prefill_latent(
        self, x: torch.Tensor, is_thought: torch.Tensor, closed: list[int], written: torch.Tensor
    ):
        """Closed prompt patches x (B, C, D) (row b's first closed[b] are real) -> latent
        outputs (B, C, D); a thought's input is the output at the position before it, so each
        column where some row has a thought (is_thought (B, C)) starts a new pass of every row.
        Columns past a row's patches are computed and cached too, then overwritten: the
        row's cache length is its own count. `written` (B, C): what a thought may read."""
        if x.shape[1] == 0:
            return x
        cuts = torch.nonzero(is_thought.any(0)).flatten().tolist()
        out = self.model.run_thought_passes(
            x, is_thought, cuts, lambda chunk, start, stop: self._latent(None, chunk), written
        )
        self.latent.lengths = list(closed)
        return out

    # ------------------------------------------------------------------ copy path
    def _prefill_copy(
        self,
        ids: torch.Tensor,
        layout: PatchLayout,
        closes: torch.Tensor,
        outs: torch.Tensor,
        closed: torch.Tensor,
    ) -> torch.Tensor:
        """The copy path's input at every prompt byte (B, T, dl), as the full forward computes
        it, and the state decoding continues from: every closed patch's latent state and ids,
        and the pointer of each row's latest state."""
        model, cap = self.model, self.cfg.patch_cap
        B, C = outs.shape[:2]
        table = F.pad(outs, (0, 0, 0, layout.num_patches - C))  # (B, P, D)
        real = torch.arange(layout.num_patches, device=self.device)[None] < closed[:, None]
        pointer = model.copy_pointer(table, table, real)  # (B, P, P)
        copy_in = model.copy_inputs(ids, layout, closes, pointer)  # (B, T, dl)
        self.copy_states = outs  # (B, C, D) latent states of the closed patches
        self.copy_ids = patch_bytes(ids, layout, cap, model.copy.none_id)[:, :C]  # (B, C, cap)
        rows = torch.arange(B, device=self.device)
        latest = pointer[rows, (closed - 1).clamp(min=0), :C].exp()  # (B, C)
        self.copy_probs = latest * (closed > 0)[:, None]  # rows with no closed patch: nothing
        return copy_in

    def _close_copy(
        self,
        sel,
        rows: list[int] | None,
        ids: torch.Tensor,
        out: torch.Tensor,
        x: torch.Tensor,
        written: torch.Tensor,
    ):
        """Record a just-closed patch (its ids (r, cap), its latent state out (r, D), its input
        vector x (r, D), whether it is written (r,), not a thought) for `rows` and point their
        new latest state over every closed patch."""
        n = torch.tensor(self.latent.lengths, device=self.device)[sel]  # (r,) counts, with it
        K = int(n.max())
        grow = K - self.copy_states.shape[1]
        if grow > 0:
            self.copy_states = F.pad(self.copy_states, (0, 0, 0, grow))
            self.copy_ids = F.pad(self.copy_ids, (0, 0, 0, grow), value=self.model.copy.none_id)
            self.copy_probs = F.pad(self.copy_probs, (0, grow))
            self.copy_values = F.pad(self.copy_values, (0, 0, 0, grow))
            self.copy_written = F.pad(self.copy_written, (0, grow))
        idx = torch.arange(len(n), device=self.device) if rows is None else sel
        self.copy_states[idx, n - 1] = out
        self.copy_ids[idx, n - 1] = ids
        self.copy_values[idx, n - 1] = x
        self.copy_written[idx, n - 1] = written
        keys = self.copy_states[sel]  # (r, K', D)
        real = torch.arange(keys.shape[1], device=self.device)[None] < n[:, None]  # (r, K')
        pointer = self.model.copy.log_probs(out[:, None], keys, real[:, None])  # (r, 1, K')
        self.copy_probs[sel] = pointer[:, 0].exp()

    def _step_copy(self) -> torch.Tensor:
        """The copy path's input (b, 1, dl) for the next byte, at offset `open_len`."""
        cap = self.copy_ids.shape[-1]
        offset = self.open_len.clamp(max=cap - 1)[:, None, None]  # (b, 1, 1)
        K = self.copy_ids.shape[1]
        source = self.copy_ids.gather(2, offset.expand(-1, K, 1))[:, :, 0]  # (b, K)
        source = source.masked_fill((self.open_len >= cap)[:, None], self.model.copy.none_id)
        return self.model.copy.byte_features(self.copy_probs, source)[:, None]

    # ------------------------------------------------------------------ one id per row
    def step(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (b,) the next id of every row -> next-id logits (b, V)."""
        cfg = self.cfg
        B = ids.shape[0]
        positions, mask = self.bytes.begin(None, 1)
        h = self._encode(ids[:, None], positions, mask, self.recent)  # (b, 1, dl)
        ent = self._entropies(ids[:, None], h, 1)
        if self.ent is not None:
            self.ent.commit(None, 1)

        window = torch.cat([self.recent[:, -2:], ids[:, None]], dim=1)  # (b, 3)
        ents = None if ent is None else torch.cat([self.recent_ent, ent], dim=1)
        forced, announced = self.model.boundaries_announced(window, ents, cap=_NO_CAP)
        starts = forced[:, -1] | (self.open_len >= cfg.patch_cap)  # (b,)
        # a patch already closed by its last byte (closed_patch_context) has nothing to close
        self._close_where(starts & (self.open_len > 0))
        self.open_thought[starts] = ids[starts] == LATENT_ID
        self.open_h[torch.arange(B, device=ids.device), self.open_len] = h[:, 0]
        self.open_ids[torch.arange(B, device=ids.device), self.open_len] = ids
        self.open_len += 1
        if cfg.closed_patch_context:  # the next byte is known to start a patch: close now
            self._close_where(announced[:, -1] | (self.open_len >= cfg.patch_cap))

        extra = self._step_copy() if self.model.copy is not None else None
        inputs = self._context_inputs()
        logits = self._decode(h, None, positions, mask, inputs, extra)[:, 0]  # (b, V)
        self.bytes.commit(None, 1)
        self.recent = torch.cat([self.recent[:, 1:], ids[:, None]], dim=1)
        if ent is not None:
            self.recent_ent = torch.cat([self.recent_ent[:, 1:], ent], dim=1)
        return logits

    def _close_where(self, mask: torch.Tensor) -> None:
        """Close the open patch of every row where mask (b,) is True."""
        rows = torch.nonzero(mask).flatten().tolist()
        if rows:
            self._close(None if len(rows) == mask.shape[0] else rows)

    def _close(self, rows: list[int] | None) -> None:
        """Close the open patch of `rows` (None = all): one latent position each."""
        sel = slice(None) if rows is None else torch.tensor(rows, device=self.device)
        h, n = self.open_h[sel], self.open_len[sel]  # (r, cap, dl), (r,)
        r, cap = h.shape[0], h.shape[1]
        zeros = torch.zeros(r, 1, dtype=torch.long, device=self.device)
        layout = PatchLayout(zeros.expand(r, cap), zeros, n[:, None], zeros[:, 0] + 1)
        x = self.model.encoder.pool(h, layout, self.open_ids[sel])  # (r, 1, D)
        done = torch.tensor(self.latent.lengths, device=self.device)[sel]  # closed patches so far
        feed = (self.open_thought[sel] & (done > 0))[:, None, None]
        # a thought reads the last output (and, into_thoughts, the patch its pointer picks)
        state = self.last_out[sel]  # (r, D)
        read = None
        if self.model.reads_into_thoughts and bool(feed.any()):
            K = self.copy_states.shape[1]
            seen = torch.arange(K, device=self.device)[None] < done[:, None]  # (r, K)
            written = self.copy_written[sel] & seen
            read, _ = self.model.thought_reading(
                state, self.copy_states[sel], self.copy_values[sel], written
            )
        fed = self.model.thought_input(state, read)[:, None]  # (r, 1, D)
        if self.model.swaps_quotes_always:  # a repeated patch: its first occurrence's vector
            x = self._quoted_input(sel, x, done, n)
        patch = x[:, 0]  # (r, D) the pooled bytes, before a thought's input replaces them
        x = torch.where(feed, fed, x)
        out = self._latent(rows, x)[:, 0]  # (r, D)
        self.last_out[sel] = out
        if self.model.copy is not None:
            ids = self.open_ids[sel].masked_fill(
                torch.arange(cap, device=self.device)[None] >= n[:, None], self.model.copy.none_id
            )
            self._close_copy(sel, rows, ids, out, patch, ~feed[:, 0, 0])
        self._ctx = None
        self.open_len[sel] = 0
        self.open_ids[sel] = PAD_ID

    def _quoted_input(self, sel, x: torch.Tensor, done: torch.Tensor, n: torch.Tensor):
        """x (r, 1, D) the closing patches' pooled vectors -> the vector of the first earlier
        written patch each repeats, where there is one (`HybridTransformer.quoted_inputs`)."""
        none_id = self.model.copy.none_id
        cap = self.open_ids.shape[1]
        ids = self.open_ids[sel].masked_fill(
            torch.arange(cap, device=self.device)[None] >= n[:, None], none_id
        )  # (r, cap)
        K = self.copy_ids.shape[1]
        seen = torch.arange(K, device=self.device)[None] < done[:, None]  # (r, K)
        first = first_repeat(ids, self.copy_ids[sel], self.copy_written[sel] & seen, none_id)
        D = x.shape[-1]
        index = first.clamp(min=0)[:, None, None].expand(-1, 1, D)  # (r, 1, D)
        quoted = self.copy_values[sel].gather(1, index)  # (r, 1, D)
        return torch.where((first >= 0)[:, None, None], quoted, x)

    def keep(self, rows: list[int]) -> None:
        """Keep only batch rows `rows`."""
        index = torch.tensor(rows, device=self.device)
        for cache in (self.bytes, self.latent, self.ent):
            if cache is not None:
                cache.keep(rows)
        names = ["open_h", "open_len", "open_thought", "open_ids", "last_out", "recent"]
        names += ["recent_ent"]
        if self.model.copy is not None:
            names += ["copy_states", "copy_ids", "copy_probs", "copy_values", "copy_written"]
        for name in names:
            setattr(self, name, getattr(self, name)[index])
        self._ctx = None
        self.batch = len(rows)
