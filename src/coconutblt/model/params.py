"""Parameter counts in closed form, the exact count on the `meta` device, and a memory plan.

The closed form is written from the architecture, term by term, so that a reader can see
where the parameters are; `exact_counts` builds the model without allocating memory and
counts what is really there. Tests hold the two within 2% for every preset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from coconutblt.model.config import ModelConfig

COMPONENTS = ("encoder", "latent", "decoder", "heads", "patcher")


def _block(dim: int, hidden: int, mlp_type: str) -> int:
    attn = 4 * dim * dim  # qkv + out
    mlp = (3 if mlp_type == "swiglu" else 2) * dim * hidden
    return attn + mlp + 2 * dim  # + two RMSNorm weights


def estimate_counts(cfg: ModelConfig) -> dict[str, int]:
    """Closed-form parameter count per component."""
    D, dl, V = cfg.d_model, cfg.d_local, cfg.vocab_size
    hl = int(dl * cfg.local_mlp_ratio)
    m = cfg.module_dim
    encoder = V * dl + len(cfg.ngram_sizes) * cfg.ngram_buckets * dl
    encoder += cfg.encoder_layers * _block(dl, hl, "swiglu") + dl + dl * D
    if cfg.use_byte_patch_attention:
        encoder += 4 * dl * dl + dl
    n_modules = cfg.n_layers // cfg.latent_module_every if cfg.latent_module_every > 0 else 0
    latent = (
        cfg.n_layers * _block(D, int(D * cfg.mlp_ratio), cfg.mlp_type) + D + D
    )  # + final norm + bos
    latent += n_modules * (cfg.c_thought * m + 4 * D * m + 2 * D)
    if cfg.thought_head:
        latent += D * D + D
    dec_layer = (
        (4 * dl * dl + dl) + (4 * dl * dl + dl) + (3 * dl * hl + dl)
    )  # self-attn, cross, mlp
    decoder = D * dl + D * cfg.cross_attn_k * dl + cfg.decoder_layers * dec_layer + dl
    heads = dl * V
    if cfg.copy_path:  # pointer query and key, byte embeddings (+ "none"), the thought map
        heads += 2 * D * cfg.copy_dim + (V + 1) * dl + (D * D if cfg.copy_into_thoughts else 0)
    patcher = 0
    if cfg.patcher == "entropy":
        if cfg.entropy_patcher.estimator == "learned":
            heads += dl + dl * V
        else:
            e = cfg.entropy_patcher.model
            patcher = (
                2 * V * e.d_model
                + e.n_layers * _block(e.d_model, int(e.d_model * e.mlp_ratio), "swiglu")
                + e.d_model
            )
    return {
        "encoder": encoder,
        "latent": latent,
        "decoder": decoder,
        "heads": heads,
        "patcher": patcher,
    }


def _component(name: str) -> str:
    top = name.split(".")[0]
    if top in ("lm_head", "estimator", "copy"):
        return "heads"
    if top in ("bos_latent", "thought_head"):
        return "latent"
    if top == "entropy_model":
        return "patcher"
    return top


def exact_counts(cfg: ModelConfig) -> dict[str, int]:
    """Count the parameters of the model built on the `meta` device (no memory used)."""
    from coconutblt.model.hybrid import HybridTransformer

    with torch.device("meta"):
        model = HybridTransformer(cfg)
    counts = dict.fromkeys(COMPONENTS, 0)
    for name, p in model.named_parameters():
        counts[_component(name)] += p.numel()
    return counts


@dataclass
class MemoryPlan:
    """Per-GPU bytes for one training configuration (an estimate, see `memory_plan`)."""

    seq_len: int
    batch: int
    activation_checkpointing: bool
    world_size: int
    params: float
    grads: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer + self.activations


def planned_bytes_per_patch(cfg: ModelConfig) -> float:
    """Mean patch size a plan assumes: the fixed size, or half the cap for space/entropy patching
    (calibrate the real value with `coconutblt patch calibrate`)."""
    return float(cfg.patch_cap if cfg.patcher == "fixed" else cfg.max_patch_size / 2)


def memory_plan(
    cfg: ModelConfig,
    seq_len: int,
    batch: int = 1,
    activation_checkpointing: bool = False,
    world_size: int = 1,
    bytes_per_patch: float | None = None,
) -> MemoryPlan:
    """Training memory per GPU with FSDP2 mixed precision and AdamW.

    Model state: fp32 sharded params (4 B), fp32 grads (4 B), AdamW moments (8 B), all divided
    by world size; bf16 compute copies are gathered one block at a time (counted as one block).
    Activations (bf16, flash attention, per Korthikanti et al. 2022): ~34*s*h bytes per layer
    without checkpointing; with it, the block inputs (2*s*h per layer) plus one block's full set.
    The latent transformer sees seq_len / bytes_per_patch positions, local layers see seq_len.
    """
    n = sum(exact_counts(cfg).values())
    shard = n / world_size
    per_patch = bytes_per_patch or planned_bytes_per_patch(cfg)
    s_lat = batch * seq_len / per_patch
    s_loc = batch * seq_len
    mlp_scale = cfg.mlp_ratio / 4.0
    per_layer_lat = (10 + 24 * mlp_scale) * s_lat * cfg.d_model
    per_layer_loc = (10 + 24 * cfg.local_mlp_ratio / 4.0) * s_loc * cfg.d_local
    local_layers = cfg.encoder_layers + cfg.decoder_layers
    logits = s_loc * cfg.vocab_size * (2 + 4)  # bf16 logits + fp32 softmax for the loss
    if activation_checkpointing:
        acts = 2 * s_lat * cfg.d_model * cfg.n_layers + 2 * s_loc * cfg.d_local * local_layers
        acts += max(per_layer_lat, per_layer_loc)
    else:
        acts = per_layer_lat * cfg.n_layers + per_layer_loc * local_layers
    acts += logits
    gathered_block = 2 * (12 * cfg.d_model**2)
    return MemoryPlan(
        seq_len,
        batch,
        activation_checkpointing,
        world_size,
        4 * shard + gathered_block,
        4 * shard,
        8 * shard,
        acts,
    )


def flops_per_byte(cfg: ModelConfig, seq_len: int, bytes_per_patch: float) -> float:
    """Training FLOPs per byte (6 x matmul params per position + attention), forward+backward."""
    counts = exact_counts(cfg)
    dense_latent = counts["latent"]
    dense_local = (
        counts["encoder"] + counts["decoder"] + counts["heads"] - cfg.vocab_size * cfg.d_local
    )
    dense_local -= len(cfg.ngram_sizes) * cfg.ngram_buckets * cfg.d_local  # lookups, not matmuls
    lat_positions = seq_len / bytes_per_patch
    attn_latent = 12 * cfg.n_layers * cfg.d_model * lat_positions / 2  # causal: half the keys
    window = cfg.local_window or seq_len
    attn_local = (
        12 * (cfg.encoder_layers + cfg.decoder_layers) * cfg.d_local * min(window, seq_len) / 2
    )
    flops_latent = (6 * dense_latent + attn_latent) / bytes_per_patch
    flops_local = 6 * (dense_local + cfg.vocab_size * cfg.d_local) + attn_local
    return flops_latent + flops_local
