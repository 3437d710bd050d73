"""The byte vocabulary: ids 0..255 are raw bytes, special ids follow.

No tokenizer: any byte string is valid input and round-trips exactly through
`encode`/`decode_bytes`. Special ids are rendered as `<|name|>` only by `decode_text`, for
display.
"""

from __future__ import annotations

from collections.abc import Iterable

NUM_BYTES = 256
PAD_ID = 256
BOS_ID = 257
EOS_ID = 258
START_LATENT_ID = 259
LATENT_ID = 260
END_LATENT_ID = 261
PAUSE_ID = 262
VOCAB_SIZE = 263

SPECIAL_NAMES = {
    PAD_ID: "<|pad|>",
    BOS_ID: "<|bos|>",
    EOS_ID: "<|eos|>",
    START_LATENT_ID: "<|start-latent|>",
    LATENT_ID: "<|latent|>",
    END_LATENT_ID: "<|end-latent|>",
    PAUSE_ID: "<|pause|>",
}
SPECIAL_IDS = frozenset(SPECIAL_NAMES)


def encode(text: str | bytes, bos: bool = False, eos: bool = False) -> list[int]:
    """Text (UTF-8) or raw bytes -> ids, optionally framed by BOS/EOS."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return ([BOS_ID] if bos else []) + list(data) + ([EOS_ID] if eos else [])


def decode_bytes(ids: Iterable[int]) -> bytes:
    """Ids -> the raw bytes among them; special ids are dropped."""
    return bytes(int(i) for i in ids if 0 <= int(i) < NUM_BYTES)


def decode_text(ids: Iterable[int], show_special: bool = True) -> str:
    """Ids -> readable text (invalid UTF-8 replaced); specials as `<|name|>` when asked."""
    parts: list[str] = []
    run: list[int] = []
    for i in ids:
        i = int(i)
        if 0 <= i < NUM_BYTES:
            run.append(i)
            continue
        parts.append(bytes(run).decode("utf-8", errors="replace"))
        run = []
        if show_special:
            parts.append(SPECIAL_NAMES.get(i, f"<|{i}|>"))
    parts.append(bytes(run).decode("utf-8", errors="replace"))
    return "".join(parts)


def is_special(i: int) -> bool:
    return int(i) >= NUM_BYTES
