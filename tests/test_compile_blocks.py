"""`training.compile`: each block's full-sequence forward is compiled, the encoder's and
decoder's byte-level blocks as well as the latent ones, and a call with a KV cache stays eager
(its bookkeeping would recompile at every length)."""

from __future__ import annotations

import copy

import torch
from torch._dynamo.utils import counters

from coconutblt.inference.generate import generate
from coconutblt.model import HybridTransformer
from coconutblt.train.distributed import compile_blocks
from tests.conftest import tiny_config


def test_compiled_blocks_equal_eager_and_cached_decoding_compiles_nothing():
    torch.manual_seed(0)
    eager = HybridTransformer(
        tiny_config(patcher="space", closed_patch_context=True, copy_path=True)
    )
    compiled = copy.deepcopy(eager)
    compile_blocks(compiled)
    torch._dynamo.reset()
    counters.clear()
    ids = torch.randint(97, 123, (2, 40))
    ids[:, ::6] = 32  # spaces: several patches
    out_eager, out_compiled = eager(ids), compiled(ids)
    assert counters["stats"]["unique_graphs"] >= 3  # one graph per block class at least
    torch.testing.assert_close(out_compiled.logits, out_eager.logits, rtol=1e-5, atol=1e-5)
    out_eager.logits.square().mean().backward()
    out_compiled.logits.square().mean().backward()
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
    graphs = counters["stats"]["unique_graphs"]
    prompt = [ids[0, :12].tolist()]
    with torch.no_grad():
        want = generate(eager, prompt, 16, eos_id=None, return_logits=True)
        got = generate(compiled, prompt, 16, eos_id=None, return_logits=True)
    assert got.tokens == want.tokens and len(got.tokens[0]) == 16
    assert torch.equal(got.logits[0], want.logits[0])  # the same eager code, bit for bit
    assert counters["stats"]["unique_graphs"] == graphs  # the cached calls ran eagerly


def test_where_compile_fails_the_blocks_stay_eager_with_a_warning(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("InductorError: no working C++ compiler found")

    model = HybridTransformer(tiny_config())
    monkeypatch.setattr(torch, "compile", broken)
    compile_blocks(model)
    assert "forward" not in vars(model.latent.blocks[0])  # not wrapped
    warned = capsys.readouterr().out
    assert warned.startswith("warning: training.compile=true but torch.compile fails here")
    assert "no working C++ compiler" in warned and warned.count("\n") == 1
    compile_blocks(HybridTransformer(tiny_config()), warn=False)  # a rank other than the first
    assert capsys.readouterr().out == ""
