"""LoRA adapters (PEFT) on the wrapper's base model: attach, save, load, merge.

Why PEFT and not our own low-rank layers: its adapter folders are what the rest of the
ecosystem (vLLM, TGI, `PeftModel.from_pretrained`) reads, and it already knows each
architecture's projection names. The adapter is injected into the base model in place, so the
wrapper keeps calling the same module: every thought pass, the embedding lookup and the output
head run through the adapted layers, and a thought's hidden state carries the adapter's change.

The three Coconut tokens are new rows of the embedding (and of an untied output head). They are
trained as PEFT trainable tokens (`trainable_token_indices`): three rows per matrix, saved in
the adapter file, instead of `modules_to_save`, which would train and save the whole 128K-row
matrices of a Llama 3. The output-head rows train too: copies of `<<` that never moved would tie
with `<<` in every softmax. peft is imported inside the functions.
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from coconutblt.errors import UserError

ADAPTER_CONFIG = "adapter_config.json"
# PEFT's own defaults for the families we run (its TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING)
FALLBACK_TARGETS = ("q_proj", "v_proj")


@dataclass(frozen=True)
class LoraSettings:
    """`--lora-r/--lora-alpha/--lora-dropout/--lora-targets`; targets None: PEFT's default for
    the architecture (Llama, Qwen, Mistral: q_proj, v_proj; GPT-2: c_attn), "all-linear": every
    linear layer but the output head."""

    r: int
    alpha: float | None = None  # None: 2 r
    dropout: float = 0.0
    targets: tuple[str, ...] | None = None

    @property
    def scale_alpha(self) -> float:
        return float(self.alpha if self.alpha is not None else 2 * self.r)

    def check(self) -> None:
        if self.r <= 0:
            raise UserError(f"--lora-r must be positive, got {self.r}")
        if self.alpha is not None and self.alpha <= 0:
            raise UserError(f"--lora-alpha must be positive, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"--lora-dropout must be in [0, 1), got {self.dropout}")
        if self.targets is not None and not self.targets:
            raise UserError("--lora-targets is empty; name modules (q_proj,v_proj) or all-linear")


def parse_targets(text: str | None) -> tuple[str, ...] | None:
    """'q_proj,v_proj' -> ('q_proj', 'v_proj'); None stays None (the default)."""
    if text is None:
        return None
    return tuple(t.strip() for t in text.split(",") if t.strip())


def default_targets(model_type: str) -> tuple[str, ...]:
    """PEFT's default LoRA targets for a `config.model_type`."""
    try:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as M
    except ImportError:  # an older or newer peft layout: the Llama-family names
        return FALLBACK_TARGETS
    return tuple(M.get(model_type, FALLBACK_TARGETS))


def resolved_targets(settings: LoraSettings, model_type: str) -> tuple[str, ...]:
    return settings.targets if settings.targets is not None else default_targets(model_type)


def _require_peft():
    try:
        import peft
    except ImportError:
        raise UserError(
            "--lora-r needs the peft package; pip install peft (or pip install -e '.[hf]')"
        ) from None
    return peft


@contextmanager
def _quiet_peft():
    """peft reads transformers' deprecated `is_gradient_checkpointing`: not the user's to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield


def is_adapter_dir(path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def attach_lora(wrapper, settings: LoraSettings, base_dir) -> None:
    """Inject LoRA into `wrapper.base_model` in place and make the three token rows trainable;
    everything else is frozen. `wrapper.peft` is the PeftModel that saves and merges;
    `base_dir` is the folder of the base weights, recorded for loading the adapter."""
    peft = _require_peft()
    settings.check()
    base = wrapper.base_model
    targets = resolved_targets(settings, base.config.model_type)
    if targets == ("all-linear",):
        targets = "all-linear"
    else:
        names = {n.rsplit(".", 1)[-1] for n, _ in base.named_modules()}
        unknown = [t for t in targets if t not in names]
        if unknown:
            raise UserError(
                f"--lora-targets {','.join(unknown)}: no such module in this "
                f"{base.config.model_type} model; e.g. {', '.join(_linear_names(base)[:8])}"
            )
    config = peft.LoraConfig(
        r=settings.r,
        lora_alpha=settings.scale_alpha,
        lora_dropout=settings.dropout,
        target_modules=list(targets) if not isinstance(targets, str) else targets,
        trainable_token_indices=_token_rows(wrapper),
        fan_in_fan_out=_uses_conv1d(base, targets),
        task_type="CAUSAL_LM",
    )
    with _quiet_peft():
        peft_model = peft.get_peft_model(base, config)
    assert peft_model.get_base_model() is base  # injected in place: the wrapper calls `base`
    peft_model.peft_config["default"].base_model_name_or_path = str(Path(base_dir).resolve())
    set_peft(wrapper, peft_model)


def set_peft(wrapper, peft_model) -> None:
    # A plain attribute, not a submodule: the base model is already registered under the
    # wrapper, and registering it twice would duplicate every parameter name.
    object.__setattr__(wrapper, "peft", peft_model)
    wrapper.metadata["lora"] = lora_metadata(peft_model)


def lora_metadata(peft_model) -> dict:
    cfg = peft_model.peft_config["default"]
    targets = cfg.target_modules
    return {
        "r": cfg.r,
        "alpha": cfg.lora_alpha,
        "dropout": cfg.lora_dropout,
        "targets": sorted(targets) if not isinstance(targets, str) else targets,
        "base": cfg.base_model_name_or_path,
    }


def _token_rows(wrapper) -> dict[str, list[int]]:
    """The three Coconut rows of the input embedding and of an untied output head, keyed by
    module name (PEFT ties a tied head to the embedding's rows itself)."""
    base = wrapper.base_model
    t = wrapper.token_ids
    rows = sorted({t.start, t.latent, t.end})
    names = {id(m): n for n, m in base.named_modules()}
    embed = base.get_input_embeddings()
    out = {names[id(embed)].rsplit(".", 1)[-1]: rows}
    head = base.get_output_embeddings()
    if head is not None and head.weight is not embed.weight:
        out[names[id(head)].rsplit(".", 1)[-1]] = rows
    return out


def _linear_names(base) -> list[str]:
    from torch import nn

    seen = []
    for name, module in base.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        is_linear = isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"
        if is_linear and leaf not in seen:
            seen.append(leaf)
    return seen


def _uses_conv1d(base, targets) -> bool:
    """GPT-2's projections are transformers' Conv1D (weight stored in x out): PEFT wants
    fan_in_fan_out=True for them."""
    if isinstance(targets, str):
        return False
    return any(
        type(m).__name__ == "Conv1D" and n.rsplit(".", 1)[-1] in targets
        for n, m in base.named_modules()
    )


def save_adapter(wrapper, folder: Path) -> None:
    """The adapter (LoRA matrices and the three token rows), not the base weights. PEFT would
    save the whole embedding matrices because the vocabulary grew; loading re-adds the three
    rows the same way, so they are left out (`save_embedding_layers=False`)."""
    wrapper.peft.save_pretrained(folder, save_embedding_layers=False)


def base_of(folder: Path, meta: dict, base_model: str | None) -> Path:
    """Where an adapter checkpoint's base weights are: `base_model` if given, else the folder
    recorded at training time."""
    if base_model is not None:
        return Path(base_model)
    recorded = (meta.get("lora") or {}).get("base")
    if not recorded:
        recorded = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not recorded:
        raise UserError(f"{folder} is a LoRA adapter that names no base model; pass --base-model")
    base = Path(recorded)
    if not base.is_dir():
        raise UserError(
            f"{folder} is a LoRA adapter on {base}, which does not exist here; pass "
            "--base-model with the base model's folder"
        )
    return base


def load_adapter_checkpoint(cls, folder: Path, dtype, base_model: str | None, trainable: bool):
    """base weights + the checkpoint's tokenizer (three tokens added: the same new rows as at
    training time) + the adapter: a `cls` whose forward runs through the adapted model."""
    peft = _require_peft()
    from coconutblt.hf.coconut_lm import METADATA_FILE, load_model, load_tokenizer

    meta_file = folder / METADATA_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    base_dir = base_of(folder, meta, base_model)
    tokenizer = load_tokenizer(folder)
    model = load_model(base_dir, dtype)
    wrapper = cls(model, tokenizer)
    wrapper.metadata = meta
    # autocast_adapter_dtype: adapter weights in float32 over a bf16 base, as at training time
    with _quiet_peft():
        peft_model = peft.PeftModel.from_pretrained(model, folder, is_trainable=trainable)
    set_peft(wrapper, peft_model)
    wrapper.metadata["lora"]["base"] = str(base_dir)
    return wrapper


def merged(wrapper):
    """A new plain wrapper whose base model has the adapter (LoRA and token rows) merged in;
    `wrapper` is left unusable (its layers are unwrapped in place)."""
    base = wrapper.peft.merge_and_unload()
    out = type(wrapper)(base, wrapper.tokenizer)
    out.metadata = {k: v for k, v in wrapper.metadata.items() if k != "lora"}
    out.metadata["merged_lora"] = wrapper.metadata.get("lora")
    return out


def merge_checkpoint(ckpt: str, out: str, base_model: str | None = None, print_fn=print) -> Path:
    """`hf merge-lora`: an adapter checkpoint folder -> a full checkpoint folder (any tool that
    reads Hugging Face folders loads it without peft)."""
    from coconutblt.hf.coconut_lm import CoconutForCausalLM

    folder = Path(ckpt)
    if not is_adapter_dir(folder):
        raise UserError(f"{folder} holds no LoRA adapter ({ADAPTER_CONFIG}); nothing to merge")
    wrapper = CoconutForCausalLM.from_pretrained(folder, base_model=base_model)
    dtype = wrapper.base_model.dtype
    path = merged(wrapper).save_pretrained(out)
    print_fn(f"merged the LoRA adapter of {folder} into its base ({dtype}): wrote {path}")
    return path


def lora_param_summary(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
