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
