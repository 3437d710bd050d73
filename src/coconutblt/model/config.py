"""`ModelConfig`: every size and switch of `HybridTransformer`, as one saveable dataclass."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from coconutblt.errors import check_config
from coconutblt.vocab import VOCAB_SIZE


@dataclass
class EntropyModelConfig:
    """The small causal byte LM whose next-byte entropy drives patching (trained, then frozen)."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    mlp_ratio: float = 4.0
    window: int = 0  # 0 = full causal attention; >0 = sliding window over bytes

    def __post_init__(self) -> None:
        check_config(_attention_checks(self.d_model, self.n_heads, "d_model", "n_heads"))
        check_config(
            [
                (self.n_layers >= 1, "n_layers", f"must be >= 1, got {self.n_layers}"),
                (self.mlp_ratio > 0, "mlp_ratio", f"must be > 0, got {self.mlp_ratio}"),
                (self.window >= 0, "window", f"must be >= 0 (0 = full), got {self.window}"),
            ]
        )


@dataclass
class EntropyPatcherConfig:
    """Where entropies come from and how they become boundaries.

    estimator "model": a separately trained, frozen `EntropyModel`;
    estimator "learned": a head on the local encoder's byte states, trained online with an
    auxiliary next-byte loss (weighted by the trainer's `est_loss_weight`).
    Entropies are in nats. rule "global": a patch starts at byte t when H(x_t | x_<t) > threshold;
    rule "relative": when H(x_t | x_<t) - H(x_{t-1} | x_<t-1) > relative_threshold.
    """

    estimator: Literal["model", "learned"] = "model"
    rule: Literal["global", "relative"] = "global"
    threshold: float = 1.5
    relative_threshold: float = 0.3
    model: EntropyModelConfig = field(default_factory=EntropyModelConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = _merge(EntropyModelConfig(), self.model, where="model")


@dataclass
class ModelConfig:
    """Sizes and switches of the hybrid model. Defaults are the `tiny` preset."""

    vocab_size: int = VOCAB_SIZE
    max_seq_len: int = 1024  # bytes; generation and position tables are sized by it
    # latent transformer (over patches)
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    mlp_type: Literal["swiglu", "gelu"] = "swiglu"
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    # a learned attention sink per latent head (layers.Attention): a head's output can grow with
    # how many patches match its query, which softmax over the patches alone cannot show
    latent_attention_sink: bool = False
    # continuous-latent module: every N latent layers (0 = off), a bank of c_thought vectors
    latent_module_every: int = 0
    c_thought: int = 2
    latent_module_dim: int = 0  # 0 = d_model // 4
    # continuous thoughts: a learned linear map (initialised to the identity) from a final latent
    # state to the next thought's input, and the weight of an auxiliary loss that makes that map
    # point at the next patch's vector, so a fed-back state reads like a written patch (0 = off)
    thought_head: bool = False
    next_patch_loss_weight: float = 0.0
    next_patch_temperature: float = 0.1
    # at most this many (state, next patch) pairs per batch in that loss (0 = all): the cost is
    # quadratic in the pairs, and a long-sequence batch holds thousands
    next_patch_max_pairs: int = 0
    # local encoder / decoder (over bytes)
    d_local: int = 128
    local_heads: int = 4
    local_mlp_ratio: float = 4.0
    encoder_layers: int = 1
    decoder_layers: int = 1
    local_window: int = 0  # 0 = full causal attention over bytes; >0 = sliding window
    ngram_sizes: list[int] = field(default_factory=list)  # e.g. [3, 4, 5]
    ngram_buckets: int = 4096
    ngram_case_fold: bool = False  # hash n-grams of case-folded ASCII ("Every"/"every" share)
    pooling: Literal["mean", "max"] = "mean"
    use_byte_patch_attention: bool = False  # cross-attention pooling from patch queries
    # a patch's vector from its own bytes only: the encoder's layers read each patch alone
    # (n-grams cut at its first byte, the whitespace it ends with read as a space), so a
    # sentence has one vector wherever it stands; the decoder still reads the byte states of
    # the whole sequence. Why: a continuous thought that quotes a question's fact then gets the
    # vector the written step had (with context, the two had cosine -0.31 to 0.94 on ProntoQA).
    # Measured there, the byte model from scratch did not learn the task with it within the
    # recipe's budget (benchmarks/RESULTS.md, "One vector per sentence"); off by default
    context_free_patches: bool = False
    cross_attn_k: int = 2  # decoder: latent state split into k slots that bytes attend over
    # patching
    # fixed: every patch_size bytes; space: a word byte after a non-word byte starts a patch;
    # word: the byte after a whitespace byte does (a patch ends with its space, so its end is
    # known once the space is read); sentence: the byte after a newline or after the space
    # that follows . ? ! : or # does (a fact per patch; "### " before an answer is a patch of its
    # own); entropy: where the next-byte entropy is high
    patcher: Literal["fixed", "space", "word", "sentence", "entropy"] = "fixed"
    patch_size: int = 4
    max_patch_size: int = 8
    entropy_patcher: EntropyPatcherConfig = field(default_factory=EntropyPatcherConfig)
    init_std: float = 0.02
    # a byte that ends a patch, when the bytes so far already say so (a length cap, an entropy,
    # the `word` rule), reads that patch's own latent state to predict the next patch's first
    # byte, as BLT does; off, every byte reads the patch before its own (older checkpoints)
    closed_patch_context: bool = False
    # a copy path (model/copy.py): a pointer from each latent state to an earlier patch, whose
    # bytes the decoder reads, offset by offset, while it writes the next patch; an auxiliary
    # loss points it at the earlier patch the next one repeats (needs closed_patch_context)
    copy_path: bool = False
    copy_dim: int = 64  # width of the pointer's query and key
    copy_loss_weight: float = 1.0
    # a continuous thought also reads the patch the pointer picks from the state before it
    # (its vector, through a map that starts at zero): what a written step would have quoted
    copy_into_thoughts: bool = False
    # that map's start: "zero" (a no-op: the model computes what it did without it) or
    # "identity" (a thought starts as its state plus the picked patch's vector, as if the step
    # it replaces were written: what a Coconut stage continuing from CoT needs)
    thought_read_init: str = "zero"
    # each written patch that repeats an earlier one (a step quoting a fact) is fed, with this
    # probability in training, the vector of the first patch it repeats instead of its own;
    # 1.0: always, in generation too (a repeated sentence then has one vector, its first
    # occurrence's). Why: a thought that reads a fact (copy_into_thoughts) gets the question's
    # vector of it, which context makes unlike the written step's (ProntoQA cosine -0.31 to
    # 0.94); with 1.0 a thought's input is the very vector the written step was fed
    # (benchmarks/RESULTS.md, "One vector per repeated sentence")
    quote_swap_prob: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.entropy_patcher, dict):
            self.entropy_patcher = _merge(
                EntropyPatcherConfig(), self.entropy_patcher, where="entropy_patcher"
            )
        check_config(_attention_checks(self.d_model, self.n_heads, "d_model", "n_heads"))
        check_config(_attention_checks(self.d_local, self.local_heads, "d_local", "local_heads"))
        positive = ["max_seq_len", "n_layers", "d_model", "d_local", "ngram_buckets", "c_thought"]
        positive += ["copy_dim"]
        at_least_0 = [
            "latent_module_every",
            "latent_module_dim",
            "next_patch_loss_weight",
            "next_patch_max_pairs",
            "copy_loss_weight",
            "encoder_layers",
            "decoder_layers",
            "local_window",
        ]
        above_0 = ["mlp_ratio", "local_mlp_ratio", "rope_theta", "norm_eps", "init_std"]
        above_0 += ["next_patch_temperature"]
        check_config(
            [(getattr(self, k) >= 1, k, f"must be >= 1, got {getattr(self, k)}") for k in positive]
            + [
                (getattr(self, k) >= 0, k, f"must be >= 0, got {getattr(self, k)}")
                for k in at_least_0
            ]
            + [(getattr(self, k) > 0, k, f"must be > 0, got {getattr(self, k)}") for k in above_0]
            + [
                (
                    self.vocab_size >= VOCAB_SIZE,
                    "vocab_size",
                    f"must be >= {VOCAB_SIZE} (256 bytes + special ids), got {self.vocab_size}",
                ),
                (self.patch_size >= 1, "patch_size", f"must be >= 1, got {self.patch_size}"),
                (
                    self.max_patch_size >= 1,
                    "max_patch_size",
                    f"must be >= 1, got {self.max_patch_size}",
                ),
                (self.cross_attn_k >= 1, "cross_attn_k", f"must be >= 1, got {self.cross_attn_k}"),
                (
                    self.closed_patch_context or not self.copy_path,
                    "copy_path",
                    "needs closed_patch_context=true (a byte must know which patch it writes); "
                    "set model.closed_patch_context=true",
                ),
                (
                    0.0 <= self.quote_swap_prob <= 1.0,
                    "quote_swap_prob",
                    f"is a probability in [0, 1], got {self.quote_swap_prob}",
                ),
                (
                    self.copy_path or self.quote_swap_prob == 0,
                    "quote_swap_prob",
                    "finds repeats with the copy path's bookkeeping; set model.copy_path=true",
                ),
                (
                    self.thought_read_init in ("zero", "identity"),
                    "thought_read_init",
                    f"is 'zero' or 'identity', got {self.thought_read_init!r}",
                ),
                (
                    self.copy_path or not self.copy_into_thoughts,
                    "copy_into_thoughts",
                    "reads through the copy path's pointer; set model.copy_path=true",
                ),
                (
                    all(n >= 1 for n in self.ngram_sizes),
                    "ngram_sizes",
                    f"n-gram sizes must be >= 1, got {self.ngram_sizes}",
                ),
            ]
        )

    @property
    def patch_cap(self) -> int:
        """Longest possible patch: the fixed size, or max_patch_size for the other patchers."""
        return self.patch_size if self.patcher == "fixed" else self.max_patch_size

    @property
    def module_dim(self) -> int:
        return self.latent_module_dim or max(self.d_model // 4, 8)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> ModelConfig:
        return _merge(cls(), values, source=source)

    @classmethod
    def from_yaml(cls, path: str, overrides: dict[str, Any] | None = None) -> ModelConfig:
        """Read the `model:` section of a preset (or the whole file if it has none)."""
        from coconutblt.config_tree import read_yaml

        data = read_yaml(path)
        section = data.get("model", data) if "model" in data else data
        cfg = _merge(cls(), section, source=str(path), where="model" if "model" in data else "")
        if overrides:
            cfg = _merge(cfg, overrides, source="command line", where="model")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        from coconutblt.config_tree import to_dict

        return to_dict(self)


def _attention_checks(dim: int, heads: int, dim_key: str, heads_key: str):
    """Heads that split the width into even-sized (RoPE) heads."""
    if heads < 1:
        return [(False, heads_key, f"must be >= 1, got {heads}")]
    even = [d for d in range(heads, 0, -1) if dim % d == 0 and (dim // d) % 2 == 0]
    hint = f"; e.g. {heads_key}={even[0]}" if even else f"; pick an even {dim_key}"
    return [
        (dim >= 1, dim_key, f"must be >= 1, got {dim}"),
        (
            dim % heads == 0,
            heads_key,
            f"{dim_key}={dim} is not divisible by {heads_key}={heads}{hint}",
        ),
        (
            (dim // heads) % 2 == 0,
            heads_key,
            f"head size {dim_key}/{heads_key} = {dim // heads} must be even (RoPE){hint}",
        ),
    ]


def _merge(obj, values, source: str = "config", where: str = ""):
    from coconutblt.config_tree import merge_into

    return merge_into(obj, values, where, source)


def replace(cfg: ModelConfig, **changes: Any) -> ModelConfig:
    return dataclasses.replace(cfg, **changes)
