"""The latent attention sink (`model.latent_attention_sink`): a head can count its matches."""

from __future__ import annotations

import pytest
import torch

from coconutblt.model import HybridTransformer
from coconutblt.model.layers import Attention, KVCache, apply_rope, rope_tables
from tests.conftest import tiny_config


def attention(sink: bool) -> Attention:
    torch.manual_seed(0)
    attn = Attention(8, 2, sink=sink)
    if sink:
        torch.nn.init.normal_(attn.sink_logit, std=1.0)
    return attn


def rope(T: int) -> tuple[torch.Tensor, torch.Tensor]:
    return rope_tables(torch.arange(T).expand(1, T), 4, 10000.0)


def test_sink_equals_softmax_with_a_zero_value_key_of_learned_score():
    attn = attention(sink=True)
    x = torch.randn(1, 5, 8)
    q, k, v = attn.qkv(x).view(1, 5, 3, 2, 4).unbind(2)
    cos, sin = rope(5)
    q, k = (apply_rope(t, cos[:, :, 0], sin[:, :, 0]).transpose(1, 2) for t in (q, k))  # (1,H,T,hd)
    v = v.transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / 2.0  # (1, H, T, T), hd = 4
    scores = scores.masked_fill(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
    sink = attn.sink_logit[None, :, None, None].expand(1, 2, 5, 1)
    weights = torch.cat([sink, scores], -1).softmax(-1)[..., 1:]  # the sink's value is zero
    expected = attn.out((weights @ v).transpose(1, 2).reshape(1, 5, 8))
    torch.testing.assert_close(attn(x, rope(5)), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("sink", [False, True])
def test_a_second_copy_of_the_only_key_shows_only_with_a_sink(sink):
    """A query that sees one key, then two copies of it: softmax over the keys alone gives v
    both times; with the sink the weight on v is e^s / (e^s + e^b), then 2e^s / (2e^s + e^b)."""
    attn = attention(sink)
    a = torch.randn(1, 1, 8)
    flat = rope_tables(torch.zeros(1, 2, dtype=torch.long), 4, 10000.0)  # no rotation
    once = attn(a, tuple(t[:, :1] for t in flat))[:, -1]  # (1, 8)
    twice = attn(torch.cat([a, a], 1), flat)[:, -1]
    if not sink:
        torch.testing.assert_close(once, twice)
        return
    q, k, v = attn.qkv(a).view(1, 3, 2, 4).unbind(1)  # (1, H, hd) each
    s = (q * k).sum(-1) / 2.0  # (1, H)
    b = attn.sink_logit[None]
    for n, y in ((1, once), (2, twice)):
        w = n * s.exp() / (n * s.exp() + b.exp())  # (1, H): the weight on v
        torch.testing.assert_close(y, attn.out((w[..., None] * v).reshape(1, 8)))
    assert not torch.allclose(once, twice, atol=1e-4)


def test_sink_cache_equals_full_forward():
    attn = attention(sink=True)
    x = torch.randn(2, 7, 8)
    pos = torch.arange(7).expand(2, 7)
    full = attn(x, rope_tables(pos, 4, 10000.0))
    cache = KVCache()
    first = attn(x[:, :4], rope_tables(pos[:, :4], 4, 10000.0), cache=cache)  # (2, 4, 8)
    steps = [
        attn(x[:, t : t + 1], rope_tables(pos[:, t : t + 1], 4, 10000.0), cache=cache)
        for t in range(4, 7)
    ]
    torch.testing.assert_close(torch.cat([first, *steps], 1), full, atol=1e-6, rtol=1e-5)


def test_sink_is_only_in_the_latent_blocks_and_not_with_a_window():
    model = HybridTransformer(tiny_config(latent_attention_sink=True))
    sinks = [n for n, _ in model.named_parameters() if "sink_logit" in n]
    assert sinks and all(n.startswith("latent.blocks.") for n in sinks)
    assert len(sinks) == model.config.n_layers
    with pytest.raises(ValueError, match="sliding window"):
        Attention(8, 2, window=4, sink=True)
