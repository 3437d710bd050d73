"""`hf train`: one Coconut curriculum stage on a local Hugging Face causal LM.

Why beside the official scripts: those pin an old transformers, need torchrun even on one GPU,
and validate without a cache. Here one process trains one stage on CPU or one GPU (a fresh
AdamW per stage, as the official `reset_optimizer`) and saves a plain `save_pretrained` folder
atomically after every epoch. Under `torchrun` the same call trains data-parallel with
PyTorch's DistributedDataParallel: `batch_size` is per process, and the losses equal those of
one process running the global batch. The process group comes from `coconutblt.runtime`.
"""

from __future__ import annotations

import json
import math
import random
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from coconutblt.errors import UserError
from coconutblt.hf.batching import Encoded, collate, encode_example
from coconutblt.hf.coconut_lm import (
    IGNORE_INDEX,
    CoconutForCausalLM,
    causal_lm_loss,
    enable_checkpointing,
    n_loss_tokens,
)
from coconutblt.hf.data import check_positive, load_examples_file, stage_config, stage_texts
from coconutblt.hf.evaluate import evaluate_model, stage_prompt_fn
from coconutblt.runtime.distributed import DistContext, barrier, init_distributed, shutdown

METRICS_FILE = "metrics.jsonl"


def train_stage(
    *,
    base_model: str | None,
    load: str | None,
    data: str,
    stage: int,
    out: str,
    c_thought: int = 2,
    max_latent_stage: int = 3,
    pad_latent_to_max: bool = False,
    uniform_prob: float = 0.0,
    epochs: int = 3,
    lr: float = 1e-4,
    weight_decay: float = 0.01,
    batch_size: int = 8,
    grad_accum: int = 1,
    max_examples: int | None = None,
    val_data: str | None = None,
    max_val_examples: int | None = None,
    max_new_tokens: int = 64,
    device: str = "auto",
    bf16: bool = False,
    gradient_checkpointing: bool = False,
    seed: int = 0,
    print_fn=print,
) -> dict:
    """Train one curriculum stage and save it; returns {'losses', 'val_accuracy', 'out'}.

    A fresh AdamW per call is the official `reset_optimizer`: a stage's optimizer state
    describes a different task and only slows the next stage down. The folder is saved after
    every epoch (atomically), so an interrupted stage keeps its last finished epoch; it holds
    `metrics.jsonl`, one line per batch (global loss) and per validation.

    Under torchrun (WORLD_SIZE > 1) each process takes `batch_size` rows of every global batch
    of batch_size × world rows, in the order one process would; the model is wrapped in
    DistributedDataParallel, and each micro-batch's loss is the mean over the global batch's
    label tokens, so losses and gradients equal a single process's at the global batch.
    Rank 0 alone validates, saves and prints.
    """
    if stage < 0:
        raise UserError(f"--stage must be 0 or more, got {stage}")
    for name, value in (
        ("--c-thought", c_thought),
        ("--epochs", epochs),
        ("--lr", lr),
        ("--batch-size", batch_size),
        ("--grad-accum", grad_accum),
        ("--max-examples", max_examples),
        ("--max-val-examples", max_val_examples),
        ("--max-new-tokens", max_new_tokens),
    ):
        check_positive(name, value)
    source = load or base_model
    if source is None:
        raise UserError("hf train needs --base-model (stage 0) or --load (a previous stage)")
    cfg = stage_config(stage, c_thought, max_latent_stage, pad_latent_to_max, uniform_prob)
    examples = load_examples_file(data, max_examples)
    val_examples = (
        load_examples_file(val_data, max_val_examples, "--val-data") if val_data else None
    )
    ranks = init_distributed(device)
    dev = ranks.device
    ok = False
    try:
        result = _train_loop(
            source=source,
            stage=stage,
            cfg=cfg,
            examples=examples,
            val_examples=val_examples,
            out=out,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            grad_accum=grad_accum,
            max_new_tokens=max_new_tokens,
            dev=dev,
            ranks=ranks,
            bf16=bf16,
            gradient_checkpointing=gradient_checkpointing,
            seed=seed,
            print_fn=print_fn if ranks.is_main else (lambda *a, **k: None),
        )
        ok = True
        return result
    finally:
        shutdown(ranks, ok)


def _shard(rows: list, rank: int, world: int) -> list:
    """This rank's contiguous share of one global batch, in order: rank r of a full batch
    gets rows [r·b, (r+1)·b). A rank left without rows (a last batch smaller than the world)
    gets a copy of the first row with no loss positions, so it still joins DDP's all-reduce
    while adding nothing to the gradient."""
    per, extra = divmod(len(rows), world)
    start = rank * per + min(rank, extra)
    mine = rows[start : start + per + (1 if rank < extra else 0)]
    if not mine:
        first = rows[0]
        mine = [Encoded(first.input_ids, [IGNORE_INDEX] * len(first.labels))]
    return mine


def _train_loop(
    *,
    source,
    stage,
    cfg,
    examples,
    val_examples,
    out,
    epochs,
    lr,
    weight_decay,
    batch_size,
    grad_accum,
    max_new_tokens,
    dev,
    ranks: DistContext,
    bf16,
    gradient_checkpointing,
    seed,
    print_fn,
) -> dict:
    torch.manual_seed(seed)
    model = CoconutForCausalLM.from_pretrained(source, dtype=torch.bfloat16 if bf16 else None)
    model.to(dev)
    if gradient_checkpointing:
        enable_checkpointing(model.base_model)
    tok = model.tokenizer
    engine = model  # what the training forward calls: the model, or DDP around it
    if ranks.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        # One DDP forward holds all n+1 thought passes (the model's own forward): a parameter
        # used by every pass still gets one accumulated gradient, ready once per backward.
        engine = DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
        torch.manual_seed(seed + ranks.rank)  # distinct dropout masks per rank
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    thoughts = min(stage, cfg.max_latent_stage) * cfg.c_thought
    global_batch = batch_size * ranks.world_size
    where = f"on {dev}"
    if ranks.world_size > 1:
        where = f"on {ranks.world_size} processes ({dev.type}), global batch {global_batch}"
    print_fn(
        f"hf train: stage {stage} ({cfg.mode}, up to {thoughts} thoughts), "
        f"{len(examples)} examples, from {source}, {where}"
    )
    meta = {
        "stage": stage,
        "c_thought": cfg.c_thought,
        "max_latent_stage": cfg.max_latent_stage,
        "pad_latent_to_max": cfg.pad_latent_to_max,
        "n_thoughts": thoughts if stage > 0 else None,
        "source": str(source),
        "world_size": ranks.world_size,
        "global_batch": global_batch,
    }
    val_prompt = stage_prompt_fn(stage, cfg)

    losses, val_accuracy, metrics, step = [], [], [], 0
    acc_dtype = torch.float32 if dev.type == "mps" else torch.float64  # MPS has no float64
    n_batches = math.ceil(len(examples) / global_batch)
    for epoch in range(epochs):
        # Every rank builds the same rows in the same order (same seed); each trains its shard.
        rng = random.Random(seed * 1000 + epoch)
        rows = [encode_example(tok, *stage_texts(ex, stage, cfg, rng)[:2]) for ex in examples]
        rng.shuffle(rows)
        engine.train()
        bar = tqdm(
            total=n_batches,
            desc=f"stage {stage} epoch {epoch + 1}/{epochs}",
            dynamic_ncols=True,
            disable=not ranks.is_main,
        )
        optimizer.zero_grad(set_to_none=True)
        for i in range(n_batches):
            rows_i = rows[i * global_batch : (i + 1) * global_batch]
            mine = _shard(rows_i, ranks.rank, ranks.world_size) if ranks.world_size > 1 else rows_i
            batch = collate(mine, tok.pad_token_id, model.token_ids.latent)
            batch = {k: v.to(dev) for k, v in batch.items()}
            labels = batch.pop("labels")
            sync = (i + 1) % grad_accum == 0 or i + 1 == n_batches
            no_sync = engine.no_sync() if ranks.world_size > 1 and not sync else nullcontext()
            with no_sync:
                logits = engine(**batch).logits  # (B, T, V)
                ce_sum = causal_lm_loss(logits, labels, reduction="sum")
                # [summed CE, loss tokens] over the whole global batch
                parts = (ce_sum.detach(), n_loss_tokens(labels))
                totals = torch.stack([x.to(acc_dtype) for x in parts])
                if ranks.world_size > 1:
                    dist.all_reduce(totals)
                n_tokens = max(float(totals[1]), 1.0)
                loss_value = float(totals[0]) / n_tokens
                if not math.isfinite(loss_value):
                    raise UserError(
                        f"training loss became {loss_value} at stage {stage} epoch {epoch + 1} "
                        f"batch {i + 1}; lower --lr or drop --bf16"
                    )
                # DDP averages gradients over ranks: × world makes the sum of the per-rank
                # token sums over the global token count, the single-process mean.
                (ce_sum * (ranks.world_size / (n_tokens * grad_accum))).backward()
            if sync:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
            losses.append(loss_value)
            metrics.append(
                {
                    "type": "train",
                    "epoch": epoch + 1,
                    "batch": i + 1,
                    "step": step,
                    "loss": loss_value,
                    "rows": len(rows_i),
                    "tokens": int(n_tokens),
                }
            )
            bar.set_postfix(loss=f"{loss_value:.4f}")
            bar.update(1)
        bar.close()
        if ranks.is_main:
            line = f"epoch {epoch + 1}/{epochs}: mean train loss {_mean(losses[-n_batches:]):.4f}"
            if val_examples is not None:
                result = evaluate_model(model, val_examples, val_prompt, max_new_tokens, batch_size)
                val_accuracy.append(result.accuracy)
                metrics.append(
                    {
                        "type": "val",
                        "epoch": epoch + 1,
                        "step": step,
                        "accuracy": result.accuracy,
                        "n_correct": result.n_correct,
                        "n": len(val_examples),
                    }
                )
                line += (
                    f", validation accuracy {100 * result.accuracy:.2f}% "
                    f"({result.n_correct}/{len(val_examples)})"
                )
            print_fn(line)
            meta.update(epoch=epoch + 1, steps=step)
            meta["val_accuracy"] = val_accuracy[-1] if val_accuracy else None
            log = "".join(json.dumps(r) + "\n" for r in metrics)
            model.save_pretrained(out, metadata=meta, extra_files={METRICS_FILE: log})
        barrier(ranks)  # the others wait for rank 0's validation and save
    print_fn(f"saved {out}")
    return {"losses": losses, "val_accuracy": val_accuracy, "out": Path(out)}


def _mean(xs: list[float]) -> float:
    return sum(xs) / max(len(xs), 1)
