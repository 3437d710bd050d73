"""The export's byte tokenizer: the files `AutoTokenizer.from_pretrained(folder)` reads.

The model reads bytes, so the tokenizer is the identity on them: a `tokenizers` BPE with no
merges over the 256 byte symbols, behind the `ByteLevel` pre-tokenizer (no regex split, no
prefix space) and decoder. Encoding UTF-8 text gives exactly its bytes as ids 0..255; decoding
gives the text back (invalid UTF-8 replaced, as `bytes.decode(errors="replace")` does). The
specials (vocab.py's `SPECIAL_NAMES`) keep their ids, 256..262, and their `<|name|>` text
encodes to its id, as in `parse_prompt`. No id is added around a text: native generation
reads a prompt's bytes as they are.

The three files are plain JSON written here, so writing an export needs neither transformers
nor tokenizers.
"""

from __future__ import annotations

import json

from coconutblt.vocab import BOS_ID, EOS_ID, NUM_BYTES, PAD_ID, SPECIAL_NAMES

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def byte_symbols() -> list[str]:
    """Byte b -> the printable character the `ByteLevel` pre-tokenizer turns it into (GPT-2's
    `bytes_to_unicode`): printable Latin-1 bytes stand for themselves, the others for
    U+0100 onwards, in byte order."""
    printable = {*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    symbols, shifted = [], 0
    for b in range(NUM_BYTES):
        if b in printable:
            symbols.append(chr(b))
        else:
            symbols.append(chr(NUM_BYTES + shifted))
            shifted += 1
    return symbols


def tokenizer_files(max_seq_len: int) -> dict[str, str]:
    """File name -> JSON text of tokenizer.json, tokenizer_config.json, special_tokens_map.json."""
    vocab = {s: b for b, s in enumerate(byte_symbols())}
    vocab.update({name: i for i, name in SPECIAL_NAMES.items()})
    byte_level = {"add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": name,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, name in sorted(SPECIAL_NAMES.items())
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", **byte_level},
        "post_processor": None,  # nothing added around a text
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [],
        },
    }
    special = {
        "bos_token": SPECIAL_NAMES[BOS_ID],
        "eos_token": SPECIAL_NAMES[EOS_ID],
        "pad_token": SPECIAL_NAMES[PAD_ID],
        "additional_special_tokens": [
            name for i, name in sorted(SPECIAL_NAMES.items()) if i not in (BOS_ID, EOS_ID, PAD_ID)
        ],
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,  # bytes round-trip: no space clean-up
        "model_max_length": max_seq_len,
        "padding_side": "left",  # generation pads on the left; the model handles it
    }
    texts = [tokenizer, config, special]
    return {
        name: json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
        for name, obj in zip(TOKENIZER_FILES, texts, strict=True)
    }
