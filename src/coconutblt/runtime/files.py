"""Atomic file writes: a crash or a full disk never leaves a half-written checkpoint, export,
plot or report in place of the previous one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from coconutblt.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, content: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write `content` (bytes, UTF-8 text, or a function that writes to a binary file) to a
    temp file in `path`'s folder, fsync, then rename it over `path`.

    The file gets the permissions a plain `open(path, "w")` would (0666 less the umask; a bare
    `mkstemp` leaves 0600, unreadable to the rest of a team). A failed write (disk full, no
    permission) is a `UserError` that names the file and says whether the old one survives.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # no space, no permission, a folder gone: the user's to fix
            before = "the previous file is left as it was" if path.is_file() else "nothing saved"
            raise UserError(
                f"{path}: could not save ({exc.strerror or exc}); {before}; free disk space or "
                "check the folder's permissions"
            ) from None
        raise


def save_torch(obj, path: str | Path) -> Path:
    """`torch.save` through `atomic_write`."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """A matplotlib figure as PNG through `atomic_write`."""
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
