"""`HybridTransformer`: bytes -> patches -> latent transformer (+ continuous thoughts) -> bytes.

Read top to bottom: `forward` runs the byte encoder once, chooses patch boundaries, pools one
vector per patch, runs the latent transformer (in n+1 cached passes when the batch holds n
continuous thoughts), and decodes every byte from the latent state of the patch before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from coconutblt.model.config import ModelConfig
from coconutblt.model.copy import (
    CopyPath,
    byte_rows_and_offsets,
    copy_loss,
    copy_targets,
    patch_digests,
    source_at,
    swap_in_quoted,
    text_digests,
    thought_quote_loss,
)
from coconutblt.model.entropy import EntropyModel
from coconutblt.model.latent import ContinuousLatentModule, LatentTransformer
from coconutblt.model.layers import causal_mask, init_weights
from coconutblt.model.local import LocalDecoder, LocalEncoder
from coconutblt.model.patching import (
    PatchLayout,
    entropy_from_logits,
    layout_from_starts,
    patch_bytes,
    patch_starts_announced,
    thought_patches,
)
from coconutblt.vocab import PAD_ID


@dataclass
class HybridOutput:
    """logits (B, T, V): row t predicts the id at t+1. loss: mean next-id cross-entropy over
    labels != -100. estimator_loss: the learned entropy estimator's next-byte loss (or None).
    layout: the patches used."""

    logits: torch.Tensor
    loss: torch.Tensor | None
    estimator_loss: torch.Tensor | None
    layout: PatchLayout
    entropies: torch.Tensor | None
    next_patch_loss: torch.Tensor | None = None
    copy_loss: torch.Tensor | None = None  # the copy pointer's loss (model.copy_path)
    # the thoughts' pointers' loss (model.copy_into_thoughts, given the replaced steps' quotes)
    thought_copy_loss: torch.Tensor | None = None


def next_id_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of row t's logits (B, T, V) against labels[t+1] (B, T), over the
    labels that are not -100."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
    )


class HybridTransformer(nn.Module):
    def __init__(self, config: ModelConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        if config is None:
            config = ModelConfig(**overrides)
        elif overrides:
            config = replace(config, **overrides)
        self.config = cfg = config
        self.encoder = LocalEncoder(cfg)
        self.latent = LatentTransformer(cfg)
        self.decoder = LocalDecoder(cfg)
        self.lm_head = nn.Linear(cfg.d_local, cfg.vocab_size, bias=False)
        self.bos_latent = nn.Parameter(torch.zeros(cfg.d_model))  # context of the first patch
        self.thought_head = nn.Linear(cfg.d_model, cfg.d_model) if cfg.thought_head else None
        self.copy = (
            CopyPath(
                cfg.d_model,
                cfg.d_local,
                cfg.copy_dim,
                cfg.vocab_size,
                cfg.copy_into_thoughts,
                cfg.thought_read_init,
            )
            if cfg.copy_path
            else None
        )
        self.estimator = None
        self.entropy_model = None
        if cfg.patcher == "entropy":
            if cfg.entropy_patcher.estimator == "learned":
                self.estimator = nn.Sequential(
                    nn.RMSNorm(cfg.d_local, eps=cfg.norm_eps),
                    nn.Linear(cfg.d_local, cfg.vocab_size, bias=False),
                )
            else:
                self.entropy_model = EntropyModel(
                    cfg.entropy_patcher.model, cfg.vocab_size, cfg.init_std
                )
                self.entropy_model.requires_grad_(False)
        self.init_weights()

    def init_weights(self) -> None:
        """Initialise every parameter (also after building on the `meta` device + `to_empty`)."""
        init_weights(self, self.config.init_std)
        nn.init.normal_(self.bos_latent, std=self.config.init_std)
        if self.thought_head is not None:  # starts as the paper's mechanism: the state itself
            nn.init.eye_(self.thought_head.weight)
            nn.init.zeros_(self.thought_head.bias)
        if self.copy is not None:
            self.copy.init_weights()
        for m in self.modules():
            if isinstance(m, ContinuousLatentModule):
                nn.init.normal_(m.bank, std=1.0)
                nn.init.zeros_(m.gate)

    # ------------------------------------------------------------------ patching
    def entropies(
        self,
        ids: torch.Tensor,
        h: torch.Tensor | None,
        positions: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        caches: list | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Next-byte entropies (B, T) that drive the entropy patcher (None for the other
        patchers), and the learned estimator's logits: the one place that says which, for
        training, the patch curriculum and decoding. h (B, T, dl): byte states (read by the
        estimator only); decoding passes the frozen entropy model's `positions`, `mask` and
        `caches`."""
        if self.estimator is not None:
            est_logits = self.estimator(h.detach())
            return entropy_from_logits(est_logits.detach()), est_logits
        if self.entropy_model is not None:
            with torch.no_grad():
                return self.entropy_model.entropies(ids, positions, mask, caches), None
        return None, None

    def boundaries(self, ids: torch.Tensor, entropies: torch.Tensor | None) -> torch.Tensor:
        return self.boundaries_announced(ids, entropies)[0]

    def boundaries_announced(
        self, ids: torch.Tensor, entropies: torch.Tensor | None, cap: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(starts (B, T), announced (B, T + 1)) under the configured patcher: see
        `patch_starts_announced`. `cap` replaces the length cap (decoding applies its own to
        the open patch, so it reads only the content rule)."""
        cfg = self.config
        ep = cfg.entropy_patcher
        return patch_starts_announced(
            ids,
            cfg.patcher,
            cfg.patch_cap if cap is None else cap,
            entropies,
            ep.threshold,
            ep.rule,
            ep.relative_threshold,
        )

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        patch_starts_override: torch.Tensor | None = None,
        thought_quotes: torch.Tensor | None = None,
    ) -> HybridOutput:
        """input_ids (B, T) ids in [0, vocab); labels (B, T) with -100 where no loss is taken.

        `patch_starts_override` (B, T) bool lets a caller impose boundaries (patch curriculum,
        analysis); by default the configured patcher decides. `thought_quotes` (B, N, L): the
        bytes each row's n-th thought's replaced step quotes (`StagedExample.thought_quotes`),
        the targets of the thoughts' pointers with `model.copy_into_thoughts`.
        """
        cfg = self.config
        B, T = input_ids.shape
        if T > cfg.max_seq_len:
            raise ValueError(f"sequence of {T} bytes is longer than max_seq_len={cfg.max_seq_len}")
        if input_ids.numel() and (
            int(input_ids.min()) < 0 or int(input_ids.max()) >= cfg.vocab_size
        ):
            bad = (
                int(input_ids.max())
                if int(input_ids.max()) >= cfg.vocab_size
                else int(input_ids.min())
            )
            raise ValueError(
                f"input id {bad} is outside the vocabulary [0, {cfg.vocab_size}); bytes are 0..255"
            )
        byte_pos = torch.arange(T, device=input_ids.device).expand(B, T)
        h = self.encoder.byte_states(input_ids, byte_pos)  # (B, T, dl)
        ent, est_logits = self.entropies(input_ids, h)
        closes = None  # (B, T): byte t is known to end its patch once it is read
        if patch_starts_override is not None:
            starts = patch_starts_override
        else:
            starts, announced = self.boundaries_announced(input_ids, ent)
            if cfg.closed_patch_context:
                closes = announced[:, 1:]
        layout = layout_from_starts(starts)
        patches = self.encoder.pool(h, layout, input_ids)  # (B, P, D)
        is_thought = thought_patches(input_ids, layout)  # (B, P)
        # the thoughts' pointers, collected when they have targets
        quoted = labels is not None and thought_quotes is not None and self.reads_into_thoughts
        readings = [] if quoted else None
        fed = self.quoted_inputs(patches, input_ids, layout)  # (B, P, D)
        latent_out = self.run_latent(fed, is_thought, readings)  # (B, P, D)
        context = self.previous_patch_context(latent_out, layout, closes)  # (B, T, D)
        copy_in, pointer = None, None
        if self.copy is not None:
            pointer = self.copy_pointer(latent_out, latent_out, layout.lengths > 0)  # (B, P, P)
            copy_in = self.copy_inputs(input_ids, layout, closes, pointer)  # (B, T, dl)
        logits = self.lm_head(self.decoder(h, context, byte_pos, extra=copy_in))  # (B, T, V)
        loss = next_id_loss(logits, labels) if labels is not None else None
        est_loss = None
        if est_logits is not None:
            est_loss = next_id_loss(est_logits, input_ids.masked_fill(input_ids == PAD_ID, -100))
        next_patch_loss = None
        if labels is not None and cfg.next_patch_loss_weight > 0:
            next_patch_loss = self.next_patch_loss(latent_out, fed, layout, is_thought)
        pointer_loss = None
        if labels is not None and pointer is not None:
            pointer_loss = copy_loss(pointer, copy_targets(input_ids, layout))
        quote_loss = None
        if readings:
            digests = patch_digests(input_ids, layout)  # (B, P)
            quote_loss = thought_quote_loss(
                readings, digests, is_thought, text_digests(thought_quotes.to(input_ids.device))
            )
        return HybridOutput(
            logits, loss, est_loss, layout, ent, next_patch_loss, pointer_loss, quote_loss
        )

    # ------------------------------------------------------------------ copy path
    @property
    def swaps_quotes_always(self) -> bool:
        """`model.quote_swap_prob` 1: a repeated patch is fed its first occurrence's vector in
        generation too, not only in training."""
        return self.config.quote_swap_prob >= 1.0

    def quoted_inputs(
        self, patches: torch.Tensor, ids: torch.Tensor, layout: PatchLayout
    ) -> torch.Tensor:
        """patches (B, P, D) pooled vectors -> (B, P, D) the latent's inputs: with
        `model.quote_swap_prob`, a patch that repeats an earlier one may take that one's vector
        (always at 1; in training only, with that probability, below 1)."""
        p = self.config.quote_swap_prob
        if p <= 0 or not (self.training or self.swaps_quotes_always):
            return patches
        return swap_in_quoted(patches, copy_targets(ids, layout), p)

    def with_new_parts(self, weights: dict) -> tuple[dict, list[str]]:
        """`weights` (a state dict) completed with this model's own values for the copy path's
        parts that `weights` lacks, and the names added: a copy path may be added to a model
        trained without one, and it then computes exactly what that model did (with
        `thought_read_init="identity"`, except that its thoughts read the picked patch)."""
        own = self.state_dict()
        added = [k for k in own if k.startswith("copy.") and k not in weights]
        return {**weights, **{k: own[k] for k in added}}, added

    def copy_pointer(
        self, queries: torch.Tensor, keys: torch.Tensor, key_real: torch.Tensor
    ) -> torch.Tensor:
        """queries (B, Q, D) latent states of the last Q of K patches; keys (B, K, D) those of
        all K; key_real (B, K) -> pointer log-probabilities (B, Q, K) over patches j <= own."""
        Q, K = queries.shape[1], keys.shape[1]
        own = torch.arange(K - Q, K, device=keys.device)  # (Q,) each query's own patch index
        seen = torch.arange(K, device=keys.device)[None, :] <= own[:, None]  # (Q, K)
        return self.copy.log_probs(queries, keys, seen[None] & key_real[:, None, :])

    def copy_inputs(
        self,
        ids: torch.Tensor,
        layout: PatchLayout,
        closes: torch.Tensor | None,
        pointer: torch.Tensor,
    ) -> torch.Tensor:
        """ids (B, T), pointer (B, P, P) -> (B, T, dl): what the decoder reads at each byte of
        the patches the pointer of the byte's latent row points at, at the next byte's offset."""
        B, T = ids.shape
        if closes is None:  # imposed boundaries: every byte reads the patch before its own
            closes = torch.zeros_like(ids, dtype=torch.bool)
        row, offset = byte_rows_and_offsets(layout, closes)  # (B, T) each
        table = patch_bytes(ids, layout, self.config.patch_cap, self.copy.none_id)  # (B, P, cap)
        source = source_at(table, offset, self.copy.none_id)  # (B, T, P)
        P = pointer.shape[1]
        probs = pointer.exp().gather(1, row.clamp(min=0)[:, :, None].expand(B, T, P))  # (B, T, P)
        probs = probs * (row >= 0)[:, :, None]  # the bytes before any patch closed read nothing
        return self.copy.byte_features(probs, source)

    def next_patch_loss(
        self,
        latent_out: torch.Tensor,
        patches: torch.Tensor,
        layout: PatchLayout,
        is_thought: torch.Tensor,
    ) -> torch.Tensor:
        """InfoNCE: latent_out[:, i] must pick the (detached) vector of patch i+1 out of all the
        batch's patch vectors by cosine similarity.

        A continuous thought is fed the previous final state as if it were a patch vector. In a
        tied-embedding LM the final state already resembles the next token's embedding; in the
        hybrid model the input space (pooled bytes) and the output space (decoder context) are
        unrelated, and the model must learn to read a fed-back state from scratch at every
        stage. With this loss the output also points at the next patch's vector, so a thought
        reads roughly like the step it replaces. Thought and padding patches are not targets;
        identical patch vectors all count as the right answer.
        """
        target = patches[:, 1:].detach()  # (B, P-1, D)
        real = (layout.lengths[:, 1:] > 0) & ~is_thought[:, 1:]  # (B, P-1)
        if not bool(real.any()):
            return latent_out.sum() * 0.0
        q_in, k_in = latent_out[:, :-1][real], target[real]  # (N, D) each
        cap = self.config.next_patch_max_pairs
        if cap and len(k_in) > cap:  # an evenly spaced subset: the (N, N) logits stay small
            keep = torch.linspace(0, len(k_in) - 1, cap, device=k_in.device).long()
            q_in, k_in = q_in[keep], k_in[keep]
        q = F.normalize(self.thought_input(q_in).float(), dim=-1)  # (N, D)
        k = F.normalize(k_in.float(), dim=-1)  # (N, D)
        logits = q @ k.T / self.config.next_patch_temperature  # (N, N)
        same = (k @ k.T) > 0.9999  # (N, N) copies of one vector
        first = same.float().argmax(1)  # (N,) the first copy is the label
        n = torch.arange(len(k), device=k.device)
        logits = logits.masked_fill(same & (n[None] != first[:, None]), float("-inf"))
        return F.cross_entropy(logits, first)

    def previous_patch_context(
        self, latent_out: torch.Tensor, layout: PatchLayout, closes: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, P, D) patch states -> (B, T, D): for each byte, the state of the latest patch
        known to be complete when the byte is read: the patch before its own, or, where
        `closes[b, t]` (the byte ends its patch and the bytes so far say so), its own patch,
        so the next patch's first byte is decoded from the state that has read this patch
        (what BLT does). Which one is used never depends on a later byte."""
        B, P, D = latent_out.shape
        table = torch.cat([self.bos_latent.expand(B, 1, D), latent_out], dim=1)  # (B, P+1, D)
        index = layout.patch_id if closes is None else layout.patch_id + closes.long()  # (B, T)
        return table.gather(1, index.unsqueeze(-1).expand(-1, -1, D))

    # ------------------------------------------------------------------ continuous thoughts
    def thought_input(self, state: torch.Tensor, read: torch.Tensor | None = None) -> torch.Tensor:
        """(..., D) final latent state -> (..., D) input vector of a following `<|latent|>`;
        `read` (`thought_reading`) is added to it."""
        x = state if self.thought_head is None else self.thought_head(state)
        return x if read is None else x + read

    @property
    def reads_into_thoughts(self) -> bool:
        return self.copy is not None and self.copy.thought_read is not None

    def thought_reading(
        self,
        state: torch.Tensor,
        outputs: torch.Tensor,
        patches: torch.Tensor,
        written: torch.Tensor,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """What a thought that follows `state` (B, D) reads through the copy pointer
        (`model.copy_into_thoughts`) and that pointer's log-probs (B, K), or (None, None)
        without it: outputs (B, K, D) and patches (B, K, D) are the latent outputs and input
        vectors of the K positions before the thought, written (B, K) those that are real
        written patches (not thoughts, not padding). Training, prefill and decoding all call
        this."""
        if not self.reads_into_thoughts:
            return None, None
        return self.copy.thought_reading(state, outputs, patches, written)

    def run_latent(
        self, x: torch.Tensor, is_thought: torch.Tensor, readings: list | None = None
    ) -> torch.Tensor:
        """x (B, P, D) patch vectors; is_thought (B, P) -> (B, P, D) final latent states.

        A thought's input is the final state at the previous position, so thoughts are computed
        in order: rows are left-aligned so that their first thoughts share a column, then each
        pass runs the positions up to the next thought column with a KV cache. n thoughts per
        row cost n+1 passes, each over new positions only. `readings`, when given, receives
        each pass's thought pointers in each row's own columns: (column (B,), log-probs (B, P)).
        """
        B, P, D = x.shape
        positions = torch.arange(P, device=x.device).expand(B, P)
        if not bool(is_thought.any()):
            return self.latent(x, positions)
        has = is_thought.any(1)
        first = torch.where(
            has, is_thought.float().argmax(1), torch.zeros_like(has, dtype=torch.long)
        )
        shift = torch.where(has, first[has].max() - first, torch.zeros_like(first))  # (B,)
        Pa = P + int(shift.max())
        dest = positions + shift[:, None]  # (B, P) column of each patch after alignment
        xa = x.new_zeros(B, Pa, D).scatter(1, dest.unsqueeze(-1).expand(-1, -1, D), x)
        valid = torch.zeros(B, Pa, dtype=torch.bool, device=x.device).scatter(1, dest, True)
        thought_a = torch.zeros_like(valid).scatter(1, dest, is_thought)
        cols = torch.arange(Pa, device=x.device).expand(B, Pa)
        pos_a = (cols - shift[:, None]).clamp(min=0)
        full_mask = causal_mask(cols, cols, key_valid=valid) if bool(shift.any()) else None

        caches = self.latent.new_caches()
        thought_cols = torch.nonzero(thought_a.any(0)).flatten().tolist()

        def run(chunk: torch.Tensor, start: int, stop: int) -> torch.Tensor:
            mask = full_mask[:, :, start:stop, :stop] if full_mask is not None else None
            return self.latent(chunk, pos_a[:, start:stop], mask, caches)

        written = valid & ~thought_a  # (B, Pa) what a thought may read
        aligned = [] if readings is not None else None
        out_a = self.run_thought_passes(xa, thought_a, thought_cols, run, written, aligned)
        for col, log_probs in aligned or []:  # back to each row's own columns
            full = F.pad(log_probs, (0, Pa - col), value=float("-inf"))  # (B, Pa)
            readings.append((col - shift, full.gather(1, dest)))  # (B,), (B, P)
        return out_a.gather(1, dest.unsqueeze(-1).expand(-1, -1, D))

    def run_thought_passes(
        self,
        x: torch.Tensor,
        is_thought: torch.Tensor,
        cuts: list[int],
        run: Callable[[torch.Tensor, int, int], torch.Tensor],
        written: torch.Tensor,
        readings: list | None = None,
    ) -> torch.Tensor:
        """x (B, P, D) patch vectors -> (B, P, D) latent outputs, one pass per span between
        `cuts` (sorted columns where some row has a thought). At a cut, rows whose patch there
        is a thought (`is_thought` (B, P)) get the previous pass's last output (through
        `thought_input`) as input instead. `run(chunk, start, stop)` runs the latent
        transformer on columns start..stop-1 with the caller's positions, mask and caches:
        training (`run_latent`) and the cached prefill share this loop. `written` (B, P): the
        real written patches, which a thought may read (`thought_reading`); `readings`, when
        given, receives (column, the thoughts' pointer log-probs (B, column)) per pass."""
        outs: list[torch.Tensor] = []
        start = 0
        for stop in [*cuts, x.shape[1]]:
            if stop <= start:
                continue
            chunk = x[:, start:stop]
            if start in cuts and start > 0:
                state = outs[-1][:, -1]  # (B, D)
                before = torch.cat(outs, dim=1) if self.reads_into_thoughts else None
                read, log_probs = self.thought_reading(
                    state, before, x[:, :start], written[:, :start]
                )
                if readings is not None and log_probs is not None:
                    readings.append((start, log_probs))
                last = self.thought_input(state, read)  # (B, D)
                fed = torch.where(is_thought[:, start, None], last, chunk[:, 0])  # (B, D)
                chunk = torch.cat([fed[:, None], chunk[:, 1:]], dim=1)
            outs.append(run(chunk, start, stop))
            start = stop
        return torch.cat(outs, dim=1)

    # ------------------------------------------------------------------ helpers
    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
