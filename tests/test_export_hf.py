"""`coconutblt export-hf`: the exported folder loads through `AutoModelForCausalLM` without the
package and without a network, and matches the native model logit for logit and in greedy
generation, with and without its KV cache, row by row in left-padded batches; its tokenizer
maps text to its bytes and back, and `pipeline("text-generation")` runs it; the flattener and
the command refuse what they cannot handle in one line."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from coconutblt.checkpoint import load_model, model_checkpoint
from coconutblt.cli import main
from coconutblt.errors import UserError
from coconutblt.export.flatten import flatten_sources, model_sources
from coconutblt.export.hf_folder import probe_inputs
from coconutblt.export.remote_code import build_modeling_source
from coconutblt.export.tokenizer import byte_symbols
from coconutblt.inference.generate import parse_prompt
from coconutblt.model import HybridTransformer
from coconutblt.runtime.files import save_torch
from coconutblt.vocab import (
    END_LATENT_ID,
    EOS_ID,
    LATENT_ID,
    PAD_ID,
    SPECIAL_NAMES,
    START_LATENT_ID,
    encode,
)
from tests.conftest import tiny_config

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

REPO = Path(__file__).resolve().parents[1]
MAX_NEW = 12

CONFIGS = {
    "fixed": dict(patcher="fixed"),
    "space": dict(patcher="space", pooling="max", mlp_type="gelu"),
    "entropy_model": dict(patcher="entropy", local_window=4),
    "entropy_learned": dict(
        patcher="entropy",
        entropy_patcher=dict(estimator="learned", rule="relative", relative_threshold=0.0),
    ),
    "full": dict(
        patcher="space",
        use_byte_patch_attention=True,
        ngram_sizes=[2, 3],
        ngram_buckets=64,
        ngram_case_fold=True,
        latent_module_every=1,
        c_thought=3,
        cross_attn_k=3,
        thought_head=True,
        next_patch_loss_weight=0.3,
    ),
    "sentence_closed": dict(patcher="sentence", closed_patch_context=True, max_patch_size=6),
}

PROMPTS = [
    encode("hello world", bos=True),
    encode("Q: 3+4?", bos=True)
    + [START_LATENT_ID, LATENT_ID, LATENT_ID, END_LATENT_ID]
    + encode(" A:"),
]

# Runs with the package blocked: everything must come from the exported folder.
CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["coconutblt"] = None  # `import coconutblt` now raises ImportError
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    def generate(model, ids, mask=None, **kw):
        return model.generate(ids, attention_mask=mask, max_new_tokens=MAX_NEW, do_sample=False, **kw)

    def count_calls(model, calls):
        \"\"\"Count the native model's full forwards and the incremental decoder's calls.\"\"\"
        def counted(name, fn):
            def wrapped(*args, **kwargs):
                calls[name] += 1
                return fn(*args, **kwargs)
            return wrapped
        model.model.forward = counted("full", model.model.forward)
        state = sys.modules[type(model).__module__].DecodeState
        state.prefill = counted("prefill", state.prefill)
        state.step = counted("step", state.step)

    def tokenizer_checks(folder, job):
        tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True, local_files_only=True)
        plain = AutoTokenizer.from_pretrained(folder, local_files_only=True)  # no remote code
        ids = [tok(t)["input_ids"] for t in job["texts"]]
        pipe = pipeline("text-generation", model=folder, trust_remote_code=True)
        run = dict(max_new_tokens=MAX_NEW, do_sample=False, return_tensors=True)
        return {
            "ids": ids,
            "plain_ids": [plain(t)["input_ids"] for t in job["texts"]],
            "decoded": [tok.decode(i) for i in ids],
            "special_ids": tok(job["special_text"])["input_ids"],
            "special_decoded": tok.decode(tok(job["special_text"])["input_ids"]),
            "skip_special": tok.decode(tok(job["special_text"])["input_ids"], skip_special_tokens=True),
            "bytes_decoded": [tok.decode(b) for b in job["byte_runs"]],
            "tokens": tok.convert_ids_to_tokens(list(range(len(tok)))),
            "specials": [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.padding_side],
            "batch": tok(job["pipeline_prompts"], padding=True)["input_ids"],
            "pipeline_one": [pipe(p, **run)[0]["generated_token_ids"] for p in job["pipeline_prompts"]],
            "pipeline_batch": [
                r[0]["generated_token_ids"]
                for r in pipe(job["pipeline_prompts"], batch_size=len(job["pipeline_prompts"]), **run)
            ],
            "pipeline_text": pipe(job["pipeline_prompts"][0], max_new_tokens=MAX_NEW, do_sample=False)[0]["generated_text"],
        }

    jobs = torch.load(sys.argv[1], weights_only=True)
    results = {}
    for name, job in jobs.items():
        MAX_NEW = job["max_new"]
        model = AutoModelForCausalLM.from_pretrained(job["dir"], trust_remote_code=True, local_files_only=True)
        calls = {"full": 0, "prefill": 0, "step": 0}
        count_calls(model, calls)
        with torch.no_grad():
            out = model(input_ids=job["probe"], labels=job["probe"])
            padded = model(input_ids=job["padded_probe"], attention_mask=job["padded_mask"]).logits
            calls.update(full=0, prefill=0, step=0)
            gen = [generate(model, p) for p in job["prompts"]]  # generation_config: use_cache
            cached_calls = dict(calls)
            calls.update(full=0, prefill=0, step=0)
            recomputed = [generate(model, p, use_cache=False) for p in job["prompts"]]
            recomputed_calls = dict(calls)
            batch = {c: generate(model, job["batch"], job["batch_mask"], use_cache=c) for c in (True, False)}
            beams = {c: generate(model, job["prompts"][0], num_beams=3, use_cache=c) for c in (True, False)}
        results[name] = {
            "logits": out.logits, "loss": out.loss, "generated": gen, "recomputed": recomputed,
            "padded_logits": padded, "batch": batch, "beams": beams, "calls": [cached_calls, recomputed_calls],
        }
        if "tokenizer" in job:
            results[name]["tokenizer"] = tokenizer_checks(job["dir"], job["tokenizer"])
    leaked = sorted(m for m, v in sys.modules.items() if m.split(".")[0] == "coconutblt" and v is not None)
    torch.save({"results": results, "leaked": leaked}, sys.argv[2])
    """
)

# The tokenizer's round trips: non-ASCII text, and one text whose UTF-8 holds every byte value
# valid UTF-8 can hold (all but C0, C1, F5..FF).
EVERY_UTF8_BYTE = (
    "".join(chr(c) for c in range(128))
    + "".join(chr(c) for c in range(0x80, 0x800, 5))  # 2-byte leads C2..DF, continuations 80..BF
    + "".join(chr(c) for c in range(0x800, 0x10000, 0x400) if not 0xD800 <= c < 0xE000)
    + "".join(chr(c) for c in range(0x10000, 0x110000, 0x10000))  # 4-byte leads F0..F4
)
TEXTS = [
    "hello world",
    "héllo, wörld: naïve café, 日本語, 😀🚀",
    "tabs\tand\nnewlines\r\n  two  spaces , . ? ! 's n't ",  # no space clean-up
    EVERY_UTF8_BYTE,
    "",
]
SPECIAL_TEXT = "<|bos|>Q: 3+4?<|start-latent|><|latent|><|latent|><|end-latent|> A:<|eos|><|pad|>"
PIPELINE_PROMPTS = ["hello world", "x", "Q: 12+30? A:"]  # left padding of 10 and 1 bytes


def offline_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(tmp / "hf_home"),
        HF_MODULES_CACHE=str(tmp / "hf_modules"),
        OMP_NUM_THREADS="1",  # tiny matrices: threads only contend on a shared machine
    )
    return env


def random_model(name: str) -> HybridTransformer:
    """A tiny model with every weight perturbed (gates open, entropies spread out)."""
    torch.manual_seed(sorted(CONFIGS).index(name))
    model = HybridTransformer(tiny_config(**CONFIGS[name])).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        if model.entropy_model is not None:  # threshold at the median: a mix of patch lengths
            ent = model.entropy_model.entropies(probe_inputs(model.config.max_seq_len))
            model.config.entropy_patcher.threshold = float(ent.median())
    return model


def native_greedy(model: HybridTransformer, ids: torch.Tensor, max_new: int) -> torch.Tensor:
    """Full-recompute greedy decoding with the native model, stopping after EOS."""
    with torch.no_grad():
        for _ in range(max_new):
            nxt = model(ids).logits[:, -1].argmax(-1)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            if int(nxt) == EOS_ID:
                break
    return ids


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every config: checkpoint -> `coconutblt export-hf` -> load in a package-free process."""
    tmp = tmp_path_factory.mktemp("export_hf")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only contend on a shared machine
    try:
        yield build_and_load(tmp)
    finally:
        torch.set_num_threads(threads)


def left_padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids -> (ids, attention_mask) (B, T), padded on the left with PAD."""
    T = max(len(r) for r in rows)
    ids = torch.tensor([[PAD_ID] * (T - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


PROBE_PAD = 5  # left padding of the probe's second row in the padded forward


def build_and_load(tmp: Path):
    jobs, natives = {}, {}
    for name in CONFIGS:
        ckpt = tmp / f"{name}.pt"
        save_torch(model_checkpoint(random_model(name)), ckpt)
        out = tmp / f"hf_{name}"
        assert main(["export-hf", "--ckpt", str(ckpt), "--out", str(out), "--no-verify"]) == 0
        native = load_model(ckpt)
        probe = probe_inputs(native.config.max_seq_len, seed=len(jobs))
        prompts = [torch.tensor([p]) for p in PROMPTS]
        padded_probe, padded_mask = left_padded([probe[0].tolist(), probe[1, :-PROBE_PAD].tolist()])
        batch, batch_mask = left_padded(PROMPTS)
        jobs[name] = {
            "dir": str(out),
            "probe": probe,
            "prompts": prompts,
            "max_new": MAX_NEW,
            "padded_probe": padded_probe,
            "padded_mask": padded_mask,
            "batch": batch,
            "batch_mask": batch_mask,
        }
        with torch.no_grad():
            ref = native(probe, labels=probe)
        natives[name] = {
            "logits": ref.logits,
            "loss": ref.loss,
            "generated": [native_greedy(native, p, MAX_NEW) for p in prompts],
            "patch_counts": ref.layout.n_patches,
        }
        if name == "full":
            jobs[name]["tokenizer"] = {
                "texts": TEXTS,
                "special_text": SPECIAL_TEXT,
                "byte_runs": [[b] for b in range(256)] + [random_bytes(i) for i in range(50)],
                "pipeline_prompts": PIPELINE_PROMPTS,
            }
            natives[name]["pipeline"] = [
                native_greedy(native, torch.tensor([encode(p)]), MAX_NEW)[0].tolist()
                for p in PIPELINE_PROMPTS
            ]
    (tmp / "child.py").write_text(CHILD)
    torch.save(jobs, tmp / "jobs.pt")
    proc = subprocess.run(
        [sys.executable, str(tmp / "child.py"), str(tmp / "jobs.pt"), str(tmp / "results.pt")],
        cwd=tmp,
        env=offline_env(tmp),
        stdin=subprocess.DEVNULL,  # AutoTokenizer without trust_remote_code asks; nobody answers
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = torch.load(tmp / "results.pt", weights_only=True)
    return natives, child, tmp


def random_bytes(seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(
        0, 256, (int(torch.randint(1, 24, (1,), generator=g)),), generator=g
    ).tolist()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_and_loss_equal_native(exported, name):
    natives, child, _ = exported
    ref, got = natives[name], child["results"][name]
    torch.testing.assert_close(got["logits"], ref["logits"], atol=1e-6, rtol=0)
    torch.testing.assert_close(got["loss"], ref["loss"], atol=1e-6, rtol=0)
    assert child["leaked"] == []  # the export never imported coconutblt
    # the probe really has several patches, and a continuous thought in its second row
    assert int(ref["patch_counts"].min()) > 3


@pytest.mark.parametrize("name", list(CONFIGS))
def test_greedy_generate_equals_native(exported, name):
    natives, child, _ = exported
    pairs = zip(
        PROMPTS, natives[name]["generated"], child["results"][name]["generated"], strict=True
    )
    for prompt, ref, got in pairs:
        assert ref.shape[1] > len(prompt)  # something was generated
        assert got.tolist() == ref.tolist()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cached_generate_equals_recompute_and_skips_it(exported, name):
    """generate() with the KV cache (the default) gives the ids a full recompute per step
    gives, byte for byte, greedy and in beam search: one prefill per prompt, then one cached
    step per new id, and never the full forward."""
    got = exported[1]["results"][name]
    assert [g.tolist() for g in got["generated"]] == [r.tolist() for r in got["recomputed"]]
    assert got["beams"][True].tolist() == got["beams"][False].tolist()
    new_ids = sum(g.shape[1] - len(p) for g, p in zip(got["generated"], PROMPTS, strict=True))
    cached, recomputed = got["calls"]
    assert cached == {"full": 0, "prefill": len(PROMPTS), "step": new_ids - len(PROMPTS)}
    assert recomputed == {"full": new_ids, "prefill": 0, "step": 0}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_left_padded_rows_equal_rows_alone(exported, name):
    """A left-padded batch: each row's logits and generated ids are those of the row alone."""
    natives, child, _ = exported
    got = child["results"][name]
    ref = natives[name]["logits"]
    padded = got["padded_logits"]  # row 1 is the probe's row 1 less its last PROBE_PAD ids
    torch.testing.assert_close(padded[0], ref[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(padded[1, PROBE_PAD:], ref[1, :-PROBE_PAD], atol=1e-6, rtol=0)
    width = max(len(p) for p in PROMPTS)
    for use_cache, out in got["batch"].items():
        for prompt, row, alone in zip(PROMPTS, out.tolist(), got["generated"], strict=True):
            row = row[width - len(prompt) :]  # the row less its left padding
            alone = alone[0].tolist()
            assert row[: len(alone)] == alone, use_cache
            assert all(i == PAD_ID for i in row[len(alone) :])  # finished rows are padded


def test_tokenizer_maps_text_to_its_bytes(exported):
    tok = exported[1]["results"]["full"]["tokenizer"]
    valid_utf8 = set(range(256)) - {0xC0, 0xC1, *range(0xF5, 0x100)}
    assert set(EVERY_UTF8_BYTE.encode()) == valid_utf8  # the text really holds them all
    assert tok["ids"] == [list(t.encode()) for t in TEXTS]
    assert tok["plain_ids"] == tok["ids"]  # also loaded without trust_remote_code
    assert tok["decoded"] == TEXTS
    # every byte id decodes as that byte would (invalid UTF-8 replaced), alone and in runs
    runs = [[b] for b in range(256)] + [random_bytes(i) for i in range(50)]
    assert tok["bytes_decoded"] == [bytes(r).decode("utf-8", errors="replace") for r in runs]
    assert tok["tokens"] == byte_symbols() + [SPECIAL_NAMES[i] for i in sorted(SPECIAL_NAMES)]


def test_tokenizer_specials_keep_their_ids(exported):
    tok = exported[1]["results"]["full"]["tokenizer"]
    assert tok["special_ids"] == parse_prompt(SPECIAL_TEXT)  # as the native prompt parser reads it
    assert tok["special_decoded"] == SPECIAL_TEXT
    assert tok["skip_special"] == "Q: 3+4? A:"
    assert tok["specials"] == [PAD_ID, parse_prompt("<|bos|>")[0], EOS_ID, "left"]


def test_pipeline_generates_as_native(exported):
    """pipeline("text-generation"), one prompt at a time and as a left-padded batch."""
    natives, child, _ = exported
    tok = child["results"]["full"]["tokenizer"]
    ref = natives["full"]["pipeline"]
    width = max(len(p) for p in PIPELINE_PROMPTS)
    assert tok["batch"] == left_padded([encode(p) for p in PIPELINE_PROMPTS])[0].tolist()
    assert tok["pipeline_one"] == ref
    for prompt, row, alone in zip(PIPELINE_PROMPTS, tok["pipeline_batch"], ref, strict=True):
        row = row[width - len(prompt) :]
        assert row[: len(alone)] == alone and all(i == PAD_ID for i in row[len(alone) :])
    text = bytes(i for i in ref[0] if i < 256).decode("utf-8", errors="replace")
    assert tok["pipeline_text"] == text


def test_entropy_configs_mix_patch_lengths(exported):
    natives, _, _ = exported
    for name in ("entropy_model", "entropy_learned"):
        T = natives[name]["logits"].shape[1]
        counts = natives[name]["patch_counts"]
        assert bool((counts > 1).all()) and bool((counts < T).any()), (name, counts)


def test_export_folder_is_flat_and_self_contained(exported):
    _, _, tmp = exported
    out = tmp / "hf_full"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            "README.md",
            "config.json",
            "configuration_coconutblt.py",
            "generation_config.json",
            "model.safetensors",
            "modeling_coconutblt.py",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ]
    )
    for py in ("modeling_coconutblt.py", "configuration_coconutblt.py"):
        tree = ast.parse((out / py).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0 or node.module == "configuration_coconutblt", ast.unparse(
                    node
                )
                assert not (node.module or "").startswith("coconutblt"), ast.unparse(node)
            elif isinstance(node, ast.Import):
                assert all(not a.name.startswith("coconutblt") for a in node.names), ast.unparse(
                    node
                )
    config = (out / "config.json").read_text()
    assert '"AutoModelForCausalLM": "modeling_coconutblt.CoconutBLTForCausalLM"' in config


def test_script_exports_and_verifies(exported):
    """scripts/export_hf.py, with its default verification through transformers."""
    _, _, tmp = exported
    out = tmp / "script_export"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "export_hf.py"),
            "--ckpt",
            str(tmp / "full.pt"),
            "--out",
            str(out),
        ],
        cwd=tmp,
        env=offline_env(tmp) | {"PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "verified: AutoModelForCausalLM logits match the native model" in proc.stdout


def test_import_coconutblt_does_not_import_transformers():
    code = (
        "import sys, coconutblt, coconutblt.export.hf_folder, coconutblt.commands.export_hf\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('transformers', 'safetensors')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_model_sources_follow_the_import_graph():
    order = model_sources()
    assert order[-1] == "coconutblt.model.hybrid"
    for before, after in [
        ("coconutblt.vocab", "coconutblt.model.config"),
        ("coconutblt.config_tree", "coconutblt.model.config"),  # a nested import counts too
        ("coconutblt.errors", "coconutblt.config_tree"),
        ("coconutblt.model.layers", "coconutblt.model.entropy"),
        ("coconutblt.model.patching", "coconutblt.model.local"),
    ]:
        assert order.index(before) < order.index(after)
    assert order.index("coconutblt.model.patching") < order.index("coconutblt.model.cache")
    assert "coconutblt.model.params" not in order and "coconutblt.checkpoint" not in order


def test_modeling_source_is_generated_from_the_package():
    source = build_modeling_source()
    assert "class HybridTransformer(nn.Module):" in source
    assert "class DecodeState:" in source and "class CoconutBLTCache:" in source
    assert "class CoconutBLTForCausalLM(CoconutBLTPreTrainedModel, GenerationMixin):" in source
    assert "# ------------------------ coconutblt/model/hybrid.py" in source
    assert source.count("from __future__ import annotations") == 1


@pytest.mark.parametrize(
    "sections, message",
    [
        ([("coconutblt.a", "x = 1\n"), ("coconutblt.b", "def x():\n    pass\n")], "also defined"),
        ([("coconutblt.a", "from os import path\n"), ("coconutblt.b", "path = 1\n")], "shadows"),
        ([("coconutblt.a", "from coconutblt.train.loop import run\n")], "not an earlier section"),
        (
            [("coconutblt.a", "x = 1\n"), ("coconutblt.b", "from coconutblt.a import y\n")],
            "must be defined",
        ),
        (
            [("coconutblt.a", "from coconutblt.b import x\n"), ("coconutblt.b", "x = 1\n")],
            "not an earlier",
        ),
        ([("coconutblt.a", "import coconutblt.b\n")], "from coconutblt.x import"),
    ],
)
def test_flattener_refuses_what_it_cannot_flatten(sections, message):
    with pytest.raises(UserError, match=message):
        flatten_sources([(name, src, f"{name}.py", name) for name, src in sections])


def test_flattener_drops_nested_package_imports():
    a = "def helper():\n    return 1\n"
    b = "def f():\n    from coconutblt.a import helper\n\n    return helper()\n\n\ndef g():\n    from coconutblt.a import helper\n"
    out = flatten_sources([("coconutblt.a", a, "a.py", "a"), ("coconutblt.b", b, "b.py", "b")])
    namespace: dict = {}
    exec(compile(out, "flat.py", "exec"), namespace)
    assert namespace["f"]() == 1 and namespace["g"]() is None
    assert "coconutblt.a" not in out


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("coconutblt export-hf: error: "), err
    return err


def test_cli_missing_checkpoint(tmp_path, capsys):
    err = one_line_error(
        capsys, ["export-hf", "--ckpt", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")]
    )
    assert "checkpoint not found" in err
    assert not (tmp_path / "o").exists()


def test_cli_foreign_checkpoint(tmp_path, capsys):
    torch.save({"a": 1}, tmp_path / "other.pt")
    err = one_line_error(
        capsys, ["export-hf", "--ckpt", str(tmp_path / "other.pt"), "--out", str(tmp_path / "o")]
    )
    assert "not a coconutblt checkpoint" in err
    assert not (tmp_path / "o").exists()


def test_cli_refuses_non_empty_out_without_overwrite(tmp_path, capsys):
    save_torch(model_checkpoint(HybridTransformer(tiny_config())), tmp_path / "m.pt")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "keep.txt").write_text("mine")
    err = one_line_error(
        capsys, ["export-hf", "--ckpt", str(tmp_path / "m.pt"), "--out", str(tmp_path / "o")]
    )
    assert "--overwrite" in err
    args = [
        "export-hf",
        "--ckpt",
        str(tmp_path / "m.pt"),
        "--out",
        str(tmp_path / "o"),
        "--overwrite",
        "--no-verify",
    ]
    assert main(args) == 0
    assert (tmp_path / "o" / "model.safetensors").is_file() and (
        tmp_path / "o" / "keep.txt"
    ).is_file()
