"""Coconut continuous thoughts on any Hugging Face causal LM (GPT-2, Llama, Qwen-style).

Why a wrapper and not a subclass: the reasoning mechanism needs nothing from the architecture
except three things every `AutoModelForCausalLM` has — input embeddings, the last-layer hidden
states, and a KV cache — so one wrapper serves every model, and the checkpoint it writes is a
plain Hugging Face folder that `from_pretrained` reads back without this package.

The mechanism (Hao et al., 2024): a `<|latent|>` position has no token embedding of its own;
its input vector is the last-layer hidden state at the previous position. A batch whose
thoughts sit at n distinct columns costs n+1 passes: pass k runs the positions up to the k-th
thought column, its last hidden state becomes that column's input, and the model's own cache
(whatever the installed transformers uses) keeps every earlier position, so nothing is
computed twice. Padding is handled with an explicit attention mask and `position_ids` counted
over real tokens only, so a row gives the same logits in any batch.

transformers is imported inside functions only: `import coconutblt` must work without it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from coconutblt.errors import UserError
from coconutblt.inference.sampling import sample_next
from coconutblt.runtime.files import atomic_write_dir

START_LATENT = "<|start-latent|>"
LATENT = "<|latent|>"
END_LATENT = "<|end-latent|>"
LATENT_TOKENS = (START_LATENT, LATENT, END_LATENT)
METADATA_FILE = "coconut.json"
IGNORE_INDEX = -100


@dataclass(frozen=True)
class LatentTokenIds:
    """Vocabulary ids of the three Coconut tokens."""

    start: int
    latent: int
    end: int


@dataclass
class CoconutOutput:
    """What `CoconutForCausalLM.forward` returns.

    `inputs_embeds` are the embeddings the last pass saw, thoughts filled in (for analysis and
    tests); `past_key_values` is the model's cache after the last pass (None on the no-cache
    path); `n_passes` is how many times the base model ran.
    """

    loss: torch.Tensor | None
    logits: torch.Tensor
    inputs_embeds: torch.Tensor
    past_key_values: Any
    n_passes: int


@dataclass
class GenerateOutput:
    """New tokens per row: `sequences` (B, S) with `pad_token_id` after a row's EOS (the EOS
    itself is kept); `lengths` (B,) counts the tokens before EOS; `n_forward` counts base-model
    calls (thought passes plus one per decoding step)."""

    sequences: torch.Tensor
    lengths: torch.Tensor
    n_forward: int


def add_special_tokens(tokenizer, model=None, init_token: str = "<<") -> LatentTokenIds:
    """Add the three Coconut tokens once and give new embedding rows a sensible start.

    Idempotent: tokens already in the vocabulary are kept with their ids and trained rows. New
    rows copy the embedding of `init_token` when it is a single token (the official code uses
    "<<", which stabilises early training), else the mean of the existing rows, so a thought
    marker starts inside the distribution the model has seen. An untied output head gets the
    same treatment.
    """
    vocab = tokenizer.get_vocab()
    missing = [t for t in LATENT_TOKENS if t not in vocab]
    if missing:
        # special=True: kept whole by the pre-tokenizer and dropped by skip_special_tokens.
        tokenizer.add_tokens(missing, special_tokens=True)
    ids = LatentTokenIds(*(tokenizer.convert_tokens_to_ids(t) for t in LATENT_TOKENS))
    if model is not None:
        rows_before = model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > rows_before:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        new_ids = sorted(
            {tokenizer.convert_tokens_to_ids(t) for t in missing}
            | {i for i in (ids.start, ids.latent, ids.end) if i >= rows_before}
        )
        if new_ids:
            source = tokenizer.encode(init_token, add_special_tokens=False)
            source_id = source[0] if len(source) == 1 and source[0] < rows_before else None
            _init_rows(model.get_input_embeddings().weight, new_ids, source_id, rows_before)
            head = model.get_output_embeddings()
            if head is not None and head.weight is not model.get_input_embeddings().weight:
                _init_rows(head.weight, new_ids, source_id, rows_before)
    return ids


@torch.no_grad()
def _init_rows(weight: torch.Tensor, rows: list[int], source_id: int | None, n_old: int) -> None:
    """weight: (V, D). Rows `rows` := row `source_id`, or the mean of the first n_old rows."""
    if source_id is not None:
        value = weight[source_id].clone()  # (D,)
    else:
        value = weight[:n_old].float().mean(dim=0).to(weight.dtype)  # (D,)
    weight[rows] = value


# Without one of these, AutoTokenizer quietly builds an empty tokenizer from config.json alone.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
)


def _is_hf_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def load_pretrained(path: str | os.PathLike, dtype: torch.dtype | None = None):
    """Load a local model folder and its tokenizer, offline; a user's mistake is a UserError.

    Returns (model, tokenizer). A tokenizer without a pad token gets EOS as pad (the official
    recipe), since padding positions are excluded by the attention mask and labels anyway.
    """
    p = Path(path)
    _check_model_dir(p)
    tokenizer = load_tokenizer(p)
    return load_model(p, dtype), tokenizer


def _check_model_dir(p: Path) -> None:
    if not p.exists():
        raise UserError(f"model folder {p} does not exist; pass a local Hugging Face model folder")
    if not _is_hf_model_dir(p):
        raise UserError(
            f"{p} is not a Hugging Face model folder (no config.json); "
            "save one with save_pretrained or pass the folder that contains config.json"
        )


def load_tokenizer(p: Path):
    """The tokenizer saved in folder `p` (pad token: EOS when it has none)."""
    from transformers import AutoTokenizer

    if not any((p / name).is_file() for name in _TOKENIZER_FILES):
        raise UserError(
            f"{p} has no tokenizer files ({', '.join(_TOKENIZER_FILES[:3])}, ...); "
            "save the tokenizer into the model folder with tokenizer.save_pretrained"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(p, local_files_only=True)
    except (OSError, ValueError, TypeError) as e:
        raise UserError(
            f"{p} has no loadable tokenizer ({type(e).__name__}); "
            "save the tokenizer into the same folder"
        ) from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(p: Path, dtype: torch.dtype | None = None):
    """The causal LM saved in folder `p`."""
    from transformers import AutoModelForCausalLM

    _check_model_dir(p)
    try:
        return AutoModelForCausalLM.from_pretrained(p, local_files_only=True, **_dtype_kw(dtype))
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load a causal LM from {p}: {first}") from e


def _dtype_kw(dtype: torch.dtype | None) -> dict:
    """`dtype=` for transformers >= 4.56, `torch_dtype=` before (the argument was renamed)."""
    if dtype is None:
        return {}
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


class CoconutForCausalLM(nn.Module):
    """A causal LM that reads `<|latent|>` positions as continuous thoughts.

    Build it from a model and its tokenizer (`CoconutForCausalLM(model, tokenizer)` adds the
    tokens and resizes embeddings once), or with `from_pretrained(folder)`. `forward` is the
    n+1-pass training forward; `generate` is batched, KV-cached decoding after the thoughts.
    """

    def __init__(
        self,
        base_model: nn.Module,
        tokenizer=None,
        *,
        token_ids: LatentTokenIds | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        init_token: str = "<<",
    ):
        super().__init__()
        if tokenizer is None and token_ids is None:
            raise ValueError("pass a tokenizer (tokens are added) or token_ids")
        self.base_model = base_model
        self.tokenizer = tokenizer
        if tokenizer is not None:
            token_ids = add_special_tokens(tokenizer, base_model, init_token)
            eos_token_id = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
            pad_token_id = tokenizer.pad_token_id if pad_token_id is None else pad_token_id
        self.token_ids = token_ids
        self.eos_token_id = eos_token_id
        self.pad_token_id = eos_token_id if pad_token_id is None else pad_token_id
        self.metadata: dict[str, Any] = {}
        self.peft = None  # the PeftModel around base_model when a LoRA adapter is attached

    # ----- loading and saving -------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        dtype: torch.dtype | None = None,
        *,
        base_model: str | os.PathLike | None = None,
        trainable: bool = False,
    ):
        """Load a folder written by `save_pretrained` or any local HF causal-LM folder.

        A LoRA checkpoint (adapter_config.json) loads its base model (`base_model`, else the
        folder recorded at training time), adds the tokens, then the adapter; `trainable`
        keeps the adapter trainable (to train the next stage on it).
        """
        from coconutblt.hf.lora import is_adapter_dir, load_adapter_checkpoint

        if is_adapter_dir(path):
            return load_adapter_checkpoint(cls, Path(path), dtype, base_model, trainable)
        model, tokenizer = load_pretrained(path, dtype=dtype)
        wrapper = cls(model, tokenizer)
        meta = Path(path) / METADATA_FILE
        if meta.is_file():
            wrapper.metadata = json.loads(meta.read_text())
        return wrapper

    def save_pretrained(
        self,
        out_dir: str | os.PathLike,
        metadata: dict | None = None,
        extra_files: dict[str, str] | None = None,
        keep: tuple[str, ...] = (),
    ) -> Path:
        """Write model, tokenizer and `coconut.json` (token ids, training stage) atomically;
        `extra_files` ({name: text}, e.g. a metrics log) go into the same folder, and the
        old folder's entries named in `keep` move into the new one. With a LoRA adapter the
        model part is the adapter alone (adapter_config.json, adapter_model.safetensors)."""
        meta = dict(self.metadata)
        meta.update(metadata or {})
        meta["token_ids"] = {
            "start": self.token_ids.start,
            "latent": self.token_ids.latent,
            "end": self.token_ids.end,
        }

        def write(tmp: Path) -> None:
            if self.peft is not None:
                from coconutblt.hf.lora import save_adapter

                save_adapter(self, tmp)
            else:
                self.base_model.save_pretrained(tmp)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(tmp)
            (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
            for name, text in (extra_files or {}).items():
                (tmp / name).write_text(text)

        self.metadata = meta
        return atomic_write_dir(out_dir, write, keep)

    @property
    def config(self):
        return self.base_model.config

    @property
    def device(self) -> torch.device:
        # the first parameter's: an adapted embedding's `.weight` would build a merged copy
        return next(self.base_model.parameters()).device

    # ----- the n+1-pass forward -----------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        use_cache: bool = True,
    ) -> CoconutOutput:
        """input_ids, attention_mask, labels, position_ids: (B, T); labels -100 = no loss.

        With `use_cache=False` every pass reruns the prefix from scratch: slower, but it is
        the path for gradient checkpointing, which in transformers drops the cache while
        training (the cached path would silently lose the prefix there).
        """
        B, T = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if position_ids is None:
            position_ids = positions_from_mask(attention_mask)
        embed = self.base_model.get_input_embeddings()
        inputs_embeds = embed(input_ids)  # (B, T, D)
        is_latent = input_ids == self.token_ids.latent  # (B, T)
        columns = torch.nonzero(is_latent.any(dim=0)).flatten().tolist()  # sorted thought columns
        if columns and columns[0] == 0:
            raise ValueError("a <|latent|> token cannot be the first position: nothing precedes it")
        if self.training and _checkpointing(self.base_model):
            use_cache = False  # transformers ignores the cache here; never rely on it
        bounds = list(zip([0] + columns, columns + [T], strict=True))  # [start, end) of each pass
        col = torch.arange(T, device=input_ids.device)  # (T,)
        cache, logits_parts, logits, n_passes = None, [], None, 0

        for start, end in bounds:
            last = end == T
            if use_cache:
                if start == 0:
                    cache = _new_cache(self.base_model)
                out = self.base_model(
                    inputs_embeds=inputs_embeds[:, start:end],
                    attention_mask=attention_mask[:, :end],
                    position_ids=position_ids[:, start:end],
                    **cache_kw(self.base_model, cache),
                    use_cache=True,
                    output_hidden_states=not last,
                )
                cache = returned_cache(out)
                logits_parts.append(out.logits)  # (B, end - start, V)
            else:
                out = self.base_model(
                    inputs_embeds=inputs_embeds[:, :end],
                    attention_mask=attention_mask[:, :end],
                    position_ids=position_ids[:, :end],
                    use_cache=False,
                    output_hidden_states=not last,
                )
                if last:
                    logits = out.logits  # (B, T, V)
            n_passes += 1
            if not last:
                # The thought at column `end` is the final hidden state at column end-1.
                thought = out.hidden_states[-1][:, -1]  # (B, D)
                fill = is_latent[:, end, None] & (col == end)[None, :]  # (B, T)
                inputs_embeds = torch.where(fill[..., None], thought[:, None, :], inputs_embeds)

        if use_cache:
            logits = torch.cat(logits_parts, dim=1)  # (B, T, V)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return CoconutOutput(loss, logits, inputs_embeds, cache, n_passes)

    # ----- generation ---------------------------------------------------------------------

    def thought_suffix(self, n_thoughts: int) -> list[int]:
        """`<|start-latent|>` + n × `<|latent|>` + `<|end-latent|>` as ids."""
        t = self.token_ids
        return [t.start] + [t.latent] * n_thoughts + [t.end]

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 64,
        eos_token_id: int | None = None,
        n_thoughts: int | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> GenerateOutput:
        """Decode a batch of prompts (B, T), any padding side; greedy unless temperature > 0.

        n_thoughts=None uses the prompts as given (they may already hold latent tokens);
        n_thoughts=k appends `<|start-latent|>`, k thoughts, `<|end-latent|>` to every row.
        The prefill is the thought forward; then one token per step from the cache. Rows stop
        at EOS independently; the loop ends when all have. `use_cache=False` recomputes the
        whole sequence each step: the slow reference the cached path must equal.
        """
        eos = self.eos_token_id if eos_token_id is None else eos_token_id
        pad = self.pad_token_id if self.pad_token_id is not None else eos
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        input_ids, attention_mask = left_align(input_ids, attention_mask, pad)
        if n_thoughts is not None:
            suffix = torch.tensor(self.thought_suffix(n_thoughts), device=input_ids.device)
            suffix = suffix.expand(input_ids.shape[0], -1)  # (B, n+2)
            input_ids = torch.cat([input_ids, suffix], dim=1)
            attention_mask = torch.cat([attention_mask, torch.ones_like(suffix)], dim=1)
        B = input_ids.shape[0]
        position_ids = positions_from_mask(attention_mask)  # (B, T)

        out = self(input_ids, attention_mask, position_ids=position_ids, use_cache=use_cache)
        n_forward = out.n_passes
        logits, cache = out.logits[:, -1], out.past_key_values  # (B, V)
        finished = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
        lengths = torch.zeros(B, dtype=torch.long, device=input_ids.device)
        new_tokens = []
        for step in range(max_new_tokens):
            token = sample_next(logits, temperature, top_k, generator=generator)  # (B,)
            token = torch.where(finished, torch.full_like(token, pad), token)
            new_tokens.append(token)
            if eos is not None:
                lengths += (~finished & (token != eos)).long()
                finished |= token == eos
            else:
                lengths += 1
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(B, 1)], dim=1)
            next_pos = position_ids[:, -1:] + 1  # (B, 1)
            position_ids = torch.cat([position_ids, next_pos], dim=1)
            input_ids = torch.cat([input_ids, token[:, None]], dim=1)
            if use_cache:
                step_out = self.base_model(
                    input_ids=token[:, None],
                    attention_mask=attention_mask,
                    position_ids=next_pos,
                    **cache_kw(self.base_model, cache),
                    use_cache=True,
                )
                logits, cache = step_out.logits[:, -1], returned_cache(step_out)
                n_forward += 1
            else:
                full = self(input_ids, attention_mask, position_ids=position_ids, use_cache=False)
                logits = full.logits[:, -1]
                n_forward += full.n_passes
        if new_tokens:
            sequences = torch.stack(new_tokens, dim=1)  # (B, S)
        else:
            sequences = input_ids.new_zeros(B, 0)
        return GenerateOutput(sequences, lengths, n_forward)


def _checkpointing(base_model) -> bool:
    """Whether the base model recomputes activations (the name changed in transformers 5)."""
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(base_model), name):
            return bool(getattr(base_model, name))
    return False


def enable_checkpointing(base_model) -> None:
    """Turn on activation (gradient) checkpointing under either transformers name for it."""
    # Non-reentrant: the reentrant kind (the default of transformers 4.x) runs a nested
    # backward per layer, which DistributedDataParallel sees as a parameter made ready twice.
    kwargs = {"use_reentrant": False}
    if hasattr(base_model, "activation_checkpointing_enable"):
        base_model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def cache_kw(base_model, cache) -> dict:
    """`{name: cache}` for the base model's forward: transformers >= 5.2x calls the argument
    `cache` (and warns on `past_key_values`, removed in 5.40); older versions `past_key_values`."""
    import inspect

    params = inspect.signature(base_model.forward).parameters
    return {"cache" if "cache" in params else "past_key_values": cache}


def returned_cache(out):
    """The cache a forward returned, under either name."""
    return out["cache"] if "cache" in out else out.past_key_values


def _new_cache(base_model):
    """An empty cache of the installed transformers' own kind (DynamicCache today), or None
    for a model that only takes the legacy tuples (GPT-2 before transformers 4.52 flags this
    with `_supports_cache_class = False`): it builds them itself from None."""
    from transformers import DynamicCache

    if not getattr(base_model, "_supports_cache_class", True):
        return None
    try:
        return DynamicCache(config=base_model.config)
    except TypeError:  # older signature without config
        return DynamicCache()


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 0/1 mask -> (B, T) positions counted over real tokens, so padding on either side
    leaves a row's positions (and logits) exactly as when it is alone."""
    return (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)


def left_align(input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int | None):
    """Move each row's padding to the left (B, T), so new tokens append after real tokens."""
    mask = attention_mask.bool()
    if bool(mask[:, -1].all()):
        return input_ids, attention_mask
    # Stable sort on the mask puts pad (False) first and keeps the token order.
    order = torch.sort(mask.long(), dim=1, stable=True).indices  # (B, T)
    ids = torch.gather(input_ids, 1, order)
    new_mask = torch.gather(attention_mask, 1, order)
    if pad_id is not None:
        ids = ids.masked_fill(~new_mask.bool(), pad_id)
    return ids, new_mask


def causal_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Mean (or, with reduction="sum", summed) next-token cross-entropy over labels != -100;
    logits (B, T, V), labels (B, T).

    Transformers' own ForCausalLMLoss (float32), so with no thoughts the loss equals the base
    model's to the bit on every version: 4.x shifts by slicing the logits, 5.x by padding the
    labels, and the two sum in different orders. A divisor of 1 makes it the plain sum.
    """
    from transformers.loss.loss_utils import ForCausalLMLoss

    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return ForCausalLMLoss(
        logits,
        labels,
        vocab_size=logits.shape[-1],
        num_items_in_batch=1 if reduction == "sum" else None,
        ignore_index=IGNORE_INDEX,
    )


def n_loss_tokens(labels: torch.Tensor) -> torch.Tensor:
    """How many positions of labels (B, T) `causal_lm_loss` averages over (a 0-dim tensor)."""
    return (labels[:, 1:] != IGNORE_INDEX).sum()
