"""Continuous thoughts: fed-back hidden states, exact against a slow reference, batch == alone."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from coconutblt.model import HybridTransformer
from coconutblt.vocab import END_LATENT_ID, EOS_ID, LATENT_ID, PAD_ID, START_LATENT_ID, encode
from tests.conftest import tiny_config


def slow_run_latent(model, x, is_thought, detach=False, fed_log=None):
    """Reference: per row, rerun the latent transformer from scratch before every thought."""
    B, P, _ = x.shape
    rows = []
    for b in range(B):
        inputs = list(x[b : b + 1].unbind(1))  # P tensors of (1, D)
        for p in torch.nonzero(is_thought[b]).flatten().tolist():
            if p == 0:
                continue
            prefix = torch.stack(inputs[:p], dim=1)
            h = model.latent(prefix, torch.arange(p)[None])[:, -1]
            if fed_log is not None:
                h.retain_grad()
                fed_log.append(h)
            inputs[p] = model.thought_input(h.detach() if detach else h)
        full = torch.stack(inputs, dim=1)
        rows.append(model.latent(full, torch.arange(P)[None]))
    return torch.cat(rows, dim=0)


def example(question: str, n_thoughts: int, answer: str) -> list[int]:
    thoughts = (
        [START_LATENT_ID] + [LATENT_ID] * n_thoughts + [END_LATENT_ID] if n_thoughts >= 0 else []
    )
    return encode(question + "\n", bos=True) + thoughts + encode("### " + answer) + [EOS_ID]


def pad_batch(seqs: list[list[int]]) -> torch.Tensor:
    T = max(map(len, seqs))
    return torch.tensor([s + [PAD_ID] * (T - len(s)) for s in seqs])


def labels_for(ids: torch.Tensor) -> torch.Tensor:
    return ids.masked_fill(ids == PAD_ID, -100)


CONFIGS = {
    "fixed": dict(patcher="fixed"),
    "space-module": dict(patcher="space", latent_module_every=1),
    "entropy-learned-xattn": dict(
        patcher="entropy",
        use_byte_patch_attention=True,
        entropy_patcher=dict(estimator="learned", threshold=5.0),
    ),
    "fixed-thought-head": dict(patcher="fixed", thought_head=True),
    "word-closed": dict(patcher="word", closed_patch_context=True, thought_head=True),
}


def build(name):
    torch.manual_seed(0)
    model = HybridTransformer(tiny_config(**CONFIGS[name]))
    for m in model.latent.latent_modules:
        torch.nn.init.constant_(m.gate, 0.5)
    if model.thought_head is not None:  # not the identity it starts as
        torch.nn.init.normal_(model.thought_head.weight, std=0.3)
    return model


BATCH = [
    example("a=3;b=a;c=b;c?", 3, "3"),
    example("the longer question here: x=y, y=z, so x?", 5, "z"),
    example("no thoughts at all", -1, "ok"),
    example("q", 1, "a1"),
]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_thoughts_equal_slow_reference_logits_and_gradients(name, monkeypatch):
    model = build(name)
    ids = pad_batch(BATCH)
    out = model(ids, labels=labels_for(ids))
    out.loss.backward()
    fast_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    monkeypatch.setattr(model, "run_latent", lambda x, t, *_: slow_run_latent(model, x, t))
    ref = model(ids, labels=labels_for(ids))
    ref.loss.backward()
    torch.testing.assert_close(out.logits, ref.logits, atol=2e-5, rtol=1e-4)
    assert fast_grads.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(fast_grads[n], p.grad, atol=1e-5, rtol=1e-3, msg=n)


def test_reference_would_notice_a_detached_thought_chain(monkeypatch):
    """Cutting the feedback's gradient changes parameter gradients: the comparison above can fail."""
    model = build("fixed")
    ids = pad_batch(BATCH)
    fed = []
    monkeypatch.setattr(
        model, "run_latent", lambda x, t, *_: slow_run_latent(model, x, t, fed_log=fed)
    )
    model(ids, labels=labels_for(ids)).loss.backward()
    # every fed-back state (3 + 5 + 1 thoughts, in order) receives gradient from the loss
    assert len(fed) == 9
    assert all(h.grad is not None and h.grad.abs().sum() > 0 for h in fed)
    full = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    monkeypatch.setattr(
        model, "run_latent", lambda x, t, *_: slow_run_latent(model, x, t, detach=True)
    )
    model(ids, labels=labels_for(ids)).loss.backward()
    assert any(not torch.allclose(full[n], p.grad, atol=1e-6) for n, p in model.named_parameters())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_batch_gives_each_example_its_own_loss(name):
    model = build(name).eval()
    ids = pad_batch(BATCH)
    with torch.no_grad():
        batched = model(ids).logits
        for b, seq in enumerate(BATCH):
            alone = model(torch.tensor([seq])).logits
            n = len(seq)
            torch.testing.assert_close(batched[b, :n], alone[0], atol=2e-5, rtol=1e-4)
            labels = torch.tensor(seq)
            loss_b = F.cross_entropy(batched[b, : n - 1], labels[1:])
            loss_a = F.cross_entropy(alone[0, :-1], labels[1:])
            assert abs(loss_b.item() - loss_a.item()) < 1e-5


def test_thought_input_is_the_previous_final_state(monkeypatch):
    """Record the latent transformer's inputs: a thought's input equals the output before it."""
    model = build("fixed").eval()
    ids = torch.tensor([example("abc=1", 2, "1")])
    seen_inputs, seen_outputs = [], []
    real = model.latent.forward

    def spy(x, positions, mask=None, caches=None):
        y = real(x, positions, mask, caches)
        seen_inputs.append(x)
        seen_outputs.append(y)
        return y

    monkeypatch.setattr(model.latent, "forward", spy)
    with torch.no_grad():
        model(ids)
    assert len(seen_inputs) == 3  # 2 thoughts -> 3 passes
    assert seen_inputs[1].shape[1] == 1  # the first thought alone
    torch.testing.assert_close(seen_inputs[1][:, 0], seen_outputs[0][:, -1], rtol=0, atol=0)
    torch.testing.assert_close(seen_inputs[2][:, 0], seen_outputs[1][:, -1], rtol=0, atol=0)


def test_thought_head_is_used_and_starts_as_the_paper_mechanism():
    """With `thought_head` a thought's input is head(previous state); at its identity init the
    model computes exactly what the plain mechanism (the state itself) computes."""
    from coconutblt.model.config import replace

    model = build("fixed-thought-head").eval()
    plain = HybridTransformer(replace(model.config, thought_head=False)).eval()
    shared = {k: v for k, v in model.state_dict().items() if not k.startswith("thought_head.")}
    plain.load_state_dict(shared)
    ids = pad_batch(BATCH)
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, plain(ids).logits, atol=1e-4)
        torch.nn.init.eye_(model.thought_head.weight)
        torch.nn.init.zeros_(model.thought_head.bias)
        torch.testing.assert_close(model(ids).logits, plain(ids).logits, rtol=0, atol=0)


def _patches_and_states(model, ids):
    """The patch vectors, the latent outputs, the layout and the thought mask of one forward."""
    from coconutblt.model.patching import layout_from_starts, thought_patches

    B, T = ids.shape
    h = model.encoder.byte_states(ids, torch.arange(T).expand(B, T))
    layout = layout_from_starts(model.boundaries(ids, model.entropies(ids, h)[0]))
    patches = model.encoder.pool(h, layout)
    is_thought = thought_patches(ids, layout)
    return patches, model.run_latent(patches, is_thought), layout, is_thought


def test_next_patch_loss_rewards_pointing_at_the_next_patch_and_skips_thoughts():
    """Outputs equal to the next patch vectors score far below chance (log N), random ones do
    not; a thought patch's vector is never a target; the targets are detached (the loss moves the outputs
    towards the patches, never the patches towards the outputs)."""
    torch.manual_seed(0)
    model = HybridTransformer(tiny_config(next_patch_loss_weight=1.0))
    ids = pad_batch(BATCH[:2])
    patches, states, layout, is_thought = _patches_and_states(model, ids)
    ideal = torch.cat([patches[:, 1:], patches[:, :1]], dim=1)  # output i = patch i+1
    good = model.next_patch_loss(ideal, patches, layout, is_thought)
    bad = model.next_patch_loss(torch.randn_like(states), patches, layout, is_thought)
    n_targets = int(((layout.lengths[:, 1:] > 0) & ~is_thought[:, 1:]).sum())
    assert good + 1.0 < math.log(n_targets) < bad + 1.0
    assert bool(is_thought.any())
    moved = patches.clone()
    moved[is_thought] += 5.0  # a thought's (never used) pooled vector is not a target
    assert torch.equal(
        model.next_patch_loss(ideal, moved, layout, is_thought),
        model.next_patch_loss(ideal, patches, layout, is_thought),
    )
    out = model(ids, labels_for(ids))
    assert out.next_patch_loss is not None and torch.isfinite(out.next_patch_loss)
    target = patches.detach().requires_grad_()
    state = ideal.detach().requires_grad_()
    model.next_patch_loss(state, target, layout, is_thought).backward()
    assert target.grad is None and state.grad.abs().sum() > 0  # the targets are detached
    assert HybridTransformer(tiny_config())(ids, labels_for(ids)).next_patch_loss is None
