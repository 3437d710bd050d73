"""`coconutblt export-hf`: the exported folder loads through `AutoModelForCausalLM` without the
package and without a network, and matches the native model logit for logit and in greedy
generation; the flattener and the command refuse what they cannot handle in one line."""

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
from coconutblt.model import HybridTransformer
from coconutblt.runtime.files import save_torch
from coconutblt.vocab import END_LATENT_ID, EOS_ID, LATENT_ID, START_LATENT_ID, encode
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
    from transformers import AutoModelForCausalLM

    jobs = torch.load(sys.argv[1], weights_only=True)
    results = {}
    for name, job in jobs.items():
        model = AutoModelForCausalLM.from_pretrained(job["dir"], trust_remote_code=True, local_files_only=True)
        with torch.no_grad():
            out = model(input_ids=job["probe"], labels=job["probe"])
            gen = [model.generate(p, max_new_tokens=job["max_new"], do_sample=False) for p in job["prompts"]]
        results[name] = {"logits": out.logits, "loss": out.loss, "generated": gen}
    leaked = sorted(m for m, v in sys.modules.items() if m.split(".")[0] == "coconutblt" and v is not None)
    torch.save({"results": results, "leaked": leaked}, sys.argv[2])
    """
)


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
        jobs[name] = {"dir": str(out), "probe": probe, "prompts": prompts, "max_new": MAX_NEW}
        with torch.no_grad():
            ref = native(probe, labels=probe)
        natives[name] = {
            "logits": ref.logits,
            "loss": ref.loss,
            "generated": [native_greedy(native, p, MAX_NEW) for p in prompts],
            "patch_counts": ref.layout.n_patches,
        }
    (tmp / "child.py").write_text(CHILD)
    torch.save(jobs, tmp / "jobs.pt")
    proc = subprocess.run(
        [sys.executable, str(tmp / "child.py"), str(tmp / "jobs.pt"), str(tmp / "results.pt")],
        cwd=tmp,
        env=offline_env(tmp),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = torch.load(tmp / "results.pt", weights_only=True)
    return natives, child, tmp


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
    assert "coconutblt.model.params" not in order and "coconutblt.checkpoint" not in order


def test_modeling_source_is_generated_from_the_package():
    source = build_modeling_source()
    assert "class HybridTransformer(nn.Module):" in source
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
