"""The package's layers only point down, and each shared job has one implementation."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "coconutblt"

# package -> the coconutblt packages/modules it may import (besides itself)
ALLOWED = {
    "runtime": {"errors"},
    "model": {"errors", "vocab", "config_tree"},
    "data": {"errors", "vocab", "config_tree", "model", "runtime"},
    "checkpoint": {"errors", "vocab", "model"},
    "inference": {"errors", "vocab", "model", "data", "runtime", "checkpoint"},
    "patching_study": {
        "errors",
        "vocab",
        "model",
        "data",
        "runtime",
        "checkpoint",
        "config_tree",
        "train",
    },
    "train": {
        "errors",
        "vocab",
        "model",
        "data",
        "runtime",
        "checkpoint",
        "config_tree",
        "inference",
    },
    "export": {"errors", "vocab", "model", "runtime", "checkpoint", "config_tree"},
    "hf": {"errors", "vocab", "data", "runtime", "inference"},
}


def imports_of(path: Path) -> list[str]:
    """Every `coconutblt.*` module a file imports, at top level or inside a function."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [m for m in found if m.startswith("coconutblt.")]


def layer_of(module: str) -> str:
    return module.split(".")[1]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_downward(layer):
    files = [SRC / f"{layer}.py"] if (SRC / f"{layer}.py").exists() else SRC.glob(f"{layer}/*.py")
    wrong = []
    for path in files:
        for module in imports_of(path):
            target = layer_of(module)
            if target != layer and target not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(SRC)} imports {module}")
    assert wrong == []


def test_no_private_name_is_imported_across_files():
    wrong = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("coconutblt"):
                wrong += [
                    f"{path.relative_to(SRC)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and a.name != "__version__"
                ]
    assert wrong == []


def test_one_device_picker_and_one_atomic_writer():
    source = "\n".join(p.read_text() for p in SRC.rglob("*.py"))
    assert source.count("def pick_device(") == 1
    assert source.count("def atomic_write(") == 1
    assert source.count("tempfile.mkstemp(") == 1  # inside atomic_write


def test_importing_the_model_loads_no_data_train_or_yaml_module():
    code = (
        "import sys, coconutblt.model; "
        "print(' '.join(m for m in sys.modules if m.startswith('coconutblt') or m == 'yaml'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "yaml" not in out
    assert {layer_of(m) for m in out if m.count(".")} <= {"model", "vocab", "errors"}
