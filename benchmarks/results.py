"""Write one benchmark's section of benchmarks/RESULTS.md, stamped with machine and commit.

Each benchmark owns the text between `<!-- begin NAME -->` and `<!-- end NAME -->`; rerunning
it replaces only its own section. A file lock keeps two benchmarks from clobbering each other.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import platform
import subprocess
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = "# Benchmark results\n\nEach section is written by the script it names; rerun it to refresh that section.\n"


def machine() -> str:
    """One line: CPU/GPU, cores, torch version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads){gpu}"


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=RESULTS.parent,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=RESULTS.parent,
        ).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_section(name: str, title: str, body: str, command: str) -> None:
    """Replace (or append) section `name` of RESULTS.md with `body` under `title`."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"<!-- begin {name} -->\n## {title}\n\n"
        f"Command: `{command}`  \nMachine: {machine()}  \nCommit: {commit()}, {stamp}\n\n{body.rstrip()}\n"
        f"<!-- end {name} -->\n"
    )
    RESULTS.touch(exist_ok=True)
    with open(RESULTS, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        current = f.read() or HEADER
        begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->\n"
        if begin in current and end in current:
            head, rest = current.split(begin, 1)
            tail = rest.split(end, 1)[1]
            current = head + text + tail
        else:
            current = current.rstrip("\n") + "\n\n" + text
        f.seek(0)
        f.write(current)
        f.truncate()
