"""The one next-id sampler: native byte generation (`inference/generate.py`) and Coconut on
Hugging Face models (`hf/coconut_lm.py`) both pick their next ids here, so greedy, temperature,
top-k and top-p mean the same thing on both paths.

This module imports torch alone, so that `hf/coconut_lm.py` can use it without pulling in the
native model, training or commands.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def sample_next(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int | None = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    suppress: Sequence[int] = (),
) -> torch.Tensor:
    """logits (b, V) -> ids (b,): argmax when temperature <= 0, else a sample at
    `temperature` from the `top_k` most likely ids (0 or None = all) within top-p mass `top_p`.

    Ids in `suppress` are never picked. Greedy is exactly argmax of `logits` as given and draws
    nothing from `generator`; sampling works in float32 and draws one `torch.multinomial` from
    `generator` per call, so a generator seeded the same way gives the same ids (None: torch's
    global generator). The input `logits` are never modified.
    """
    if suppress:
        logits = logits.clone()  # the caller's tensor stays as it was
        logits[:, list(suppress)] = float("-inf")
    if temperature <= 0:
        # argmax in the logits' own dtype: a float64 model's near-ties stay resolved as in
        # float64 (a cast to float32 could merge or flip them)
        return logits.argmax(dim=-1)
    scores = logits.float() / temperature
    if top_k is not None and 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]  # (b, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        probs = sorted_scores.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs >= top_p  # mass before this id already reaches p
        sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
        scores = scores.scatter(1, order, sorted_scores)
    probs = scores.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
