"""The Python files of an export: what `trust_remote_code=True` runs.

`configuration_coconutblt.py` and the wrapper class are fixed text kept here; the model code in
`modeling_coconutblt.py` is the package's own model sources, flattened (`export.flatten`), with
the wrapper appended, so that the folder imports only each other, torch and transformers.
"""

from __future__ import annotations

from coconutblt.export.flatten import flatten_sources, model_sources, module_source

MODELING_FILE = "modeling_coconutblt.py"
CONFIGURATION_FILE = "configuration_coconutblt.py"
ARCHITECTURE = "CoconutBLTForCausalLM"

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

A forward without a cache is the native full forward. With `use_cache=True` the forward also
reads the rows into the native incremental decoder (`DecodeState`, model/cache.py) and returns
it as `CoconutBLTCache`; `generate()` hands that back, and each later forward feeds it only the
new ids: one local-model position per id, one latent position per closed patch, the same ids
as a full recompute. Left padding (an `attention_mask` row starting with zeros) is taken off:
each row is read from its first id, exactly as if it were alone.
"""

from __future__ import annotations

import torch
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from coconutblt.model.cache import DecodeState
from coconutblt.model.config import ModelConfig
from coconutblt.model.hybrid import HybridTransformer
from .configuration_coconutblt import CoconutBLTConfig

# the name of a causal LM's cache, in forward's arguments and outputs: transformers 5 says
# `cache`, transformers 4 `past_key_values`
CACHE_NAME = (
    "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
)


def left_padding(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """attention_mask (B, T) -> (B,) the number of zeros before each row's first id (None
    without a mask). A row's ones must be one run: padding only before and after it."""
    if attention_mask is None:
        return None
    m = attention_mask.bool()
    runs = m[:, 0].long() + (m[:, 1:] & ~m[:, :-1]).sum(1)  # (B,) runs of ones in each row
    if bool((runs != 1).any()):
        raise ValueError(
            "CoconutBLTForCausalLM: every attention_mask row must be one run of ones "
            "(padding on the left or right only)"
        )
    return (~m).long().cumprod(1).sum(1)


class CoconutBLTCache:
    """The native `DecodeState` as the cache `generate()` passes back to `forward`.

    `seen` counts the columns of `input_ids` read so far, padding included (the new ids are
    the columns after it); `lengths[b]` counts the ids row b has read, its left padding not.
    """

    is_compileable = False
    is_croppable = False  # a decoding state cannot be rolled back: no assisted decoding
    is_linear = (False,)  # generate() trims a passed-in cache's prompt by get_seq_length()

    def __init__(self, model: HybridTransformer) -> None:
        self.state = DecodeState(model)
        self.seen = 0
        self.lengths: list[int] = []

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        """Beam search: row i continues row beam_idx[i] from now on."""
        rows = beam_idx.tolist()
        self.state.keep(rows)
        self.lengths = [self.lengths[r] for r in rows]


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
    _is_stateful = True  # the cache cannot be cropped: generate() refuses assisted decoding

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
        return False  # forward builds its own cache (CoconutBLTCache), never a DynamicCache

    def prepare_inputs_for_generation(
        self, input_ids, attention_mask=None, use_cache=None, logits_to_keep=None, **kwargs
    ):
        # the whole sequence without a cache; with one, the ids it has not read
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": use_cache}
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is not None:
            inputs["input_ids"] = input_ids[:, cache.seen :]
            inputs[CACHE_NAME] = cache
        if logits_to_keep is not None:
            inputs["logits_to_keep"] = logits_to_keep
        return inputs

    def forward(
        self,
        input_ids,
        attention_mask=None,
        labels=None,
        use_cache=None,
        logits_to_keep=0,
        **kwargs,
    ):
        """input_ids (B, T) byte-vocabulary ids -> logits (B, T, V); row t predicts id t+1.

        labels (B, T) as in every Hugging Face causal LM (the model shifts them; -100 = no loss;
        a left-padded row's first id is never a target). attention_mask (B, T) may pad on the
        left (each row is read from its first id, as alone) or on the right (the model is
        causal: trailing ids change nothing before them). `use_cache=True` also returns a
        `CoconutBLTCache` of what was read; given one (`cache`, or `past_key_values`),
        input_ids holds only the new ids. logits_to_keep > 0: only the last that many positions.
        """
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        pads = left_padding(attention_mask)
        loss = None
        if cache is not None:
            if labels is not None:
                raise ValueError(
                    "CoconutBLTForCausalLM: no loss with a cache; pass the whole sequence"
                )
            logits = self._read_new(cache, input_ids, attention_mask)
        elif use_cache:
            cache = CoconutBLTCache(self.model)
            logits = self._read_prompts(cache, input_ids, attention_mask, pads)
            if logits_to_keep != 1 or labels is not None:  # every position: the full forward
                logits, loss = self._full_forward(input_ids, pads, labels)
        else:
            logits, loss = self._full_forward(input_ids, pads, labels)
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        result = CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_NAME: cache})
        return result if kwargs.get("return_dict", True) is not False else result.to_tuple()

    def _full_forward(self, input_ids, pads, labels):
        """The native full forward -> logits (B, T, V), loss. Left-padded rows are rotated to
        start at column 0 (their padding moves to the end) and their logits rotated back."""
        if pads is None or not bool(pads.any()):
            out = self.model(input_ids, labels=labels)
            return out.logits, out.loss
        T = input_ids.shape[1]
        cols = torch.arange(T, device=input_ids.device)
        index = (cols + pads[:, None]) % T  # (B, T): column t of a row reads column t + pads
        out = self.model(
            input_ids.gather(1, index), labels=None if labels is None else labels.gather(1, index)
        )
        back = ((cols - pads[:, None]) % T)[..., None].expand(-1, -1, out.logits.shape[-1])
        return out.logits.gather(1, back), out.loss

    def _read_prompts(self, cache, input_ids, attention_mask, pads):
        """Read every row, its left padding dropped, into `cache` -> next-id logits (B, 1, V)."""
        B, T = input_ids.shape
        starts = [0] * B if pads is None else pads.tolist()
        prompts = [input_ids[b, s:].tolist() for b, s in enumerate(starts)]
        real = input_ids if attention_mask is None else input_ids[attention_mask.bool()]
        self._check_ids(real, max(len(p) for p in prompts))
        cache.seen, cache.lengths = T, [len(p) for p in prompts]
        return cache.state.prefill(prompts)[:, None]

    def _read_new(self, cache, input_ids, attention_mask):
        """Feed the new ids (B, n) to `cache`, a column at a time -> their logits (B, n, V)."""
        n = input_ids.shape[1]
        if n == 0:
            raise ValueError("CoconutBLTForCausalLM: the cache has read every id already")
        if attention_mask is not None and not bool(attention_mask[:, -n:].bool().all()):
            raise ValueError("CoconutBLTForCausalLM: with a cache, new ids cannot be padding")
        self._check_ids(input_ids, max(cache.lengths) + n)
        logits = [cache.state.step(input_ids[:, j]) for j in range(n)]  # n x (B, V)
        cache.seen += n
        cache.lengths = [length + n for length in cache.lengths]
        return torch.stack(logits, dim=1)

    def _check_ids(self, ids, longest):
        """The native forward's input checks, for ids read through the cache."""
        cfg = self.model.config
        if longest > cfg.max_seq_len:
            raise ValueError(
                f"sequence of {longest} bytes is longer than max_seq_len={cfg.max_seq_len}"
            )
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= cfg.vocab_size):
            raise ValueError(
                f"input ids must be in the vocabulary [0, {cfg.vocab_size}); bytes are 0..255"
            )
'''


def build_modeling_source() -> str:
    """The text of modeling_coconutblt.py, from the installed package's model sources."""
    import coconutblt

    sections = [(m, *module_source(m), m.replace(".", "/") + ".py") for m in model_sources()]
    wrapper = "coconutblt/export/remote_code.py: WRAPPER_SOURCE"
    sections.append(
        ("coconutblt.export.remote_code.WRAPPER_SOURCE", WRAPPER_SOURCE, wrapper, wrapper)
    )
    preamble = (
        '"""coconutblt hybrid byte model, as Hugging Face remote code.\n\n'
        f"Generated by `coconutblt export-hf` (coconutblt {coconutblt.__version__}) from the package's\n"
        "own model sources, flattened in dependency order; the section headers name the files.\n"
        'Do not edit: re-export instead.\n"""\n\n'
    )
    source = preamble + flatten_sources(sections, siblings=(CONFIGURATION_FILE[:-3],))
    compile(source, MODELING_FILE, "exec")
    return source
