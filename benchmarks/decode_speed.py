"""Helpers of bench_generate.py's decode-speed section: the transformers BLT peer, the memory
bandwidth bound, and a profile of cached decoding steps.

- `peer_config(cfg)`: a `transformers.BltConfig` matched to one of our `ModelConfig`s (same
  latent/global width, depth, heads and MLP width; same local width, heads, layers and MLP
  width; same hashed n-gram sizes and table size; no entropy patcher).
- `peer_generate`: greedy decoding with `BltForCausalLM`, recomputing the whole forward for
  every byte, over the same fixed-size patches our model uses (`fixed_patch_lengths`).
- `weight_bytes_per_byte`: weight bytes a cached decoding step must read per decoded byte:
  the byte-level weights once per byte, the patch-level weights once per closed patch.
- `memory_bandwidth`: read (sum) and copy bandwidth of a tensor far larger than the caches.
- `profile_steps`: torch.profiler and cProfile of cached decoding steps, top entries by self
  time.
- `demo_latency`: ms per example of CoT and of Coconut at its last stage on the demo's model
  (configs/recipes/chain.yaml), random weights, each method generating its own target length.
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time
from pathlib import Path

import torch

from coconutblt.model.cache import DecodeState
from coconutblt.model.config import ModelConfig
from coconutblt.vocab import NUM_BYTES

# ------------------------------------------------------------------ the transformers BLT peer


def peer_config(cfg: ModelConfig):
    """`BltConfig` matched to `cfg` as far as the two architectures allow (see module doc)."""
    from transformers import BltConfig

    local = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_local,
        num_attention_heads=cfg.local_heads,
        intermediate_size=int(cfg.d_local * cfg.local_mlp_ratio),
        hidden_size_global=cfg.d_model,
        cross_attn_k=cfg.cross_attn_k,
        max_position_embeddings=cfg.max_seq_len,
    )
    return BltConfig(
        vocab_size=cfg.vocab_size,
        max_position_embeddings=cfg.max_seq_len,
        patch_in_forward=False,  # no entropy model: the caller passes patch lengths
        patching_mode="static",
        patch_size=cfg.patch_size,
        local_attention_window_len=cfg.local_window or None,
        cross_attn_k=cfg.cross_attn_k,
        encoder_hash_byte_group_size=list(cfg.ngram_sizes),
        encoder_hash_byte_group_vocab=cfg.ngram_buckets,
        encoder_hash_byte_group_nb_functions=1,
        encoder_config=dict(local, num_hidden_layers=cfg.encoder_layers),
        decoder_config=dict(local, num_hidden_layers=cfg.decoder_layers),
        global_config=dict(
            hidden_size=cfg.d_model,
            num_attention_heads=cfg.n_heads,
            num_hidden_layers=cfg.n_layers,
            intermediate_size=int(cfg.d_model * cfg.mlp_ratio),
            max_position_embeddings=cfg.max_seq_len,
        ),
    )


def build_peer(cfg: ModelConfig):
    """`BltForCausalLM` with random weights (seed 0), eval mode, float32."""
    from transformers import BltForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.manual_seed(0)
    return BltForCausalLM(peer_config(cfg)).eval()


def peer_counts(peer) -> dict[str, int]:
    """Parameters per part of the peer: local encoder (with the hash tables), global, local
    decoder (with the byte head)."""
    counts = {"encoder": 0, "latent": 0, "decoder": 0}
    for name, p in peer.named_parameters():
        if ".global_transformer." in name:
            counts["latent"] += p.numel()
        elif ".local_encoder." in name or "hash_tok" in name:
            counts["encoder"] += p.numel()
        else:
            counts["decoder"] += p.numel()
    return counts


def fixed_patch_lengths(n: int, size: int) -> torch.Tensor:
    """(1, P) patch lengths of n bytes: BLT's one-byte first patch, then `size`-byte patches
    (the last one shorter). The peer's decoder reads patch k's global state in patch k+1, so
    byte t reads the state of the patch before its own, as ours does."""
    body = [size] * ((n - 1) // size) + ([(n - 1) % size] if (n - 1) % size else [])
    return torch.tensor([[1, *body]])


@torch.inference_mode()
def peer_generate(peer, prompt: list[int], n_new: int, patch_size: int) -> tuple[list[int], float]:
    """Greedy over the byte ids, every byte a full forward over the whole sequence (no cache)
    -> (new ids, seconds)."""
    seq = torch.tensor([prompt])
    new: list[int] = []
    t0 = time.perf_counter()
    for _ in range(n_new):
        lengths = fixed_patch_lengths(seq.shape[1], patch_size)
        logits = peer(input_ids=seq, patch_lengths=lengths, use_cache=False, logits_to_keep=1)
        nxt = logits.logits[0, -1, :NUM_BYTES].argmax()  # bytes only, as ours
        new.append(int(nxt))
        seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
    return new, time.perf_counter() - t0


@torch.inference_mode()
def peer_hf_generate(peer, prompt: list[int], n_new: int, use_cache: bool) -> float:
    """transformers' own `generate` (greedy). Without patch lengths (`patch_in_forward=False`)
    BltModel makes every byte a patch. -> seconds."""
    ids = torch.tensor([prompt])
    t0 = time.perf_counter()
    peer.generate(
        ids, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, use_cache=use_cache
    )
    return time.perf_counter() - t0


def peer_cache_check(peer, prompt: list[int]) -> str:
    """Does `generate(use_cache=True)` run (and agree with the recomputed path)? One line."""
    try:
        with torch.inference_mode():
            ids = torch.tensor([prompt])
            kw = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False)
            cached = peer.generate(ids, use_cache=True, **kw)
            plain = peer.generate(ids, use_cache=False, **kw)
    except Exception as e:  # noqa: BLE001 - any failure is the answer
        msg = str(e).splitlines()[0][:120] if str(e) else ""
        return f"raises {type(e).__name__}: {msg}"
    same = torch.equal(cached, plain)
    return "runs and matches the recomputed path" if same else "runs but its greedy ids differ"


# ------------------------------------------------------------------ the bandwidth bound


def weight_split(model) -> dict[str, int]:
    """Parameters read per decoded byte ("byte") and per closed patch ("patch") by a cached
    step of `HybridTransformer`; embedding tables count only the rows one byte reads."""
    cfg = model.config
    split = {"byte": 0, "patch": 0, "tables": 0}
    for name, p in model.named_parameters():
        top, _, rest = name.partition(".")
        pooling = top == "encoder" and rest.startswith(("pool_attn", "to_latent", "norm"))
        # the decoder's context inputs (LocalDecoder.context_inputs) change only with the
        # latest latent output: decoding computes them once per patch
        context = top == "decoder" and (
            rest.startswith(("ctx_in", "ctx_slots")) or ".cross.kv." in f".{rest}"
        )
        if top == "latent" or pooling or context:
            split["patch"] += p.numel()  # latent transformer; pooling at the patch's close
        elif top == "encoder" and rest.startswith(("embed", "ngram_embeds")):
            split["tables"] += p.numel()
        elif top in ("encoder", "decoder", "lm_head"):
            split["byte"] += p.numel()
        elif top in ("thought_head", "bos_latent"):
            pass  # read only for thoughts / never in a step
        else:
            raise ValueError(f"unclassified parameter {name}")
    split["byte"] += (1 + len(cfg.ngram_sizes)) * cfg.d_local  # the rows actually read
    return split


def weight_bytes_per_byte(model, bytes_per_patch: float) -> float:
    """Weight bytes one decoded byte costs at batch 1 and `bytes_per_patch`."""
    split = weight_split(model)
    size = next(model.parameters()).element_size()
    return size * (split["byte"] + split["patch"] / bytes_per_patch)


def kv_bytes_per_byte(cfg: ModelConfig, context: float, bytes_per_patch: float) -> float:
    """K/V bytes (float32) a cached step reads per decoded byte at `context` bytes: byte
    layers every byte, latent layers (and latent modules) once per patch."""
    local = (cfg.encoder_layers + cfg.decoder_layers) * 2 * context * cfg.d_local
    n_mod = cfg.n_layers // cfg.latent_module_every if cfg.latent_module_every else 0
    patches = context / bytes_per_patch
    latent = (cfg.n_layers * cfg.d_model + n_mod * cfg.module_dim) * 2 * patches
    return 4 * (local + latent / bytes_per_patch)


class Bandwidth:
    """Single-thread memory bandwidth on `mib` MiB float32 tensors (far beyond the caches)."""

    def __init__(self, mib: int = 512) -> None:
        self.x = torch.full((mib * 2**20 // 4,), 1.0)
        self.y = torch.empty_like(self.x)
        self.x.sum()
        self.y.copy_(self.x)

    def measure(self, repeats: int = 3) -> tuple[float, float]:
        """-> (read GB/s from `x.sum()`, copy GB/s counting read + write), medians."""
        n = self.x.numel() * 4
        reads, copies = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.x.sum()
            reads.append(n / (time.perf_counter() - t0) / 1e9)
            t0 = time.perf_counter()
            self.y.copy_(self.x)
            copies.append(2 * n / (time.perf_counter() - t0) / 1e9)
        return statistics.median(reads), statistics.median(copies)


# ------------------------------------------------------------------ where the time goes


@torch.inference_mode()
def _prefill(model, prompt: list[int], n: int) -> tuple[DecodeState, torch.Tensor]:
    state = DecodeState(model, n)
    return state, state.prefill([prompt])


@torch.inference_mode()
def _run_steps(state: DecodeState, logits: torch.Tensor, n: int) -> None:
    for _ in range(n):
        logits = state.step(logits[:, :NUM_BYTES].argmax(-1))


def profile_steps(model, prompt: list[int], n: int, top: int = 10) -> dict:
    """Profile n cached greedy steps at batch 1 (after a prefill that is not profiled).

    -> {"torch": rows (op, self ms, % of wall, calls), "torch_wall_ms", "torch_ops_ms",
    "python": rows (function, self ms, % of wall, calls), "python_wall_ms"}."""
    from torch.profiler import ProfilerActivity, profile

    state, logits = _prefill(model, prompt, n)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        _run_steps(state, logits, n)
        wall = (time.perf_counter() - t0) * 1e3
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    ops_ms = sum(e.self_cpu_time_total for e in events) / 1e3
    torch_rows = [
        (e.key, e.self_cpu_time_total / 1e3, 100 * e.self_cpu_time_total / 1e3 / wall, e.count)
        for e in events[:top]
    ]

    state, logits = _prefill(model, prompt, n)
    prof_py = cProfile.Profile()
    t0 = time.perf_counter()
    prof_py.runcall(_run_steps, state, logits, n)
    py_wall = (time.perf_counter() - t0) * 1e3
    stats = pstats.Stats(prof_py).stats  # (file, line, fn) -> (cc, nc, tt, ct, callers)
    items = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    python_rows = []
    for (file, line, fn), (_, ncalls, tt, _, _) in items:
        where = fn if file == "~" else f"{fn} ({Path(file).name}:{line})"
        python_rows.append((where, tt * 1e3, 100 * tt * 1e3 / py_wall, ncalls))
    return dict(
        torch=torch_rows,
        torch_wall_ms=wall,
        torch_ops_ms=ops_ms,
        python=python_rows,
        python_wall_ms=py_wall,
    )


# ------------------------------------------------------------------ the demo's latency


def demo_setup(root: Path, n: int = 300, seed: int = 5) -> dict:
    """The demo's model (the chain recipe's `common` model keys, random weights, seed 0) and
    n chain problems prompted as CoT (stage 0) and as Coconut at the last stage (its thoughts
    in the prompt, as the evaluation feeds them), with each one's target length."""
    import yaml

    from coconutblt.data.stages import StageConfig, format_example
    from coconutblt.data.synth import synthesize
    from coconutblt.model import HybridTransformer

    recipe = yaml.safe_load((root / "configs" / "recipes" / "chain.yaml").read_text())
    common = recipe["common"]
    model_keys = {k[6:]: v for k, v in common.items() if k.startswith("model.")}
    torch.manual_seed(0)
    model = HybridTransformer(ModelConfig.from_dict(model_keys)).eval()
    stage_cfg = StageConfig(
        mode="coconut",
        c_thought=common["curriculum.c_thought"],
        max_latent_stage=common["curriculum.max_latent_stage"],
        markers=common["curriculum.markers"],
    )
    examples = synthesize("chain", n, seed=seed, **recipe["data"]["synth_args"])
    arms = {}
    for name, stage in (("cot", 0), ("coconut", stage_cfg.max_latent_stage)):
        staged = [format_example(e, stage, stage_cfg, for_eval=True) for e in examples]
        arms[name] = dict(
            prompts=[s.prompt_ids for s in staged],
            new=max(len(s.target_ids) for s in staged),  # answer bytes + EOS
            thoughts=staged[0].n_latents,
        )
    return dict(model=model, arms=arms, n=n)


@torch.inference_mode()
def demo_latency(setup: dict, name: str, batch: int = 64) -> float:
    """ms per example of one arm of `demo_setup`: cached greedy generation in batches of
    `batch` (as the demo's evaluation), every row generating the arm's target length."""
    from coconutblt.inference.generate import generate

    arm = setup["arms"][name]
    prompts = arm["prompts"]
    t0 = time.perf_counter()
    for i in range(0, len(prompts), batch):
        generate(setup["model"], prompts[i : i + batch], arm["new"], eos_id=None)
    return (time.perf_counter() - t0) * 1e3 / len(prompts)
