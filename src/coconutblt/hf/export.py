"""Export a `HybridTransformer` to a Hugging Face folder loadable with `trust_remote_code=True`.

The folder is flat and self-contained:

    config.json                 model_type "coconutblt", `auto_map`, the `ModelConfig` as a dict
    generation_config.json      byte-vocabulary special ids, greedy, no KV cache
    model.safetensors           the weights (keys prefixed "model.")
    configuration_coconutblt.py `CoconutBLTConfig(PretrainedConfig)`
    modeling_coconutblt.py      the package's model sources, flattened; `CoconutBLTForCausalLM`

The modeling file is not a second copy of the model kept by hand: it is generated at export
time from hybrid.py and the package modules it imports, transitively, in dependency order.
Intra-package imports (`from coconutblt... import ...`) are dropped, after checking that every
name they bring in is defined by an earlier flattened module; the remaining std/torch imports
are hoisted into one block at the top. Any change to the model is therefore exported as is.

transformers and safetensors are imported lazily: `import coconutblt` never imports them.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from coconutblt.data.vocab import BOS_ID, EOS_ID, PAD_ID
from coconutblt.errors import UserError
from coconutblt.runtime.files import atomic_write

# modeling_coconutblt.py holds these modules and every coconutblt module they import (at top
# level or inside a function), dependencies first; see `model_sources`. errors and config_tree
# come along because `ModelConfig.from_dict`, which validates config.json's `model_config`, is
# built on them.
MODEL_ROOTS = ("coconutblt.model.hybrid",)

# Top-level names that a later module-level `def` may rebind over a hoisted import, with why the
# rebinding is harmless. hybrid.py imports `dataclasses.replace`; config.py defines
# `replace(cfg, **changes)`, which is `dataclasses.replace` for a dataclass.
ALLOWED_SHADOWS = {"replace": ("dataclasses", "replace")}

MODELING_FILE = "modeling_coconutblt.py"
CONFIGURATION_FILE = "configuration_coconutblt.py"
WEIGHTS_FILE = "model.safetensors"
ARCHITECTURE = "CoconutBLTForCausalLM"
EXPORT_FILES = (
    "config.json",
    "generation_config.json",
    WEIGHTS_FILE,
    CONFIGURATION_FILE,
    MODELING_FILE,
    "README.md",
)

CONFIGURATION_SOURCE = '''\
"""`CoconutBLTConfig`: the Hugging Face config of a coconutblt hybrid byte model.

Written by `coconutblt export-hf`. `model_config` is the model's `ModelConfig` as a dict; the
usual Hugging Face size attributes are read from it.
"""

from transformers import PretrainedConfig


class CoconutBLTConfig(PretrainedConfig):
    model_type = "coconutblt"

    def __init__(self, model_config=None, **kwargs):
        self.model_config = dict(model_config or {})
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)

    @property
    def vocab_size(self):
        return self.model_config.get("vocab_size")

    @property
    def hidden_size(self):
        return self.model_config.get("d_model")

    @property
    def num_hidden_layers(self):
        return self.model_config.get("n_layers")

    @property
    def num_attention_heads(self):
        return self.model_config.get("n_heads")
'''

# Flattened after the model modules, like them: its coconutblt imports are checked, then dropped.
WRAPPER_SOURCE = '''\
"""`CoconutBLTForCausalLM`: `HybridTransformer` behind the `PreTrainedModel` contract.

No KV cache: every generation step recomputes the whole sequence, exactly as the native model's
full forward does (patch boundaries and continuous thoughts are recomputed with it).
"""

from __future__ import annotations

import torch
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from coconutblt.model.config import ModelConfig
from coconutblt.model.hybrid import HybridTransformer
from .configuration_coconutblt import CoconutBLTConfig


class CoconutBLTPreTrainedModel(PreTrainedModel):
    config_class = CoconutBLTConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    # the latent passes, the patch context and `bos_latent` cross the submodules: one device
    _no_split_modules = ["HybridTransformer"]
    _tied_weights_keys = None
    supports_gradient_checkpointing = False

    def _init_weights(self, module):
        # the native initialisation covers every submodule and the explicit parameters
        if isinstance(module, HybridTransformer):
            module.init_weights()


class CoconutBLTForCausalLM(CoconutBLTPreTrainedModel, GenerationMixin):
    def __init__(self, config):
        super().__init__(config)
        cfg = ModelConfig.from_dict(config.model_config, source="config.json (model_config)")
        self.model = HybridTransformer(cfg)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.encoder.embed

    def get_output_embeddings(self):
        return self.model.lm_head

    @classmethod
    def _supports_default_dynamic_cache(cls):
        return False  # no KV cache: never let generate() build one

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        # full recompute: always the whole sequence, whatever slice generate() asks for
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        """input_ids (B, T) byte-vocabulary ids -> logits (B, T, V); row t predicts id t+1.

        labels (B, T) as in every Hugging Face causal LM (the model shifts them; -100 = no loss).
        attention_mask may only mark right padding: the model is causal, so trailing padding
        changes nothing before it; left padding would shift positions and patches.
        """
        if attention_mask is not None and bool((attention_mask[:, 1:] > attention_mask[:, :-1]).any()):
            raise ValueError(
                "CoconutBLTForCausalLM: left padding is not supported; pass rows of equal length "
                "(or one row at a time)"
            )
        out = self.model(input_ids, labels=labels)
        result = CausalLMOutputWithPast(loss=out.loss, logits=out.logits)
        return result if kwargs.get("return_dict", True) is not False else result.to_tuple()
'''

README_SOURCE = """\
# coconutblt hybrid byte model

Exported by `coconutblt export-hf`. Byte-level: ids 0..255 are raw bytes, {PAD_ID} pad,
{BOS_ID} bos, {EOS_ID} eos, then the continuous-thought markers. No tokenizer is needed.

```python
import torch
from transformers import AutoModelForCausalLM

model = AutoModelForCausalLM.from_pretrained("PATH", trust_remote_code=True)
ids = torch.tensor([list("The answer is".encode())])
out = model.generate(ids, max_new_tokens=32, do_sample=False)
print(bytes(i for i in out[0].tolist() if i < 256).decode("utf-8", errors="replace"))
```
"""


# ---------------------------------------------------------------------------------- flattening
class _Section:
    """One source file, parsed: its lines, top-level bindings and imports."""

    def __init__(self, name: str, source: str, path: str, label: str) -> None:
        self.name, self.path, self.label = name, path, label
        self.lines = source.splitlines()
        try:
            self.tree = ast.parse(source, filename=path)
        except SyntaxError as exc:
            raise UserError(f"{path}: cannot parse ({exc.msg}, line {exc.lineno})") from None
        self.defined: set[str] = set()  # names bound at top level by def/class/assignment
        for node in self.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.defined.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    self.defined.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))


def _module_source(module: str) -> tuple[str, str]:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise UserError(
            f"cannot find the source of {module}; export needs coconutblt installed from source"
        )
    return Path(spec.origin).read_text(encoding="utf-8"), spec.origin


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _owning_body(parent: ast.AST, node: ast.stmt) -> list[ast.stmt]:
    for field in ("body", "orelse", "finalbody", "handlers"):
        body = getattr(parent, field, None)
        if isinstance(body, list) and node in body:
            return body
    raise ValueError(f"import at line {node.lineno} is in no statement list")


def flatten_sources(sections: list[tuple[str, str, str, str]]) -> str:
    """[(module name, source, path, label)] in dependency order -> one module's source.

    Drops `from coconutblt.X import a, b` (top level or nested) after checking that X is one of
    the sections (an earlier one, for top-level imports) and defines a and b; hoists every other
    top-level import into one block; refuses a name bound by two sections in different ways.
    """
    parsed = [_Section(*s) for s in sections]
    index = {s.name: i for i, s in enumerate(parsed)}
    futures: set[str] = set()
    plain: set[tuple[str, str | None]] = set()  # import M [as N]
    froms: dict[tuple[str, int], set[tuple[str, str | None]]] = {}  # from M import a [as b]
    imported: dict[str, tuple[str, str]] = {}  # bound name -> (module, name)
    bodies: list[str] = []

    def bind_import(bound: str, origin: tuple[str, str], where: str) -> None:
        if imported.setdefault(bound, origin) != origin:
            raise UserError(
                f"{where}: '{bound}' is imported from both {imported[bound][0]} and {origin[0]}; cannot flatten"
            )

    for i, sec in enumerate(parsed):
        parents = _parents(sec.tree)
        drop: set[int] = set()  # 0-based line numbers to delete
        replace: dict[int, str] = {}  # 0-based line -> new text
        for node in ast.walk(sec.tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            where = f"{sec.path}:{node.lineno}"
            top = parents[node] is sec.tree
            line = sec.lines[node.lineno - 1]
            indent = line[: node.col_offset]
            rest = sec.lines[node.end_lineno - 1][node.end_col_offset :].split("#")[0]
            if indent.strip() or rest.strip():
                raise UserError(f"{where}: an import must be alone on its lines to be flattened")
            internal = (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").split(".")[0] == "coconutblt"
            )
            if isinstance(node, ast.Import) and any(
                a.name.split(".")[0] == "coconutblt" for a in node.names
            ):
                raise UserError(
                    f"{where}: use `from coconutblt.x import name` so that the import can be flattened"
                )
            if internal:
                j = index.get(node.module)
                if j is None or (top and j >= i):
                    order = "an earlier section" if top else "a flattened section"
                    raise UserError(
                        f"{where}: imports {node.module}, which is not {order} being flattened"
                    )
                for alias in node.names:
                    if (
                        alias.name not in parsed[j].defined
                        or (alias.asname or alias.name) != alias.name
                    ):
                        raise UserError(
                            f"{where}: `{alias.name}` must be defined at top level of {node.module} and imported without `as`"
                        )
            elif not top:
                continue  # a nested std/third-party import stays where it is
            elif isinstance(node, ast.ImportFrom) and node.module == "__future__":
                futures.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level and node.module != CONFIGURATION_FILE[:-3]:
                    raise UserError(f"{where}: relative imports cannot be flattened")
                key = (node.module or "", node.level)
                for alias in node.names:
                    froms.setdefault(key, set()).add((alias.name, alias.asname))
                    bind_import(
                        alias.asname or alias.name, ("." * node.level + key[0], alias.name), where
                    )
            else:
                for alias in node.names:
                    plain.add((alias.name, alias.asname))
                    bind_import(alias.asname or alias.name.split(".")[0], (alias.name, ""), where)
            span = range(node.lineno - 1, node.end_lineno)
            body = sec.tree.body if top else _owning_body(parents[node], node)
            if not top and len(body) == 1:  # keep the block non-empty
                replace[node.lineno - 1] = f"{indent}pass"
                span = range(node.lineno, node.end_lineno)
            drop.update(span)
            after = node.end_lineno  # 0-based index of the line after the import
            if not top and after < len(sec.lines) and not sec.lines[after].strip():
                drop.add(after)  # and the blank line that followed it
        doc = sec.tree.body[0] if sec.tree.body else None
        if (
            isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            drop.update(range(doc.lineno - 1, doc.end_lineno))
            comment = [
                f"# {t}".rstrip() for t in ast.get_docstring(sec.tree, clean=True).splitlines()
            ]
            replace[doc.lineno - 1] = "\n".join(comment)
            drop.discard(doc.lineno - 1)
        kept = [
            replace.get(n, text)
            for n, text in enumerate(sec.lines)
            if n not in drop or n in replace
        ]
        text = "\n".join(kept).strip("\n")
        while "\n\n\n\n" in text:
            text = text.replace("\n\n\n\n", "\n\n\n")
        header = f"# {'-' * 24} {sec.label} {'-' * 24}"
        bodies.append(f"{header}\n{text}\n")

    seen: dict[str, str] = {}
    for sec in parsed:
        for name in sec.defined:
            if name in seen:
                raise UserError(
                    f"{sec.path}: '{name}' is also defined in {seen[name]}; cannot flatten"
                )
            seen[name] = sec.path
            if name in imported and ALLOWED_SHADOWS.get(name) != imported[name]:
                raise UserError(
                    f"{sec.path}: '{name}' shadows `{imported[name][1]}` from {imported[name][0]}; cannot flatten"
                )

    def group(module: str, level: int = 0) -> int:  # std, third party, this folder
        return 2 if level else 0 if module.split(".")[0] in sys.stdlib_module_names else 1

    def alias(name: str, asname: str | None) -> str:
        return name + (f" as {asname}" if asname else "")

    groups: list[list[str]] = [[], [], []]
    for module, asname in sorted(plain, key=lambda x: (x[0], x[1] or "")):
        groups[group(module)].append(f"import {alias(module, asname)}")
    for (module, level), names in sorted(froms.items()):
        items = ", ".join(alias(*n) for n in sorted(names, key=lambda x: (x[0], x[1] or "")))
        groups[group(module, level)].append(f"from {'.' * level}{module} import {items}")
    blocks = [f"from __future__ import {', '.join(sorted(futures))}"] if futures else []
    blocks += ["\n".join(g) for g in groups if g]
    return "\n\n".join(blocks) + "\n\n\n" + "\n\n".join(bodies)


def _package_imports(source: str) -> list[str]:
    """The coconutblt modules a source imports with `from coconutblt.x import ...`, in order."""
    found = [
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
        and node.level == 0
        and (node.module or "").split(".")[0] == "coconutblt"
    ]
    return list(dict.fromkeys(found))


def model_sources(roots: tuple[str, ...] = MODEL_ROOTS) -> list[str]:
    """`roots` and the coconutblt modules they import, transitively, dependencies first."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(module: str) -> None:
        if module in order or module in visiting:
            return  # a cycle can only come from a nested import; `flatten_sources` checks order
        visiting.add(module)
        for dep in _package_imports(_module_source(module)[0]):
            visit(dep)
        visiting.discard(module)
        order.append(module)

    for root in roots:
        visit(root)
    return order


def build_modeling_source() -> str:
    """The text of modeling_coconutblt.py, from the installed package's model sources."""
    import coconutblt

    sections = [(m, *_module_source(m), m.replace(".", "/") + ".py") for m in model_sources()]
    wrapper = "coconutblt/hf/export.py: WRAPPER_SOURCE"
    sections.append(("coconutblt.hf.export.WRAPPER_SOURCE", WRAPPER_SOURCE, wrapper, wrapper))
    preamble = (
        '"""coconutblt hybrid byte model, as Hugging Face remote code.\n\n'
        f"Generated by `coconutblt export-hf` (coconutblt {coconutblt.__version__}) from the package's\n"
        "own model sources, flattened in dependency order; the section headers name the files.\n"
        'Do not edit: re-export instead.\n"""\n\n'
    )
    source = preamble + flatten_sources(sections)
    compile(source, MODELING_FILE, "exec")
    return source


# ---------------------------------------------------------------------------------- export
def check_out_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """The export folder, if it is usable: new, empty, or `overwrite` given."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; pass a new folder to --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: folder is not empty; pass --overwrite or a new folder")
    return out


def _model_from(source):
    from coconutblt.checkpoint import load_model
    from coconutblt.model import HybridTransformer

    if isinstance(source, HybridTransformer):
        return source
    return load_model(source)


def export_hf(source, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Checkpoint path (or a `HybridTransformer`) -> Hugging Face folder at `out_dir`.

    A missing or foreign checkpoint, or a non-empty `out_dir` without `overwrite`, is a one-line
    `UserError`.
    """
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise UserError("export-hf needs safetensors: pip install 'coconutblt[hf]'") from None
    out = check_out_dir(out_dir, overwrite)
    model = _model_from(source)
    modeling = (
        build_modeling_source()
    )  # before writing anything: a flattening error leaves no folder
    cfg = model.config.to_dict()
    state = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    dtypes = {v.dtype for v in state.values() if v.is_floating_point()}
    dtype = str(dtypes.pop() if len(dtypes) == 1 else torch.float32).removeprefix("torch.")
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": [ARCHITECTURE],
        "auto_map": {
            "AutoConfig": f"{CONFIGURATION_FILE[:-3]}.CoconutBLTConfig",
            "AutoModelForCausalLM": f"{MODELING_FILE[:-3]}.{ARCHITECTURE}",
        },
        "model_type": "coconutblt",
        "model_config": cfg,
        "tie_word_embeddings": False,
        "dtype": dtype,
        "torch_dtype": dtype,  # transformers < 4.56 reads this name
    }
    generation = {
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
        "do_sample": False,
        "use_cache": False,
    }
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        weights = Path(tmp) / WEIGHTS_FILE
        save_file(state, str(weights), metadata={"format": "pt"})
        os.replace(weights, out / WEIGHTS_FILE)
    readme = README_SOURCE.replace("{PAD_ID}", str(PAD_ID)).replace("{BOS_ID}", str(BOS_ID))
    files = {
        "config.json": json.dumps(config, indent=2, sort_keys=True) + "\n",
        "generation_config.json": json.dumps(generation, indent=2, sort_keys=True) + "\n",
        CONFIGURATION_FILE: CONFIGURATION_SOURCE,
        MODELING_FILE: modeling,
        "README.md": readme.replace("{EOS_ID}", str(EOS_ID)),
    }
    for name, text in files.items():
        atomic_write(out / name, text)
    return out


def probe_inputs(max_seq_len: int, seed: int = 0) -> torch.Tensor:
    """Two rows for checking an export: random bytes, and text with a continuous thought."""
    from coconutblt.data.vocab import END_LATENT_ID, LATENT_ID, START_LATENT_ID, encode

    thought = encode("Q: 12+30?", bos=True) + [START_LATENT_ID, LATENT_ID, LATENT_ID, END_LATENT_ID]
    thought += encode(" A: 42")
    n = min(len(thought), max_seq_len)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (n,), generator=g).tolist()
    return torch.tensor([noise, thought[:n]])


def verify_export(out_dir: str | Path, model=None, inputs: torch.Tensor | None = None) -> float:
    """Load `out_dir` through `AutoModelForCausalLM` (remote code, no network) and return the
    largest absolute logit difference from the native model (loaded from the export's own
    weights when `model` is None)."""
    try:
        from transformers import AutoModelForCausalLM
    except ImportError:
        raise UserError(
            "verifying the export needs transformers: pip install 'coconutblt[hf]', or pass --no-verify"
        ) from None
    out = Path(out_dir)
    hf = AutoModelForCausalLM.from_pretrained(
        str(out), trust_remote_code=True, local_files_only=True
    ).eval()
    if model is None:
        model = _native_from_folder(out)
    if inputs is None:
        inputs = probe_inputs(model.config.max_seq_len)
    with torch.no_grad():
        native = model.eval()(inputs).logits
        theirs = hf(input_ids=inputs).logits
    return float((native.float() - theirs.float()).abs().max())


def _native_from_folder(out: Path):
    from safetensors.torch import load_file

    from coconutblt.model import HybridTransformer, ModelConfig

    cfg = json.loads((out / "config.json").read_text())["model_config"]
    model = HybridTransformer(ModelConfig.from_dict(cfg, source=f"{out}/config.json"))
    state = {k.removeprefix("model."): v for k, v in load_file(str(out / WEIGHTS_FILE)).items()}
    model.load_state_dict(state)
    return model.eval()


def export_summary(out: Path) -> dict[str, Any]:
    """File name -> size in bytes, for the command's report."""
    return {name: (out / name).stat().st_size for name in EXPORT_FILES if (out / name).is_file()}
