"""The bad-input matrix: every command, given a wrong input a new user would try, ends with
exit status 2 and one line on stderr that names the culprit (no traceback), and no file that
was already there changes. Then one run per folder (the lock, `--overwrite`), what `--resume`
does with overrides, and a failed save. Everything runs in-process on a tiny model (seconds)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from coconutblt.checkpoint import read_checkpoint
from coconutblt.cli import main
from coconutblt.errors import UserError
from coconutblt.runtime.metrics import read_metrics
from coconutblt.train.config import load_run_config
from coconutblt.train.loop import Trainer
from coconutblt.train.run_folder import LOCK_NAME, RunLock
from tests.conftest import TINY_RUN_MODEL


def text_overrides(corpus: Path, *extra: str) -> list[str]:
    return [
        *TINY_RUN_MODEL,
        "model.n_layers=1",
        "data.kind=text",
        f"data.train=['{corpus}']",
        "data.seq_len=32",
        "training.steps=2",
        "training.batch_size=2",
        "training.warmup_steps=1",
        "training.log_every=1",
        *extra,
    ]


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> Path:
    """A folder of inputs: a finished tiny run (`run/`), good and bad data, bad checkpoints."""
    d = tmp_path_factory.mktemp("bad_inputs")
    corpus = d / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    Trainer(load_run_config(None, text_overrides(corpus)), d / "run", show_progress=False).fit()
    ckpt = d / "run" / "final.pt"
    (d / "empty.txt").write_bytes(b"")
    (d / "empty.json").write_bytes(b"")
    (d / "short.txt").write_text("too short")
    (d / "latin1.jsonl").write_bytes('{"question": "caf\xe9"}\n'.encode("latin-1"))
    (d / "no_steps.jsonl").write_text('{"question": "q?", "answer": "a"}\n')
    (d / "one.jsonl").write_text(json.dumps({"question": "q?", "steps": ["s"], "answer": "a"}))
    good = "".join(
        json.dumps({"question": f"{i} + 1?", "steps": [f"{i}+1"], "answer": str(i + 1)}) + "\n"
        for i in range(6)
    )
    (d / "r.jsonl").write_text(good)
    blob = ckpt.read_bytes()
    (d / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    (d / "not_a_checkpoint.pt").write_text("hello")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, d / "foreign.pt")
    edited = torch.load(ckpt, weights_only=True)
    edited["model_config"]["d_model"] = 64  # weights of another size than the config says
    torch.save(edited, d / "wrong_arch.pt")
    (d / "export").mkdir()
    (d / "export" / "keep.txt").write_text("mine")
    return d


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(folder.rglob("*"))
    }


TRAIN = ["train", "{c}", "--out", "{w}/run", "--no-progress"]  # {c}: the run's config.yaml
TEXT = ["train", "{c}", "--out", "{w}/fresh", "--no-progress"]
REASONING = ["train", *TINY_RUN_MODEL, "--out", "{w}/fresh", "--no-progress"]

# (id, argv, a string the one line must contain)
CASES = [
    # train: config values (each the dotted key)
    ("batch_size=0", [*TEXT, "training.batch_size=0"], "training.batch_size"),
    ("lr=-1", [*TEXT, "training.lr=-1"], "training.lr"),
    ("lr=nan", [*TEXT, "training.lr=.nan"], "training.lr"),
    ("warmup<0", [*TEXT, "training.warmup_steps=-1"], "training.warmup_steps"),
    ("grad_accum=0", [*TEXT, "training.grad_accum=0"], "training.grad_accum"),
    ("log_every=0", [*TEXT, "training.log_every=0"], "training.log_every"),
    ("heads", [*TEXT, "model.d_model=128", "model.n_heads=3"], "model.n_heads"),
    ("heads=0", [*TEXT, "model.n_heads=0"], "model.n_heads"),
    ("odd head", [*TEXT, "model.d_local=48", "model.local_heads=16"], "model.local_heads"),
    ("d_model<0", [*TEXT, "model.d_model=-8"], "model.d_model"),
    ("patch_size=0", [*TEXT, "model.patch_size=0"], "model.patch_size"),
    ("entropy heads", [*TEXT, "model.entropy_patcher.model.n_heads=3"], "entropy_patcher"),
    ("seq_len>max", [*TEXT, "data.seq_len=4096"], "data.seq_len"),
    ("holdout=1", [*TEXT, "data.holdout=1.0"], "data.holdout"),
    ("uniform_prob", [*REASONING, "curriculum.uniform_prob=1.5"], "curriculum.uniform_prob"),
    ("epochs=0", [*REASONING, "curriculum.num_epochs=0"], "curriculum.num_epochs"),
    ("keep<0", [*REASONING, "curriculum.keep_last_steps=-1"], "curriculum.keep_last_steps"),
    ("stage/epoch=0", [*REASONING, "curriculum.epochs_per_stage=0"], "epochs_per_stage"),
    ("start_stage", [*REASONING, "curriculum.start_stage=9"], "curriculum.start_stage"),
    ("thoughts", [*REASONING, "curriculum.c_thought=64", "curriculum.max_latent_stage=9"], "c_thought"),
    ("device", [*TEXT, "training.device=gpu"], "training.device"),
    ("text steps=0", [*REASONING, "data.kind=text", "data.seq_len=32"], "training.steps"),
    ("unknown key", [*TEXT, "training.bogus=1"], "training.bogus"),
    ("wrong type", [*TEXT, "training.batch_size=many"], "training.batch_size"),
    # train: override syntax, config file
    ("unclosed list", [*TEXT, "data.train=[a.json"], "data.train=[a.json"),
    ("no such preset", ["train", "{w}/nope.yaml", "--out", "{w}/fresh"], "nope.yaml"),
    # train: data
    ("missing data", [*REASONING, "data.train=[{w}/missing.json]"], "missing.json"),
    ("empty text", [*TEXT, "data.train=[{w}/empty.txt]"], "empty.txt"),
    ("short text", [*TEXT, "data.train=[{w}/short.txt]"], "data.seq_len"),
    ("empty json", [*REASONING, "data.train=[{w}/empty.json]"], "empty.json"),
    ("non-UTF-8", [*REASONING, "data.train=[{w}/latin1.jsonl]"], "UTF-8"),
    ("no steps", [*REASONING, "data.train=[{w}/no_steps.jsonl]"], "no_steps.jsonl"),
    ("one example", [*REASONING, "data.train=[{w}/one.jsonl]"], "data.train"),
    ("train = val", [*REASONING, "data.train=[{w}/r.jsonl]", "data.val=[{w}/r.jsonl]"], "data.val"),
    ("synth args", [*REASONING, "data.synth_args={hops: 0}"], "hops"),
    ("synth task", [*REASONING, "data.synth_task=sudoku"], "sudoku"),
    # train: the run folder
    ("occupied", TRAIN, "--overwrite"),
    ("resume nothing", [*TEXT, "--resume"], "nothing to resume"),
    ("resume finished", [*TRAIN, "--resume"], "training.steps"),
    ("resume model", [*TRAIN, "--resume", "model.d_local=64"], "model.d_local"),
    ("resume data", [*TRAIN, "--resume", "data.seq_len=16"], "data.seq_len"),
    ("out is a file", ["train", "{c}", "--out", "{w}/r.jsonl"], "r.jsonl"),
    ("init_from", [*TEXT, "curriculum.init_from={w}/truncated.pt"], "truncated.pt"),
    # eval
    ("eval missing", ["eval", "--ckpt", "{w}/missing.pt", "--data", "{w}/r.jsonl"], "missing.pt"),
    ("eval truncated", ["eval", "--ckpt", "{w}/truncated.pt", "--data", "{w}/r.jsonl"], "truncated"),
    ("eval text", ["eval", "--ckpt", "{w}/not_a_checkpoint.pt", "--data", "{w}/r.jsonl"], "not_a"),
    ("eval foreign", ["eval", "--ckpt", "{w}/foreign.pt", "--data", "{w}/r.jsonl"], "foreign.pt"),
    ("eval arch", ["eval", "--ckpt", "{w}/wrong_arch.pt", "--data", "{w}/r.jsonl"], "wrong_arch"),
    ("eval empty", ["eval", "--ckpt", "{w}/run", "--data", "{w}/empty.json"], "empty.json"),
    ("eval latin1", ["eval", "--ckpt", "{w}/run", "--data", "{w}/latin1.jsonl"], "UTF-8"),
    ("eval batch", ["eval", "--ckpt", "{w}/run", "--data", "{w}/r.jsonl", "--batch-size", "0"], "--batch-size"),
    ("eval stage", ["eval", "--ckpt", "{w}/run", "--data", "{w}/r.jsonl", "--stage", "-1"], "--stage"),
    # generate
    ("gen truncated", ["generate", "--ckpt", "{w}/truncated.pt", "--prompt", "hi"], "truncated"),
    ("gen arch", ["generate", "--ckpt", "{w}/wrong_arch.pt", "--prompt", "hi"], "wrong_arch"),
    ("gen tokens", ["generate", "--ckpt", "{w}/run", "--prompt", "hi", "--max-new-tokens", "0"], "--max-new-tokens"),
    ("gen top-p", ["generate", "--ckpt", "{w}/run", "--prompt", "hi", "--top-p", "2"], "--top-p"),
    ("gen temperature", ["generate", "--ckpt", "{w}/run", "--prompt", "hi", "--temperature", "-1"], "--temperature"),
    # eval-bpb
    ("bpb empty", ["eval-bpb", "--ckpt", "{w}/run", "{w}/empty.txt", "--no-plot"], "empty.txt"),
    ("bpb missing", ["eval-bpb", "--ckpt", "{w}/run", "{w}/missing.txt", "--no-plot"], "missing.txt"),
    ("bpb truncated", ["eval-bpb", "--ckpt", "{w}/truncated.pt", "{w}/c.txt", "--no-plot"], "truncated"),
    ("bpb seq-len", ["eval-bpb", "--ckpt", "{w}/run", "{w}/c.txt", "--seq-len", "0", "--no-plot"], "--seq-len"),
    # export-hf
    ("export occupied", ["export-hf", "--ckpt", "{w}/run", "--out", "{w}/export"], "--overwrite"),
    ("export truncated", ["export-hf", "--ckpt", "{w}/truncated.pt", "--out", "{w}/ex"], "truncated"),
    ("export foreign", ["export-hf", "--ckpt", "{w}/foreign.pt", "--out", "{w}/ex"], "foreign.pt"),
    # entropy train, patch calibrate / stats
    ("entropy empty", ["entropy", "train", "--data", "{w}/empty.txt", "--out", "{w}/en"], "empty.txt"),
    ("entropy heads", ["entropy", "train", "--data", "{w}/c.txt", "--out", "{w}/en", "--n-heads", "3"], "--n-heads"),
    ("entropy lr", ["entropy", "train", "--data", "{w}/c.txt", "--out", "{w}/en", "--lr", "-1"], "--lr"),
    ("entropy window", ["entropy", "train", "--data", "{w}/short.txt", "--out", "{w}/en", "--seq-len", "64", "--window", "64"], "9 bytes"),
    ("calibrate", ["patch", "calibrate", "--entropy-model", "{w}/run", "--data", "{w}/c.txt"], "entropy.pt"),
    ("stats empty", ["patch", "stats", "--data", "{w}/empty.txt"], "empty.txt"),
    ("stats size", ["patch", "stats", "--data", "{w}/c.txt", "--patch-size", "0"], "--patch-size"),
    # data
    ("synth n=0", ["data", "synth", "--task", "chain", "--n", "0", "--out", "{w}/s.json"], "0 examples"),
    ("data synth task", ["data", "synth", "--task", "sudoku", "--n", "3", "--out", "{w}/s.json"], "sudoku"),
    ("synth hops", ["data", "synth", "--task", "chain", "--n", "3", "--out", "{w}/s.json", "--args", '{"hops": 0}'], "hops"),
    ("synth option", ["data", "synth", "--task", "chain", "--n", "3", "--out", "{w}/s.json", "--args", '{"bogus": 1}'], "bogus"),
    ("synth json", ["data", "synth", "--task", "chain", "--n", "3", "--out", "{w}/s.json", "--args", "{hops"], "--args"),
    ("show empty", ["data", "show", "{w}/empty.json"], "empty.json"),
    ("stats latin1", ["data", "stats", "{w}/latin1.jsonl"], "UTF-8"),
    # reproduce (before anything trains)
    ("recipe", ["reproduce", "sudoku"], "sudoku"),
    ("recipe data", ["reproduce", "prontoqa", "--quick", "--data-dir", "{w}/missing", "--out", "{w}/rp"], "--data-dir"),
    # the Hugging Face side
    ("hf eval folder", ["hf", "eval", "--ckpt", "{w}/missing", "--data", "{w}/r.jsonl"], "missing"),
    ("hf eval data", ["hf", "eval", "--ckpt", "{w}/run", "--data", "{w}/empty.json"], "empty.json"),
    ("hf train batch", ["hf", "train", "--data", "{w}/r.jsonl", "--out", "{w}/hf", "--batch-size", "0"], "--batch-size"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "culprit"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(w, argv, culprit, capsys):
    before = snapshot(w)
    args = [a.replace("{w}", str(w)).replace("{c}", str(w / "run" / "config.yaml")) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith("coconutblt ") and culprit.replace("{w}", str(w)) in err, err
    assert snapshot(w) == before


def test_a_warning_is_one_line_too(w, capsys):
    argv = ["entropy", "train", "--data", str(w / "short.txt"), "--out", str(w / "en")]
    assert main([*argv, "--seq-len", "64", "--window", "128"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("coconutblt entropy: ") for line in lines)
    assert "warning: entropy model window=128" in lines[0] and "error:" in lines[1]


# ---------------------------------------------------------------------------------------------
# One run per folder


def test_a_locked_folder_is_refused_naming_the_holder(w, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(w / "run", out)
    lock = RunLock(out)
    lock.acquire()  # as another run would (a second open file: flock refuses it too)
    try:
        argv = ["train", str(out / "config.yaml"), "--out", str(out), "--resume"]
        assert main([*argv, "training.steps=3", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert f"pid {os.getpid()}" in err and "another run" in err and err.count("\n") == 0
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
    finally:
        lock.release()
    assert not (out / LOCK_NAME).exists()


def test_a_stale_lock_is_taken_over_and_released(w, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(w / "run", out)
    (out / LOCK_NAME).write_text("999999999\n")  # left by a run that was killed
    cfg = load_run_config(str(out / "config.yaml"), ["training.steps=3"])
    trainer = Trainer(cfg, out, resume=True, show_progress=False)
    assert trainer.lock.held
    assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())
    trainer.fit()
    assert not (out / LOCK_NAME).exists()  # released when the run ends
    assert "resumed at step 2 of 3" in capsys.readouterr().out


def test_overwrite_replaces_the_earlier_run_and_a_failed_start_leaves_no_folder(w, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(w / "run", out)
    (out / "stage4.pt").write_bytes(b"an older run's stage checkpoint")
    cfg = load_run_config(str(out / "config.yaml"), ["training.steps=1"])
    with pytest.raises(UserError, match="--overwrite"):
        Trainer(cfg, out, show_progress=False)
    Trainer(cfg, out, show_progress=False, overwrite=True).fit()
    assert not (out / "stage4.pt").exists()  # nothing of the earlier run is left beside it
    assert read_checkpoint(out / "final.pt")["step"] == 1
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["type"] == "train"] == [1]
    bad = load_run_config(str(out / "config.yaml"), [f"data.train=['{w / 'short.txt'}']"])
    with pytest.raises(UserError, match="data.seq_len"):
        Trainer(bad, tmp_path / "new", show_progress=False)
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------------
# What --resume does with overrides


def test_resume_trains_longer_with_a_new_lr(w, tmp_path, capsys):
    """training.steps and training.lr given with --resume are applied from the resume step on:
    the schedule is the one a run planned with the new values has."""
    out = tmp_path / "run"
    shutil.copytree(w / "run", out)
    argv = ["train", str(out / "config.yaml"), "--out", str(out), "--resume", "--no-progress"]
    assert main([*argv, "training.steps=4", "training.lr=5e-4"]) == 0
    printed = capsys.readouterr().out
    assert "resumed at step 2 of 4" in printed
    assert "training.steps 2 -> 4" in printed and "training.lr 0.001 -> 0.0005" in printed
    from coconutblt.train.loop import lr_at

    cfg = load_run_config(str(out / "config.yaml"))
    assert cfg.training.steps == 4 and cfg.training.lr == 5e-4  # the config now says so
    train = [r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert [r["lr"] for r in train[2:]] == [lr_at(s, 4, cfg.training) for s in (2, 3)]
    assert len([r for r in read_metrics(out / "metrics.jsonl") if r["type"] == "eval"]) == 2
    assert read_checkpoint(out / "final.pt")["step"] == 4


# ---------------------------------------------------------------------------------------------
# Failures in the middle of a run


def test_nan_before_any_checkpoint_names_none(w, tmp_path):
    cfg = load_run_config(str(w / "run" / "config.yaml"))
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    real = trainer._micro_loss

    def poisoned(ids, labels):
        objective, loss = real(ids, labels)
        return objective * float("nan"), loss

    trainer._micro_loss = poisoned
    with pytest.raises(UserError, match="non-finite loss at step 0") as caught:
        trainer.fit()
    assert "no checkpoint was saved yet" in str(caught.value)
    assert "last.pt" not in str(caught.value) and not (tmp_path / "run" / "last.pt").exists()
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_a_failed_save_keeps_the_previous_checkpoint_and_says_so(w, tmp_path, monkeypatch):
    """Disk full at the second checkpoint: a one-line error, and last.pt is still step 1."""
    cfg = load_run_config(str(w / "run" / "config.yaml"), ["training.save_every=1"])
    trainer = Trainer(cfg, tmp_path / "run", show_progress=False)
    import coconutblt.checkpoint as checkpoint

    real, calls = checkpoint.torch.save, {"n": 0}

    def full_disk(obj, f):
        calls["n"] += 1
        if calls["n"] == 2:
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real(obj, f)

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(UserError, match="No space left on device") as caught:
        trainer.fit()
    assert "previous file is left as it was" in str(caught.value)
    monkeypatch.undo()
    assert read_checkpoint(tmp_path / "run" / "last.pt")["step"] == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")) == []


KILL_SCRIPT = """
import sys, time
from pathlib import Path
import coconutblt.checkpoint as checkpoint
from coconutblt.train.config import load_run_config
from coconutblt.train.loop import Trainer

out, ready = Path(sys.argv[2]), Path(sys.argv[3])
real, calls = checkpoint.torch.save, {"n": 0}

def slow_save(obj, f):
    calls["n"] += 1
    if calls["n"] == 2:  # the second last.pt: stop half-way through the write
        f.write(b"half a checkpoint")
        f.flush()
        ready.write_text("writing")
        time.sleep(60)
    return real(obj, f)

checkpoint.torch.save = slow_save
cfg = load_run_config(sys.argv[1], ["training.steps=4", "training.save_every=1"])
Trainer(cfg, out, show_progress=False).fit()
"""


def test_sigkill_in_a_checkpoint_write_keeps_the_previous_one_and_resume_continues(w, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out, ready = tmp_path / "run", tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(w / "run" / "config.yaml"), str(out), str(ready)],
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint write"
            time.sleep(0.1)
        assert (out / LOCK_NAME).read_text().strip() == str(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert any(p.name.endswith(".tmp") for p in out.iterdir())  # the half-written file
    assert read_checkpoint(out / "last.pt")["step"] == 1  # the previous one loads
    cfg = load_run_config(str(w / "run" / "config.yaml"), ["training.steps=4"])
    trainer = Trainer(cfg, out, resume=True, show_progress=False)  # the dead run's lock is free
    assert trainer.state.step == 1
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())  # its partial write is gone
    trainer.fit()
    assert read_checkpoint(out / "final.pt")["step"] == 4
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["type"] == "train"]
    assert steps == [1, 2, 3, 4]


def test_entropy_model_scores_a_held_out_text_shorter_than_its_window():
    """A held-out tail shorter than seq_len is scored as one window (it used to be an error
    after the whole training run)."""
    from coconutblt.model.config import EntropyModelConfig
    from coconutblt.model.entropy import EntropyModel
    from coconutblt.patching_study.entropy_train import heldout_bpb
    from coconutblt.vocab import VOCAB_SIZE

    model = EntropyModel(EntropyModelConfig(d_model=16, n_layers=1, n_heads=2), VOCAB_SIZE)
    data = torch.frombuffer(bytearray(b"a short held-out tail"), dtype=torch.uint8)
    assert heldout_bpb(model, data, seq_len=64) > 0


def test_resume_adds_epochs_to_a_finished_curriculum_run(tmp_path, capsys):
    overrides = [
        *TINY_RUN_MODEL,
        "model.n_layers=1",
        "data.synth_n=8",
        "data.synth_val_n=2",
        "data.synth_args={hops: 1, distractors: 1}",
        "training.batch_size=8",
        "training.eval_max_new_tokens=2",
        "curriculum.num_epochs=1",
        "curriculum.max_latent_stage=1",
    ]
    Trainer(load_run_config(None, overrides), tmp_path / "run", show_progress=False).fit()
    with pytest.raises(UserError, match="raise curriculum.num_epochs"):
        Trainer(load_run_config(None, overrides), tmp_path / "run", resume=True)
    more = load_run_config(None, [*overrides, "curriculum.num_epochs=2"])
    Trainer(more, tmp_path / "run", resume=True, show_progress=False).fit()
    assert "resumed at step 1 of 2, epoch 1" in capsys.readouterr().out
    evals = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["type"] == "eval"]
    assert [(r["epoch"], r["stage"]) for r in evals] == [(0, 0), (1, 1)]
    assert read_checkpoint(tmp_path / "run" / "final.pt")["stage"] == 1
