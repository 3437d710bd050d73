"""Atomic file writes: a crash or a full disk never leaves a half-written checkpoint, export,
plot or report in place of the previous one."""

from __future__ import annotations

import os
import shutil
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


def atomic_write_dir(
    out_dir: str | Path, write: Callable[[Path], None], keep: tuple[str, ...] = ()
) -> Path:
    """Call write(tmp_dir), then move tmp_dir to out_dir, replacing an old out_dir.

    A crash while writing leaves the previous checkpoint intact (DESIGN §10: no partial file
    replaces a good one); the temp folder sits beside out_dir so the rename stays on one disk.
    The folder gets the permissions a plain `mkdir` would (0777 less the umask; a bare
    `mkdtemp` leaves 0700), as `atomic_write` does for files.
    Entries of the old folder named in `keep` (a tracker's log folder a running writer holds
    open) are moved into the new one just before the swap: renames keep open files valid.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o777 & ~_umask())
    moved: list[str] = []
    old = None
    try:
        write(tmp)
        for name in keep:
            if (out / name).exists() and not (tmp / name).exists():
                os.replace(out / name, tmp / name)
                moved.append(name)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            old.rmdir()
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        # the swap did not happen: the kept entries go back to the previous folder
        back = out if out.exists() else old
        for name in moved if back is not None and back.exists() else ():
            os.replace(tmp / name, back / name)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
