"""`hf tokens`: what adding the three Coconut tokens changes in a base model (the plan's
milestone 2), printed so that a user can check it before training anything.

Why its own step: the tokens change the vocabulary and the embedding matrix, and a mistake
there (tokens split into pieces, rows initialised badly, the base model's text changed) would
only show up stages later as poor accuracy. The report shows the ids, a tokenization round
trip, and that greedy text from the base model is the same before and after.
"""

from __future__ import annotations

import torch

from coconutblt.errors import UserError
from coconutblt.hf.coconut_lm import (
    LATENT_TOKENS,
    CoconutForCausalLM,
    cache_kw,
    load_pretrained,
    returned_cache,
)


def tokens_report(base_model: str, prompt: str = "The answer is", print_fn=print) -> dict:
    """Milestone 2 of the plan: vocabulary before/after, ids, tokenization, generation check."""
    model, tokenizer = load_pretrained(base_model)
    model.eval()
    vocab_before = len(tokenizer)
    rows_before = model.get_input_embeddings().weight.shape[0]
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=True)
    if not prompt_ids:
        raise UserError("--prompt tokenizes to nothing; pass some text")
    before = _greedy_ids(model, prompt_ids, 12)

    init = tokenizer.encode("<<", add_special_tokens=False)
    wrapper = CoconutForCausalLM(model, tokenizer)
    ids = wrapper.token_ids
    vocab_after = len(tokenizer)
    rows_after = model.get_input_embeddings().weight.shape[0]
    after = _greedy_ids(model, prompt_ids, 12)
    again = CoconutForCausalLM(model, tokenizer).token_ids

    example = "Q?\n" + LATENT_TOKENS[0] + LATENT_TOKENS[1] * 2 + LATENT_TOKENS[2] + "### 4"
    example_ids = tokenizer.encode(example, add_special_tokens=False)
    pieces = tokenizer.convert_ids_to_tokens(example_ids)
    decoded = tokenizer.decode(example_ids)

    p = print_fn
    p(f"Base model: {base_model} ({type(model).__name__})")
    p(f"Original vocab size: {vocab_before}")
    p(f"New vocab size: {vocab_after} (+{vocab_after - vocab_before})")
    p(f"Embedding rows: {rows_before} -> {rows_after}")
    for name, i in zip(LATENT_TOKENS, (ids.start, ids.latent, ids.end), strict=True):
        p(f"  {name:<18} id {i}")
    if len(init) == 1 and init[0] < rows_before:
        p(f'New rows initialised from the embedding of "<<" (id {init[0]})')
    else:
        p("New rows initialised from the mean of the existing embeddings")
    p(f"Adding again changes nothing: {again == ids and len(tokenizer) == vocab_after}")
    p(f"Tokenization example: {example!r}")
    p(f"  ids:    {example_ids}")
    p(f"  pieces: {pieces}")
    p(f"  round trip: {'ok' if decoded == example else repr(decoded)}")
    p(f"Generation check (greedy, 12 tokens) from {prompt!r}:")
    p(f"  before: {tokenizer.decode(before)!r}")
    p(f"  after:  {tokenizer.decode(after)!r}")
    p(f"  unchanged: {before == after}")
    return {
        "vocab_before": vocab_before,
        "vocab_after": vocab_after,
        "token_ids": ids,
        "generation_unchanged": before == after,
    }


def _greedy_ids(model, prompt_ids: list[int], n: int) -> list[int]:
    """Plain greedy continuation with the base model and its cache (no thoughts)."""
    device = model.get_input_embeddings().weight.device
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True)
        tokens = []
        for _ in range(n):
            token = out.logits[:, -1].argmax(-1)  # (1,)
            tokens.append(int(token))
            out = model(input_ids=token[:, None], **cache_kw(model, returned_cache(out)))
    return tokens
