"""`coconutblt hf tiny-base | tokens | train | eval` end to end on tiny random models in tmp_path."""

import argparse
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import torch  # noqa: E402

from coconutblt.commands.hf import add_hf_parser  # noqa: E402
from coconutblt.errors import UserError  # noqa: E402
from coconutblt.hf.batching import Encoded, collate  # noqa: E402
from coconutblt.hf.tiny import build_tiny_base, tiny_gpt2, tiny_tokenizer  # noqa: E402
from coconutblt.hf.train import train_stage  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GSM8K = DATA / "gsm8k" / "train.jsonl"
needs_gsm8k = pytest.mark.skipif(not GSM8K.is_file(), reason="shared GSM8k data not present")

TOY = [
    {"question": "Ann has 3 apples and buys 4 more. How many?", "answer": "3+4=<<3+4=7>>7\n#### 7"},
    {"question": "Bob has 10 pens and gives 2 away. How many?", "answer": "<<10-2=8>>8\n#### 8"},
    {"question": "A box holds 6 eggs. How many in 2 boxes?", "answer": "<<6*2=12>>12\n#### 12"},
    {
        "question": "Cat reads 5 pages a day for 3 days, then 4 more. Total?",
        "answer": "<<5*3=15>>15\n<<15+4=19>>19\n#### 19",
    },
]


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="coconutblt")
    add_hf_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def toy_data(tmp_path):
    path = tmp_path / "toy.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in TOY) + "\n")
    return path


@pytest.fixture
def toy_base(tmp_path, toy_data):
    """`hf tiny-base` on the toy file, at the 32-wide GPT-2 of the model tests."""
    out = tmp_path / "base"
    build_tiny_base(data=str(toy_data), out=str(out), width=32, print_fn=lambda *a: None)
    return out


def read_metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@needs_gsm8k
def test_stage0_then_stage1_then_eval_on_gsm8k(tmp_path, capsys):
    """The smoke recipe of docs/hf_coconut.md: tiny-base, stage 0, stage 1, eval."""
    base = tmp_path / "base"
    assert run_cli(f"hf tiny-base --data {GSM8K} --max-texts 64 --out {base}".split()) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"gpt2, 2 layers x 64, 0\.\d\dM parameters .* vocab 400 \(BPE on 64 texts", out
    )
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in base.iterdir()
    }
    s0, s1 = tmp_path / "stage0", tmp_path / "stage1"
    common = f"--data {GSM8K} --max-examples 16 --batch-size 8 --lr 1e-3 --val-data {GSM8K} "
    common += "--max-val-examples 4 --max-new-tokens 12"
    argv0 = f"hf train --base-model {base} --stage 0 --epochs 2 --out {s0} {common}"
    assert run_cli(argv0.split()) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"validation accuracy \d+\.\d\d% \(\d+/4\)", out)) == 2
    argv1 = f"hf train --load {s0} --stage 1 --c-thought 2 --epochs 1 --out {s1} {common}"
    assert run_cli(argv1.split()) == 0
    capsys.readouterr()
    meta0 = json.loads((s0 / "coconut.json").read_text())
    meta1 = json.loads((s1 / "coconut.json").read_text())
    evals = [r for r in read_metrics(s0) if r["type"] == "eval"]  # the native evaluator's fields
    assert [(r["epoch"], r["n"]) for r in evals] == [(1, 4), (2, 4)]
    assert {"accuracy", "n_correct", "avg_tokens", "avg_thoughts", "n_truncated"} <= set(evals[0])
    assert (meta0["stage"], meta0["n_thoughts"], meta0["epoch"]) == (0, None, 2)
    assert (meta1["stage"], meta1["n_thoughts"], meta1["source"]) == (1, 2, str(s0))
    for folder in (s0, s1):
        names = {p.name for p in folder.iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer.json", "coconut.json"} <= names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left

    argv = f"hf eval --ckpt {s0} {s1} --data {GSM8K} --max-examples 4 --max-new-tokens 12"
    assert run_cli([*argv.split(), "--show", "2"]) == 0
    out = capsys.readouterr().out
    block = r"Accuracy = +\d+\.\d\d%  Avg tokens = +\d+\.\d  Time = \d+\.\ds"
    assert re.search(r"Stage 0 \(stage0\):\s+" + block + r"\n", out), out
    assert re.search(r"Stage 1 \(stage1\):\s+" + block + r"  \(2 thoughts\)", out), out
    assert "tokens generated" in out  # the table's column
    assert "Efficiency gain:" in out and "fewer tokens" in out and "Quality:" in out
    assert len(re.findall(r"Ground truth *: ", out)) == 2 and "Example 2:" in out
    assert re.search(r"Stage 1 \(stage1\) *: .*  \((correct|wrong)\)", out)


def test_tiny_base_llama_then_stage0_stage1_eval_on_toy(tmp_path, toy_data, capsys):
    """The same recipe without the shared data: a tiny Llama built from the toy file."""
    base, s0, s1 = tmp_path / "base", tmp_path / "s0", tmp_path / "s1"
    argv = f"hf tiny-base --arch llama --data {toy_data} --vocab-size 300 --seed 1 --out {base}"
    assert run_cli(argv.split()) == 0
    out = capsys.readouterr().out
    assert "llama, 2 layers x 64" in out and "vocab 300 (BPE on 4 texts" in out
    assert f"wrote {base}" in out
    config = json.loads((base / "config.json").read_text())
    assert config["model_type"] == "llama" and config["vocab_size"] == 300
    common = f"--data {toy_data} --batch-size 2 --epochs 1 --lr 1e-3 --max-new-tokens 8"
    assert run_cli(f"hf train --base-model {base} --stage 0 --out {s0} {common}".split()) == 0
    argv = f"hf train --load {s0} --stage 1 --c-thought 2 --out {s1} {common}"
    assert run_cli(argv.split()) == 0
    records = read_metrics(s1)
    assert [r["batch"] for r in records] == [1, 2] and records[-1]["step"] == 2
    assert all(r["type"] == "train" and r["loss"] > 0 for r in records)
    capsys.readouterr()
    argv = f"hf eval --ckpt {s0} {s1} --data {toy_data} --max-new-tokens 8"
    assert run_cli(argv.split()) == 0
    out = capsys.readouterr().out
    assert re.search(r"Stage 1 \(s1\):\s+Accuracy = .*\(2 thoughts\)", out), out


def test_tiny_base_errors_name_the_flag(tmp_path, toy_data):
    cases = [
        (["--data", str(tmp_path / "missing.jsonl")], "missing.jsonl does not exist"),
        (["--data", str(toy_data), "--arch", "gpt3"], "unknown --arch 'gpt3'; use one of gpt2"),
        (["--data", str(toy_data), "--vocab-size", "100"], "--vocab-size must be at least 257"),
        (["--data", str(toy_data), "--max-texts", "0"], "--max-texts must be positive"),
    ]
    for extra, message in cases:
        with pytest.raises(UserError, match=re.escape(message)) as err:
            run_cli(["hf", "tiny-base", *extra, "--out", str(tmp_path / "o")])
        assert "\n" not in str(err.value)
    assert not (tmp_path / "o").exists()


def test_training_lowers_the_loss_and_uses_thoughts(tmp_path, toy_base, toy_data, capsys):
    res0 = train_stage(
        base_model=str(toy_base),
        load=None,
        data=str(toy_data),
        stage=0,
        out=str(tmp_path / "s0"),
        epochs=6,
        lr=3e-3,
        batch_size=4,
    )
    assert res0["losses"][-1] < res0["losses"][0] - 0.5
    res1 = train_stage(
        base_model=None,
        load=str(tmp_path / "s0"),
        data=str(toy_data),
        stage=1,
        c_thought=1,
        out=str(tmp_path / "s1"),
        epochs=1,
        batch_size=4,
    )
    # stage 1 starts from stage 0's weights: its first loss is already far below stage 0's
    assert res1["losses"][0] < res0["losses"][0] - 0.5
    assert "1 thoughts" in capsys.readouterr().out


def test_bf16_checkpointing_and_accumulation_flags(tmp_path, toy_base, toy_data):
    """The large-model switches run together: bf16 weights, recompute, 2 micro-batches/step."""
    out = tmp_path / "s1"
    argv = f"hf train --base-model {toy_base} --data {toy_data} --stage 2 --c-thought 1 "
    argv += "--epochs 1 --batch-size 2 --grad-accum 2 --bf16 --gradient-checkpointing "
    argv += f"--device cpu --out {out}"
    assert run_cli(argv.split()) == 0
    meta = json.loads((out / "coconut.json").read_text())
    assert (meta["stage"], meta["n_thoughts"], meta["steps"]) == (2, 2, 1)
    config = json.loads((out / "config.json").read_text())
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"


def test_tokens_report(toy_base, capsys):
    assert run_cli(["hf", "tokens", "--base-model", str(toy_base)]) == 0
    out = capsys.readouterr().out
    before = int(re.search(r"Original vocab size: (\d+)", out).group(1))
    assert f"New vocab size: {before + 3} (+3)" in out
    for name in ("<|start-latent|>", "<|latent|>", "<|end-latent|>"):
        assert re.search(re.escape(name) + r"\s+id \d+", out)
    assert "round trip: ok" in out and "Adding again changes nothing: True" in out


def test_user_errors_are_one_line(tmp_path, toy_base, toy_data):
    cases = [
        ["hf", "tokens", "--base-model", str(tmp_path / "nope")],
        ["hf", "tokens", "--base-model", str(tmp_path)],  # a folder, but not a HF model
        [
            "hf",
            "train",
            "--base-model",
            str(toy_base),
            "--data",
            str(tmp_path / "x.jsonl"),
            "--out",
            str(tmp_path / "o"),
        ],
        ["hf", "train", "--data", str(toy_data), "--out", str(tmp_path / "o")],
        ["hf", "eval", "--ckpt", str(tmp_path / "nope"), "--data", str(toy_data)],
    ]
    config_only = tmp_path / "config_only"
    json_cfg = json.loads((toy_base / "config.json").read_text())
    config_only.mkdir()
    (config_only / "config.json").write_text(json.dumps(json_cfg))
    cases.append(["hf", "tokens", "--base-model", str(config_only)])  # no tokenizer files
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(TOY[0]) + "\n{not json\n")
    cases.append(
        [
            "hf",
            "train",
            "--base-model",
            str(toy_base),
            "--data",
            str(bad),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    for argv in cases:
        with pytest.raises(UserError) as err:
            run_cli(argv)
        assert "\n" not in str(err.value) and str(err.value), argv
    assert not (tmp_path / "o").exists()


def test_collate_aligns_thoughts_and_keeps_rows_independent():
    """Left padding puts every row's first thought on one column (n+1 passes, not more)."""
    from coconutblt.hf.coconut_lm import CoconutForCausalLM

    tok = tiny_tokenizer()
    model = CoconutForCausalLM(tiny_gpt2(len(tok), tok.eos_token_id), tok).eval()
    L, S, E = model.token_ids.latent, model.token_ids.start, model.token_ids.end
    rows = [
        Encoded([5, 6, 7, S, L, L, E, 8, 9], [-100] * 7 + [8, 9]),
        Encoded([5, S, L, L, E, 9], [-100] * 5 + [9]),
        Encoded([5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [-100] * 3 + list(range(8, 15))),
    ]
    batch = collate(rows, tok.eos_token_id, L)
    cols = (batch["input_ids"] == L).any(0).nonzero().flatten().tolist()
    assert len(cols) == 2
    out = model(**batch)
    assert out.n_passes == 3
    for b, r in enumerate(rows):
        alone = model(torch.tensor([r.input_ids]), labels=torch.tensor([r.labels]))
        real = batch["attention_mask"][b].bool()
        torch.testing.assert_close(out.logits[b, real], alone.logits[0], atol=2e-5, rtol=1e-4)
        assert batch["labels"][b, real].tolist() == r.labels
