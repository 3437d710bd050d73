"""Export a `HybridTransformer` to a Hugging Face folder loadable with `trust_remote_code=True`,
and check the export against the native model.

The folder is flat and self-contained:

    config.json                 model_type "coconutblt", `auto_map`, the `ModelConfig` as a dict
    generation_config.json      byte-vocabulary special ids, greedy, KV cache on
    model.safetensors           the weights (keys prefixed "model.")
    configuration_coconutblt.py `CoconutBLTConfig(PretrainedConfig)`
    modeling_coconutblt.py      the package's model sources, flattened; `CoconutBLTForCausalLM`
    tokenizer.json              the byte tokenizer (ids 0..255 are the bytes), and its
    tokenizer_config.json       config and special tokens: see `export.tokenizer`
    special_tokens_map.json
    README.md                   how to load it

The Python files come from `export.remote_code`. transformers and safetensors are imported
lazily: `import coconutblt` never imports them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from coconutblt.errors import UserError
from coconutblt.export.remote_code import (
    ARCHITECTURE,
    CONFIGURATION_FILE,
    CONFIGURATION_SOURCE,
    MODELING_FILE,
    build_modeling_source,
)
from coconutblt.export.tokenizer import TOKENIZER_FILES, tokenizer_files
from coconutblt.runtime.files import atomic_write
from coconutblt.vocab import BOS_ID, EOS_ID, PAD_ID

WEIGHTS_FILE = "model.safetensors"
EXPORT_FILES = (
    "config.json",
    "generation_config.json",
    WEIGHTS_FILE,
    CONFIGURATION_FILE,
    MODELING_FILE,
    *TOKENIZER_FILES,
    "README.md",
)

README_SOURCE = """\
# coconutblt hybrid byte model

Exported by `coconutblt export-hf`. Byte-level: ids 0..255 are raw bytes, {PAD_ID} pad,
{BOS_ID} bos, {EOS_ID} eos, then the continuous-thought markers. The tokenizer maps text to its
UTF-8 bytes and back.

```python
from transformers import pipeline

pipe = pipeline("text-generation", model="PATH", trust_remote_code=True)
print(pipe("The answer is", max_new_tokens=32, do_sample=False)[0]["generated_text"])
```

Or by hand, a left-padded batch:

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("PATH", trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained("PATH", trust_remote_code=True)
batch = tok(["The answer is", "Q: 12+30? A:"], return_tensors="pt", padding=True)
out = model.generate(**batch, max_new_tokens=32, do_sample=False)
print(tok.batch_decode(out, skip_special_tokens=True))
```
"""


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
        "use_cache": True,
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
        **tokenizer_files(model.config.max_seq_len),
        "README.md": readme.replace("{EOS_ID}", str(EOS_ID)),
    }
    for name, text in files.items():
        atomic_write(out / name, text)
    return out


def probe_inputs(max_seq_len: int, seed: int = 0) -> torch.Tensor:
    """Two rows for checking an export: random bytes, and text with a continuous thought."""
    from coconutblt.vocab import END_LATENT_ID, LATENT_ID, START_LATENT_ID, encode

    thought = encode("Q: 12+30?", bos=True) + [START_LATENT_ID, LATENT_ID, LATENT_ID, END_LATENT_ID]
    thought += encode(" A: 42")
    n = min(len(thought), max_seq_len)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (n,), generator=g).tolist()
    return torch.tensor([noise, thought[:n]])


VERIFY_TEXT = "Q: 12+30? A: 42 (héllo, 日本, 😀)"


def verify_export(out_dir: str | Path, model=None, inputs: torch.Tensor | None = None) -> float:
    """Load `out_dir` through `AutoModelForCausalLM` (remote code, no network) and return the
    largest absolute logit difference from the native model (loaded from the export's own
    weights when `model` is None). A tokenizer that does not map a text to its bytes and back
    is a `UserError`."""
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise UserError(
            "verifying the export needs transformers: pip install 'coconutblt[hf]', or pass --no-verify"
        ) from None
    out = Path(out_dir)
    tok = AutoTokenizer.from_pretrained(str(out), trust_remote_code=True, local_files_only=True)
    ids = tok(VERIFY_TEXT)["input_ids"]
    if ids != list(VERIFY_TEXT.encode()) or tok.decode(ids) != VERIFY_TEXT:
        raise UserError(f"{out}: the exported tokenizer does not map text to its UTF-8 bytes")
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
