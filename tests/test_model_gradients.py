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
