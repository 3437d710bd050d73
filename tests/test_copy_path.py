"""The copy path (model/copy.py): its targets, its start as a no-op, its training signal."""

from __future__ import annotations

import pytest
import torch

from coconutblt.cli import main
from coconutblt.errors import UserError
from coconutblt.model import HybridTransformer
from coconutblt.model.config import ModelConfig
from coconutblt.model.copy import copy_targets
from coconutblt.vocab import LATENT_ID, encode
from tests.conftest import TINY_RUN_MODEL, tiny_config

TEXT = "Bob is red. Ann is tall. Cats are sly. Ann is tall.\nBob is red.\n"


def sentence_model(**overrides) -> HybridTransformer:
    torch.manual_seed(0)
    cfg = tiny_config(patcher="sentence", max_patch_size=16, closed_patch_context=True)
    return HybridTransformer(
        cfg if not overrides else ModelConfig(**{**cfg.to_dict(), **overrides})
    )


def patch_texts(model: HybridTransformer, ids: torch.Tensor) -> list[str]:
    with torch.no_grad():
        layout = model(ids).layout
    return [
        bytes(ids[0, s : s + n].tolist()).decode()
        for s, n in zip(layout.starts[0].tolist(), layout.lengths[0].tolist(), strict=True)
    ]


def test_targets_are_the_earlier_patches_the_next_one_repeats():
    """Row r's target is every patch j <= r with the bytes of patch r+1, whitespace aside: a
    fact quoted at the end of a line (newline) matches the same fact mid-text (space)."""
    model = sentence_model(copy_path=True)
    ids = torch.tensor([encode(TEXT)])
    texts = patch_texts(model, ids)
    assert texts[:4] == ["Bob is red. ", "Ann is tall. ", "Cats are sly. ", "Ann is tall.\n"]
    with torch.no_grad():
        layout = model(ids).layout
    targets = copy_targets(ids, layout)[0]  # (P - 1, P)
    pairs = {(r, j) for r, j in targets.nonzero().tolist()}
    # "Ann is tall." (patch 3) repeats patch 1; "Bob is red." (patch 4) repeats patch 0
    assert pairs == {(2, 1), (3, 0)}
    # thoughts repeat each other byte for byte, but are never targets
    thoughts = torch.tensor([encode("Bob is red. ") + [LATENT_ID] * 3 + encode("Ann is tall.")])
    assert not copy_targets(thoughts, model(thoughts).layout).any()


def test_a_new_copy_path_is_a_no_op():
    """Zero byte embeddings: the same weights with and without the path give equal logits."""
    plain = sentence_model()
    with_copy = sentence_model(copy_path=True)
    weights, added = with_copy.with_new_parts(plain.state_dict())
    assert added and all(k.startswith("copy.") for k in added)
    with_copy.load_state_dict(weights)  # strict: nothing else is missing
    ids = torch.tensor([encode(TEXT)])
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, with_copy(ids).logits)


def test_the_pointer_and_the_byte_path_both_get_gradients():
    """The pointer learns from the copy loss, the byte embeddings from the next-byte loss (the
    zero start must not block either)."""
    model = sentence_model(copy_path=True).train()
    ids = torch.tensor([encode(TEXT)])
    out = model(ids, labels=ids)
    assert out.copy_loss is not None and out.copy_loss.item() > 0
    (out.loss + out.copy_loss).backward()
    for p in (model.copy.query.weight, model.copy.key.weight, model.copy.byte_embed.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    # with nothing repeated there is no target and no copy loss
    assert model(ids[:, :30], labels=ids[:, :30]).copy_loss is None


def test_a_new_thought_reading_is_a_no_op():
    """`copy_into_thoughts` added to a copy-path model starts at zero: with thoughts in the
    input, the logits are those of the model without it."""
    plain = sentence_model(copy_path=True)
    reading = sentence_model(copy_path=True, copy_into_thoughts=True)
    weights, added = reading.with_new_parts(plain.state_dict())
    assert added == ["copy.thought_read.weight"]
    reading.load_state_dict(weights)
    ids = torch.tensor([encode("Bob is red. Ann is tall.\n") + [LATENT_ID] * 2 + encode("Bob")])
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, reading(ids).logits)


def test_a_thought_reads_the_patch_its_pointer_picks(monkeypatch):
    """A thought's input is the thought head's plus thought_read(vector of the written patch
    the pointer picks from the state before it), and a thought is never a source. With the
    pointer forced onto patch 0 the added input is exactly that patch's vector, mapped; the
    map and the pointer both learn from the next-byte loss."""
    model = sentence_model(copy_path=True, copy_into_thoughts=True, thought_head=True)
    torch.nn.init.normal_(model.copy.thought_read.weight, std=0.3)
    # patches: "Bob is red. ", "Ann is tall.\n", a thought, a thought, "Bob"
    ids = torch.tensor([encode("Bob is red. Ann is tall.\n") + [LATENT_ID] * 2 + encode("Bob")])
    inputs, visibles = [], []
    real_latent, real_log_probs = model.latent.forward, model.copy.log_probs

    def spy_latent(x, positions, mask=None, caches=None):
        inputs.append(x)
        return real_latent(x, positions, mask, caches)

    def point_at_first(queries, keys, visible):
        if queries.shape[1] == 1:  # a thought's reading (the byte path points from every row)
            visibles.append(visible[0, 0].clone())
        out = torch.full_like(real_log_probs(queries, keys, visible), float("-inf"))
        out[..., 0] = 0.0
        return out

    monkeypatch.setattr(model.latent, "forward", spy_latent)
    monkeypatch.setattr(model.copy, "log_probs", point_at_first)
    with torch.no_grad():
        model(ids)  # passes: the two written patches, the first thought, the second + "Bob"
        monkeypatch.undo()
        first = model.latent(inputs[0], torch.arange(2).expand(1, 2))  # (1, 2, D)
        want = model.thought_head(first[:, -1]) + model.copy.thought_read(inputs[0][:, 0])
    torch.testing.assert_close(inputs[1][:, 0], want, rtol=0, atol=0)
    assert [v.tolist() for v in visibles] == [[True, True], [True, True, False]]

    model.train()
    model(ids, labels=ids).loss.backward()
    for p in (model.copy.thought_read.weight, model.copy.query.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_the_thoughts_pointers_learn_the_quotes_of_the_steps_they_replace(monkeypatch):
    """Given each thought's quote, the loss is -log(pointer mass on the patch holding it) for
    the thoughts whose quote is a patch before them (here the first: "Ann is tall."; the
    second's quote is in no patch), and it trains the pointer; without quotes there is none."""
    model = sentence_model(copy_path=True, copy_into_thoughts=True)
    torch.nn.init.normal_(model.copy.thought_read.weight, std=0.3)
    ids = torch.tensor([encode("Bob is red. Ann is tall.\n") + [LATENT_ID] * 2 + encode("Bob")])
    quotes = torch.tensor([[encode("Ann is tall."), encode("Nobody.     ")]])  # (1, 2, 12)
    pointers = []
    real_log_probs = model.copy.log_probs

    def spy(queries, keys, visible):
        out = real_log_probs(queries, keys, visible)
        if queries.shape[1] == 1:
            pointers.append(out[0, 0])
        return out

    monkeypatch.setattr(model.copy, "log_probs", spy)
    out = model(ids, labels=ids, thought_quotes=quotes)
    assert out.thought_copy_loss is not None
    torch.testing.assert_close(out.thought_copy_loss, -pointers[0][1], rtol=0, atol=0)
    out.thought_copy_loss.backward()
    assert model.copy.query.weight.grad.abs().sum() > 0
    assert model(ids, labels=ids).thought_copy_loss is None


def test_an_identity_thought_reading_adds_the_picked_patch_unchanged():
    """`thought_read_init="identity"`: added to a CoT model, a thought's input is its state's
    plus the vector of the patch the pointer picks, as if the replaced step were written; the
    logits then differ from the model without it, and "zero" stays the default."""
    assert ModelConfig().thought_read_init == "zero"
    plain = sentence_model(copy_path=True)
    reading = sentence_model(copy_path=True, copy_into_thoughts=True, thought_read_init="identity")
    weights, added = reading.with_new_parts(plain.state_dict())
    assert added == ["copy.thought_read.weight"]
    assert torch.equal(weights["copy.thought_read.weight"], torch.eye(reading.config.d_model))
    reading.load_state_dict(weights)
    vector = torch.randn(2, reading.config.d_model)
    torch.testing.assert_close(reading.copy.thought_read(vector), vector, rtol=0, atol=0)
    ids = torch.tensor([encode("Bob is red. Ann is tall.\n") + [LATENT_ID] * 2 + encode("Bob")])
    with torch.no_grad():
        assert not torch.equal(plain(ids).logits, reading(ids).logits)
    with pytest.raises(UserError, match="thought_read_init"):
        ModelConfig(thought_read_init="eye")


def test_context_free_patches_give_a_sentence_one_vector_wherever_it_stands():
    """`context_free_patches`: "Ann is tall." has the same vector after different sentences
    and ended by a space or a newline (the question's fact, the step that quotes it), which
    the contextual byte states do not give; and the layers that read it get gradients."""

    def vectors(model, text):
        ids = torch.tensor([encode(text)])
        layout = model(ids).layout
        h = model.encoder.byte_states(ids, torch.arange(ids.shape[1])[None])
        return dict(
            zip(patch_texts(model, ids), model.encoder.pool(h, layout, ids)[0], strict=True)
        )

    extra = dict(ngram_sizes=[3, 4], ngram_buckets=64, use_byte_patch_attention=True)
    free = sentence_model(context_free_patches=True, **extra)
    contextual = sentence_model(**extra)
    for model, same in ((free, True), (contextual, False)):
        with torch.no_grad():
            a = vectors(model, "Bob is red. Ann is tall. Cats are sly.")["Ann is tall. "]
            b = vectors(model, "Cats are sly.\nAnn is tall.\n")["Ann is tall.\n"]
        assert torch.equal(a, b) if same else not torch.allclose(a, b, atol=1e-3)
    ids = torch.tensor([encode(TEXT)])
    free.train()
    free(ids, labels=ids).loss.backward()
    assert free.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_quote_swap_feeds_a_quoting_patch_the_vector_it_quotes(monkeypatch):
    """model.quote_swap_prob=1: the latent stack gets, at every patch that repeats an earlier
    one, exactly the vector of the first patch it repeats, and its own elsewhere, in training
    and in eval mode; below 1 the swap is a training-time draw, and eval feeds every patch's
    own vector."""
    ids = torch.tensor([encode(TEXT)])  # "Ann is tall." (patch 3) quotes 1, "Bob is red." 0
    fed = []

    def feed(model):
        fed.clear()
        real = model.run_latent
        monkeypatch.setattr(
            model, "run_latent", lambda x, *a, **k: fed.append(x.detach()) or real(x, *a, **k)
        )
        model(ids, labels=ids)
        monkeypatch.undo()
        return fed[0][0]  # (P, D)

    swapping = sentence_model(copy_path=True, quote_swap_prob=1.0)
    own = feed(sentence_model(copy_path=True).train())
    swapped = feed(swapping.train())
    assert torch.equal(swapped[3], own[1]) and torch.equal(swapped[4], own[0])
    assert not torch.equal(own[3], own[1])  # context made the two forms differ
    keep = [i for i in range(len(own)) if i not in (3, 4)]
    assert torch.equal(swapped[keep], own[keep])
    assert torch.equal(feed(swapping.eval()), swapped)  # 1: in generation too
    mixing = sentence_model(copy_path=True, quote_swap_prob=0.5)
    assert torch.equal(feed(mixing.eval()), own)  # below 1: training only


def test_quote_swap_always_decodes_as_the_full_forward():
    """quote_swap_prob=1 holds in generation too: decoding one id at a time, every patch that
    repeats an earlier one (in the prompt, or closed while decoding, around thoughts that read
    the swapped vectors) gets the first one's vector, so each step's logits equal the full
    forward's; and the swap changes them (without it they differ)."""
    from coconutblt.model.cache import DecodeState

    def build(p):
        model = sentence_model(
            copy_path=True, copy_into_thoughts=True, thought_head=True, quote_swap_prob=p
        )
        torch.manual_seed(1)
        torch.nn.init.normal_(model.copy.byte_embed.weight, std=1.0)
        torch.nn.init.normal_(model.copy.thought_read.weight, std=0.3)
        return model.eval()

    prompt = encode("Bob is red. Ann is tall. Cats are sly. Ann is tall.\n") + [LATENT_ID]
    feed = encode("Bob is red.\nCats are sly.\nDogs are odd.\nDogs are odd.\nBo")
    logits_of = {}
    for p in (0.0, 1.0):
        model, seq, got = build(p), list(prompt), []
        state = DecodeState(model)
        with torch.no_grad():
            logits = state.prefill([seq])
            for t in feed:
                ref = model(torch.tensor([seq])).logits[0, -1]
                torch.testing.assert_close(logits[0], ref, atol=1e-4, rtol=1e-4)
                got.append(ref)
                logits = state.step(torch.tensor([t]))
                seq.append(t)
        logits_of[p] = torch.stack(got)
    assert not torch.allclose(logits_of[0.0], logits_of[1.0], atol=1e-3)


def test_quote_swap_prob_is_a_probability_on_the_copy_path():
    with pytest.raises(UserError, match="quote_swap_prob"):
        tiny_config(quote_swap_prob=1.5, copy_path=True, closed_patch_context=True)
    with pytest.raises(UserError, match="quote_swap_prob.*copy_path"):
        tiny_config(quote_swap_prob=0.5)


def test_copy_into_thoughts_needs_the_copy_path():
    with pytest.raises(UserError, match="copy_into_thoughts.*copy_path=true"):
        ModelConfig(closed_patch_context=True, copy_into_thoughts=True)


def test_copy_path_needs_closed_patch_context():
    with pytest.raises(UserError, match="copy_path.*closed_patch_context=true"):
        ModelConfig(copy_path=True)


def test_init_from_a_checkpoint_without_the_path(tmp_path, capsys):
    """A copy path added to a trained model (`curriculum.init_from`) starts fresh, the rest
    loaded; training then runs."""
    common = [
        *TINY_RUN_MODEL,
        "model.patcher=sentence",
        "model.closed_patch_context=true",
        "data.synth_task=chain",
        "data.synth_n=16",
        "data.synth_val_n=4",
        "data.max_val_examples=4",
        "training.batch_size=4",
        "training.eval_max_new_tokens=8",
        "curriculum.num_epochs=1",
        "curriculum.mode=cot",
        "--no-progress",
    ]
    assert main(["train", *common, "--out", str(tmp_path / "a")]) == 0
    argv = ["train", *common, "model.copy_path=true"]
    argv += [f"curriculum.init_from={tmp_path / 'a' / 'final.pt'}", "--out", str(tmp_path / "b")]
    assert main(argv) == 0
    assert "lacks copy.query.weight, copy.key.weight" in capsys.readouterr().out


def test_coconut_stages_read_into_thoughts(tmp_path, capsys):
    """A Coconut run that reads into thoughts, from a CoT run with a copy path: the new map is
    added as a no-op and the thoughts' pointers train on the replaced steps' quotes (ProntoQA
    steps end with a rule quoted from the question)."""
    common = [
        *TINY_RUN_MODEL,
        "model.patcher=sentence",
        "model.max_patch_size=40",
        "model.max_seq_len=1024",
        "model.closed_patch_context=true",
        "model.copy_path=true",
        "data.seq_len=1024",
        "data.synth_task=prontoqa",
        "data.synth_args={hops: [1, 2]}",
        "data.synth_n=8",
        "data.synth_val_n=2",
        "data.max_val_examples=2",
        "training.batch_size=4",
        "training.log_every=1",
        "training.eval_max_new_tokens=8",
        "--no-progress",
    ]
    cot = ["curriculum.mode=cot", "curriculum.num_epochs=1"]
    assert main(["train", *common, *cot, "--out", str(tmp_path / "cot")]) == 0
    argv = ["train", *common, "curriculum.mode=coconut", "curriculum.max_latent_stage=1"]
    argv += ["curriculum.start_stage=1", "curriculum.num_epochs=1"]
    argv += ["model.copy_into_thoughts=true"]
    argv += [f"curriculum.init_from={tmp_path / 'cot' / 'final.pt'}"]
    assert main([*argv, "--out", str(tmp_path / "coconut")]) == 0
    assert "lacks copy.thought_read.weight" in capsys.readouterr().out
    records = (tmp_path / "coconut" / "metrics.jsonl").read_text()
    assert '"thought_copy_loss"' in records
