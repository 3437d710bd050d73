"""Tiny random GPT-2 / Llama base models with a BPE tokenizer trained on the task's own text.

Why: `hf train` and `hf eval` need a local Hugging Face model folder, and a smoke run (or a
test, or a torchrun check) should not need a download or minutes of CPU. `hf tiny-base`
writes such a folder in a second: a byte-level BPE tokenizer (GPT-2 style, `<|endoftext|>` as
EOS) trained on the questions and answers of the reasoning data, and a 2-layer model with
random weights built from a config. It learns the answer format within a few epochs; it does
not learn arithmetic.

transformers and tokenizers are imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path

import torch

from coconutblt.errors import UserError
from coconutblt.hf.data import check_positive, load_examples_file
from coconutblt.runtime.files import atomic_write_dir

EOS = "<|endoftext|>"
ARCHS = ("gpt2", "llama")
MIN_VOCAB = 257  # the 256 byte symbols and EOS

TOKENIZER_TEXTS = [
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n<<48+24=72>>\n### 72",
    "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute. How much did she earn?\n### 10",
    "Out of 600 employees, 30% got promoted.\n<<600*30/100=180>>\n### 360",
]


def tiny_tokenizer(texts=TOKENIZER_TEXTS, vocab_size: int = 300):
    """A byte-level BPE tokenizer trained here, GPT-2 style, with <|endoftext|> as EOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts) * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS)


def tiny_gpt2(
    vocab_size: int,
    eos_id: int,
    seed: int = 0,
    width: int = 32,
    positions: int = 512,
    attn_implementation: str | None = None,
):
    """A 2-layer GPT-2 with random weights and no dropout (so runs repeat exactly);
    `attn_implementation` ("eager", "sdpa") None = transformers' default."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab_size,
        n_embd=width,
        n_layer=2,
        n_head=2,
        n_positions=positions,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
    )
    if attn_implementation is not None:
        cfg._attn_implementation = attn_implementation
    return GPT2LMHeadModel(cfg)


def tiny_llama(vocab_size: int, eos_id: int, seed: int = 0, width: int = 32, positions: int = 512):
    """A 2-layer Llama (grouped-query attention, untied head) with random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=positions,
        tie_word_embeddings=False,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    return LlamaForCausalLM(cfg)


BUILDERS = {"gpt2": tiny_gpt2, "llama": tiny_llama}


def example_texts(examples) -> list[str]:
    """Each example as training shows it at stage 0: question, steps, `### answer`."""
    from coconutblt.data.stages import format_text

    return ["".join(format_text(ex, 0, 0, markers=False)) for ex in examples]


def build_tiny_base(
    *,
    data: str,
    out: str,
    arch: str = "gpt2",
    vocab_size: int = 400,
    max_texts: int | None = None,
    seed: int = 0,
    width: int = 64,
    positions: int = 1024,
    print_fn=print,
) -> dict:
    """Write a tiny random base model folder for `hf train --base-model`; returns a summary.

    The folder (model + tokenizer, `save_pretrained`) is written to a temporary folder and
    renamed, so an existing `out` is replaced whole or not at all.
    """
    if arch not in BUILDERS:
        raise UserError(f"unknown --arch {arch!r}; use one of {', '.join(ARCHS)}")
    if vocab_size < MIN_VOCAB:
        raise UserError(
            f"--vocab-size must be at least {MIN_VOCAB} (256 bytes + EOS), got {vocab_size}"
        )
    check_positive("--max-texts", max_texts)
    examples = load_examples_file(data, max_texts)
    texts = example_texts(examples)
    tok = tiny_tokenizer(texts, vocab_size=vocab_size)
    longest = max(len(tok.encode(t)) for t in texts)
    # room for the longest example plus thoughts and a generous generation budget
    positions = max(positions, 2 * longest)
    model = BUILDERS[arch](len(tok), tok.eos_token_id, seed=seed, width=width, positions=positions)
    n_params = sum(p.numel() for p in model.parameters())

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    path = atomic_write_dir(out, write)
    print_fn(
        f"hf tiny-base: {arch}, 2 layers x {width}, {n_params / 1e6:.2f}M parameters (random), "
        f"vocab {len(tok)} (BPE on {len(texts)} texts from {data}; longest {longest} tokens, "
        f"{positions} positions)"
    )
    print_fn(f"wrote {path}")
    return {
        "out": path,
        "arch": arch,
        "vocab_size": len(tok),
        "n_params": n_params,
        "n_texts": len(texts),
        "longest": longest,
    }
