"""Patcher properties: a partition, capped lengths, specials alone, prefix-stable boundaries."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coconutblt.model.patching import layout_from_starts, patch_starts, patch_starts_announced
from coconutblt.vocab import NUM_BYTES, PAD_ID, VOCAB_SIZE

ids_lists = st.lists(
    st.one_of(st.integers(0, 255), st.integers(0, 255), st.integers(NUM_BYTES, VOCAB_SIZE - 1)),
    min_size=1,
    max_size=80,
)
modes = st.sampled_from(
    ["fixed", "space", "word", "sentence", "entropy-global", "entropy-relative"]
)
# bytes with the whitespace and punctuation the word and sentence rules look at
text_ids = st.lists(
    st.one_of(st.sampled_from(list(b" \n.:?a")), st.integers(0, 255), st.integers(256, 262)),
    min_size=1,
    max_size=60,
)


def starts_for(
    ids: list[int], mode: str, cap: int, ent_seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.tensor([ids])
    gen = torch.Generator().manual_seed(ent_seed)
    ent = torch.rand(1, len(ids), generator=gen) * 3
    kind, _, rule = mode.partition("-")
    return t, patch_starts(
        t, kind, cap, ent, threshold=1.5, rule=rule or "global", relative_threshold=0.2
    )


@settings(max_examples=150, deadline=None)
@given(ids=ids_lists, mode=modes, cap=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_patches_partition_the_sequence_and_respect_the_cap(ids, mode, cap, seed):
    t, starts = starts_for(ids, mode, cap, seed)
    layout = layout_from_starts(starts)
    n = int(layout.n_patches[0])
    s, lengths = layout.starts[0, :n].tolist(), layout.lengths[0, :n].tolist()
    assert s[0] == 0
    assert all(a + la == b for a, la, b in zip(s, lengths, s[1:], strict=False))
    assert s[-1] + lengths[-1] == len(ids)
    assert max(lengths) <= cap
    assert (
        layout.patch_id[0] == torch.repeat_interleave(torch.arange(n), torch.tensor(lengths))
    ).all()


@settings(max_examples=150, deadline=None)
@given(ids=ids_lists, mode=modes, cap=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_special_ids_are_alone(ids, mode, cap, seed):
    """Every special id is a patch of its own, except that a run of padding is one patch."""
    t, starts = starts_for(ids, mode, cap, seed)
    for i, x in enumerate(ids):
        if x >= NUM_BYTES:
            assert starts[0, i] or (i > 0 and x == ids[i - 1] == PAD_ID)
            if i + 1 < len(ids):
                assert starts[0, i + 1] or x == ids[i + 1] == PAD_ID


@settings(max_examples=150, deadline=None)
@given(
    ids=ids_lists,
    mode=modes,
    cap=st.integers(1, 9),
    seed=st.integers(0, 10_000),
    cut=st.integers(1, 80),
)
def test_boundaries_of_a_prefix_are_a_prefix(ids, mode, cap, seed, cut):
    cut = min(cut, len(ids))
    t, starts = starts_for(ids, mode, cap, seed)
    kind, _, rule = mode.partition("-")
    gen = torch.Generator().manual_seed(seed)
    ent = (torch.rand(1, len(ids), generator=gen) * 3)[:, :cut]
    prefix = patch_starts(
        t[:, :cut], kind, cap, ent, threshold=1.5, rule=rule or "global", relative_threshold=0.2
    )
    assert torch.equal(prefix, starts[:, :cut])


def test_sequential_reference_equals_closed_form():
    """The closed-form cap equals the loop 'start a patch when forced or when the current one is full'."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        T, cap = 60, int(torch.randint(1, 7, (1,), generator=gen))
        ids = torch.randint(0, 256, (1, T), generator=gen)
        ids[0, torch.randint(0, T, (3,), generator=gen)] = 260
        ent = torch.rand(1, T, generator=gen) * 3
        got = patch_starts(ids, "entropy", cap, ent, threshold=2.0)[0].tolist()
        want, length = [], 0
        for t in range(T):
            forced = t == 0 or ids[0, t] >= 256 or ids[0, t - 1] >= 256 or ent[0, t - 1] > 2.0
            start = forced or length == cap
            length = 1 if start else length + 1
            want.append(start)
        assert got == want


def test_fixed_and_space_shapes():
    t = torch.tensor([list(b"hello world, again")])
    fixed = layout_from_starts(patch_starts(t, "fixed", 4))
    assert fixed.lengths[0].tolist() == [4, 4, 4, 4, 2]
    space = layout_from_starts(patch_starts(t, "space", 16))
    pieces = [
        bytes(t[0, s : s + n].tolist())
        for s, n in zip(space.starts[0].tolist(), space.lengths[0].tolist(), strict=True)
    ]
    assert pieces == [b"hello ", b"world, ", b"again"]


@settings(max_examples=200, deadline=None)
@given(ids=text_ids, mode=modes, cap=st.integers(1, 9), seed=st.integers(0, 10_000))
def test_announced_starts_follow_from_the_bytes_before(ids, mode, cap, seed):
    """announced[t] implies a start at t, and no byte (or entropy) at t or later changes it:
    what lets the patch ending at t-1 decode byte t (`closed_patch_context`)."""
    t, starts = starts_for(ids, mode, cap, seed)
    kind, _, rule = mode.partition("-")
    gen = torch.Generator().manual_seed(seed)
    ent = torch.rand(1, len(ids), generator=gen) * 3
    kw = dict(threshold=1.5, rule=rule or "global", relative_threshold=0.2)
    same, announced = patch_starts_announced(t, kind, cap, ent, **kw)
    assert torch.equal(same, starts) and announced.shape == (1, len(ids) + 1)
    assert bool((announced[:, :-1] <= starts).all())
    for cut in range(len(ids)):
        other = t.clone()
        other[0, cut:] = torch.randint(0, 263, (len(ids) - cut,), generator=gen)
        other_ent = ent.clone()
        other_ent[0, cut:] = torch.rand(len(ids) - cut, generator=gen) * 3
        _, moved = patch_starts_announced(other, kind, cap, other_ent, **kw)
        assert torch.equal(moved[:, : cut + 1], announced[:, : cut + 1]), cut


def test_word_and_sentence_shapes():
    t = torch.tensor([list(b"Each cat is a pet. Tom is a cat.\nTrue or false: x=3\n### True")])
    for mode, want in [
        ("word", [b"Each ", b"cat ", b"is ", b"a ", b"pet. ", b"Tom ", b"is ", b"a ", b"cat.\n"]),
        ("sentence", [b"Each cat is a pet. ", b"Tom is a cat.\n", b"True or false: "]),
    ]:
        layout = layout_from_starts(patch_starts(t, mode, 40))
        pieces = [
            bytes(t[0, s : s + n].tolist())
            for s, n in zip(layout.starts[0].tolist(), layout.lengths[0].tolist(), strict=True)
        ]
        tail = [b"True ", b"or ", b"false: ", b"x=3\n", b"### ", b"True"]
        if mode == "sentence":  # the answer marker is a patch of its own
            tail = [b"x=3\n", b"### ", b"True"]
        assert pieces == want + tail, mode


@pytest.mark.parametrize("mode", ["fixed", "space", "word", "sentence"])
def test_a_run_of_padding_is_one_patch_up_to_the_cap(mode):
    """Padding after an example starts one patch (split by the cap), and leaves every
    boundary before it as it was."""
    text = list(b"Bob is red. Ann is tall.\n")
    padded = torch.tensor([text + [PAD_ID] * 23])
    starts, announced = patch_starts_announced(padded, mode, 8)
    alone, alone_announced = patch_starts_announced(torch.tensor([text]), mode, 8)
    n = len(text)
    assert torch.equal(starts[0, :n], alone[0]) and torch.equal(
        announced[0, :n], alone_announced[0, :n]
    )
    assert starts[0, n:].nonzero().flatten().tolist() == [0, 8, 16]
