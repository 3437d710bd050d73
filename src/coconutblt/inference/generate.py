"""Generation from a `HybridTransformer`: prefill once, then one cached step per new id.

`generate(model, prompts, ...)` decodes a batch of prompts of any lengths. With
`use_cache=True` (default) a `DecodeState` (model/cache.py) keeps the entropy-model, local
encoder/decoder and latent-transformer caches and runs the latent transformer only when a
patch closes. `use_cache=False` reruns the full forward over each row's whole sequence for
every new id: the slow reference the cached path equals (same greedy ids, logits within float
rounding).

Context limit: a row's prompt (with its thought markers) longer than `max_seq_len` is a
`UserError`; a row stops generating once the model would have to read more than
`max_seq_len` ids (at most `max_seq_len - prompt_len + 1` new ids).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from coconutblt.errors import UserError
from coconutblt.inference.sampling import sample_next
from coconutblt.model.cache import DecodeState
from coconutblt.vocab import (
    BOS_ID,
    END_LATENT_ID,
    EOS_ID,
    LATENT_ID,
    PAD_ID,
    SPECIAL_NAMES,
    START_LATENT_ID,
    VOCAB_SIZE,
    decode_text,
    encode,
)

Prompt = str | bytes | Sequence[int]

__all__ = ["Generation", "generate", "parse_prompt", "sample_next", "thought_ids"]


@dataclass
class Generation:
    """Per row: `prompts` (the ids the model read first, thought markers included) and
    `tokens` (the new ids, a final EOS kept). `logits[row]` (n_new, V) when asked for.
    Times in seconds: `prefill_s` up to the first next-id logits, `decode_s` the rest."""

    prompts: list[list[int]]
    tokens: list[list[int]]
    logits: list[torch.Tensor] | None
    prefill_s: float
    decode_s: float

    @property
    def texts(self) -> list[str]:
        """New ids as text, specials shown as `<|name|>`."""
        return [decode_text(t) for t in self.tokens]

    @property
    def n_new(self) -> int:
        return sum(len(t) for t in self.tokens)

    @property
    def bytes_per_s(self) -> float:
        """New ids per second, prefill included."""
        return self.n_new / max(self.prefill_s + self.decode_s, 1e-9)

    @property
    def decode_bytes_per_s(self) -> float:
        """New ids per second after the first (each needs one decoding step)."""
        steps = self.n_new - len(self.tokens)
        return steps / max(self.decode_s, 1e-9)


def thought_ids(n: int, markers: bool = True) -> list[int]:
    """`<|start-latent|>`, n × `<|latent|>`, `<|end-latent|>` (only the thoughts without markers)."""
    thoughts = [LATENT_ID] * n
    return [START_LATENT_ID, *thoughts, END_LATENT_ID] if markers else thoughts


def parse_prompt(text: str) -> list[int]:
    """Text -> ids, with `<|name|>` markers (e.g. `<|bos|>`, `<|latent|>`) as their ids."""
    names = {name: i for i, name in SPECIAL_NAMES.items()}
    ids: list[int] = []
    for part in re.split(r"(<\|[a-z-]+\|>)", text):
        ids += [names[part]] if part in names else encode(part)
    return ids


def _as_rows(prompts: Prompt | Sequence[Prompt]) -> list[list[int]]:
    if isinstance(prompts, (str, bytes)):
        return [encode(prompts)]
    if isinstance(prompts, torch.Tensor):
        return [prompts.tolist()] if prompts.dim() == 1 else prompts.tolist()
    prompts = list(prompts)
    if prompts and all(isinstance(p, int) for p in prompts):
        return [list(prompts)]
    return [encode(p) if isinstance(p, (str, bytes)) else [int(i) for i in p] for p in prompts]


class _Recompute:
    """The reference: a full forward over each row's whole sequence for every new id."""

    def __init__(self, model) -> None:
        self.model = model
        self.device = next(model.parameters()).device

    def _last_logits(self) -> torch.Tensor:
        rows = []
        for seq in self.seqs:
            ids = torch.tensor([seq], device=self.device)
            rows.append(self.model(ids).logits[0, -1])
        return torch.stack(rows)  # (b, V)

    def prefill(self, prompts: list[list[int]]) -> torch.Tensor:
        self.seqs = [list(p) for p in prompts]
        return self._last_logits()

    def step(self, ids: torch.Tensor) -> torch.Tensor:
        for seq, i in zip(self.seqs, ids.tolist(), strict=True):
            seq.append(i)
        return self._last_logits()

    def keep(self, rows: list[int]) -> None:
        self.seqs = [self.seqs[r] for r in rows]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generate(
    model,
    prompts: Prompt | Sequence[Prompt],
    max_new_tokens: int = 64,
    *,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    thoughts: int = 0,
    eos_id: int | None = EOS_ID,
    use_cache: bool = True,
    return_logits: bool = False,
    suppress_ids: Sequence[int] = (),
    markers: bool = True,
) -> Generation:
    """Continue each prompt (text, bytes or ids; one or a list) by up to `max_new_tokens` ids.

    Greedy when `temperature` <= 0; otherwise sampling with `top_k` / `top_p` from a generator
    seeded with `seed`. `thoughts=N` appends `<|start-latent|>`, N `<|latent|>` positions (each
    fed the previous latent output) and `<|end-latent|>` to every prompt (`markers=False`: the
    thoughts alone, for models trained with `curriculum.markers=false`). A row stops after
    `eos_id` (kept in its tokens), after `max_new_tokens`, or at the context limit (see the
    module doc). PAD and BOS are never generated, nor any id in `suppress_ids`.
    """
    cfg = model.config
    rows = [p + thought_ids(thoughts, markers) if thoughts > 0 else p for p in _as_rows(prompts)]
    for b, p in enumerate(rows):
        where = f"prompt {b}" if len(rows) > 1 else "prompt"
        if not p:
            raise UserError(f"{where} is empty; give at least one byte (or <|bos|>)")
        if len(p) > cfg.max_seq_len:
            extra = (
                f" with {len(thought_ids(thoughts, markers))} thought ids" if thoughts > 0 else ""
            )
            raise UserError(
                f"{where} is {len(p)} ids{extra}, longer than the model's context "
                f"max_seq_len={cfg.max_seq_len}; shorten it"
            )
        if max(p) >= cfg.vocab_size or min(p) < 0:
            raise UserError(f"{where} holds an id outside the vocabulary [0, {cfg.vocab_size})")
    device = next(model.parameters()).device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    suppress = [PAD_ID, BOS_ID, *range(VOCAB_SIZE, cfg.vocab_size), *suppress_ids]
    limits = [min(max_new_tokens, cfg.max_seq_len - len(p) + 1) for p in rows]
    tokens: list[list[int]] = [[] for _ in rows]
    kept: list[list[torch.Tensor]] = [[] for _ in rows]

    engine = DecodeState(model, max(limits)) if use_cache else _Recompute(model)
    active = [b for b in range(len(rows)) if limits[b] > 0]
    t0 = time.perf_counter()
    prefill_s = 0.0
    with torch.inference_mode():
        if active:
            logits = engine.prefill([rows[b] for b in active])  # (b, V)
            _sync(device)
            prefill_s = time.perf_counter() - t0
        while active:
            ids = sample_next(logits, temperature, top_k, top_p, generator, suppress)  # (b,)
            still = []
            for i, (b, tok) in enumerate(zip(active, ids.tolist(), strict=True)):
                tokens[b].append(tok)
                if return_logits:
                    kept[b].append(logits[i].float().cpu())
                if tok != eos_id and len(tokens[b]) < limits[b]:
                    still.append(i)
            if not still:
                break
            if len(still) < len(active):
                engine.keep(still)
                active = [active[i] for i in still]
                ids = ids[still]
            logits = engine.step(ids)
        _sync(device)
    total = time.perf_counter() - t0
    out_logits = None
    if return_logits:
        out_logits = [torch.stack(k) if k else torch.zeros(0, cfg.vocab_size) for k in kept]
    return Generation(rows, tokens, out_logits, prefill_s, total - prefill_s)
