"""The memory plan's arithmetic: exact parameter counts from a config, and the table."""

from __future__ import annotations

import argparse
import json
import re

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from coconutblt.commands.hf import add_hf_parser  # noqa: E402
from coconutblt.hf.memory import (  # noqa: E402
    GIB,
    LLAMA_3_1_8B,
    lora_parameters,
    memory_plan,
    model_shape,
    plan_for_config,
)
from coconutblt.hf.tiny import tiny_gpt2, tiny_llama, tiny_tokenizer  # noqa: E402


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="coconutblt")
    add_hf_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama])
def test_parameter_count_of_a_config_is_the_models(build):
    """The count from the config (built on the meta device) equals sum(p.numel()) of the real
    model, before and after the wrapper adds its 3 rows (1 matrix tied, 2 untied)."""
    from coconutblt.hf.coconut_lm import CoconutForCausalLM

    tok = tiny_tokenizer()
    model = build(len(tok), tok.eos_token_id)
    real = sum(p.numel() for p in model.parameters())
    assert model_shape(model.config, new_tokens=0).n_params == real
    shape = model_shape(model.config)
    wrapped = CoconutForCausalLM(model, tok)
    assert shape.n_params == sum(p.numel() for p in wrapped.parameters())
    assert shape.vocab == wrapped.base_model.get_input_embeddings().weight.shape[0]
    assert shape.n_layers == 2 and shape.hidden == 32
    assert shape.tied == (build is tiny_gpt2) and shape.gated_mlp == (build is tiny_llama)


def test_lora_count_is_peft_trainable_count():
    pytest.importorskip("peft")
    from coconutblt.hf.coconut_lm import CoconutForCausalLM
    from coconutblt.hf.lora import LoraSettings, attach_lora

    for build, targets, token_matrices in ((tiny_llama, None, 2), (tiny_gpt2, None, 1)):
        tok = tiny_tokenizer()
        model = CoconutForCausalLM(build(len(tok), tok.eos_token_id), tok)
        attach_lora(model, LoraSettings(r=4, targets=targets), base_dir=".")
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        count = lora_parameters(model.config, 4, ("q_proj", "v_proj", "c_attn"))
        assert trainable == count + 3 * 32 * token_matrices
    tok = tiny_tokenizer()
    model = CoconutForCausalLM(tiny_llama(len(tok), tok.eos_token_id), tok)
    attach_lora(model, LoraSettings(r=2, targets=("all-linear",)), base_dir=".")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == lora_parameters(model.config, 2, "all-linear") + 3 * 32 * 2


def test_llama_3_1_8b_counts_and_table():
    """The published counts: 8,030,261,248 parameters; PEFT's r=16 q_proj,v_proj adapter on
    it, 6,815,744. bf16 full fine-tuning: 2 bytes of weights, 2 of gradient, 4 of AdamW
    state per parameter; FSDP2 divides them by the processes."""
    from transformers import LlamaConfig

    config = LlamaConfig(**LLAMA_3_1_8B)
    base = model_shape(config, new_tokens=0)
    assert base.n_params == 8_030_261_248
    assert (base.n_layers, base.hidden, base.kv_dim, base.vocab) == (32, 4096, 1024, 128256)
    assert base.largest_unit == 128256 * 4096  # the embedding (and the head): 525M
    assert lora_parameters(config, 16, ("q_proj", "v_proj")) == 6_815_744

    shape = model_shape(config)
    full1, lora1, full8, lora8 = memory_plan(
        shape, dtype_bytes=2, tokens=2048, lora_r=16, lora_params=6_815_744
    )
    n = shape.n_params
    assert (full1.weights, full1.grads, full1.optimizer) == (2 * n, 2 * n, 4 * n)
    assert full8.grads == full1.grads / 8 and full8.optimizer == full1.optimizer / 8
    assert full8.weights == full1.weights / 8 + 2 * 2 * 128259 * 4096
    trainable = 6_815_744 + 3 * 4096 * 2
    assert (lora1.grads, lora1.optimizer) == (4 * trainable, 8 * trainable)
    assert lora1.weights == 2 * n + 4 * 6_815_744
    assert full1.activations_recompute < full1.activations / 3  # recompute: inputs only
    # per token: 32 layers x (6 D + 2 kv + 4 I) bf16 values + 10 bytes per vocabulary entry
    per_token = 32 * (6 * 4096 + 2 * 1024 + 4 * 14336) * 2 + 128259 * 10
    assert full1.activations == 2048 * per_token
    assert round(full1.total / GIB, 2) == 72.53  # the docs' table

    text = plan_for_config(config, dtype="bf16", batch_size=8, seq_len=256, lora_r=16)
    assert "8.03B parameters" in text and "6,815,744 adapter parameters" in text
    assert re.search(r"full, 1 process\s+14\.96\s+14\.96\s+29\.92", text), text


def test_plan_flag_prints_and_trains_nothing(tmp_path, capsys):
    from coconutblt.hf.tiny import build_tiny_base

    data = tmp_path / "toy.jsonl"
    rows = [
        {"question": f"What is {i}+1?", "answer": f"<<{i}+1={i + 1}>>\n#### {i + 1}"}
        for i in range(4)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = tmp_path / "base"
    build_tiny_base(data=str(data), out=str(base), arch="llama", width=32, print_fn=print)
    capsys.readouterr()
    argv = f"hf train --base-model {base} --data {data} --stage 2 --c-thought 2 --batch-size 4 "
    assert run_cli([*argv.split(), "--plan", "--lora-r", "4"]) == 0
    out = capsys.readouterr().out
    assert "memory plan: llama" in out and "5 passes per batch" in out
    assert re.search(r"micro-batch 4 x \d+ tokens", out) and "MiB" in out
    for label in ("full, 1 process", "LoRA r=4, 1 process", "full, FSDP2 x 8"):
        assert label in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "toy.jsonl"]
