"""Train the small byte LM (`EntropyModel`) whose next-byte entropy decides patch boundaries.

The model is run the same way everywhere: on byte windows whose positions start at 0, with
the attention window it was trained with. With a sliding window (`window` <= `seq_len`) every
attention span a byte can see at generation time, however long the sequence, was also seen in
training (RoPE only sees relative distances), so entropies do not drift past `seq_len` bytes;
that drift is what makes patches collapse to ~1 byte when an entropy model is run otherwise.

Checkpoint (`DIR/entropy.pt`, written atomically): {"format": "coconutblt", "version": 1,
"kind": "entropy", "entropy_config": dict, "model": state dict, "train_bytes": int,
"heldout_bpb": float, "seq_len": int, "steps": int, "losses": [(step, loss nats)], "data": [...]}
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from coconutblt.checkpoint import ENTROPY_CHECKPOINT_NAME, FORMAT, VERSION
from coconutblt.data.corpora import ByteWindows, read_corpus, split_corpus
from coconutblt.errors import UserError
from coconutblt.model.config import EntropyModelConfig
from coconutblt.model.entropy import EntropyModel
from coconutblt.runtime.device import pick_device
from coconutblt.runtime.files import save_torch
from coconutblt.runtime.metrics import MetricsLog, plot_metrics
from coconutblt.runtime.optim import build_adamw, set_lr, warmup_cosine
from coconutblt.runtime.progress import progress_bar, show_rate
from coconutblt.vocab import VOCAB_SIZE

LN2 = math.log(2.0)


@dataclass
class EntropyTrainConfig:
    """What `coconutblt entropy train` trains, on what, for how long."""

    data: list[str] = field(default_factory=list)  # files / folders; empty = Python stdlib sources
    max_bytes: int = 20_000_000  # corpus cap (bytes read before the held-out split)
    holdout: float = 0.02
    steps: int = 1500
    seq_len: int = 256
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    mlp_ratio: float = 4.0
    window: int = 128  # sliding attention window over bytes (<= seq_len; 0 = full causal)
    eval_bytes: int = 262_144  # held-out bytes scored for bits-per-byte
    seed: int = 0
    device: str = "auto"
    num_threads: int = 0

    def model_config(self) -> EntropyModelConfig:
        return EntropyModelConfig(
            self.d_model, self.n_layers, self.n_heads, self.mlp_ratio, self.window
        )

    def check(self) -> None:
        bad = [
            (self.steps < 1, "--steps must be >= 1"),
            (self.seq_len < 8, "--seq-len must be >= 8"),
            (self.batch_size < 1, "--batch-size must be >= 1"),
            (self.lr <= 0, "--lr must be > 0"),
            (self.d_model % self.n_heads != 0, "--d-model must be divisible by --n-heads"),
            ((self.d_model // self.n_heads) % 2 != 0, "--d-model / --n-heads must be even (RoPE)"),
            (self.window < 0, "--window must be >= 0"),
            (not 0 < self.holdout < 0.5, "holdout must be in (0, 0.5)"),
        ]
        for is_bad, msg in bad:
            if is_bad:
                raise UserError(msg)


@dataclass
class EntropyTrainResult:
    model: EntropyModel
    path: Path | None
    losses: list[tuple[int, float]]  # (step, train loss in nats)
    heldout_bpb: float
    train_bytes: int  # bytes seen in training (steps x batch x seq_len)
    seconds: float
    bytes_per_second: float


@torch.no_grad()
def heldout_bpb(
    model: EntropyModel,
    data: torch.Tensor,
    seq_len: int,
    batch_size: int = 32,
    max_bytes: int | None = None,
) -> float:
    """Bits per byte on non-overlapping windows of `data` (each window scored from its own start)."""
    if max_bytes is not None:
        data = data[: max(max_bytes, seq_len + 2)]
    if len(data) <= seq_len + 1:  # a short held-out text: one window of all but its last byte
        seq_len = len(data) - 2
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in ByteWindows(data, seq_len, batch_size).sequential():
        batch = batch.to(dev)
        n = batch.shape[0] * (batch.shape[1] - 1)
        total += float(model.loss(batch)) * n
        count += n
    model.train(was_training)
    return total / max(count, 1) / LN2


def train_entropy_model(
    cfg: EntropyTrainConfig,
    out_dir: str | Path | None = None,
    progress: bool = True,
    corpus: bytes | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> EntropyTrainResult:
    """Train an `EntropyModel` on byte windows; score held-out bits-per-byte; save `DIR/entropy.pt`.

    `corpus` (bytes) replaces reading `cfg.data` (used by benchmarks that already hold the text).
    """
    cfg.check()
    if cfg.window == 0 or cfg.window > cfg.seq_len:
        warnings.warn(
            f"entropy model window={cfg.window} with seq_len={cfg.seq_len}: bytes further than "
            f"{cfg.seq_len} into a sequence get extrapolated entropies; use --window <= --seq-len",
            stacklevel=2,
        )
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    dev = pick_device(cfg.device)
    blob = corpus if corpus is not None else read_corpus(cfg.data, cfg.max_bytes)
    train, val = split_corpus(blob, cfg.holdout)
    if len(val) <= 16:
        raise UserError(f"corpus of {len(blob)} bytes leaves too little held-out text; add text")
    windows = ByteWindows(train, cfg.seq_len, cfg.batch_size, seed=cfg.seed)

    torch.manual_seed(cfg.seed)
    model = EntropyModel(cfg.model_config(), VOCAB_SIZE).to(dev)
    model.train()
    opt = build_adamw(model, cfg.lr, cfg.weight_decay)
    losses: list[tuple[int, float]] = []
    bytes_per_step = cfg.batch_size * cfg.seq_len
    start = time.perf_counter()
    bar = progress_bar(cfg.steps, desc="entropy train", disable=not progress)
    log = MetricsLog(Path(out_dir) / "metrics.jsonl") if out_dir is not None else None
    ema = None
    for step in range(cfg.steps):
        lr = warmup_cosine(step, cfg.steps, cfg.lr, cfg.warmup_steps, min_lr_ratio=0.1)
        set_lr(opt, lr)
        batch = windows.batch(step).to(dev)
        loss = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        value = loss.detach().item()
        if not math.isfinite(value):
            raise RuntimeError(f"entropy model loss is {value} at step {step}; lower --lr")
        ema = value if ema is None else 0.9 * ema + 0.1 * value
        bar.update(1)
        if step % 10 == 0 or step == cfg.steps - 1:
            losses.append((step, value))
            rate = (step + 1) * bytes_per_step / (time.perf_counter() - start)
            show_rate(bar, ema, rate, bpb=f"{ema / LN2:.2f}")
            if log is not None:  # the native trainer's record, its steps counted from 1
                record = {"type": "train", "step": step + 1, "loss": value, "lr": lr}
                log.write({**record, "bytes_per_s": rate})
        if on_step is not None:
            on_step(step, value)
    seconds = time.perf_counter() - start
    bar.close()
    model.eval()
    bpb = heldout_bpb(model, val.to(dev), cfg.seq_len, max_bytes=cfg.eval_bytes)
    train_bytes = cfg.steps * bytes_per_step
    path = None
    if out_dir is not None:
        path = Path(out_dir) / ENTROPY_CHECKPOINT_NAME
        save_torch(entropy_checkpoint(model, cfg, train_bytes, bpb, losses), path)
        log.write({"type": "eval", "step": cfg.steps, "bpb": bpb})
        plot_metrics(log.path, Path(out_dir) / "metrics.png", title=f"entropy model {out_dir}")
    model.requires_grad_(False)
    return EntropyTrainResult(
        model.cpu(), path, losses, bpb, train_bytes, seconds, train_bytes / seconds
    )


def entropy_checkpoint(
    model: EntropyModel,
    cfg: EntropyTrainConfig,
    train_bytes: int,
    bpb: float,
    losses: Sequence[tuple[int, float]],
) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": "entropy",
        "entropy_config": dataclasses.asdict(model.cfg),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_bytes": int(train_bytes),
        "heldout_bpb": float(bpb),
        "seq_len": int(cfg.seq_len),
        "steps": int(cfg.steps),
        "losses": [[int(s), float(v)] for s, v in losses],
        "data": [str(p) for p in cfg.data] or ["<python stdlib>"],
    }
