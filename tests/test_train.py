"""The trainer: exact resume, curriculum stages, checkpoints, and one-line errors."""

from __future__ import annotations

import json
import re

import pytest
import torch

from coconutblt.checkpoint import read_checkpoint
from coconutblt.cli import main
from coconutblt.runtime.metrics import read_metrics
from coconutblt.train.config import load_run_config
from coconutblt.train.loop import Trainer
from tests.conftest import TINY_RUN_MODEL as TINY_MODEL


def text_cfg(tmp_path, *extra):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    return load_run_config(
        None,
        [
            *TINY_MODEL,
            "data.kind=text",
            f"data.train=['{corpus}']",
            "data.seq_len=64",
            "training.steps=6",
            "training.batch_size=4",
            "training.log_every=1",
            "training.warmup_steps=2",
            *extra,
        ],
    )


def reasoning_cfg(*extra):
    return load_run_config(
        None,
        [
            *TINY_MODEL,
            "data.synth_task=chain",
            "data.synth_n=48",
            "data.synth_val_n=8",
            "data.max_val_examples=8",
            "data.synth_args={hops: 2, distractors: 2}",
            "training.batch_size=8",
            "training.grad_accum=2",
            "training.log_every=1",
            "training.warmup_steps=2",
            "training.eval_max_new_tokens=16",
            "curriculum.num_epochs=3",
            "curriculum.max_latent_stage=2",
            "curriculum.c_thought=2",
            *extra,
        ],
    )


def train_losses(run_dir) -> list[tuple[int, float]]:
    return [
        (r["step"], r["loss"])
        for r in read_metrics(run_dir / "metrics.jsonl")
        if r["type"] == "train"
    ]


def test_text_resume_equals_uninterrupted(tmp_path):
    Trainer(text_cfg(tmp_path), tmp_path / "straight", show_progress=False).fit()
    stopped = Trainer(
        text_cfg(tmp_path, "training.max_steps_per_run=3"), tmp_path / "split", show_progress=False
    )
    assert stopped.fit() == {"stopped_at": 3}
    Trainer(text_cfg(tmp_path), tmp_path / "split", resume=True, show_progress=False).fit()
    straight, split = train_losses(tmp_path / "straight"), train_losses(tmp_path / "split")
    assert [s for s, _ in straight] == list(range(1, 7))
    assert straight == split  # exactly the same losses, step by step
    a = read_checkpoint(tmp_path / "straight" / "final.pt")["model"]
    b = read_checkpoint(tmp_path / "split" / "final.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert train_losses(tmp_path / "straight")[-1][1] < train_losses(tmp_path / "straight")[0][1]


def test_curriculum_resume_mid_epoch_equals_uninterrupted(tmp_path):
    Trainer(reasoning_cfg(), tmp_path / "straight", show_progress=False).fit()
    # 48 examples / (8 x 2 accumulation) = 3 steps per epoch: stop inside epoch 1 (stage 1)
    Trainer(
        reasoning_cfg("training.max_steps_per_run=4"), tmp_path / "split", show_progress=False
    ).fit()
    Trainer(reasoning_cfg(), tmp_path / "split", resume=True, show_progress=False).fit()
    assert train_losses(tmp_path / "straight") == train_losses(tmp_path / "split")
    evals = [r for r in read_metrics(tmp_path / "split" / "metrics.jsonl") if r["type"] == "eval"]
    assert [r["stage"] for r in evals] == [0, 1, 2]
    assert [r["avg_thoughts"] for r in evals] == [0.0, 2.0, 4.0]  # c_thought=2 per stage
    for name in (
        "best.pt",
        "last.pt",
        "final.pt",
        "stage0.pt",
        "stage1.pt",
        "stage2.pt",
        "metrics.png",
    ):
        assert (tmp_path / "split" / name).is_file(), name
    assert read_checkpoint(tmp_path / "split" / "stage1.pt")["stage"] == 1


def test_optimizer_is_reset_at_stage_change(tmp_path, monkeypatch):
    built = []
    import coconutblt.train.loop as loop

    real = loop.build_optimizer
    monkeypatch.setattr(loop, "build_optimizer", lambda m, t: built.append(1) or real(m, t))
    Trainer(reasoning_cfg(), tmp_path / "run", show_progress=False).fit()
    assert len(built) == 3  # initial + stage 1 + stage 2
    built.clear()
    Trainer(
        reasoning_cfg("curriculum.reset_optimizer=false"), tmp_path / "run2", show_progress=False
    ).fit()
    assert len(built) == 1


def test_cli_train_and_errors(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abc " * 500)
    args = [
        "train",
        "configs/tiny.yaml",
        *TINY_MODEL,
        "data.kind=text",
        f"data.train=['{corpus}']",
        "data.seq_len=32",
        "training.steps=2",
        "training.batch_size=2",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2
    assert (
        main(["train", "configs/tiny.yaml", "training.bogus=1", "--out", str(tmp_path / "x")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "training.bogus" in err and "valid keys" in err
    assert main(["train", "configs/nope.yaml", "--out", str(tmp_path / "x")]) == 2
    assert "configs/nope.yaml" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "configs/tiny.yaml",
                "data.train=['/no/such/file.json']",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "/no/such/file.json" in capsys.readouterr().err
    assert main(["train", "configs/tiny.yaml", "--resume", "--out", str(tmp_path / "empty")]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_non_finite_loss_is_one_line_and_keeps_checkpoint(tmp_path, capsys):
    cfg = text_cfg(tmp_path, "training.save_every=1", "training.grad_clip=0.0")
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    calls = {"n": 0}
    real = trainer._micro_loss

    def poisoned(ids, labels):
        calls["n"] += 1
        objective, loss = real(ids, labels)
        return (objective * float("nan"), loss) if calls["n"] == 3 else (objective, loss)

    trainer._micro_loss = poisoned
    from coconutblt.errors import UserError

    with pytest.raises(UserError, match="non-finite loss at step 2"):
        trainer.fit()
    assert read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2


def test_patch_curriculum_moves_from_fixed_to_entropy_patches(tmp_path, monkeypatch):
    """training.patch_curriculum_steps reaches the forward: fixed boundaries during the hold,
    a mix after it, and the model's own entropy patcher (override None) once it is over.

    With 4 curriculum steps the hold is steps 0-1; p(entropy) is 0.5 at step 2 (the coins of
    seed 0 give rows 1 and 3 entropy patches, rows 0 and 2 fixed ones) and 1 at step 3."""
    import coconutblt.train.patch_curriculum as pc
    from coconutblt.model.patching import patch_starts

    seen = []
    real = pc.curriculum_patch_starts

    def spy(model, ids, entropies, step, total_steps, **kw):
        out = real(model, ids, entropies, step, total_steps, **kw)
        # the entropy patches of the model as it is at this step, found here independently
        ep, cap = model.config.entropy_patcher, model.config.max_patch_size
        ent = pc.model_entropies(model, ids)
        by_entropy = patch_starts(
            ids, "entropy", cap, ent, ep.threshold, ep.rule, ep.relative_threshold
        )
        seen.append((step, ids.clone(), out, by_entropy))
        return out

    monkeypatch.setattr(pc, "curriculum_patch_starts", spy)
    cfg = text_cfg(
        tmp_path,
        "model.patcher=entropy",
        "model.entropy_patcher.estimator=learned",
        "model.entropy_patcher.threshold=0.5",
        "training.train_estimator=true",
        "training.patch_curriculum_steps=4",
    )
    Trainer(cfg, tmp_path / "run", show_progress=False).fit()
    assert [s for s, *_ in seen] == [0, 1, 2, 3, 4, 5]
    for step, ids, starts, by_entropy in seen:
        fixed = patch_starts(ids, "fixed", 4)
        if step < 2:  # hold: half of the curriculum on fixed patches
            assert torch.equal(starts, fixed)
        elif step < 4:  # the mix: each row patched one way or the other, as its coin says
            use_entropy = [True, True, True, True] if step == 3 else [False, True, False, True]
            for b, entropy_row in enumerate(use_entropy):
                assert not torch.equal(by_entropy[b], fixed[b])  # the two kinds tell apart
                assert torch.equal(starts[b], by_entropy[b] if entropy_row else fixed[b])
        else:
            assert starts is None


def test_patch_curriculum_needs_the_entropy_patcher(tmp_path):
    from coconutblt.errors import UserError

    with pytest.raises(UserError, match="patch_curriculum_steps=3 needs model.patcher=entropy"):
        Trainer(
            text_cfg(tmp_path, "training.patch_curriculum_steps=3"),
            tmp_path / "run",
            show_progress=False,
        )


def test_overrides_after_options_and_long_examples_left_out(tmp_path, capsys):
    """`train CFG --out DIR key=value` works, and examples (train and validation) longer than the
    context at any stage are left out instead of crashing a batch or validation."""
    import json as _json

    data = tmp_path / "d.jsonl"
    short = {"question": "a=b;a>?", "steps": ["a=b"], "answer": "b"}
    long = {"question": "x" * 300, "steps": ["y" * 10], "answer": "z"}
    data.write_text(
        "\n".join(_json.dumps(r) for r in [short] * 10 + [long] * 5 + [short] * 10) + "\n"
    )
    argv = [
        "train",
        "configs/tiny.yaml",
        *TINY_MODEL,
        f"data.train=['{data}']",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
        "data.seq_len=64",
        "data.max_val_examples=4",
        "training.batch_size=4",
        "curriculum.num_epochs=1",
        "training.eval_max_new_tokens=4",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # each split's count, so a default that leaves data out never does it silently
    warned = re.search(
        r"warning: (\d+) of (\d+) training and (\d+) of (\d+) validation examples are longer "
        r"than 64 bytes at some stage and are left out",
        out,
    )
    assert warned, out
    dropped_train, n_train, dropped_val, n_val = map(int, warned.groups())
    assert dropped_train + dropped_val == 5 and n_train + n_val == 25
    assert main([*argv[:-1], "training.bogus=1"]) == 2


def test_uniform_stage_mixing_trains_mixed_thought_counts(tmp_path):
    """`curriculum.uniform_prob` (the paper's analysis runs): batches mix stages, and the run
    (including the too-long-example check, which formats every stage) completes."""
    from coconutblt.vocab import LATENT_ID

    trainer = Trainer(
        reasoning_cfg("curriculum.uniform_prob=1.0"), tmp_path / "run", show_progress=False
    )
    batch = trainer.batches.batch(epoch=1, index=0, stage=1)
    thoughts = (batch["input_ids"] == LATENT_ID).sum(1)  # (B,)
    assert len(set(thoughts.tolist())) > 1  # stages 0..2 drawn per example, c_thought=2
    trainer.fit()
    evals = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["type"] == "eval"]
    assert [r["stage"] for r in evals] == [0, 1, 2]


def test_run_folder_holds_the_resolved_config_that_reruns_it(tmp_path):
    """`DIR/config.yaml` is the whole resolved config: loading it gives the same run config,
    and training from it (plus an override) reproduces the run's losses."""
    cfg = text_cfg(tmp_path, "training.steps=3")
    Trainer(cfg, tmp_path / "a", show_progress=False).fit()
    saved = tmp_path / "a" / "config.yaml"
    assert load_run_config(str(saved)).to_dict() == cfg.to_dict()
    argv = ["train", str(saved), "--out", str(tmp_path / "b"), "--no-progress"]
    assert main([*argv, "training.log_every=1"]) == 0
    assert train_losses(tmp_path / "a") == train_losses(tmp_path / "b")


@pytest.mark.parametrize("question_w,answer_w", [(0.0, 0.0), (0.5, 0.0), (0.0, 2.0), (1.0, 3.0)])
def test_question_and_answer_losses_add_their_weighted_means(tmp_path, question_w, answer_w):
    """The objective is the target loss plus each extra loss weighted by its curriculum key;
    the answer loss reads only the answer's bytes and the EOS."""
    from coconutblt.model.hybrid import next_id_loss
    from coconutblt.vocab import EOS_ID

    trainer = Trainer(
        reasoning_cfg(
            f"curriculum.question_loss_weight={question_w}",
            f"curriculum.answer_loss_weight={answer_w}",
            "model.next_patch_loss_weight=0",
        ),
        tmp_path / "run",
        show_progress=False,
    )
    b = trainer.batches.batch(epoch=0, index=0, stage=0)
    for row in range(b["input_ids"].shape[0]):
        answer = b["answer_labels"][row][b["answer_labels"][row] != -100].tolist()
        assert answer[-1] == EOS_ID and bytes(answer[:-1]).decode().strip() != ""
        assert b"### " + bytes(answer[:-1]) in bytes(
            i for i in b["labels"][row].tolist() if 0 <= i < 256
        )
    trainer.model.eval()  # no dropout: the two forwards below must agree exactly
    objective, loss = trainer._micro_loss(
        b["input_ids"], b["labels"], b["question_labels"], b["answer_labels"]
    )
    with torch.no_grad():
        logits = trainer.model(b["input_ids"]).logits
    expected = next_id_loss(logits, b["labels"])
    expected = expected + question_w * next_id_loss(logits, b["question_labels"])
    expected = expected + answer_w * next_id_loss(logits, b["answer_labels"])
    assert torch.allclose(loss, next_id_loss(logits, b["labels"]), rtol=1e-5)
    assert torch.allclose(objective.detach(), expected, rtol=1e-5)
