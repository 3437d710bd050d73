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
