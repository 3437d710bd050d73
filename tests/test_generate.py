"""Cached generation equals full recomputation, byte for byte; sampling; limits; the CLI."""

from __future__ import annotations

import pytest
import torch

from coconutblt.checkpoint import model_checkpoint
from coconutblt.cli import main
from coconutblt.errors import UserError
from coconutblt.inference.generate import generate, parse_prompt, sample_next
from coconutblt.model import HybridTransformer
from coconutblt.model.cache import DecodeState
from coconutblt.runtime.files import save_torch
from coconutblt.vocab import BOS_ID, END_LATENT_ID, LATENT_ID, START_LATENT_ID, encode
from tests.conftest import tiny_config


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and two threads crawl on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SAMPLE = "The cat sat on the mat; 12 + 30 = 42.\nthen, quickly: more words_here 7."
PROMPTS = ["Hello world, this is a", "a", "x = 3\ny", "The quick brown fox jumps over it"]

ENTROPY_MODEL = dict(d_model=16, n_layers=1, n_heads=2)
CONFIGS = {
    "fixed": dict(patcher="fixed"),
    "space": dict(patcher="space"),
    "entropy-model": dict(patcher="entropy"),
    "entropy-model-relative-window": dict(
        patcher="entropy",
        entropy_patcher=dict(rule="relative", model={**ENTROPY_MODEL, "window": 4}),
    ),
    "entropy-learned": dict(patcher="entropy", entropy_patcher=dict(estimator="learned")),
    "ngram-maxpool": dict(ngram_sizes=[2, 3, 4], ngram_buckets=64, pooling="max"),
    "ngram-casefold-window": dict(
        patcher="space", ngram_sizes=[3, 4], ngram_buckets=64, ngram_case_fold=True, local_window=4
    ),
    "latent-module-xattn": dict(
        patcher="space", latent_module_every=1, use_byte_patch_attention=True
    ),
    "local-window": dict(local_window=4, encoder_layers=2, decoder_layers=2),
    "thought-head": dict(thought_head=True),
    "word-closed-thought-head": dict(patcher="word", closed_patch_context=True, thought_head=True),
    "fixed-closed": dict(patcher="fixed", closed_patch_context=True),
    "sentence-closed-copy-thought-head": dict(
        patcher="sentence", closed_patch_context=True, copy_path=True, thought_head=True
    ),
    "word-closed-copy": dict(patcher="word", closed_patch_context=True, copy_path=True),
    "word-closed-copy-sink": dict(
        patcher="word", closed_patch_context=True, copy_path=True, latent_attention_sink=True
    ),
    "word-closed-copy-into-thoughts": dict(
        patcher="word", closed_patch_context=True, copy_path=True, copy_into_thoughts=True
    ),
    "sentence-context-free-copy-into-thoughts": dict(
        patcher="sentence",
        closed_patch_context=True,
        copy_path=True,
        copy_into_thoughts=True,
        context_free_patches=True,
        use_byte_patch_attention=True,
        ngram_sizes=[3, 4],
        ngram_buckets=64,
        local_window=8,
    ),
    "entropy-context-free": dict(patcher="entropy", context_free_patches=True),
    "entropy-model-closed": dict(patcher="entropy", closed_patch_context=True),
    "entropy-learned-relative-closed": dict(
        patcher="entropy",
        closed_patch_context=True,
        entropy_patcher=dict(estimator="learned", rule="relative"),
    ),
}


def calibrate(model: HybridTransformer) -> None:
    """Entropy thresholds at a quantile of the model's own entropies: varied patch lengths."""
    ep = model.config.entropy_patcher
    ent = model(torch.tensor([encode(SAMPLE)])).entropies[0]
    if ep.rule == "global":
        ep.threshold = float(ent.quantile(0.6))
    else:
        ep.relative_threshold = float((ent[1:] - ent[:-1]).quantile(0.6))


def build(name: str) -> HybridTransformer:
    """A tiny random model, sharp enough (init_std 0.2) that wrong states change its output."""
    torch.manual_seed(0)
    model = HybridTransformer(tiny_config(init_std=0.2, **CONFIGS[name])).eval()
    for m in model.latent.latent_modules:
        torch.nn.init.constant_(m.gate, 0.5)
    for block in model.latent.blocks:  # sinks start at score 0: give each head its own
        if block.attn.sink_logit is not None:
            torch.nn.init.normal_(block.attn.sink_logit, std=2.0)
    if model.thought_head is not None:  # not the identity it starts as
        torch.nn.init.normal_(model.thought_head.weight, std=0.3)
    if model.copy is not None:  # byte embeddings start at zero: the path would add nothing
        torch.nn.init.normal_(model.copy.byte_embed.weight, std=1.0)
        if model.copy.thought_read is not None:  # it starts at zero too
            torch.nn.init.normal_(model.copy.thought_read.weight, std=0.3)
    if model.config.patcher == "entropy":
        with torch.no_grad():
            calibrate(model)
    return model


@pytest.mark.parametrize("thoughts", [0, 2])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_cached_equals_recompute(name, thoughts):
    model = build(name)
    fast = generate(model, PROMPTS, 24, thoughts=thoughts, eos_id=None, return_logits=True)
    slow = generate(
        model, PROMPTS, 24, thoughts=thoughts, eos_id=None, return_logits=True, use_cache=False
    )
    assert fast.tokens == slow.tokens
    for a, b in zip(fast.logits, slow.logits, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert all(len(t) == 24 for t in fast.tokens)


@pytest.mark.parametrize("name", [n for n in CONFIGS if "entropy" in n])
def test_entropy_patches_vary(name):
    """The entropy configs above really make patches of several lengths."""
    model = build(name)
    with torch.no_grad():
        layout = model(torch.tensor([encode(SAMPLE)])).layout
    lengths = layout.lengths[layout.lengths > 0]
    assert len(set(lengths.tolist())) >= 3
    assert 1.2 < lengths.float().mean() < model.config.max_patch_size - 0.5


@pytest.mark.parametrize("name", ["entropy-learned", "word-closed-copy"])
def test_decode_state_teacher_forced_grows_and_drops_rows(name):
    """DecodeState fed given ids (no sampling): every step's logits equal the full forward's,
    while its buffers regrow (no reserve) and after a row leaves the batch."""
    model = build(name)
    seqs = [encode("Hi"), encode("a longer first prompt, then")]
    torch.manual_seed(1)
    feed = torch.randint(0, 256, (2, 90))
    state = DecodeState(model)
    with torch.no_grad():
        logits = state.prefill(seqs)
        for t in range(90):
            if t == 70:
                state.keep([1])
                seqs, feed, logits = seqs[1:], feed[1:], logits[1:]
            ref = torch.stack([model(torch.tensor([s])).logits[0, -1] for s in seqs])
            torch.testing.assert_close(logits, ref, atol=1e-4, rtol=1e-4)
            logits = state.step(feed[:, t])
            seqs = [s + [int(i)] for s, i in zip(seqs, feed[:, t], strict=True)]


def test_batch_equals_each_row_alone():
    model = build("space")
    batch = generate(model, PROMPTS, 16, thoughts=1)
    for prompt, tokens in zip(PROMPTS, batch.tokens, strict=True):
        assert generate(model, prompt, 16, thoughts=1).tokens[0] == tokens


def test_generated_specials_and_prompt_markers():
    """Ids the model itself emits (latent markers included) and markers inside the prompt.

    The random model alone never picks a marker among 256 bytes, so its output layer gets a
    bias of +2 on the three latent markers: enough that both rows emit markers between bytes
    (each its own patch, fed back as input), not so much that they emit nothing else."""
    model = build("fixed")
    markers = [START_LATENT_ID, LATENT_ID, END_LATENT_ID]
    bias = torch.zeros(model.config.vocab_size)
    bias[markers] = 2.0
    model.lm_head.bias = torch.nn.Parameter(bias)
    prompts = [[BOS_ID, *encode("ab"), LATENT_ID, LATENT_ID, *encode("cd")]]
    prompts.append(parse_prompt("<|bos|>q<|latent|>"))
    fast = generate(model, prompts, 30, return_logits=True)
    slow = generate(model, prompts, 30, use_cache=False)
    assert fast.tokens == slow.tokens
    for row in fast.tokens:
        assert any(t in markers for t in row) and any(t < 256 for t in row), row
    assert {t for row in fast.tokens for t in row} >= set(markers)


def test_eos_stops_each_row():
    model = build("fixed")
    free = generate(model, PROMPTS, 12, eos_id=None).tokens
    eos = free[0][4]
    out = generate(model, PROMPTS, 12, eos_id=eos)
    ref = generate(model, PROMPTS, 12, eos_id=eos, use_cache=False)
    assert out.tokens == ref.tokens
    for row, tokens in zip(free, out.tokens, strict=True):
        cut = row.index(eos) + 1 if eos in row else len(row)
        assert tokens == row[:cut]
    assert out.tokens[0][-1] == eos and len(out.tokens[0]) <= 5


def test_sampling_seeded_and_exact():
    model = build("entropy-learned")
    kw = dict(temperature=0.9, top_k=40, top_p=0.95, seed=3)
    a = generate(model, PROMPTS, 16, **kw)
    assert a.tokens == generate(model, PROMPTS, 16, **kw).tokens
    assert a.tokens == generate(model, PROMPTS, 16, use_cache=False, **kw).tokens
    assert a.tokens != generate(model, PROMPTS, 16, **{**kw, "seed": 4}).tokens


def test_sampling_leaves_greedy_and_follows_the_seed():
    """temperature > 0 really samples. The random model is near-uniform over its ids (its top
    probability is about 0.05-0.15), so a sampled row of 32 ids equal to the greedy row, or to
    another seed's row, is all but impossible: every row must differ from both, and the same
    seed must repeat every id."""
    model = build("fixed")
    greedy = generate(model, PROMPTS, 32, eos_id=None).tokens
    kw = dict(eos_id=None, temperature=1.0)
    a = generate(model, PROMPTS, 32, seed=0, **kw).tokens
    assert a == generate(model, PROMPTS, 32, seed=0, **kw).tokens
    b = generate(model, PROMPTS, 32, seed=1, **kw).tokens
    assert all(len(row) == 32 for row in a + b + greedy)
    for row_a, row_b, row_greedy in zip(a, b, greedy, strict=True):
        assert row_a != row_greedy and row_a != row_b


def test_sample_next_filters():
    logits = torch.tensor([[0.0, 3.0, 2.9, -1.0], [1.0, 0.0, 0.0, 5.0]])
    gen = torch.Generator().manual_seed(0)
    assert sample_next(logits).tolist() == [1, 3]
    assert sample_next(logits, 1.0, top_k=1, generator=gen).tolist() == [1, 3]
    assert sample_next(logits, 1.0, top_p=0.01, generator=gen).tolist() == [1, 3]
    assert sample_next(logits, suppress=[1, 3]).tolist() == [2, 0]
    draws = torch.stack([sample_next(logits, 1.0, top_k=2, generator=gen) for _ in range(50)])
    assert set(draws[:, 0].tolist()) == {1, 2}


def test_context_limit():
    model = build("fixed")
    limit = model.config.max_seq_len
    with pytest.raises(UserError, match="max_seq_len"):
        generate(model, "x" * (limit + 1), 4)
    with pytest.raises(UserError, match="with 4 thought ids"):
        generate(model, "x" * (limit - 2), 4, thoughts=2)
    with pytest.raises(UserError, match="empty"):
        generate(model, "", 4)
    near = (bytes(range(97, 123)) * limit)[: limit - 2]
    fast = generate(model, near, 10, eos_id=None, return_logits=True)
    slow = generate(model, near, 10, eos_id=None, use_cache=False, return_logits=True)
    assert fast.tokens == slow.tokens and len(fast.tokens[0]) == 3  # reads at most max_seq_len
    torch.testing.assert_close(fast.logits[0], slow.logits[0], atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------- the CLI
@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "run" / "final.pt"
    save_torch(model_checkpoint(build("space")), path)
    return path


def test_cli_generate_cache_matches_no_cache(ckpt, capsys):
    args = ["generate", "--ckpt", str(ckpt), "--prompt", "Hello", "--max-new-tokens", "20"]
    assert main(args) == 0
    cached = capsys.readouterr().out.splitlines()
    assert main([*args, "--no-cache"]) == 0
    recomputed = capsys.readouterr().out.splitlines()
    assert cached[:-1] == recomputed[:-1] and cached[0].startswith("Hello")
    assert "bytes/s" in cached[-1] and "cached" in cached[-1] and "recomputed" in recomputed[-1]


def test_cli_generate_seed_flags_and_thoughts(ckpt, capsys):
    args = ["generate", "--ckpt", str(ckpt), "--prompt", "Q: 2+2", "--max_new_tokens", "8"]
    assert main([*args, "--thoughts", "2", "--bos", "--temperature", "0.8", "--top-k", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<|bos|>Q: 2+2<|start-latent|><|latent|><|latent|><|end-latent|>")


def test_cli_generate_user_errors(ckpt, tmp_path, capsys):
    missing = ["generate", "--ckpt", str(tmp_path / "nope.pt"), "--prompt", "hi"]
    assert main(missing) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.pt" in err and "not found" in err
    too_long = ["generate", "--ckpt", str(ckpt), "--prompt", "x" * 600]
    assert main(too_long) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "max_seq_len=512" in err
    assert main(["generate", "--ckpt", str(ckpt), "--prompt", "x", "--top-p", "0"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_generate_thoughts_follow_the_checkpoints_markers(tmp_path, capsys):
    """A run trained with `curriculum.markers=false` gets bare thoughts unless --markers."""
    from coconutblt.train.config import load_run_config

    ckpt = model_checkpoint(build("space"))
    ckpt["run_config"] = load_run_config(None, ["curriculum.markers=false"]).to_dict()
    path = tmp_path / "bare.pt"
    save_torch(ckpt, path)
    args = ["generate", "--ckpt", str(path), "--prompt", "Q", "--max-new-tokens", "2"]
    assert main([*args, "--thoughts", "2"]) == 0
    assert capsys.readouterr().out.startswith("Q<|latent|><|latent|>")
    assert main([*args, "--thoughts", "2", "--markers"]) == 0
    assert capsys.readouterr().out.startswith("Q<|start-latent|><|latent|><|latent|><|end-latent|>")
