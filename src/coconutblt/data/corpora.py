"""Text corpora as bytes: the user's files and folders, or a default every machine has.

The default corpus is the Python standard library's own `.py` sources, found at run time, so
that commands run offline with no arguments.
"""

from __future__ import annotations

import random
import sysconfig
from collections.abc import Iterable
from pathlib import Path

import torch

from coconutblt.errors import UserError

TEXT_SUFFIXES = {
    ".txt",
    ".md",
    ".py",
    ".rst",
    ".json",
    ".jsonl",
    ".csv",
    ".html",
    ".xml",
    ".yaml",
    ".yml",
    ".c",
    ".h",
}


def default_corpus_files(limit: int = 400) -> list[Path]:
    """Python standard library sources (sorted, first `limit`), present wherever Python runs."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if p.is_file())
    if not files:
        raise UserError(
            f"{stdlib}: no Python sources found for the default corpus; pass text files or folders"
        )
    return files[:limit]


def corpus_files(paths: Iterable[str | Path] | None) -> list[Path]:
    """Expand files and directories (recursively, text suffixes only); none -> default corpus."""
    paths = list(paths or [])
    if not paths:
        return default_corpus_files()
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES
            )
            if not found:
                raise UserError(
                    f"{p}: directory holds no text files ({', '.join(sorted(TEXT_SUFFIXES))})"
                )
            files.extend(found)
        else:
            raise UserError(f"{p}: no such file or directory; pass existing text files or folders")
    return files


def read_corpus(paths: Iterable[str | Path] | None = None, max_bytes: int | None = None) -> bytes:
    """All files' bytes joined with a newline, optionally capped at `max_bytes`. Files that
    are all empty are a `UserError`."""
    chunks, total = [], 0
    files = corpus_files(paths)
    for f in files:
        data = f.read_bytes()
        chunks.append(data)
        total += len(data) + 1
        if max_bytes is not None and total >= max_bytes:
            break
    if not any(chunks):
        names = ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
        raise UserError(f"{names}: {len(files)} file(s), all empty; pass files that hold text")
    blob = b"\n".join(chunks)
    return blob[:max_bytes] if max_bytes is not None else blob


def split_corpus(blob: bytes, holdout: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """bytes -> (train, held-out) uint8 tensors; held-out is the tail, never seen in training."""
    data = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    n_val = max(int(len(data) * holdout), 1)
    return data[:-n_val], data[-n_val:]


class ByteWindows:
    """Random fixed-length windows from a byte tensor, reproducible from a seed and a step."""

    def __init__(self, data: torch.Tensor, seq_len: int, batch_size: int, seed: int = 0) -> None:
        if len(data) <= seq_len + 1:
            raise UserError(
                f"corpus of {len(data)} bytes is shorter than seq_len={seq_len}; add text or lower seq_len"
            )
        self.data, self.seq_len, self.batch_size, self.seed = data, seq_len, batch_size, seed

    def batch(self, step: int) -> torch.Tensor:
        """(batch_size, seq_len) int64 ids for training step `step` (same step -> same batch)."""
        rng = random.Random(self.seed * 1_000_003 + step)
        starts = [rng.randrange(0, len(self.data) - self.seq_len) for _ in range(self.batch_size)]
        return torch.stack([self.data[s : s + self.seq_len] for s in starts]).long()

    def sequential(self, max_batches: int | None = None):
        """Non-overlapping windows in order (for held-out evaluation)."""
        n = (len(self.data) - 1) // self.seq_len
        windows = self.data[: n * self.seq_len].view(n, self.seq_len).long()
        for i, start in enumerate(range(0, n, self.batch_size)):
            if max_batches is not None and i >= max_batches:
                break
            yield windows[start : start + self.batch_size]
