"""Decode speed: coconutblt's cached generation against the transformers BLT peer, the memory
bandwidth bound, batch 1 vs 16, where a step's time goes; and cached vs recomputed generation
at 128, 1024 and 4096 bytes of context.

Part 1, decode speed (on CPU, one process, 1 torch thread, arms interleaved, medians of
`--rounds`):
- ours: the `small` preset (configs/small.yaml, random weights) with fixed 4-byte patches
  (trained-like patch sizes whatever bytes a random model emits; the weights are the same as
  the preset's space patcher), cached `generate`, greedy over byte ids, at batch 1 and 16,
  each row a 256-byte prompt (consecutive slices of the Python stdlib sources) and 64 new bytes;
- the peer: transformers' `BltForCausalLM` built from a `BltConfig` matched to `small`
  (decode_speed.peer_config), on the same prompt and the same fixed 4-byte patches. Its cached
  path is tried once; where it raises (or disagrees), every byte is a full forward over the
  whole sequence. Also transformers' own `generate(use_cache=False)`, which without an entropy
  patcher makes every byte a patch;
- the bound: single-thread read bandwidth (the sum of a 512 MiB tensor, measured in every
  round) over the weight bytes one decoded byte must read: byte-level weights every byte,
  latent-transformer (and pooling) weights once per closed patch, at the bytes per patch
  counted in the run (latent positions run during decoding, by a forward hook);
- the demo's latency: ms per example of CoT and of Coconut at its last stage on the model of
  `coconutblt demo` (configs/recipes/chain.yaml, random weights), batches of 64, each method
  generating its own target length;
- a torch.profiler and a cProfile run of 64 cached steps at batch 1: top 10 by self time.

Part 2, cached vs recomputed (the `tiny` and `small` presets, and `small-w512`: `small` with a
512-byte local attention window; max_seq_len raised to fit 4096 bytes of prompt): cached,
`--new` bytes per prompt, median of three runs; "decode" counts the steps after the prefill,
"total" includes it. Recomputed: every byte is one full forward over the whole sequence, so it
generates fewer bytes (`RECOMPUTE_BYTES`) and its bytes/s is the mean over them. Each
measurement runs in a fresh process. Peak memory: on CPU the rise of the process's peak RSS
(VmHWM, reset before the run) over the RSS before it; on GPU `torch.cuda.max_memory_allocated`
minus the memory allocated before it.

Run:  .venv/bin/python benchmarks/bench_generate.py            (~5-6 min on 2 shared CPU cores)
      .venv/bin/python benchmarks/bench_generate.py --quick    (smoke run, writes nothing)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from benchmarks import decode_speed as ds  # noqa: E402
from benchmarks.results import write_section  # noqa: E402
from coconutblt.data.corpora import read_corpus  # noqa: E402
from coconutblt.inference.generate import generate  # noqa: E402
from coconutblt.model import HybridTransformer  # noqa: E402
from coconutblt.model.config import replace  # noqa: E402
from coconutblt.model.params import exact_counts  # noqa: E402
from coconutblt.train.config import load_run_config  # noqa: E402
from coconutblt.vocab import NUM_BYTES, VOCAB_SIZE  # noqa: E402

CONTEXTS = (128, 1024, 4096)
RECOMPUTE_BYTES = {"tiny": {128: 32, 1024: 12, 4096: 4}, "small": {128: 12, 1024: 6, 4096: 2}}
RECOMPUTE_BYTES["small-w512"] = RECOMPUTE_BYTES["small"]
PROMPT, NEW, BATCH, PATCH = 256, 64, 16, 4  # part 1: prompt bytes, new bytes, batch, patch size
SPECIALS = range(NUM_BYTES, VOCAB_SIZE)  # part 1 emits bytes only (a special id is a patch)
HF_NEW = 16  # bytes generated per round by transformers' generate (every byte a patch: slow)
TARGETS = dict(peer=50.0, bound=0.5, batch=8.0)  # project issue 12


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
    run left in the allocator): build, warm up, then the median time of `repeats` runs and
    the peak memory of the first."""
    torch.set_num_threads(threads)
    device = torch.device(device)
    model = build(preset, device)
    text = list(read_corpus(None, ctx + 1))
    generate(model, [text[:64]], 8, eos_id=None)  # warm-up
    runs, peak = [], 0.0
    for i in range(repeats):
        with PeakMemory(device) as mem:
            runs.append(generate(model, [text[:ctx]], n, eos_id=None, use_cache=use_cache))
        peak = mem.mib if i == 0 else peak
    med = statistics.median
    return dict(
        params=model.num_params(),
        prefill_s=med(r.prefill_s for r in runs),
        decode_bps=med(r.decode_bytes_per_s for r in runs),
        total_bps=med(r.bytes_per_s for r in runs),
        peak_mib=peak,
    )


def in_child(*args):
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(measure, *args).result()


# ------------------------------------------------------------------ part 1: decode speed


class LatentCounter:
    """Counts latent positions (rows x positions) run by `model.latent`, via a forward hook."""

    def __init__(self, model: HybridTransformer) -> None:
        self.n = 0
        model.latent.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        self.n += inputs[0].shape[0] * inputs[0].shape[1]

    def decode_patches(self, model, prompts: list[list[int]], new: int) -> int:
        """Latent positions run after the prefill while generating `new` bytes per row."""
        n0 = self.n
        generate(model, prompts, 1, eos_id=None, suppress_ids=SPECIALS)  # the prefill alone
        n1 = self.n
        generate(model, prompts, new, eos_id=None, suppress_ids=SPECIALS)
        return (self.n - n1) - (n1 - n0)


def decode_speed(
    rounds: int, new: int, hf_new: int, bw_mib: int, profile_n: int, demo_n: int = 300
) -> dict:
    """Part 1: every arm once per round, the order rotated each round; medians over rounds."""
    cfg = load_run_config(str(ROOT / "configs" / "small.yaml")).model
    cfg = replace(cfg, patcher="fixed", patch_size=PATCH)
    torch.manual_seed(0)
    model = HybridTransformer(cfg).eval()
    peer = ds.build_peer(cfg)
    text = list(read_corpus(None, BATCH * PROMPT + 1))
    prompts = [text[i * PROMPT : (i + 1) * PROMPT] for i in range(BATCH)]
    p0 = prompts[0]

    cache_note = ds.peer_cache_check(peer, p0)
    print(f"peer generate(use_cache=True): {cache_note}", flush=True)
    counter = LatentCounter(model)  # also the warm-up of our arms
    patches_b1 = counter.decode_patches(model, [p0], new)
    patches_b16 = counter.decode_patches(model, prompts, new)
    ds.peer_generate(peer, p0, 2, PATCH)  # warm-up
    ds.peer_hf_generate(peer, p0, 2, use_cache=False)
    bw = ds.Bandwidth(bw_mib)
    demo = ds.demo_setup(ROOT, n=demo_n)
    for name in demo["arms"]:
        ds.demo_latency(demo, name)  # warm-up

    def ours(batch: int):
        out = generate(model, prompts[:batch], new, eos_id=None, suppress_ids=SPECIALS)
        return dict(decode=out.decode_bytes_per_s, total=out.bytes_per_s, ids=out.tokens[0])

    def peer_arm():
        ids, s = ds.peer_generate(peer, p0, new, PATCH)
        return dict(total=new / s, ids=ids)

    arms = {
        "b1": lambda: ours(1),
        "b16": lambda: ours(BATCH),
        "peer": peer_arm,
        "peer_hf": lambda: dict(total=hf_new / ds.peer_hf_generate(peer, p0, hf_new, False)),
        "bw": lambda: dict(zip(("read", "copy"), bw.measure(3), strict=True)),
        "cot": lambda: dict(ms=ds.demo_latency(demo, "cot")),
        "coconut": lambda: dict(ms=ds.demo_latency(demo, "coconut")),
    }
    results: dict[str, list[dict]] = {k: [] for k in arms}
    names = list(arms)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            results[name].append(arms[name]())
        line = ", ".join(
            f"{k} {v[-1].get('decode', v[-1].get('total', v[-1].get('read', v[-1].get('ms')))):.1f}"
            for k, v in results.items()
        )
        print(f"round {r + 1}/{rounds}: {line}", flush=True)

    def med(arm: str, key: str) -> tuple[float, float, float]:
        values = [x[key] for x in results[arm]]
        return statistics.median(values), min(values), max(values)

    print(f"profiling {profile_n} steps", flush=True)
    profile = ds.profile_steps(model, p0, profile_n)
    return dict(
        cfg=cfg,
        model=model,
        new=new,
        hf_new=hf_new,
        rounds=rounds,
        bw_mib=bw_mib,
        cache_note=cache_note,
        bpp_b1=(new - 1) / max(patches_b1, 1),
        bpp_b16=BATCH * (new - 1) / max(patches_b16, 1),
        b1=med("b1", "decode"),
        b1_total=med("b1", "total"),
        b16=med("b16", "decode"),
        b16_total=med("b16", "total"),
        peer=med("peer", "total"),
        peer_hf=med("peer_hf", "total"),
        read=med("bw", "read"),
        copy=med("bw", "copy"),
        same_ids=results["b1"][0]["ids"] == results["b16"][0]["ids"],
        demo_cot=med("cot", "ms"),
        demo_coconut=med("coconut", "ms"),
        demo_arms={k: (v["new"], v["thoughts"]) for k, v in demo["arms"].items()},
        demo_n=demo["n"],
        demo_model_cfg=demo["model"].config,
        profile=profile,
        ours_counts=exact_counts(cfg),
        peer_counts=ds.peer_counts(peer),
        profile_n=profile_n,
    )


def _met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def decode_speed_text(d: dict) -> str:
    """Part 1 as markdown: how the peer was matched, the speed table, the bound, the targets
    and the profile."""
    cfg, model = d["cfg"], d["model"]
    ours_n, peer_n = d["ours_counts"], d["peer_counts"]
    ours_parts = dict(
        encoder=ours_n["encoder"],
        latent=ours_n["latent"],
        decoder=ours_n["decoder"] + ours_n["heads"],
    )
    total_ours, total_peer = sum(ours_parts.values()), sum(peer_n.values())

    def m(x: float) -> str:
        return f"{x / 1e6:.2f}M"

    b1, b16, peer, peer_hf = d["b1"][0], d["b16"][0], d["peer"][0], d["peer_hf"][0]
    read, copy = d["read"][0], d["copy"][0]
    bpp = d["bpp_b1"]
    split = ds.weight_split(model)
    w_byte = ds.weight_bytes_per_byte(model, bpp)
    size = next(model.parameters()).element_size()
    bound = read * 1e9 / w_byte
    kv = ds.kv_bytes_per_byte(cfg, PROMPT + d["new"] / 2, bpp)
    vs_peer, frac, scale = b1 / peer, b1 / bound, b16 / b1

    def rng(t: tuple[float, float, float]) -> str:
        return f"{t[1]:.1f}-{t[2]:.1f}"

    new = d["new"]
    cot, coco = d["demo_cot"][0], d["demo_coconut"][0]
    dcfg = d["demo_model_cfg"]
    rows = [
        "| arm | batch | bytes/s (median) | min-max | vs peer |",
        "|---|---|---|---|---|",
        f"| coconutblt small, cached, decode ({new - 1} steps after the prefill) | 1 "
        f"| {b1:.1f} | {rng(d['b1'])} | {vs_peer:.1f}x |",
        f"| coconutblt small, cached, total ({new} bytes, prefill included) | 1 "
        f"| {d['b1_total'][0]:.1f} | {rng(d['b1_total'])} | {d['b1_total'][0] / peer:.1f}x |",
        f"| coconutblt small, cached, decode (all rows) | {BATCH} | {b16:.1f} | {rng(d['b16'])} "
        f"| {b16 / peer:.0f}x |",
        f"| coconutblt small, cached, total (all rows, prefill included) | {BATCH} "
        f"| {d['b16_total'][0]:.1f} | {rng(d['b16_total'])} | {d['b16_total'][0] / peer:.0f}x |",
        f"| peer BltForCausalLM, same fixed-4 patches, recomputed ({new} bytes) | 1 "
        f"| {peer:.2f} | {d['peer'][1]:.2f}-{d['peer'][2]:.2f} | 1x |",
        f"| peer, transformers `generate(use_cache=False)`, every byte a patch ({d['hf_new']} "
        f"bytes) | 1 | {peer_hf:.2f} | {d['peer_hf'][1]:.2f}-{d['peer_hf'][2]:.2f} "
        f"| {peer_hf / peer:.2f}x |",
    ]
    bound_rows = [
        "| read GB/s (sum) | copy GB/s (read+write) | bytes/patch (decode) | byte-level weights "
        "| latent weights | weight MB / decoded byte | bound B/s | measured B/s (batch 1) "
        "| % of bound |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {read:.1f} | {copy:.1f} | {bpp:.2f} | {m(split['byte'])} (every byte) "
        f"| {m(split['patch'])} (every patch) | {w_byte / 1e6:.1f} | {bound:.0f} | {b1:.1f} "
        f"| {100 * frac:.0f}% |",
    ]
    prof = d["profile"]
    ops_share = 100 * prof["torch_ops_ms"] / prof["torch_wall_ms"]
    torch_rows = [
        "| aten op | self ms | % of wall | calls |",
        "|---|---|---|---|",
        *[f"| `{k}` | {ms:.1f} | {pct:.1f}% | {n} |" for k, ms, pct, n in prof["torch"]],
    ]
    python_rows = [
        "| function | self ms | % of wall | calls |",
        "|---|---|---|---|",
        *[f"| `{k}` | {ms:.1f} | {pct:.1f}% | {n} |" for k, ms, pct, n in prof["python"]],
    ]
    n_steps = d["profile_n"]
    mm_ms = sum(ms for k, ms, _, _ in prof["torch"] if k in ("aten::mm", "aten::addmm"))
    ms_step = prof["torch_wall_ms"] / n_steps
    bound_ms = 1e3 / bound
    lines = [
        "### Decode speed: the transformers BLT peer, the bandwidth bound, batch 1 vs 16",
        "",
        f"Ours: `small` (configs/small.yaml) with random weights and **fixed 4-byte patches** "
        f"(`patcher: fixed, patch_size: 4`; the same weights as the preset's space patcher, "
        f"which on a random model's output would make patches of whatever the model emits), "
        f"cached `generate`, greedy over the 256 byte ids (special ids, each a patch of its "
        f"own, suppressed; EOS ignored). Prompts: {PROMPT}-byte consecutive slices of "
        f"the Python stdlib sources (batch 1: the first), {new} new bytes per row. Decode B/s "
        f"= steps after the first byte / time after the prefill. Batch-16 row 0 greedy ids "
        f"equal batch 1's: {'yes' if d['same_ids'] else 'NO'}.",
        "",
        f"Peer: `transformers.BltForCausalLM` (transformers {_tf_version()}, sdpa attention, "
        f"float32, random weights) from a `BltConfig` matched to `small`: global transformer "
        f"d_model {cfg.d_model} x {cfg.n_layers} layers x {cfg.n_heads} heads, SwiGLU hidden "
        f"{int(cfg.d_model * cfg.mlp_ratio)} (ours: the same); local encoder "
        f"{cfg.encoder_layers} and decoder {cfg.decoder_layers} layers of width "
        f"{cfg.d_local}, {cfg.local_heads} heads, MLP hidden "
        f"{int(cfg.d_local * cfg.local_mlp_ratio)}; hashed n-grams {list(cfg.ngram_sizes)} "
        f"with {cfg.ngram_buckets} buckets each; cross_attn_k {cfg.cross_attn_k}; full "
        f"causal byte attention (no window, as `small`); vocabulary {cfg.vocab_size}; no "
        f"entropy model (`patch_in_forward=False`): it is given the same fixed 4-byte patches "
        f"after BLT's one-byte first patch. What cannot match: BLT's encoder pools by max + "
        f"cross-attention from patch queries (ours: mean + cross-attention) and its decoder "
        f"cross-attends in every layer to k={cfg.cross_attn_k} slots of each patch (ours: the "
        f"same, plus an input projection); ours adds the continuous-latent modules "
        f"(every {cfg.latent_module_every} latent layers). Parameters, ours / peer: encoder "
        f"(with the n-gram tables) {m(ours_parts['encoder'])} / {m(peer_n['encoder'])}, "
        f"latent {m(ours_parts['latent'])} / {m(peer_n['latent'])}, decoder with byte head "
        f"{m(ours_parts['decoder'])} / {m(peer_n['decoder'])}; **total {m(total_ours)} / "
        f"{m(total_peer)}**. Its cached path, `generate(use_cache=True)`, "
        f"{d['cache_note']}; so the peer recomputes the whole forward for every byte (our own "
        f"greedy loop passing `patch_lengths`; transformers' `generate` cannot pass patches "
        f"that grow with the sequence, and without them BltModel makes every byte a patch, "
        f"the last row).",
        "",
        f"Each round runs every arm once, in an order rotated each round; {d['rounds']} "
        f"rounds, medians (min-max over rounds). 1 torch thread everywhere.",
        "",
        *rows,
        "",
        f"Bandwidth bound at batch 1: read bandwidth (`sum` of a {d['bw_mib']} MiB float32 "
        f"tensor, 1 thread, median of 3 per round, median over rounds) / weight bytes per "
        f"decoded byte = {size} B x (byte-level params + latent params / bytes per patch). "
        f"Byte-level: local encoder blocks, local decoder, byte head, and of the embedding "
        f"tables only the {1 + len(cfg.ngram_sizes)} rows a byte reads; per patch: the latent "
        f"transformer with its continuous-latent modules and the pooling (norm, "
        f"cross-attention, projection) and the local decoder's context inputs (input and slot "
        f"projections, each layer's slot keys and values: decoding computes them when a patch "
        f"closes). Bytes per patch counted in the run: latent positions "
        f"run during decoding (forward hook) over decoded bytes ({bpp:.2f} at batch 1, "
        f"{d['bpp_b16']:.2f} at batch {BATCH}). Not in the bound: K/V cache reads, about "
        f"{kv / 1e6:.1f} MB per byte at the mean context of {PROMPT + new // 2} bytes, and "
        f"the L3 cache (32 MiB here) that can hold the {size * split['byte'] / 2**20:.0f} MiB "
        f"of byte-level weights between steps.",
        "",
        *bound_rows,
        "",
        "Targets (project issue 12):",
        "",
        f"- batch-1 decode >= {TARGETS['peer']:.0f}x the peer: {vs_peer:.1f}x (decode B/s vs "
        f"the peer's recomputed B/s; {d['b1_total'][0] / peer:.1f}x counting our prefill) -> "
        f"{_met(vs_peer >= TARGETS['peer'])}.",
        f"- batch-1 decode >= {100 * TARGETS['bound']:.0f}% of the bandwidth bound: "
        f"{100 * frac:.0f}% ({b1:.1f} of {bound:.0f} B/s; {1e3 / b1:.2f} ms per byte against "
        f"{bound_ms:.2f} ms of weight traffic) -> {_met(frac >= TARGETS['bound'])}.",
        f"- batch {BATCH} >= {TARGETS['batch']:.0f}x batch-1 bytes/s: {scale:.1f}x "
        f"({b16:.1f} vs {b1:.1f} B/s) -> {_met(scale >= TARGETS['batch'])}.",
        f"- the demo's Coconut below CoT in ms per example: {coco:.2f} vs {cot:.2f} ms "
        f"(next paragraph) -> {_met(coco < cot)}.",
        "",
        f"The demo's latency: the model of `coconutblt demo` (configs/recipes/chain.yaml's "
        f"`common` model keys: d_model {dcfg.d_model}, {dcfg.n_layers} latent layers, fixed "
        f"{dcfg.patch_size}-byte patches; random weights), {d['demo_n']} chain problems "
        f"(data synth, seed 5) in batches of 64 as the demo's evaluation, cached greedy, each "
        f"row generating its method's target length with EOS ignored: CoT "
        f"{d['demo_arms']['cot'][0]} ids (steps, answer, EOS), Coconut at "
        f"stage {d['demo_arms']['coconut'][1]} {d['demo_arms']['coconut'][0]} ids after "
        f"{d['demo_arms']['coconut'][1]} thoughts in the prompt (the answer, EOS). A trained "
        f"model writes the same lengths (README table), so only the weights differ from the "
        f"demo's own timing.",
        "",
        "| method | ids generated | thoughts | ms per example (median) | min-max |",
        "|---|---|---|---|---|",
        f"| CoT | {d['demo_arms']['cot'][0]} | 0 | {cot:.2f} | {rng(d['demo_cot'])} |",
        f"| Coconut, last stage | {d['demo_arms']['coconut'][0]} "
        f"| {d['demo_arms']['coconut'][1]} | {coco:.2f} | {rng(d['demo_coconut'])} |",
        "",
        f"Where a batch-1 step's time goes ({n_steps} cached greedy steps after a "
        f"{PROMPT}-byte prefill; profilers add overhead, so shares matter more than totals). "
        f"torch.profiler: {prof['torch_wall_ms']:.0f} ms wall ({ms_step:.1f} ms per step under "
        f"the profiler), aten ops' self time {prof['torch_ops_ms']:.0f} ms = {ops_share:.0f}% "
        f"of it; the other {100 - ops_share:.0f}% is Python and dispatch between ops. Top 10 "
        f"ops by self CPU time:",
        "",
        *torch_rows,
        "",
        f"cProfile of the same {n_steps} steps ({prof['python_wall_ms']:.0f} ms wall), top 10 "
        f"functions by self time (built-ins are the torch calls themselves):",
        "",
        *python_rows,
        "",
        reading(b1, b16, bound_ms, mm_ms / n_steps, mm_ms / prof["torch_wall_ms"], ops_share),
    ]
    return "\n".join(lines)


def reading(
    b1: float, b16: float, bound_ms: float, mm_step_ms: float, mm_share: float, ops_share: float
) -> str:
    """Where the batch-1 time goes, from the measured rates and the torch.profiler run."""
    step1, step16 = 1e3 / b1, 1e3 * BATCH / b16
    other = ops_share - 100 * mm_share
    if mm_share < 0.5:
        verdict = (
            "So at batch 1 the step is dominated by per-op and Python overhead, not by weight "
            "traffic: fewer, larger ops per layer and less Python per step come first, the "
            "matmuls' own pace second."
        )
    else:
        verdict = "So at batch 1 the matmuls take most of the step: their pace comes first."
    return (
        f"Reading: a batch-1 step takes {step1:.1f} ms; reading its weights once at the "
        f"measured bandwidth takes {bound_ms:.2f} ms. Under the profiler the matrix products "
        f"(`aten::mm`) take {mm_step_ms:.1f} ms per step, so they alone run at "
        f"{100 * bound_ms / mm_step_ms:.0f}% of the bandwidth pace; the other "
        f"{100 - 100 * mm_share:.0f}% of the step is the many small ops around them (attention, "
        f"RMSNorm, RoPE, copies, indexing: {other:.0f}% of the wall) and Python between ops "
        f"({100 - ops_share:.0f}%). {verdict} A batch-{BATCH} step takes "
        f"{step16:.1f} ms, {step16 / step1:.1f}x the batch-1 step for {BATCH}x the rows."
    )


def _tf_version() -> str:
    import transformers

    return transformers.__version__


# ------------------------------------------------------------------ part 2 and the run


def cached_vs_recomputed(presets, contexts, new, quick, threads, device) -> tuple[str, list]:
    header = (
        "| preset | params | context | cached prefill s | cached decode B/s | cached ms/B "
        "| cached total B/s | cached peak MiB | recomputed bytes | recomputed B/s "
        "| recomputed ms/B | recomputed peak MiB | speedup (decode) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    print(header)
    rows = []
    for preset in presets:
        for ctx in contexts:
            n_slow = 2 if quick else RECOMPUTE_BYTES[preset][ctx]
            fast = in_child(preset, ctx, new, True, 3, threads, device)
            slow = in_child(preset, ctx, n_slow, False, 1, threads, device)
            fast_bps, slow_bps = fast["decode_bps"], slow["total_bps"]
            row = (
                f"| {preset} | {fast['params'] / 1e6:.1f}M | {ctx} | {fast['prefill_s']:.3f} "
                f"| {fast_bps:.1f} | {1e3 / fast_bps:.2f} | {fast['total_bps']:.1f} "
                f"| {fast['peak_mib']:.0f} | {n_slow} | {slow_bps:.2f} | {1e3 / slow_bps:.1f} "
                f"| {slow['peak_mib']:.0f} | {fast_bps / slow_bps:.0f}x |"
            )
            rows.append(row)
            print(row, flush=True)
    return header, rows


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["tiny", "small", "small-w512"])
    p.add_argument("--new", type=int, default=128, help="part 2: bytes generated when cached")
    p.add_argument("--rounds", type=int, default=5, help="part 1: rounds (medians over them)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadiest)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="small smoke run; RESULTS.md untouched")
    args = p.parse_args()
    torch.set_num_threads(args.threads)  # as in the measuring processes (RESULTS.md names it)
    load_start = _load()
    t_start = time.perf_counter()

    if args.quick:
        d = decode_speed(rounds=1, new=8, hf_new=2, bw_mib=64, profile_n=8, demo_n=16)
    else:
        d = decode_speed(args.rounds, NEW, HF_NEW, 512, NEW)
    part1 = decode_speed_text(d)
    print(part1, flush=True)
    t_part1 = time.perf_counter() - t_start

    contexts = (128, 1024) if args.quick else CONTEXTS
    new = 16 if args.quick else args.new
    header, rows = cached_vs_recomputed(
        args.presets, contexts, new, args.quick, args.threads, args.device
    )
    elapsed = time.perf_counter() - t_start
    load_end = _load()
    print(f"({elapsed:.0f} s; part 1 {t_part1:.0f} s; load {load_start} -> {load_end})")
    if args.quick:
        return
    part2 = (
        "### Cached vs recomputed\n\n"
        "Random-weight presets (their own patchers), greedy, prompts = first bytes of the "
        f"Python stdlib sources, {args.threads} torch thread(s) on {args.device}; each "
        f"measurement in a fresh process. Cached: {new} new bytes, median of 3 runs; decode "
        "B/s = bytes after the first / time after the prefill. Recomputed: every byte is a "
        "full forward over the whole sequence, so only the listed number of bytes is "
        "generated (fewer at 4096 to keep the run short). Speedup = cached decode B/s / "
        "recomputed B/s. Peak MiB: rise of peak RSS (CPU) or of max_memory_allocated (GPU) "
        "during the first run, over what the loaded, warmed-up model held. Rows are measured "
        "one after another, not interleaved: on a shared machine compare them only where they "
        "differ by far more than the load can explain.\n\n" + header + "\n" + "\n".join(rows)
    )
    body = (
        f"Load average (1 / 5 / 15 min; 2 cores shared with other jobs) at the start "
        f"{load_start}, at the end {load_end}. Whole benchmark {elapsed / 60:.1f} min (part 1, "
        f"decode speed, on CPU: {t_part1 / 60:.1f} min).\n\n{part1}\n\n{part2}"
    )
    write_section(
        "generate",
        "Generation: decode speed and cached vs recomputed (bench_generate.py)",
        body,
        "python benchmarks/bench_generate.py",
    )
    print("wrote benchmarks/RESULTS.md (section generate)")


if __name__ == "__main__":
    main()
