"""One run per folder: a lock on the run folder, and no silent overwrite of another run.

`RunLock` holds `OUT/train.lock` (with the holder's pid inside) while a run writes there. The
lock is an advisory `flock`, so the system drops it when the holder exits, however it exits: a
lock file left by a crashed run is taken over. Where `flock` does not exist, a lock file whose
pid is no longer running is taken over instead.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from coconutblt.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the pid in the file decides
    fcntl = None

LOCK_NAME = "train.lock"
# files a training run writes into its folder
CHECKPOINT_PATTERN = re.compile(r"(last|final|best|stage\d+)\.pt")
RUN_FILES = ("metrics.jsonl", "metrics.png", "config.yaml")
PARTIAL_PATTERN = re.compile(r"\.(last|final|best|stage\d+)\.pt\..+\.tmp")


def run_checkpoints(folder: str | Path) -> list[str]:
    """Names of a training run's checkpoints in `folder` (sorted; none -> [])."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if CHECKPOINT_PATTERN.fullmatch(p.name))


def check_new_run(folder: str | Path, overwrite: bool) -> None:
    """A new run (not `--resume`) may not replace another run's checkpoints unless `overwrite`."""
    held = run_checkpoints(folder)
    if held and not overwrite:
        raise UserError(
            f"{folder}: folder holds another run ({', '.join(held)}); pass --resume to continue "
            "it, --overwrite to replace it, or a new --out"
        )


def clear_run(folder: str | Path) -> list[str]:
    """Remove an earlier run's checkpoints, metrics and config from `folder` (what `--overwrite`
    replaces), so none of its files are left beside the new run's. Returns the names removed."""
    folder = Path(folder)
    names = [*run_checkpoints(folder), *(n for n in RUN_FILES if (folder / n).is_file())]
    for name in names:
        (folder / name).unlink()
    return names


def remove_partial_writes(folder: str | Path) -> list[str]:
    """Remove the temp files of checkpoint writes a killed run left half-done (`runtime.files.atomic_write`
    writes `.NAME.XXXX.tmp` beside NAME, then renames it). Call with the folder's lock held."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = [p.name for p in folder.iterdir() if PARTIAL_PATTERN.fullmatch(p.name)]
    for name in names:
        (folder / name).unlink(missing_ok=True)
    return names


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, as another user
        return True
    return True


class RunLock:
    """`OUT/train.lock` while a run writes into OUT. `acquire` refuses a folder another live run
    holds, naming its pid; `release` (idempotent) removes the lock file, and the folder too when
    `acquire` created it and nothing else was written."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._created_folder = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        if self.folder.exists() and not self.folder.is_dir():
            raise UserError(f"--out {self.folder}: is a file; give a folder for the run")
        self._created_folder = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._fd = self._lock_flock() if fcntl is not None else self._lock_pid()
        except BaseException:
            self._remove_created_folder()
            raise
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def _refuse(self, pid: str) -> UserError:
        return UserError(
            f"{self.folder}: another run (pid {pid or '?'}) is training into this folder "
            f"({self.path} is locked); wait for it to end or pick another --out"
        )

    def _lock_flock(self) -> int:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pid = os.read(fd, 32).decode(errors="replace").strip()
                os.close(fd)
                raise self._refuse(pid) from None
            try:  # the holder may have removed the file between our open and flock: retry
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def _lock_pid(self) -> int:  # pragma: no cover - only where fcntl is missing
        while True:
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pid = self.path.read_text(errors="replace").strip()
                if pid.isdigit() and _pid_running(int(pid)):
                    raise self._refuse(pid) from None
                self.path.unlink(missing_ok=True)  # stale: its run is gone

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink(missing_ok=True)  # while still holding it (see `_lock_flock`)
        finally:
            os.close(fd)
        self._remove_created_folder()

    def _remove_created_folder(self) -> None:
        if self._created_folder:
            try:
                self.folder.rmdir()  # only if empty: nothing of the run was written
            except OSError:
                pass
        self._created_folder = False
