"""CoconutForCausalLM on tiny random GPT-2 and Llama models built from configs (no weights).

The reference everything is checked against is the definition itself, written as slowly as
possible: one example at a time, the whole model rerun from scratch for every thought.
"""

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import torch  # noqa: E402

from coconutblt.hf.coconut_lm import (  # noqa: E402
    LATENT_TOKENS,
    CoconutForCausalLM,
    add_special_tokens,
    enable_checkpointing,
    left_align,
)
from coconutblt.hf.tiny import tiny_gpt2, tiny_llama, tiny_tokenizer  # noqa: E402


def _float64_sdpa_masks_break() -> bool:
    """transformers 4.x (GPT-2 before 4.52) builds a padded SDPA mask with torch.full's default
    float32, which cannot hold float64's minimum: GPT-2 in float64 then needs eager attention."""
    try:
        from transformers.modeling_attn_mask_utils import AttentionMaskConverter
    except ImportError:  # transformers 5: masks come from masking_utils
        return False
    try:
        AttentionMaskConverter._make_causal_mask((1, 2), torch.float64, torch.device("cpu"))
    except RuntimeError:
        return True
    return False


def make_wrapper(kind, dtype=torch.float32):
    tok = tiny_tokenizer()
    tok.pad_token = tok.eos_token
    if kind == "gpt2":
        eager = dtype == torch.float64 and _float64_sdpa_masks_break()
        base = tiny_gpt2(len(tok), tok.eos_token_id, attn_implementation="eager" if eager else None)
    else:
        base = tiny_llama(len(tok), tok.eos_token_id)
    model = CoconutForCausalLM(base, tok).to(dtype)
    with torch.no_grad():  # the three new rows start as copies of "<<": break the exact ties
        w = base.get_input_embeddings().weight
        w[-3:] += 0.02 * torch.randn(3, w.shape[1], generator=torch.Generator().manual_seed(1))
    model.eval()
    return model, tok


def encode_rows(tok, model, rows):
    """rows: list of (prompt, n_thoughts or None, target) -> (ids, labels) lists per row."""
    out = []
    for prompt, n, target in rows:
        p = tok.encode(prompt, add_special_tokens=False)
        if n is not None:
            p = p + model.thought_suffix(n)
        t = tok.encode(target, add_special_tokens=False) + [tok.eos_token_id]
        out.append((p + t, [-100] * len(p) + t))
    return out


def pad_batch(encoded, pad_id, side):
    """Pad rows of (ids, labels) on `side` -> ids, mask, labels tensors (B, T)."""
    T = max(len(ids) for ids, _ in encoded)
    ids_t, mask_t, lab_t = [], [], []
    for ids, labels in encoded:
        n = T - len(ids)
        pad, zeros, ign = [pad_id] * n, [0] * n, [-100] * n
        if side == "left":
            (
                ids_t.append(pad + ids),
                mask_t.append(zeros + [1] * len(ids)),
                lab_t.append(ign + labels),
            )
        else:
            (
                ids_t.append(ids + pad),
                mask_t.append([1] * len(ids) + zeros),
                lab_t.append(labels + ign),
            )
    return torch.tensor(ids_t), torch.tensor(mask_t), torch.tensor(lab_t)


ROWS = [
    ("Natalia sold 48/2 clips.\n", 2, "<<48+24=72>>\n### 72"),
    ("How much did she earn?\n", 1, "### 10"),
    ("Out of 600 employees, 30% got promoted while some did not get either.\n", 2, "### 360"),
    ("Weng earns 12/60\n", None, "<<12/60=0.2>>\n### 10"),
]


def reference_logits(base, latent_id, ids):
    """Slow definition for one row (T,): rerun the whole model from scratch once per thought;
    each <|latent|> input is the last-layer hidden state at the previous position."""
    embeds = base.get_input_embeddings()(ids[None])  # (1, T, D)
    for p in (ids == latent_id).nonzero().flatten().tolist():
        out = base(inputs_embeds=embeds[:, :p], use_cache=False, output_hidden_states=True)
        thought = out.hidden_states[-1][:, -1]  # (1, D)
        embeds = torch.cat([embeds[:, :p], thought[:, None], embeds[:, p + 1 :]], dim=1)
    return base(inputs_embeds=embeds, use_cache=False).logits[0], embeds[0]  # (T, V), (T, D)


def token_ce(logits, labels):
    """Sum of next-token CE over labels != -100 and their count; logits (T, V), labels (T,)."""
    lab = labels[1:]
    keep = lab != -100
    ce = torch.nn.functional.cross_entropy(logits[:-1][keep].float(), lab[keep], reduction="sum")
    return ce, int(keep.sum())


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_no_thoughts_loss_equals_base_exactly(kind):
    model, tok = make_wrapper(kind)
    rows = [(p, None, t) for p, _, t in ROWS]
    ids, mask, labels = pad_batch(encode_rows(tok, model, rows), tok.pad_token_id, "right")
    out = model(ids, mask, labels)
    base = model.base_model(input_ids=ids, attention_mask=mask, labels=labels)
    assert out.n_passes == 1
    assert torch.equal(out.loss, base.loss)
    real = mask.bool()  # padding positions are free to differ (their position ids do)
    assert torch.equal(out.logits[real], base.logits[real])


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_batch_matches_slow_reference_logits_and_grads(kind, side):
    """Batched, cached n+1-pass forward == per-row from-scratch reference: logits and grads."""
    model, tok = make_wrapper(kind)
    encoded = encode_rows(tok, model, ROWS)
    ids, mask, labels = pad_batch(encoded, tok.pad_token_id, side)
    latent = model.token_ids.latent
    out = model(ids, mask, labels)
    # thoughts sit at different columns across rows, so passes = distinct columns + 1
    n_cols = int((ids == latent).any(0).sum())
    assert out.n_passes == n_cols + 1 and n_cols >= 3
    out.loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    total, count = 0.0, 0
    for b, (row_ids, row_labels) in enumerate(encoded):
        row_ids, row_labels = torch.tensor(row_ids), torch.tensor(row_labels)
        ref, _ = reference_logits(model.base_model, latent, row_ids)
        real = mask[b].bool()
        torch.testing.assert_close(out.logits[b, real], ref, atol=2e-5, rtol=1e-4)
        ce, k = token_ce(ref, row_labels)
        total, count = total + ce, count + k
    ref_loss = total / count
    torch.testing.assert_close(out.loss, ref_loss, atol=1e-5, rtol=1e-5)
    ref_loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(got[name], p.grad, atol=1e-5, rtol=1e-3, msg=name)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_thoughts_are_fed_back_hidden_states(kind):
    """Fixed point: rerunning the model on the returned embeddings gives, at every position
    before a thought, exactly the vector placed at that thought."""
    model, tok = make_wrapper(kind)
    ids, _ = encode_rows(tok, model, ROWS[:1])[0]
    ids = torch.tensor([ids])
    out = model(ids)
    hidden = model.base_model(
        inputs_embeds=out.inputs_embeds, output_hidden_states=True
    ).hidden_states[-1][0]  # (T, D)
    positions = (ids[0] == model.token_ids.latent).nonzero().flatten()
    assert len(positions) == 2
    torch.testing.assert_close(out.inputs_embeds[0, positions], hidden[positions - 1])
    # ...and not the <|latent|> token's own embedding row
    own = model.base_model.get_input_embeddings().weight[model.token_ids.latent]
    assert not torch.allclose(out.inputs_embeds[0, positions[0]], own)
    _, ref_embeds = reference_logits(model.base_model, model.token_ids.latent, ids[0])
    torch.testing.assert_close(out.inputs_embeds[0], ref_embeds, atol=1e-5, rtol=1e-4)


def _perturb_thought_feed(model, fn):
    """Hook on the base model: replace its last-layer hidden states (used only as thoughts)."""

    def hook(module, args, output):
        if output.hidden_states is not None:
            hs = list(output.hidden_states)
            hs[-1] = fn(hs[-1])
            output.hidden_states = tuple(hs)
        return output

    return model.base_model.register_forward_hook(hook)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_gradients_flow_through_the_thought_chain(kind):
    model, tok = make_wrapper(kind)
    ids, labels = (torch.tensor([x]) for x in encode_rows(tok, model, ROWS[:1])[0])
    emb = model.base_model.get_input_embeddings()
    captured = {}

    def keep(module, args, output):
        output.retain_grad()
        captured["e"] = output

    handle = emb.register_forward_hook(keep)
    model(ids, labels=labels).loss.backward()
    grad_chain = captured["e"].grad[0].clone()  # (T, D) d loss / d input embeddings

    model.zero_grad()
    h2 = _perturb_thought_feed(model, lambda h: h.detach())
    loss_detached = model(ids, labels=labels).loss
    loss_detached.backward()
    grad_cut = captured["e"].grad[0].clone()
    h2.remove()
    handle.remove()

    first = int((ids[0] == model.token_ids.latent).nonzero()[0])
    question = slice(0, first)
    # same loss value, but the question's gradient differs once the chain is cut
    assert (grad_chain[question] - grad_cut[question]).abs().max() > 1e-6
    # the <|latent|> rows' own embeddings get no gradient: they are replaced
    latent_pos = ids[0] == model.token_ids.latent
    assert torch.count_nonzero(grad_chain[latent_pos]) == 0

    # altering the fed-back hidden state changes the loss
    base_loss = model(ids, labels=labels).loss.item()
    h3 = _perturb_thought_feed(model, lambda h: h.roll(1, dims=-1))
    assert abs(model(ids, labels=labels).loss.item() - base_loss) > 1e-4
    h3.remove()
    assert model(ids, labels=labels).loss.item() == pytest.approx(base_loss, abs=1e-6)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_no_cache_and_gradient_checkpointing_paths_equal_cached(kind):
    model, tok = make_wrapper(kind)
    ids, mask, labels = pad_batch(encode_rows(tok, model, ROWS), tok.pad_token_id, "left")
    cached = model(ids, mask, labels)
    slow = model(ids, mask, labels, use_cache=False)
    assert slow.past_key_values is None
    # real positions only: a pad query attends to nothing, and what the model makes of such a
    # row depends on the version (transformers 4.x's SDPA mask lets it see every key)
    real = mask.bool()  # (B, T)
    torch.testing.assert_close(slow.logits[real], cached.logits[real], atol=2e-5, rtol=1e-4)
    # gradient checkpointing drops the cache in training: the wrapper must not use it then
    enable_checkpointing(model.base_model)
    model.train()
    ckpt = model(ids, mask, labels)
    ckpt.loss.backward()
    assert ckpt.past_key_values is None
    torch.testing.assert_close(ckpt.loss, cached.loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_batched_equals_alone(kind):
    model, tok = make_wrapper(kind)
    encoded = encode_rows(tok, model, ROWS)
    ids, mask, labels = pad_batch(encoded, tok.pad_token_id, "left")
    batch = model(ids, mask, labels)
    for b, (row_ids, row_labels) in enumerate(encoded):
        alone = model(torch.tensor([row_ids]), labels=torch.tensor([row_labels]))
        torch.testing.assert_close(
            batch.logits[b, mask[b].bool()], alone.logits[0], atol=2e-5, rtol=1e-4
        )
        ce, k = token_ce(batch.logits[b, mask[b].bool()], torch.tensor(row_labels))
        torch.testing.assert_close(ce / k, alone.loss, atol=1e-5, rtol=1e-5)


def test_special_tokens_added_once_and_survive_save_load(tmp_path):
    tok = tiny_tokenizer()
    n0 = len(tok)
    base = tiny_gpt2(n0, tok.eos_token_id)
    lt = tok.encode("<<", add_special_tokens=False)
    assert len(lt) == 1  # the official init source exists in this vocabulary
    model = CoconutForCausalLM(base, tok)
    assert len(tok) == n0 + 3
    w = base.get_input_embeddings().weight
    assert w.shape[0] == n0 + 3
    ids = model.token_ids
    assert sorted([ids.start, ids.latent, ids.end]) == [n0, n0 + 1, n0 + 2]
    for i in (ids.start, ids.latent, ids.end):
        assert torch.equal(w[i], w[lt[0]])
    # idempotent: a second add changes nothing
    before = w.detach().clone()
    again = CoconutForCausalLM(base, tok)
    assert again.token_ids == ids and len(tok) == n0 + 3
    assert torch.equal(base.get_input_embeddings().weight, before)
    # each token stays whole in text
    enc = tok.encode("q\n" + "".join(LATENT_TOKENS) + "x", add_special_tokens=False)
    assert [ids.start, ids.latent, ids.end] == enc[-4:-1]

    model.save_pretrained(tmp_path / "ckpt", metadata={"stage": 1})
    loaded = CoconutForCausalLM.from_pretrained(tmp_path / "ckpt")
    assert loaded.token_ids == ids and len(loaded.tokenizer) == n0 + 3
    assert loaded.metadata["stage"] == 1
    x = torch.tensor([[5, 6, ids.start, ids.latent, ids.latent, ids.end, 7]])
    torch.testing.assert_close(loaded.eval()(x).logits, model.eval()(x).logits)
    # atomic overwrite leaves no temp folders behind
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_new_rows_use_mean_when_init_token_is_missing():
    tok = tiny_tokenizer()
    n0 = len(tok)
    base = tiny_llama(n0, tok.eos_token_id)
    mean_in = base.get_input_embeddings().weight[:n0].mean(0)
    mean_out = base.get_output_embeddings().weight[:n0].mean(0)
    add_special_tokens(tok, base, init_token="no such single token")
    ids = tok.convert_tokens_to_ids(list(LATENT_TOKENS))
    torch.testing.assert_close(base.get_input_embeddings().weight[ids[1]], mean_in)
    torch.testing.assert_close(base.get_output_embeddings().weight[ids[2]], mean_out)


def test_latent_first_is_an_error():
    model, _ = make_wrapper("gpt2")
    with pytest.raises(ValueError, match="first position"):
        model(torch.tensor([[model.token_ids.latent, 5, 6]]))


GEN_PROMPTS = [
    "Natalia sold 48/2 clips.\n",
    "How much did she earn? Weng earns 12/60 per minute.\n",
    "Out of 600\n",
]


def _prompt_batch(tok, prompts, side="left", suffix=()):
    encoded = [(tok.encode(p, add_special_tokens=False) + list(suffix),) * 2 for p in prompts]
    ids, mask, _ = pad_batch(encoded, tok.pad_token_id, side)
    return ids, mask


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("n_thoughts", [None, 0, 3])
def test_generate_cached_equals_uncached(kind, n_thoughts):
    # float64 so that greedy ties cannot flip between two equal computations
    model, tok = make_wrapper(kind, dtype=torch.float64)
    ids, mask = _prompt_batch(tok, GEN_PROMPTS, side="right")
    kw = dict(max_new_tokens=10, n_thoughts=n_thoughts)
    fast = model.generate(ids, mask, **kw)
    slow = model.generate(ids, mask, use_cache=False, **kw)
    assert torch.equal(fast.sequences, slow.sequences)
    assert torch.equal(fast.lengths, slow.lengths)
    assert fast.sequences.shape == (3, 10)
    if n_thoughts:
        assert fast.n_forward == n_thoughts + 1 + 9
    # batched generation == each prompt alone
    for b, p in enumerate(GEN_PROMPTS):
        one = torch.tensor([tok.encode(p, add_special_tokens=False)])
        alone = model.generate(one, **kw)
        assert torch.equal(alone.sequences[0], fast.sequences[b])


def test_generate_with_latents_in_prompt_equals_n_thoughts():
    model, tok = make_wrapper("llama", dtype=torch.float64)
    ids, mask = _prompt_batch(tok, GEN_PROMPTS, suffix=model.thought_suffix(2))
    given = model.generate(ids, mask, max_new_tokens=8)
    ids0, mask0 = _prompt_batch(tok, GEN_PROMPTS)
    appended = model.generate(ids0, mask0, max_new_tokens=8, n_thoughts=2)
    assert torch.equal(given.sequences, appended.sequences)
    uncached = model.generate(ids, mask, max_new_tokens=8, use_cache=False)
    assert torch.equal(given.sequences, uncached.sequences)


def test_generate_stops_each_row_at_eos():
    model, tok = make_wrapper("gpt2", dtype=torch.float64)
    ids, mask = _prompt_batch(tok, GEN_PROMPTS)
    free = model.generate(ids, mask, max_new_tokens=6, eos_token_id=-1)
    # declare row 0's third token to be EOS: row 0 stops there, the others go on unchanged
    stop_tok = int(free.sequences[0, 2])
    out = model.generate(ids, mask, max_new_tokens=6, eos_token_id=stop_tok)
    slow = model.generate(ids, mask, max_new_tokens=6, eos_token_id=stop_tok, use_cache=False)
    assert torch.equal(out.sequences, slow.sequences) and torch.equal(out.lengths, slow.lengths)
    first = int((free.sequences[0] == stop_tok).nonzero()[0])
    assert out.lengths[0] == first
    assert torch.all(out.sequences[0, first + 1 :] == model.pad_token_id)
    for b in range(1, 3):
        hits = (free.sequences[b] == stop_tok).nonzero().flatten()
        n = int(hits[0]) if len(hits) else 6
        assert out.lengths[b] == n
        assert torch.equal(out.sequences[b, :n], free.sequences[b, :n])


def test_sampling_top_k_1_is_greedy_and_seeded_sampling_repeats():
    """top_k=1 is greedy; temperature > 0 really samples. The random model is near-uniform
    over its ~300 tokens (top probability < 0.01), so a sampled row of 12 tokens equal to the
    greedy row, or to another seed's row, is all but impossible: every row must differ from
    both, and the same seed must repeat every token."""
    model, tok = make_wrapper("gpt2", dtype=torch.float64)
    ids, mask = _prompt_batch(tok, GEN_PROMPTS)
    kw = dict(max_new_tokens=12, n_thoughts=1, eos_token_id=-1)  # -1: no row stops early
    greedy = model.generate(ids, mask, **kw).sequences
    top1 = model.generate(ids, mask, temperature=0.7, top_k=1, **kw).sequences
    assert torch.equal(greedy, top1)

    def sample(seed):
        gen = torch.Generator().manual_seed(seed)
        return model.generate(ids, mask, temperature=1.5, generator=gen, **kw).sequences

    a = sample(3)
    assert a.shape == greedy.shape == (3, 12)
    assert torch.equal(a, sample(3))
    assert (a != greedy).any(dim=1).all()
    assert (a != sample(4)).any(dim=1).all()


def test_left_align_moves_padding_left():
    ids = torch.tensor([[1, 2, 0, 0], [3, 4, 5, 6], [0, 7, 8, 0]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]])
    new_ids, new_mask = left_align(ids, mask, pad_id=9)
    assert new_ids.tolist() == [[9, 9, 1, 2], [3, 4, 5, 6], [9, 9, 7, 8]]
    assert new_mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 1, 1]]


def test_import_coconutblt_does_not_import_transformers():
    import subprocess
    import sys

    code = "import sys, coconutblt, coconutblt.hf; print('transformers' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip() == "False", res.stderr
