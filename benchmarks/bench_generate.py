"""Cached vs recomputed generation: bytes/s and peak memory at 128, 1024 and 4096 bytes of context.

Question: how much faster is `generate(..., use_cache=True)` (prefill once, then one position
per byte, a latent step only when a patch closes) than rerunning the whole forward for every
byte, and does its cost per byte stay flat as the context grows?

Models: the `tiny` and `small` presets (configs/*.yaml) with random weights (speed does not
depend on training) and max_seq_len raised to fit 4096 bytes of prompt, and `small-w512`:
`small` with a 512-byte local attention window (the per-byte cost of full byte attention grows
with the context; a window bounds it). Prompts are the first bytes of the Python standard
library's sources. Greedy decoding, EOS ignored.

Cached: `--new` bytes per prompt (best of three runs); "decode" counts the steps after the
prefill, "total" includes it. Recomputed: every byte is one full forward over the whole
sequence, so it generates fewer bytes (`RECOMPUTE_BYTES`, fewer at longer contexts to keep the
run short) and its bytes/s is the mean over them. Each measurement runs in a fresh process.
Peak memory: on CPU the rise of the process's peak RSS (VmHWM, reset before the run) over the
RSS before it; on GPU `torch.cuda.max_memory_allocated` minus the memory allocated before it.

Run:  .venv/bin/python benchmarks/bench_generate.py            (~3-5 min on 2 shared CPU cores)
      .venv/bin/python benchmarks/bench_generate.py --quick    (smoke run, writes nothing)
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from benchmarks.results import write_section  # noqa: E402
from coconutblt.data.corpora import read_corpus  # noqa: E402
from coconutblt.inference.generate import generate  # noqa: E402
from coconutblt.model import HybridTransformer  # noqa: E402
from coconutblt.model.config import replace  # noqa: E402
from coconutblt.train.config import load_run_config  # noqa: E402

CONTEXTS = (128, 1024, 4096)
RECOMPUTE_BYTES = {"tiny": {128: 32, 1024: 12, 4096: 4}, "small": {128: 12, 1024: 6, 4096: 2}}
RECOMPUTE_BYTES["small-w512"] = RECOMPUTE_BYTES["small"]


class PeakMemory:
    """Peak memory of the code inside `with`, in MiB, above what was in use at its start."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.mib = device, 0.0

    @staticmethod
    def _status(field: str) -> int:
        text = Path("/proc/self/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+)", text).group(1)) * 1024

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            self.base = self._status("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = self._status("VmHWM")
        self.mib = (peak - self.base) / 2**20


def build(preset: str, device: torch.device) -> HybridTransformer:
    """`tiny`, `small`, or `small-w512`: the preset with local_window=512 (byte attention over
    the last 512 bytes only, as BLT's local models)."""
    name, _, window = preset.partition("-w")
    cfg = load_run_config(str(ROOT / "configs" / f"{name}.yaml")).model
    cfg = replace(cfg, max_seq_len=max(CONTEXTS) + 512, local_window=int(window or 0))
    torch.manual_seed(0)
    return HybridTransformer(cfg).to(device).eval()


def measure(
    preset: str, ctx: int, n: int, use_cache: bool, repeats: int, threads: int, device: str
):
    """One measurement in a fresh process (so peak memory is not hidden by memory an earlier
    run left in the allocator): build, warm up, then the best time of `repeats` runs and the
    peak memory of the first."""
    torch.set_num_threads(threads)
    device = torch.device(device)
    model = build(preset, device)
    text = list(read_corpus(None, ctx + 1))
    generate(model, [text[:64]], 8, eos_id=None)  # warm-up
    best, peak = None, 0.0
    for i in range(repeats):
        with PeakMemory(device) as mem:
            out = generate(model, [text[:ctx]], n, eos_id=None, use_cache=use_cache)
        peak = mem.mib if i == 0 else peak
        if best is None or out.prefill_s + out.decode_s < best.prefill_s + best.decode_s:
            best = out
    return dict(
        params=model.num_params(),
        prefill_s=best.prefill_s,
        decode_bps=best.decode_bytes_per_s,
        total_bps=best.bytes_per_s,
        peak_mib=peak,
    )


def in_child(*args):
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(measure, *args).result()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["tiny", "small", "small-w512"])
    p.add_argument("--new", type=int, default=128, help="bytes generated by the cached path")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadiest)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="small smoke run; RESULTS.md untouched")
    args = p.parse_args()
    torch.set_num_threads(args.threads)  # as in the measuring processes (RESULTS.md names it)
    contexts = (128, 1024) if args.quick else CONTEXTS
    new = 16 if args.quick else args.new

    rows = []
    header = (
        "| preset | params | context | cached prefill s | cached decode B/s | cached ms/B "
        "| cached total B/s | cached peak MiB | recomputed bytes | recomputed B/s "
        "| recomputed ms/B | recomputed peak MiB | speedup (decode) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    print(header)
    t_start = time.perf_counter()
    for preset in args.presets:
        for ctx in contexts:
            n_slow = 2 if args.quick else RECOMPUTE_BYTES[preset][ctx]
            fast = in_child(preset, ctx, new, True, 3, args.threads, args.device)
            slow = in_child(preset, ctx, n_slow, False, 1, args.threads, args.device)
            fast_bps, slow_bps = fast["decode_bps"], slow["total_bps"]
            row = (
                f"| {preset} | {fast['params'] / 1e6:.1f}M | {ctx} | {fast['prefill_s']:.3f} "
                f"| {fast_bps:.1f} | {1e3 / fast_bps:.2f} | {fast['total_bps']:.1f} "
                f"| {fast['peak_mib']:.0f} | {n_slow} | {slow_bps:.2f} | {1e3 / slow_bps:.1f} "
                f"| {slow['peak_mib']:.0f} | {fast_bps / slow_bps:.0f}x |"
            )
            rows.append(row)
            print(row, flush=True)
    elapsed = time.perf_counter() - t_start
    print(f"({elapsed:.0f} s)")
    if args.quick:
        return
    body = (
        f"Random-weight presets, greedy, prompts = first bytes of the Python stdlib sources, "
        f"{args.threads} torch thread(s) on {args.device}; each measurement in a fresh process. Cached: {new} new bytes, best of 3 runs; "
        "decode B/s = bytes after the first / time after the prefill. Recomputed: every byte is "
        "a full forward over the whole sequence, so only the listed number of bytes is "
        "generated (fewer at 4096 to keep the run short). Speedup = cached decode B/s / "
        "recomputed B/s. Peak MiB: rise of peak RSS (CPU) or of max_memory_allocated (GPU) "
        f"during the first run, over what the loaded, warmed-up model held. Whole benchmark: {elapsed:.0f} s.\n\n"
        + header
        + "\n"
        + "\n".join(rows)
    )
    write_section(
        "generate",
        "Generation: cached vs recomputed (bench_generate.py)",
        body,
        "python benchmarks/bench_generate.py",
    )
    print("wrote benchmarks/RESULTS.md (section generate)")


if __name__ == "__main__":
    main()
