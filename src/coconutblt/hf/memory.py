"""`hf train --plan`: what a run holds in GPU memory, per process, before it starts.

Why: whether an 8B model trains on one GPU, on eight with FSDP2, or only with LoRA is
arithmetic on its config, and finding out by running out of memory costs a model download and
a queue slot. The plan counts the parameters exactly (the model built on the `meta` device:
shapes, no memory) and estimates the rest:

- weights: parameters × dtype bytes (LoRA adds its float32 matrices);
- gradients: one per trainable parameter, in its dtype;
- AdamW: two moments per trainable parameter, in its dtype (torch keeps them in the
  parameter's dtype: 4 bytes per bf16 parameter);
- activations, per token: each decoder layer keeps about 6·D + 2·kv + c·I values for the
  backward pass (D hidden, kv the key/value width, I the MLP width; c = 4 for a gated MLP
  (Llama: gate, up, their product, SiLU), 2 otherwise; attention through SDPA, so no T² term),
  and the loss keeps the logits in the model dtype plus two float32 copies (10 bytes per
  vocabulary entry in bf16);
- with recomputation (`--gradient-checkpointing`) a layer keeps only its input (D values per
  token) and one layer's activations exist at a time; transformers then runs every thought
  pass over the whole prefix, so the stored inputs grow with the passes: at most
  (passes) × the one-pass figure, which the plan takes;
- LoRA's trainable token rows build a merged copy of the output head (V × D) for each pass
  that computes logits, kept for the backward pass;
- under FSDP2 weights, gradients and AdamW divide by the processes, plus the all-gathered
  copy of the two largest sharded units (the one in use and the one prefetched).

Each figure is an estimate to within some tens of percent (allocator slack, temporary
buffers and CUDA context, about 0.5-1 GiB, come on top); the parameter counts are exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from coconutblt.errors import UserError

GIB = 2**30
N_NEW_TOKENS = 3  # <|start-latent|>, <|latent|>, <|end-latent|>
DTYPE_BYTES = {"bf16": 2, "fp32": 4}


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs from a config: exact parameter counts and the widths."""

    model_type: str
    n_params: int
    n_layers: int
    hidden: int
    intermediate: int
    kv_dim: int
    vocab: int
    tied: bool
    gated_mlp: bool
    largest_unit: int  # parameters of the largest FSDP unit (a layer, the embedding, the head)


def build_meta(config):
    """The model of `config` on the meta device: every shape, no memory."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def model_shape(config, new_tokens: int = N_NEW_TOKENS) -> ModelShape:
    """The shape of `config`'s causal LM with `new_tokens` rows added (as the wrapper does)."""
    model = build_meta(config)
    vocab = model.get_input_embeddings().weight.shape[0] + new_tokens
    head = model.get_output_embeddings()
    tied = head is None or head.weight is model.get_input_embeddings().weight
    hidden = model.get_input_embeddings().weight.shape[1]
    extra = new_tokens * hidden * (1 if tied else 2)
    n_params = sum(p.numel() for p in model.parameters()) + extra
    layers = decoder_layers(model)
    if not layers:
        raise UserError(f"cannot find the decoder layers of a {config.model_type} model")
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", 1)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
    units = [sum(p.numel() for p in layer.parameters()) for layer in layers]
    if not tied:
        units += [vocab * hidden] * 2
    return ModelShape(
        model_type=config.model_type,
        n_params=n_params,
        n_layers=len(layers),
        hidden=hidden,
        intermediate=int(intermediate or 4 * hidden),
        kv_dim=kv_heads * head_dim,
        vocab=vocab,
        tied=tied,
        gated_mlp=any("gate" in n for n, _ in layers[0].named_parameters()),
        largest_unit=max(units),
    )


def decoder_layers(model) -> list:
    """The repeated decoder layers: the modules whose class transformers names as never to be
    split (`_no_split_modules`: LlamaDecoderLayer, GPT2Block, ...)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(inner, "_no_split_modules", None) or ())
    return [m for m in inner.modules() if type(m).__name__ in names]


def lora_parameters(config, r: int, targets) -> int:
    """LoRA matrices for `targets` (module names, or "all-linear"): r × (in + out) per adapted
    matrix, counted on the meta model. The three token rows are not included."""
    from torch import nn

    model = build_meta(config)
    head = model.get_output_embeddings()
    total = 0
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        is_linear = isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"
        if not is_linear or weight is None or weight.dim() != 2 or module is head:
            continue
        if targets == "all-linear" or name.rsplit(".", 1)[-1] in targets:
            total += r * (weight.shape[0] + weight.shape[1])
    return total


@dataclass(frozen=True)
class PlanRow:
    label: str
    weights: float  # bytes, per process
    grads: float
    optimizer: float
    activations: float
    activations_recompute: float

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations

    @property
    def total_recompute(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations_recompute


def activation_bytes(shape: ModelShape, tokens: int, passes: int, dtype_bytes: int) -> float:
    """Activations of one micro-batch of `tokens` tokens, no recomputation, cached passes
    (every token computed once)."""
    c = 4 if shape.gated_mlp else 2
    per_layer = 6 * shape.hidden + 2 * shape.kv_dim + c * shape.intermediate
    layers = shape.n_layers * per_layer * dtype_bytes * tokens
    return layers + logits_bytes(shape, tokens, dtype_bytes)


def recompute_bytes(shape: ModelShape, tokens: int, passes: int, dtype_bytes: int) -> float:
    """Activations with recomputation: each layer's input for every pass's prefix (at most
    `passes` × the tokens), one layer's full activations, and the logits."""
    c = 4 if shape.gated_mlp else 2
    one_layer = (6 * shape.hidden + 2 * shape.kv_dim + c * shape.intermediate) * tokens
    inputs = shape.n_layers * shape.hidden * tokens * passes
    return (inputs + one_layer) * dtype_bytes + logits_bytes(shape, tokens, dtype_bytes)


def logits_bytes(shape: ModelShape, tokens: int, dtype_bytes: int) -> float:
    return tokens * shape.vocab * (dtype_bytes + 4 + 4)


def memory_plan(
    shape: ModelShape,
    *,
    dtype_bytes: int,
    tokens: int,
    passes: int = 1,
    lora_r: int | None = None,
    lora_params: int = 0,
    world_sizes: tuple[int, ...] = (1, 8),
) -> list[PlanRow]:
    """Per-process memory of full fine-tuning (and LoRA when `lora_r`), at each world size
    (1: one process, or DDP, which holds everything on every process; >1: FSDP2)."""
    rows = []
    acts = activation_bytes(shape, tokens, passes, dtype_bytes)
    acts_rc = recompute_bytes(shape, tokens, passes, dtype_bytes)
    token_rows = N_NEW_TOKENS * shape.hidden * (1 if shape.tied else 2)
    for world in world_sizes:
        where = "1 process" if world == 1 else f"FSDP2 x {world}"
        gather = 2 * shape.largest_unit * dtype_bytes if world > 1 else 0
        weights = shape.n_params * dtype_bytes / world + gather
        rows.append(
            PlanRow(
                f"full, {where}",
                weights,
                shape.n_params * dtype_bytes / world,
                2 * shape.n_params * dtype_bytes / world,
                acts,
                acts_rc,
            )
        )
        if lora_r is not None:
            trainable = lora_params + token_rows
            # float32 adapter matrices (PEFT upcasts them over a bf16 base)
            head_copies = shape.vocab * shape.hidden * dtype_bytes
            rows.append(
                PlanRow(
                    f"LoRA r={lora_r}, {where}",
                    weights + lora_params * 4 / world,
                    trainable * 4 / world,
                    2 * trainable * 4 / world,
                    acts + passes * head_copies,
                    acts_rc + head_copies,
                )
            )
    return rows


def format_plan(
    shape: ModelShape,
    rows: list[PlanRow],
    *,
    dtype: str,
    batch_size: int,
    seq_len: int,
    passes: int,
    lora: tuple[int, object, int] | None = None,
) -> str:
    """The plan as text: a header, the table (GiB, or MiB for a small model), the LoRA count."""
    biggest = max(r.total for r in rows)
    unit, scale = ("GiB", GIB) if biggest >= GIB else ("MiB", 2**20)
    lines = [
        f"memory plan: {shape.model_type}, {shape.n_params / 1e9:.2f}B parameters "
        f"({shape.n_params:,}; {shape.n_layers} layers, hidden {shape.hidden}, MLP "
        f"{shape.intermediate}, vocabulary {shape.vocab}), {dtype} weights, AdamW",
        f"per process, {unit}; micro-batch {batch_size} x {seq_len} tokens, {passes} "
        f"pass{'es' if passes > 1 else ''} per batch (thoughts + 1); estimates, see "
        "docs/hf_coconut.md",
        "",
    ]
    width = max(len(r.label) for r in rows) + 2
    cols = ("weights", "grads", "AdamW", "activations", "total", "acts (GC)", "total (GC)")
    lines.append(f"{'':<{width}}" + "".join(f"{c:>12}" for c in cols))
    for r in rows:
        values = (
            r.weights,
            r.grads,
            r.optimizer,
            r.activations,
            r.total,
            r.activations_recompute,
            r.total_recompute,
        )
        lines.append(f"{r.label:<{width}}" + "".join(f"{v / scale:>12.2f}" for v in values))
    lines.append(
        "GC: with --gradient-checkpointing. Add ~1 GiB of CUDA context and allocator slack."
    )
    if lora is not None:
        r, targets, n = lora
        names = targets if isinstance(targets, str) else ",".join(targets)
        lines.append(
            f"LoRA r={r} on {names}: {n:,} adapter parameters "
            f"({100 * n / shape.n_params:.2f}% of the model) + the 3 token rows"
        )
    return "\n".join(lines)


# Llama 3.1 8B's published sizes, for the plan in docs/hf_coconut.md without the download:
# LlamaConfig(**LLAMA_3_1_8B) has its 8,030,261,248 parameters
LLAMA_3_1_8B = dict(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    tie_word_embeddings=False,
    max_position_embeddings=131072,
    rope_theta=500000.0,
)


def plan_for_config(
    config,
    *,
    dtype: str,
    batch_size: int,
    seq_len: int,
    passes: int = 1,
    lora_r: int | None = None,
    lora_targets=None,
    world_size: int = 1,
) -> str:
    """The plan of a transformers config (the wrapper's 3 token rows added), at 1 and 8
    processes (and `world_size`)."""
    from coconutblt.hf.lora import default_targets

    shape = model_shape(config)
    lora = None
    if lora_r is not None:
        targets = lora_targets or default_targets(config.model_type)
        if isinstance(targets, list | tuple) and tuple(targets) == ("all-linear",):
            targets = "all-linear"
        lora = (lora_r, targets, lora_parameters(config, lora_r, targets))
    rows = memory_plan(
        shape,
        dtype_bytes=DTYPE_BYTES[dtype],
        tokens=batch_size * seq_len,
        passes=passes,
        lora_r=lora_r,
        lora_params=lora[2] if lora else 0,
        world_sizes=tuple(sorted({1, 8, world_size})),
    )
    return format_plan(
        shape, rows, dtype=dtype, batch_size=batch_size, seq_len=seq_len, passes=passes, lora=lora
    )


def plan_for_folder(folder: str | Path, **kwargs) -> str:
    """The plan for the model in `folder` (its config.json only: no weights are read); an
    adapter checkpoint plans for its base model and its adapter's r and targets."""
    from transformers import AutoConfig

    from coconutblt.hf.lora import is_adapter_dir

    p = Path(folder)
    if is_adapter_dir(p):
        meta_file = p / "coconut.json"
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        lora = meta.get("lora") or {}
        p = Path(lora.get("base") or p)
        kwargs["lora_r"] = kwargs.get("lora_r") or lora.get("r")
        kwargs["lora_targets"] = kwargs.get("lora_targets") or lora.get("targets")
    if not (p / "config.json").is_file():
        raise UserError(f"{p} has no config.json; --plan reads the model's config")
    return plan_for_config(AutoConfig.from_pretrained(p, local_files_only=True), **kwargs)
