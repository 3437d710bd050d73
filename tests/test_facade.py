"""The lucidrains-style `Coconut` facade: the seed's call shapes (smaller), on the hybrid model."""

import pytest
import torch

from coconutblt import Coconut


def small_coconut(num_tokens=256):
    return Coconut(
        num_reasoning_steps=3,
        num_latents_per_step=1,
        transformer=dict(num_tokens=num_tokens, dim=32, depth=2),
        d_local=32,
        max_seq_len=256,
    )


def test_loss_and_generate_shapes():
    torch.manual_seed(0)
    model = small_coconut()
    prompt = torch.randint(0, 256, (2, 10))
    answer = torch.randint(0, 256, (2, 5))
    loss = model(prompt, answer)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.model.encoder.embed.weight.grad.abs().sum() > 0  # reaches the byte embeddings
    out = model.generate(prompt, max_length=7)
    assert out.shape == (2, 7)
    assert int(out.max()) < 256


def test_generate_respects_num_tokens_and_learns_the_answer():
    torch.manual_seed(0)
    model = small_coconut(num_tokens=16)
    prompt = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    answer = torch.tensor([[9, 10, 11], [12, 13, 14]])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(120):
        loss = model(prompt, answer)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    model.eval()
    out = model.generate(prompt, max_length=3)
    assert int(out.max()) < 16
    assert out.tolist() == answer.tolist()


def test_bad_ids_are_rejected():
    model = small_coconut(num_tokens=16)
    with pytest.raises(ValueError, match="ids must be in"):
        model(torch.tensor([[1, 99]]), torch.tensor([[1]]))
    with pytest.raises(ValueError, match="num_tokens"):
        Coconut(transformer=dict(num_tokens=300, dim=32, depth=1))
