"""`hf train`: one Coconut curriculum stage on a local Hugging Face causal LM.

Why beside the official scripts: those pin an old transformers, need torchrun even on one GPU,
and validate without a cache. Here one process trains one stage on CPU or one GPU (a fresh
AdamW per stage, as the official `reset_optimizer`) and saves a plain `save_pretrained` folder
atomically after every epoch. Under `torchrun` the same call trains sharded with FSDP2 (or
data-parallel with DDP): `batch_size` is per process, and the losses equal those of one
process running the global batch. With `lora` only a PEFT adapter (and the three token rows)
trains, and the folder holds the adapter. The process group comes from `coconutblt.runtime`.
"""

from __future__ import annotations

import copy
import math
import random
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist

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
from coconutblt.hf.lora import LoraSettings, attach_lora, is_adapter_dir, lora_param_summary
from coconutblt.hf.memory import decoder_layers
from coconutblt.runtime.distributed import (
    DistContext,
    barrier,
    full_model_state,
    init_distributed,
    shard_fully,
    shutdown,
)
from coconutblt.runtime.metrics import jsonl_text
from coconutblt.runtime.progress import progress_bar, show_rate
from coconutblt.runtime.trackers import Trackers, check_trackers

METRICS_FILE = "metrics.jsonl"
PARALLEL = ("fsdp", "ddp")
# what each tracker keeps inside the checkpoint folder, moved into every new one at the swap;
# W&B's logs live beside the folder instead (`wandb_logs_dir`): its own process creates files
# by path, and one created in the instant of the swap would fail
TRACKER_ENTRIES = {"tensorboard": ("tensorboard",), "wandb": ("wandb_run_id",)}


def wandb_logs_dir(out: str | Path) -> Path:
    """Where `hf train --report-to wandb` keeps W&B's offline runs: `OUT.wandb/` beside OUT."""
    out = Path(out)
    return out.parent / f"{out.name}.wandb"


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
    lora: LoraSettings | None = None,
    merge_lora: str | None = None,
    parallel: str = "fsdp",
    report_to: list[str] | tuple[str, ...] = (),
    print_fn=print,
) -> dict:
    """Train one curriculum stage and save it; returns {'losses', 'val_accuracy', 'out',
    'model'} ('model': the trained wrapper, merged with `merge_lora`; None on ranks other
    than 0 under FSDP).

    A fresh AdamW per call is the official `reset_optimizer`: a stage's optimizer state
    describes a different task and only slows the next stage down. The folder is saved after
    every epoch (atomically), so an interrupted stage keeps its last finished epoch; it holds
    `metrics.jsonl`, one line per batch (global loss) and per validation.

    Under torchrun (WORLD_SIZE > 1) each process takes `batch_size` rows of every global batch
    of batch_size × world rows, in the order one process would, and each micro-batch's loss is
    the mean over the global batch's label tokens, so losses and gradients equal a single
    process's at the global batch. Rank 0 alone validates, saves and prints.

    `parallel` picks the torchrun strategy: "fsdp" (default) shards every decoder layer, the
    embedding and output head, and the root with FSDP2, so weights, gradients and AdamW state
    are split among the processes; rank 0 keeps an unsharded CPU copy that it loads the full
    state into to validate and save (a plain folder any world size reads). "ddp" keeps a whole
    model per process.

    `lora` trains a PEFT LoRA adapter and the three token rows instead of every weight; the
    folder then holds the adapter, and `merge_lora` (a folder) also gets the merged full model
    after the last epoch. Loading an adapter checkpoint (`load`) continues its adapter; its
    base model is the folder recorded in it, or `base_model` when given.

    `report_to` (tensorboard, wandb) mirrors every metrics.jsonl record into those trackers,
    whose logs live in `out` beside the checkpoint.
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
    if parallel not in PARALLEL:
        raise UserError(f"unknown --parallel {parallel!r}; use fsdp or ddp")
    if lora is not None:
        lora.check()
    if merge_lora is not None and lora is None and not (load and is_adapter_dir(load)):
        raise UserError("--merge-lora needs a LoRA run: pass --lora-r or --load an adapter")
    problems = check_trackers(list(report_to))
    if problems:
        raise UserError(f"--report-to: {problems[0]}")
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
            base_model=base_model if load else None,
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
            lora=lora,
            merge_lora=merge_lora,
            parallel=parallel,
            report_to=list(report_to),
            print_fn=print_fn if ranks.is_main else (lambda *a, **k: None),
        )
        ok = True
        return result
    finally:
        shutdown(ranks, ok)


def plan_stage(
    *,
    base_model: str | None,
    load: str | None,
    data: str,
    stage: int,
    c_thought: int = 2,
    max_latent_stage: int = 3,
    pad_latent_to_max: bool = False,
    batch_size: int = 8,
    max_examples: int | None = None,
    bf16: bool = False,
    lora: LoraSettings | None = None,
    print_fn=print,
) -> str:
    """`hf train --plan`: the memory plan of this run (see `coconutblt.hf.memory`), printed.

    The micro-batch length is the longest training row of this stage (tokenized with the
    model's tokenizer; the config and tokenizer are read, not the weights); the passes are the
    stage's thoughts + 1.
    """
    import os

    from coconutblt.hf.coconut_lm import LATENT_TOKENS, load_tokenizer
    from coconutblt.hf.memory import plan_for_folder

    source = load or base_model
    if source is None:
        raise UserError("hf train --plan needs --base-model or --load")
    check_positive("--batch-size", batch_size)
    if lora is not None:
        lora.check()
    cfg = stage_config(stage, c_thought, max_latent_stage, pad_latent_to_max)
    examples = load_examples_file(data, max_examples)
    tok = load_tokenizer(Path(source))
    missing = [t for t in LATENT_TOKENS if t not in tok.get_vocab()]
    if missing:
        tok.add_tokens(missing, special_tokens=True)
    rng = random.Random(0)
    seq_len = max(
        len(encode_example(tok, *stage_texts(ex, stage, cfg, rng)[:2]).input_ids) for ex in examples
    )
    thoughts = min(stage, cfg.max_latent_stage) * cfg.c_thought
    text = plan_for_folder(
        base_model if load and base_model and is_adapter_dir(load) else source,
        dtype="bf16" if bf16 else "fp32",
        batch_size=batch_size,
        seq_len=seq_len,
        passes=thoughts + 1,
        lora_r=lora.r if lora else None,
        lora_targets=lora.targets if lora else None,
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
    )
    print_fn(text)
    return text


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
    base_model,
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
    lora,
    merge_lora,
    parallel,
    report_to,
    print_fn,
) -> dict:
    torch.manual_seed(seed)  # the same LoRA initialisation on every rank
    model = load_for_training(source, base_model, lora, bf16)
    if gradient_checkpointing:
        enable_checkpointing(model.base_model)
    tok = model.tokenizer
    fsdp = ranks.world_size > 1 and parallel == "fsdp"
    engine = model  # what the training forward calls: the model, or DDP around it
    host = model  # what validates and saves: the model, or rank 0's unsharded copy under FSDP
    if fsdp:
        # Every rank loaded the whole model on the CPU; rank 0 keeps a copy to receive the full
        # state for validation and saving, then FSDP2 moves each rank's shards to its device.
        host = copy.deepcopy(model) if ranks.is_main else None
        apply_fsdp(model, bf16, dev)
        torch.manual_seed(seed + ranks.rank)  # distinct dropout masks per rank
    else:
        model.to(dev)
    if ranks.world_size > 1 and not fsdp:
        from torch.nn.parallel import DistributedDataParallel

        # One DDP forward holds all n+1 thought passes (the model's own forward): a parameter
        # used by every pass still gets one accumulated gradient, ready once per backward.
        engine = DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
        torch.manual_seed(seed + ranks.rank)  # distinct dropout masks per rank
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    thoughts = min(stage, cfg.max_latent_stage) * cfg.c_thought
    global_batch = batch_size * ranks.world_size
    where = f"on {dev}"
    if ranks.world_size > 1:
        how = "FSDP2" if fsdp else "DDP"
        where = f"on {ranks.world_size} processes ({dev.type}), global batch {global_batch}, {how}"
    print_fn(
        f"hf train: stage {stage} ({cfg.mode}, up to {thoughts} thoughts), "
        f"{len(examples)} examples, from {source}, {where}"
    )
    if model.peft is not None:
        n_train, n_all = lora_param_summary(host if fsdp and ranks.is_main else model)
        info = model.metadata["lora"]
        print_fn(
            f"LoRA r={info['r']} alpha={info['alpha']:g} on {_names(info['targets'])}: "
            f"{n_train:,} of {n_all:,} parameters train (adapter + 3 token rows), base "
            f"{info['base']}"
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
        "parallel": ("fsdp" if fsdp else "ddp") if ranks.world_size > 1 else None,
    }
    val_prompt = stage_prompt_fn(stage, cfg)
    trackers, keep = None, ()
    if ranks.is_main and report_to:
        keep = tuple(e for name in report_to for e in TRACKER_ENTRIES[name])
        _clear_tracker_logs(Path(out), keep, print_fn)
        config = {"stage": stage, "lr": lr, "batch_size": batch_size, "grad_accum": grad_accum}
        config.update(meta, epochs=epochs, weight_decay=weight_decay, seed=seed)
        trackers = Trackers(
            report_to, out, config=config, key="--report-to", wandb_dir=wandb_logs_dir(out)
        )

    losses, val_accuracy, metrics, step = [], [], [], 0
    acc_dtype = torch.float32 if dev.type == "mps" else torch.float64  # MPS has no float64
    n_batches = math.ceil(len(examples) / global_batch)

    def record(entry: dict) -> None:
        metrics.append(entry)
        if trackers is not None:
            trackers.log(entry)

    try:
        for epoch in range(epochs):
            # Every rank builds the same rows in the same order (same seed); each trains its shard.
            rng = random.Random(seed * 1000 + epoch)
            rows = [encode_example(tok, *stage_texts(ex, stage, cfg, rng)[:2]) for ex in examples]
            rng.shuffle(rows)
            engine.train()
            bar = progress_bar(
                n_batches,
                desc=f"stage {stage} epoch {epoch + 1}/{epochs}",
                disable=not ranks.is_main,
            )
            started, tokens_seen = time.perf_counter(), 0
            optimizer.zero_grad(set_to_none=True)
            for i in range(n_batches):
                rows_i = rows[i * global_batch : (i + 1) * global_batch]
                mine = rows_i
                if ranks.world_size > 1:
                    mine = _shard(rows_i, ranks.rank, ranks.world_size)
                batch = collate(mine, tok.pad_token_id, model.token_ids.latent)
                batch = {k: v.to(dev) for k, v in batch.items()}
                labels = batch.pop("labels")
                sync = (i + 1) % grad_accum == 0 or i + 1 == n_batches
                # FSDP2 reduce-scatters every micro-batch: skipping it would keep whole
                # unsharded gradients, the memory sharding is there to save
                skip_sync = ranks.world_size > 1 and not fsdp and not sync
                with engine.no_sync() if skip_sync else nullcontext():
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
                            f"training loss became {loss_value} at stage {stage} epoch "
                            f"{epoch + 1} batch {i + 1}; lower --lr or drop --bf16"
                        )
                    # DDP and FSDP2 average gradients over ranks: x world makes the sum of the
                    # per-rank token sums over the global token count, the single-process mean.
                    (ce_sum * (ranks.world_size / (n_tokens * grad_accum))).backward()
                if sync:
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                losses.append(loss_value)
                record(
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
                tokens_seen += int(n_tokens)
                bar.update(1)
                show_rate(bar, loss_value, tokens_seen / (time.perf_counter() - started), "tokens")
            bar.close()
            if fsdp:
                state = full_model_state(model, ranks)  # a collective: every rank gathers
                if ranks.is_main:
                    host.load_state_dict(state)
                del state
            if ranks.is_main:
                line = f"epoch {epoch + 1}/{epochs}: mean train loss "
                line += f"{_mean(losses[-n_batches:]):.4f}"
                if val_examples is not None:
                    result = _validate(
                        host, dev, fsdp, val_examples, val_prompt, max_new_tokens, batch_size
                    )
                    val_accuracy.append(result.accuracy)
                    record(
                        {
                            "type": "eval",
                            "epoch": epoch + 1,
                            "step": step,
                            **result.summary(),
                            "n_correct": result.n_correct,
                            "n": len(val_examples),
                        }
                    )
                    per_answer = "".join(f", {k} {v:.0%}" for k, v in result.per_answer().items())
                    line += (
                        f", validation accuracy {100 * result.accuracy:.2f}% "
                        f"({result.n_correct}/{len(val_examples)}){per_answer}"
                    )
                    line += "".join(f"\n{w}" for w in result.warnings())
                print_fn(line)
                meta.update(epoch=epoch + 1, steps=step)
                meta["val_accuracy"] = val_accuracy[-1] if val_accuracy else None
                log = jsonl_text(metrics)
                if trackers is not None:
                    trackers.flush()  # nothing may append while the folder is replaced
                host.save_pretrained(out, metadata=meta, extra_files={METRICS_FILE: log}, keep=keep)
            barrier(ranks)  # the others wait for rank 0's validation and save
    finally:
        if trackers is not None:
            trackers.close()
    print_fn(f"saved {out}")
    final = host
    if merge_lora is not None and ranks.is_main:
        from coconutblt.hf.lora import merged

        final = merged(host)  # unwraps `host` in place: the merged model is what is returned
        path = final.save_pretrained(merge_lora)
        print_fn(f"merged the LoRA adapter into its base: saved {path}")
    barrier(ranks)
    return {"losses": losses, "val_accuracy": val_accuracy, "out": Path(out), "model": final}


def load_for_training(source, base_model, lora: LoraSettings | None, bf16: bool):
    """The wrapper to train: a full model, a full model with a new adapter (`lora`), or an
    adapter checkpoint whose adapter keeps training (its base: `base_model` or the recorded
    one)."""
    dtype = torch.bfloat16 if bf16 else None
    if is_adapter_dir(source):
        model = CoconutForCausalLM.from_pretrained(
            source, dtype=dtype, base_model=base_model, trainable=True
        )
        saved = model.metadata["lora"]
        if lora is not None and (lora.r, lora.scale_alpha) != (saved["r"], saved["alpha"]):
            raise UserError(
                f"--load {source} holds a LoRA adapter with r={saved['r']}, alpha="
                f"{saved['alpha']:g}; drop --lora-r/--lora-alpha to continue it, or merge it "
                "first (hf merge-lora) and train a new adapter on the merged model"
            )
        return model
    model = CoconutForCausalLM.from_pretrained(source, dtype=dtype)
    if lora is not None:
        attach_lora(model, lora, source)
    return model


def apply_fsdp(model: CoconutForCausalLM, bf16: bool, device: torch.device | None = None) -> None:
    """FSDP2 units: each decoder layer, the input embedding and an untied output head (the
    largest single matrices of a Llama 3), then the wrapper as the root, so its n+1-pass
    forward gathers and frees each unit as the passes reach it. A tied head shares its matrix
    with the embedding, so both stay in the root's unit."""
    base = model.base_model
    units = decoder_layers(base)
    if not units:
        raise UserError(
            f"cannot find the decoder layers of this {base.config.model_type} model for FSDP2 "
            "(its class lists no _no_split_modules); use --parallel ddp"
        )
    embed, head = base.get_input_embeddings(), base.get_output_embeddings()
    if head is not None and _weight(head) is not _weight(embed):
        units = [embed, *units, head]
    shard_fully(model, units, bf16, device)


def _weight(module):
    """A module's weight Parameter; PEFT's trainable-token wrapper keeps it one level down."""
    inner = getattr(getattr(module, "token_adapter", None), "base_layer", module)
    return inner.weight


def _validate(host, dev, fsdp, val_examples, val_prompt, max_new_tokens, batch_size):
    """Validation on `host`; under FSDP rank 0's CPU copy visits the device for it (its
    generation stops at a different step from any other rank's, which collectives cannot
    follow)."""
    if not fsdp or dev.type == "cpu":
        return evaluate_model(host, val_examples, val_prompt, max_new_tokens, batch_size)
    host.to(dev)
    try:
        return evaluate_model(host, val_examples, val_prompt, max_new_tokens, batch_size)
    finally:
        host.to("cpu")
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def _clear_tracker_logs(out: Path, entries: tuple[str, ...], print_fn) -> None:
    """A new run of a stage replaces the folder, its tracker logs included."""
    import shutil

    old = [e for e in entries if (out / e).exists()]
    for e in old:
        path = out / e
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if old:
        print_fn(f"--report-to: removed the earlier run's {', '.join(old)} from {out}")


def _names(targets) -> str:
    return targets if isinstance(targets, str) else ",".join(targets)


def _mean(xs: list[float]) -> float:
    return sum(xs) / max(len(xs), 1)
