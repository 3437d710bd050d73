"""Coconut stage layout: hand-written id sequences per mode and the official stage rules."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coconutblt.data.reasoning import Example
from coconutblt.data.stages import (
    MODES,
    StageConfig,
    collate,
    extract_answer,
    format_example,
    format_text,
    scheduled_stage,
    stage_counts,
)
from coconutblt.errors import UserError
from coconutblt.vocab import (
    BOS_ID,
    END_LATENT_ID,
    EOS_ID,
    LATENT_ID,
    PAD_ID,
    PAUSE_ID,
    START_LATENT_ID,
    decode_text,
)

EX = Example("Q", ["x", "y"], "7")
S, L, E, P = START_LATENT_ID, LATENT_ID, END_LATENT_ID, PAUSE_ID
Q = [BOS_ID, ord("Q"), ord("\n")]
X = [ord("x"), ord("\n")]
Y = [ord("y"), ord("\n")]
ANS = [ord("#"), ord("#"), ord("#"), ord(" "), ord("7"), EOS_ID]


def ids(mode: str, stage: int, for_eval: bool = False, **cfg) -> tuple[list[int], list[int]]:
    staged = format_example(EX, stage, StageConfig(mode=mode, **cfg), for_eval=for_eval)
    return staged.prompt_ids, staged.target_ids


@pytest.mark.parametrize(
    ("mode", "stage", "cfg", "prompt", "target"),
    [
        # coconut: stage k replaces k steps by k * c_thought thoughts; markers even at stage 0
        ("coconut", 0, {}, Q + [S, E], X + Y + ANS),
        ("coconut", 1, {}, Q + [S, L, E], Y + ANS),
        ("coconut", 1, {"c_thought": 2}, Q + [S, L, L, E], Y + ANS),
        ("coconut", 2, {"c_thought": 2}, Q + [S, L, L, L, L, E], ANS),
        # stage <= max_latent_stage but beyond the steps: all removed, still k thoughts
        ("coconut", 3, {}, Q + [S, L, L, L, E], ANS),
        # stage > max_latent_stage: all removed, min(len(steps), max) thoughts ...
        ("coconut", 4, {}, Q + [S, L, L, E], ANS),
        ("coconut", 9, {"max_latent_stage": 1}, Q + [S, L, E], ANS),
        # ... or max thoughts with pad_latent_to_max
        ("coconut", 4, {"pad_latent_to_max": True}, Q + [S, L, L, L, E], ANS),
        ("pause", 1, {}, Q + [S, P, E], Y + ANS),
        ("pause", 4, {"c_thought": 2}, Q + [S, P, P, P, P, E], ANS),
        ("no_curriculum", 0, {}, Q + [S, L, L, E], ANS),
        ("no_curriculum", 0, {"pad_latent_to_max": True}, Q + [S, L, L, L, E], ANS),
        # no_thoughts: the curriculum removes steps, no thoughts, no markers (official run.py)
        ("no_thoughts", 0, {}, Q, X + Y + ANS),
        ("no_thoughts", 1, {"c_thought": 2}, Q, Y + ANS),
        ("no_thoughts", 5, {}, Q, ANS),
        ("no_thoughts", 1, {"markers": True}, Q + [S, E], Y + ANS),
        ("cot", 3, {}, Q, X + Y + ANS),
        ("no_cot", 0, {}, Q, ANS),
        ("no_cot", 2, {"c_thought": 3}, Q, ANS),
        ("coconut", 1, {"markers": False}, Q + [L], Y + ANS),
        # keep_last_steps: the curriculum counts only the steps before the kept ones
        ("coconut", 1, {"keep_last_steps": 1}, Q + [S, L, E], Y + ANS),
        ("coconut", 2, {"keep_last_steps": 1}, Q + [S, L, L, E], Y + ANS),
        ("coconut", 4, {"keep_last_steps": 1}, Q + [S, L, E], Y + ANS),
        ("coconut", 4, {"keep_last_steps": 2}, Q + [S, E], X + Y + ANS),
        ("no_curriculum", 0, {"keep_last_steps": 1}, Q + [S, L, E], Y + ANS),
        ("no_cot", 0, {"keep_last_steps": 1}, Q, ANS),
        ("cot", 0, {"keep_last_steps": 1}, Q, X + Y + ANS),
        # thoughts_beyond_steps=False: a thought per step replaced, not per stage
        ("coconut", 1, {"thoughts_beyond_steps": False}, Q + [S, L, E], Y + ANS),
        ("coconut", 3, {"thoughts_beyond_steps": False}, Q + [S, L, L, E], ANS),
        (
            "coconut",
            3,
            {"thoughts_beyond_steps": False, "c_thought": 2},
            Q + [S] + [L] * 4 + [E],
            ANS,
        ),
        (
            "coconut",
            2,
            {"thoughts_beyond_steps": False, "keep_last_steps": 1},
            Q + [S, L, E],
            Y + ANS,
        ),
    ],
)
def test_hand_written_layouts(mode: str, stage: int, cfg: dict, prompt: list, target: list):
    assert ids(mode, stage, **cfg) == (prompt, target)


@pytest.mark.parametrize(
    ("stage", "cfg", "thoughts"),
    [
        (1, {}, 1),
        (3, {}, 2),  # official eval caps at len(steps); training used 3
        (3, {"pad_latent_to_max": True}, 3),
        (9, {}, 2),
        (9, {"pad_latent_to_max": True, "c_thought": 2}, 6),
        (2, {"max_latent_stage": 1}, 1),
    ],
)
def test_eval_prompt_rule(stage: int, cfg: dict, thoughts: int) -> None:
    prompt, _ = ids("coconut", stage, for_eval=True, **cfg)
    assert prompt == Q + [S] + [L] * thoughts + [E]


@pytest.mark.parametrize("keep", [0, 1])
@pytest.mark.parametrize("stage", range(6))
def test_thoughts_per_step_train_as_evaluation_prompts(stage: int, keep: int) -> None:
    """Without thoughts beyond the steps, training's prompt is the evaluation's at every stage."""
    cfg = {"thoughts_beyond_steps": False, "keep_last_steps": keep, "max_latent_stage": 3}
    assert ids("coconut", stage, **cfg)[0] == ids("coconut", stage, for_eval=True, **cfg)[0]


def test_labels_mask_prompt_only() -> None:
    staged = format_example(EX, 1, StageConfig(c_thought=2))
    assert staged.input_ids == staged.prompt_ids + staged.target_ids
    assert staged.labels == [-100] * len(staged.prompt_ids) + staged.target_ids
    assert (staged.n_latents, staged.n_skip_steps, staged.answer) == (2, 1, "7")


def test_uniform_prob_draws_every_stage_reproducibly() -> None:
    cfg = StageConfig(uniform_prob=1.0, max_latent_stage=2)
    ex = Example("q", ["a", "b", "c"], "z")
    draws = [stage_counts(ex, 0, cfg, random.Random(s)) for s in range(200)]
    # stages 0..2 keep their counts; 3 exceeds max_latent_stage -> all removed, 2 thoughts
    assert set(draws) == {(0, 0), (1, 1), (2, 2), (3, 2)}
    assert draws == [stage_counts(ex, 0, cfg, random.Random(s)) for s in range(200)]
    with pytest.raises(ValueError):
        stage_counts(ex, 0, cfg)
    # eval prompts never mix stages
    assert stage_counts(ex, 0, cfg, random.Random(0), for_eval=True) == (0, 0)


def test_uniform_prob_mixes_at_its_rate_and_zero_leaves_rng_alone() -> None:
    ex = Example("q", ["a", "b", "c"], "z")
    rng = random.Random(1)
    cfg = StageConfig(uniform_prob=0.3, max_latent_stage=6)
    mixed = sum(stage_counts(ex, 2, cfg, rng) != (2, 2) for _ in range(4000))
    assert 0.3 * 0.75 * 4000 * 0.85 < mixed < 0.3 * 0.75 * 4000 * 1.15
    rng = random.Random(5)
    state = rng.getstate()
    stage_counts(ex, 2, StageConfig(), rng)
    assert rng.getstate() == state


def test_config_validation_and_schedule() -> None:
    with pytest.raises(UserError, match="mode"):
        StageConfig(mode="latent")
    with pytest.raises(UserError):
        StageConfig(uniform_prob=1.5)
    with pytest.raises(UserError):
        StageConfig(c_thought=-1)
    with pytest.raises(UserError, match="keep_last_steps"):
        StageConfig(keep_last_steps=-1)
    with pytest.raises(ValueError):
        stage_counts(EX, -1, StageConfig())
    assert [scheduled_stage(e, 3, StageConfig()) for e in range(7)] == [0, 0, 0, 1, 1, 1, 2]
    assert scheduled_stage(8, 1, StageConfig(mode="cot")) == 0
    assert scheduled_stage(0, 1, StageConfig(mode="no_curriculum", max_latent_stage=3)) == 4


def test_format_text_matches_ids() -> None:
    prompt, target = format_text(EX, 1, 2, markers=True)
    assert prompt == "Q\n<|start-latent|><|latent|><|latent|><|end-latent|>"
    assert target == "y\n### 7"
    assert format_text(EX, 0, 0, markers=False) == ("Q\n", "x\ny\n### 7")
    assert format_text(EX, 2, 1, True, latent_text="<p>", start_text="[", end_text="]")[0] == (
        "Q\n[<p>]"
    )


examples = st.builds(
    Example,
    st.text(max_size=12),
    st.lists(st.text(max_size=6), max_size=6),
    st.text(max_size=5),
)
configs = st.builds(
    StageConfig,
    mode=st.sampled_from(MODES),
    c_thought=st.integers(0, 3),
    max_latent_stage=st.integers(0, 5),
    pad_latent_to_max=st.booleans(),
    uniform_prob=st.sampled_from([0.0, 0.5]),
)


@given(examples, st.integers(0, 8), configs, st.integers(0, 1000), st.booleans())
@settings(max_examples=150, deadline=None)
def test_layout_invariants(ex: Example, stage: int, cfg: StageConfig, seed: int, for_eval: bool):
    staged = format_example(ex, stage, cfg, random.Random(seed), for_eval=for_eval)
    assert staged.input_ids == staged.prompt_ids + staged.target_ids
    assert len(staged.labels) == len(staged.input_ids)
    assert staged.labels[: len(staged.prompt_ids)] == [-100] * len(staged.prompt_ids)
    assert staged.labels[len(staged.prompt_ids) :] == staged.target_ids
    assert staged.prompt_ids.count(cfg.thought_id) == staged.n_latents
    assert staged.prompt_ids.count(START_LATENT_ID) == int(cfg.uses_markers)
    prompt_text, target_text = format_text(
        ex, staged.n_skip_steps, staged.n_latents, cfg.uses_markers, decode_text([cfg.thought_id])
    )
    assert decode_text(staged.prompt_ids) == "<|bos|>" + prompt_text
    assert decode_text(staged.target_ids) == target_text + "<|eos|>"
    if cfg.mode in ("cot", "no_cot", "no_thoughts"):
        assert staged.n_latents == 0
    if cfg.mode == "cot":
        assert staged.n_skip_steps == 0
    if cfg.mode in ("no_cot", "no_curriculum"):
        assert staged.n_skip_steps == len(ex.steps)
    if cfg.mode in ("coconut", "pause", "no_curriculum") and for_eval:
        cap = (
            cfg.max_latent_stage
            if cfg.pad_latent_to_max
            else min(len(ex.steps), cfg.max_latent_stage)
        )
        effective = cfg.max_latent_stage + 1 if cfg.mode == "no_curriculum" else stage
        assert staged.n_latents == min(cap, effective) * cfg.c_thought


def test_collate_round_trip() -> None:
    staged_questions = ["q" * n for n in (1, 4, 2)]
    staged = [
        format_example(Example(q, ["s"] * len(q), "a"), len(q), StageConfig())
        for q in staged_questions
    ]
    batch = collate(staged)
    width = max(len(s.input_ids) for s in staged)
    assert set(batch) == {
        "input_ids",
        "labels",
        "question_labels",
        "answer_labels",
        "attention_mask",
        "thought_quotes",
    }
    quotes = batch.pop("thought_quotes")  # (B, thoughts, longest quote): its own test below
    assert quotes.shape == (3, 3, 1)
    for tensor in batch.values():
        assert tensor.dtype == torch.long and tensor.shape == (3, width)
    for row, s in enumerate(staged):
        n = int(batch["attention_mask"][row].sum())
        assert n == len(s.input_ids)
        assert batch["input_ids"][row, :n].tolist() == s.input_ids
        assert batch["labels"][row, :n].tolist() == s.labels
        # the reading loss covers exactly the question's bytes and its newline
        q = batch["question_labels"][row]
        assert q[1 : 1 + s.n_question].tolist() == s.input_ids[1 : 1 + s.n_question]
        assert (q[0] == -100) and (q[1 + s.n_question :] == -100).all()
        assert bytes(q[1 : s.n_question].tolist()) == staged_questions[row].encode()
        # the answer loss covers exactly the answer's bytes and the EOS
        a = batch["answer_labels"][row]
        assert a[n - 2 : n].tolist() == [ord("a"), EOS_ID]
        assert (a[: n - 2] == -100).all() and (a[n:] == -100).all()
        assert (batch["input_ids"][row, n:] == PAD_ID).all()
        assert (batch["labels"][row, n:] == -100).all()
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
    assert (collate(staged, pad_id=0)["input_ids"] == 0).sum() > 0
    with pytest.raises(ValueError):
        collate([])


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Q\nx\n### 42", "42"),
        ("Q\nx\n### 42<|eos|>junk", "42"),
        ("### 1\n### Tom is a lempus.\nmore", "Tom is a lempus."),
        ("#### 5 5 6 0", "5 5 6 0"),
        ("###7  ", "7"),
        ("no answer here", ""),
        ("### ", ""),
    ],
)
def test_extract_answer(text: str, answer: str) -> None:
    assert extract_answer(text) == answer


def test_extract_answer_from_generated_ids() -> None:
    staged = format_example(EX, 1, StageConfig())
    assert extract_answer(decode_text(staged.input_ids)) == "7"


def test_each_thought_carries_the_quote_of_the_step_it_replaces():
    """A thought's pointer target (`model.copy_into_thoughts`) is the last sentence of its
    step, on the step's last thought; the collated tensor pads quotes and rows with PAD."""
    ex = Example("Q", ["Bob is a cat. Cats are red.", "Bob is red."], "True")
    one = format_example(ex, 2, StageConfig("coconut", c_thought=1, max_latent_stage=2))
    assert one.thought_quotes == ("Cats are red.", "Bob is red.")
    two = format_example(ex, 1, StageConfig("coconut", c_thought=2, max_latent_stage=2))
    assert two.thought_quotes == ("", "Cats are red.")
    cot = format_example(ex, 0, StageConfig("cot"))
    assert cot.thought_quotes == ()
    batch = collate([one, two, cot])["thought_quotes"]
    assert batch.shape == (3, 2, len("Cats are red."))
    assert decode_text(batch[0, 1, : len("Bob is red.")].tolist()) == "Bob is red."
    assert (batch[0, 1, len("Bob is red.") :] == PAD_ID).all()
    assert (batch[1, 0] == PAD_ID).all() and (batch[2] == PAD_ID).all()
