"""Gradients reach what should train, and the estimator's loss moves only the estimator."""

from __future__ import annotations

import torch

from coconutblt.model import HybridTransformer
from coconutblt.vocab import END_LATENT_ID, LATENT_ID, START_LATENT_ID
from tests.conftest import tiny_config


def grads_by_name(model) -> dict[str, float]:
    return {
        n: (0.0 if p.grad is None else float(p.grad.abs().sum()))
        for n, p in model.named_parameters()
    }


def batch(T: int = 48) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 256, (2, T), generator=gen)
    ids[:, 10] = START_LATENT_ID
    ids[:, 11:13] = LATENT_ID
    ids[:, 13] = END_LATENT_ID
    return ids


def test_every_trainable_parameter_gets_a_gradient_and_estimator_is_separate():
    torch.manual_seed(0)
    cfg = tiny_config(
        patcher="entropy",
        # a random estimator is unsure everywhere: a high threshold keeps patches multi-byte,
        # so the cross-attention pooling has more than one byte to choose from
        entropy_patcher=dict(estimator="learned", threshold=100.0),
        use_byte_patch_attention=True,
        ngram_sizes=[2, 3],
        latent_module_every=1,
    )
    model = HybridTransformer(cfg)
    for m in model.latent.latent_modules:  # gates start closed; open them so gradients pass
        torch.nn.init.constant_(m.gate, 0.5)
    ids = batch()
    out = model(ids, labels=ids)
    out.loss.backward()
    g = grads_by_name(model)
    estimator = {n for n in g if n.startswith("estimator.")}
    assert estimator, "learned estimator has parameters"
    missing = [n for n, v in g.items() if v == 0.0 and n not in estimator]
    assert not missing, f"no gradient reached {missing}"
    assert all(g[n] == 0.0 for n in estimator), "main loss must not train the estimator"

    model.zero_grad(set_to_none=True)
    model(ids, labels=ids).estimator_loss.backward()
    g = grads_by_name(model)
    moved = {n for n, v in g.items() if v > 0}
    assert moved == estimator


def test_frozen_entropy_model_gets_no_gradient():
    torch.manual_seed(0)
    model = HybridTransformer(tiny_config(patcher="entropy"))
    ids = batch()
    model(ids, labels=ids).loss.backward()
    for n, p in model.entropy_model.named_parameters():
        assert not p.requires_grad and p.grad is None, n


def test_under_bf16_autocast_every_norm_reads_its_own_dtype():
    """The latent transformer's input comes out of a bf16 projection under autocast; its residual
    stream must still be fp32 (as the parameters), or each block's update is rounded to bf16 and
    the RMSNorms fall back from their fused kernel (found on an H200: every latent norm read bf16)."""
    torch.manual_seed(0)
    model = HybridTransformer(tiny_config(latent_module_every=1, use_byte_patch_attention=True))
    seen: list[tuple[str, torch.dtype]] = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.RMSNorm):
            module.register_forward_pre_hook(lambda m, inp, n=name: seen.append((n, inp[0].dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(batch())
    assert any(n.startswith("latent.blocks.") for n, _ in seen)
    assert [(n, d) for n, d in seen if d != torch.float32] == []
