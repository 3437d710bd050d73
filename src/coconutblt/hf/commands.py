"""`coconutblt hf tokens | train | eval | tiny-base`: the Coconut reproduction path on a local
HF model.

Why these exist beside the official scripts: those pin an old transformers, need torchrun even
on one GPU, generate one example at a time without a cache, and report no per-stage accuracy.
Here one process trains one stage on CPU or one GPU (fresh AdamW per stage, as the official
`reset_optimizer`), saves a plain `save_pretrained` folder atomically, and evaluates any number
of checkpoints side by side with batched, cached generation. Under `torchrun` the same command
trains data-parallel with PyTorch's DistributedDataParallel: `--batch-size` is per process, and
the losses equal those of one process running the global batch.

transformers, tqdm and the data modules are imported inside the functions: registering the
parser must not import them.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from coconutblt.errors import UserError
from coconutblt.runtime.device import pick_device
from coconutblt.runtime.distributed import DistContext, barrier, init_distributed, shutdown

# ----- argparse -----------------------------------------------------------------------------


def add_hf_parser(subparsers) -> argparse.ArgumentParser:
    """Register `hf` with `tokens`, `train`, `eval`, `tiny-base`; each sets `func`."""
    hf = subparsers.add_parser("hf", help="Coconut on a local Hugging Face causal LM")
    sub = hf.add_subparsers(dest="hf_command", metavar="{tokens,train,eval,tiny-base}")
    sub.required = True

    p = sub.add_parser("tokens", help="add the three Coconut tokens and show what changed")
    p.add_argument("--base-model", required=True, help="local Hugging Face model folder")
    p.add_argument("--prompt", default="The answer is", help="text for the generation check")
    p.set_defaults(func=cmd_tokens)

    p = sub.add_parser("train", help="train one curriculum stage (0 = written reasoning)")
    p.add_argument("--base-model", help="local Hugging Face model folder (stage 0)")
    p.add_argument("--load", help="checkpoint folder of the previous stage (wins over base)")
    p.add_argument(
        "--data", required=True, help="reasoning data: GSM8k .jsonl, Coconut .json, iCoT .txt"
    )
    p.add_argument("--stage", type=int, default=0, help="curriculum stage k (default 0)")
    p.add_argument("--c-thought", type=int, default=2, help="thoughts per step (GSM8k: 2)")
    p.add_argument("--max-latent-stage", type=int, default=3, help="cap on k (GSM8k: 3)")
    p.add_argument(
        "--pad-latent-to-max",
        action="store_true",
        help="past the last step, keep max_latent_stage x c_thought thoughts",
    )
    p.add_argument(
        "--uniform-prob", type=float, default=0.0, help="chance to train a random earlier stage"
    )
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument(
        "--batch-size", type=int, default=8, help="per process (under torchrun: x processes)"
    )
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step")
    p.add_argument("--out", required=True, help="output folder (replaced atomically)")
    p.add_argument("--max-examples", type=int, help="use the first N training examples")
    p.add_argument("--val-data", help="validation file: accuracy printed after each epoch")
    p.add_argument("--max-val-examples", type=int, help="use the first N validation examples")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:1 | mps")
    p.add_argument("--bf16", action="store_true", help="load and train in bfloat16 (GPU)")
    p.add_argument(
        "--gradient-checkpointing", action="store_true", help="recompute activations (big models)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="accuracy, tokens and time of checkpoints, side by side")
    p.add_argument("--ckpt", nargs="+", required=True, help="checkpoint folders")
    p.add_argument(
        "--data", required=True, help="reasoning data: GSM8k .jsonl, Coconut .json, iCoT .txt"
    )
    p.add_argument("--max-examples", type=int, help="use the first N examples")
    p.add_argument("--n-thoughts", type=int, help="thoughts per question (default: from ckpt)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--show", type=int, default=3, help="side-by-side examples to print")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "tiny-base", help="a tiny random GPT-2/Llama + BPE tokenizer folder for smoke runs"
    )
    p.add_argument(
        "--data", required=True, help="reasoning data whose questions and answers train the BPE"
    )
    p.add_argument("--arch", default="gpt2", help="gpt2 (default) or llama")
    p.add_argument("--vocab-size", type=int, default=400, help="BPE vocabulary (default 400)")
    p.add_argument("--max-texts", type=int, help="train the tokenizer on the first N examples")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument("--out", required=True, help="output folder (replaced atomically)")
    p.set_defaults(func=cmd_tiny_base)
    return hf


def cmd_tokens(args) -> int:
    _quiet_transformers()
    tokens_report(args.base_model, prompt=args.prompt)
    return 0


def cmd_train(args) -> int:
    _quiet_transformers()
    train_stage(
        base_model=args.base_model,
        load=args.load,
        data=args.data,
        stage=args.stage,
        c_thought=args.c_thought,
        max_latent_stage=args.max_latent_stage,
        pad_latent_to_max=args.pad_latent_to_max,
        uniform_prob=args.uniform_prob,
        epochs=args.epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        out=args.out,
        max_examples=args.max_examples,
        val_data=args.val_data,
        max_val_examples=args.max_val_examples,
        max_new_tokens=args.max_new_tokens,
        device=args.device,
        bf16=args.bf16,
        gradient_checkpointing=args.gradient_checkpointing,
        seed=args.seed,
    )
    return 0


def cmd_tiny_base(args) -> int:
    from coconutblt.hf.tiny import build_tiny_base

    _quiet_transformers()
    build_tiny_base(
        data=args.data,
        out=args.out,
        arch=args.arch,
        vocab_size=args.vocab_size,
        max_texts=args.max_texts,
        seed=args.seed,
    )
    return 0


def cmd_eval(args) -> int:
    _quiet_transformers()
    evaluate_checkpoints(
        args.ckpt,
        data=args.data,
        max_examples=args.max_examples,
        n_thoughts=args.n_thoughts,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        show=args.show,
        device=args.device,
    )
    return 0


# ----- shared helpers -----------------------------------------------------------------------


def _quiet_transformers() -> None:
    """One progress bar (ours) on the terminal, not transformers' per-shard load/save bars."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def _positive(name: str, value: int | float | None) -> None:
    if value is not None and value <= 0:
        raise UserError(f"{name} must be positive, got {value}")


def _load_examples(path: str | Path, max_examples: int | None, what: str = "--data"):
    from coconutblt.data.reasoning import load_examples

    p = Path(path)
    if not p.is_file():
        raise UserError(
            f"{what} file {p} does not exist; pass a .jsonl, .json or .txt reasoning data file"
        )
    examples = list(load_examples(p))
    if max_examples is not None:
        examples = examples[:max_examples]
    if not examples:
        raise UserError(f"{what} file {p} holds no examples; check the file")
    return examples


def _stage_config(
    stage: int, c_thought: int, max_latent_stage: int, pad_latent_to_max=False, uniform_prob=0.0
):
    """The data module's StageConfig for one stage of this recipe.

    Stage 0 is plain CoT without markers (the plan's stage-0 format, and the official GSM8k
    CoT checkpoint that stage 1 starts from); stages from 1 on are Coconut with markers.
    """
    from coconutblt.data.stages import StageConfig

    return StageConfig(
        mode="cot" if stage == 0 else "coconut",
        c_thought=c_thought,
        max_latent_stage=max_latent_stage,
        pad_latent_to_max=pad_latent_to_max,
        uniform_prob=uniform_prob,
    )


def _stage_texts(example, stage: int, cfg, rng=None, for_eval=False) -> tuple[str, str, int]:
    """(prompt, target, n_thoughts) of one example at one stage, in the data module's layout.

    `for_eval` gives the official generation prompt: thoughts min(stage, steps) × c_thought
    (all of `max_latent_stage` with `pad_latent_to_max`) and no stage mixing.
    """
    from coconutblt.data.stages import format_text, stage_counts

    n_skip, n_latents = stage_counts(example, stage, cfg, rng, for_eval=for_eval)
    prompt, target = format_text(example, n_skip, n_latents, cfg.uses_markers)
    return prompt, target, n_latents


def _thought_prompt(example, n_thoughts: int) -> tuple[str, int]:
    """--n-thoughts N: the question, then markers around exactly N thoughts."""
    from coconutblt.data.stages import format_text

    return format_text(example, len(example.steps), n_thoughts, markers=True)[0], n_thoughts


# ----- hf tokens ----------------------------------------------------------------------------


def tokens_report(base_model: str, prompt: str = "The answer is", print_fn=print) -> dict:
    """Milestone 2 of the plan: vocabulary before/after, ids, tokenization, generation check."""
    from coconutblt.hf.coconut_lm import LATENT_TOKENS, CoconutForCausalLM, load_pretrained

    model, tokenizer = load_pretrained(base_model)
    model.eval()
    vocab_before = len(tokenizer)
    rows_before = model.get_input_embeddings().weight.shape[0]
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=True)
    if not prompt_ids:
        raise UserError("--prompt tokenizes to nothing; pass some text")
    before = _greedy_ids(model, prompt_ids, 12)

    init = tokenizer.encode("<<", add_special_tokens=False)
    wrapper = CoconutForCausalLM(model, tokenizer)
    ids = wrapper.token_ids
    vocab_after = len(tokenizer)
    rows_after = model.get_input_embeddings().weight.shape[0]
    after = _greedy_ids(model, prompt_ids, 12)
    again = CoconutForCausalLM(model, tokenizer).token_ids

    example = "Q?\n" + LATENT_TOKENS[0] + LATENT_TOKENS[1] * 2 + LATENT_TOKENS[2] + "### 4"
    example_ids = tokenizer.encode(example, add_special_tokens=False)
    pieces = tokenizer.convert_ids_to_tokens(example_ids)
    decoded = tokenizer.decode(example_ids)

    p = print_fn
    p(f"Base model: {base_model} ({type(model).__name__})")
    p(f"Original vocab size: {vocab_before}")
    p(f"New vocab size: {vocab_after} (+{vocab_after - vocab_before})")
    p(f"Embedding rows: {rows_before} -> {rows_after}")
    for name, i in zip(LATENT_TOKENS, (ids.start, ids.latent, ids.end), strict=True):
        p(f"  {name:<18} id {i}")
    if len(init) == 1 and init[0] < rows_before:
        p(f'New rows initialised from the embedding of "<<" (id {init[0]})')
    else:
        p("New rows initialised from the mean of the existing embeddings")
    p(f"Adding again changes nothing: {again == ids and len(tokenizer) == vocab_after}")
    p(f"Tokenization example: {example!r}")
    p(f"  ids:    {example_ids}")
    p(f"  pieces: {pieces}")
    p(f"  round trip: {'ok' if decoded == example else repr(decoded)}")
    p(f"Generation check (greedy, 12 tokens) from {prompt!r}:")
    p(f"  before: {tokenizer.decode(before)!r}")
    p(f"  after:  {tokenizer.decode(after)!r}")
    p(f"  unchanged: {before == after}")
    return {
        "vocab_before": vocab_before,
        "vocab_after": vocab_after,
        "token_ids": ids,
        "generation_unchanged": before == after,
    }


def _greedy_ids(model, prompt_ids: list[int], n: int) -> list[int]:
    """Plain greedy continuation with the base model and its cache (no thoughts)."""
    import torch

    from coconutblt.hf.coconut_lm import cache_kw, returned_cache

    device = model.get_input_embeddings().weight.device
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True)
        tokens = []
        for _ in range(n):
            token = out.logits[:, -1].argmax(-1)  # (1,)
            tokens.append(int(token))
            out = model(input_ids=token[:, None], **cache_kw(model, returned_cache(out)))
    return tokens


# ----- hf train -----------------------------------------------------------------------------

METRICS_FILE = "metrics.jsonl"


def _shard(rows: list, rank: int, world: int) -> list:
    """This rank's contiguous share of one global batch, in order: rank r of a full batch
    gets rows [r·b, (r+1)·b). A rank left without rows (a last batch smaller than the world)
    gets a copy of the first row with no loss positions, so it still joins DDP's all-reduce
    while adding nothing to the gradient."""
    from coconutblt.hf.batching import Encoded
    from coconutblt.hf.coconut_lm import IGNORE_INDEX

    per, extra = divmod(len(rows), world)
    start = rank * per + min(rank, extra)
    mine = rows[start : start + per + (1 if rank < extra else 0)]
    if not mine:
        first = rows[0]
        mine = [Encoded(first.input_ids, [IGNORE_INDEX] * len(first.labels))]
    return mine


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
        _positive(name, value)
    source = load or base_model
    if source is None:
        raise UserError("hf train needs --base-model (stage 0) or --load (a previous stage)")
    cfg = _stage_config(stage, c_thought, max_latent_stage, pad_latent_to_max, uniform_prob)
    examples = _load_examples(data, max_examples)
    val_examples = _load_examples(val_data, max_val_examples, "--val-data") if val_data else None
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
    import torch
    import torch.distributed as dist
    from tqdm.auto import tqdm

    from coconutblt.hf.batching import collate, encode_example
    from coconutblt.hf.coconut_lm import (
        CoconutForCausalLM,
        causal_lm_loss,
        enable_checkpointing,
        n_loss_tokens,
    )

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

    def val_prompt(ex):
        prompt, _, n = _stage_texts(ex, stage, cfg, for_eval=True)
        return prompt, n

    losses, val_accuracy, metrics, step = [], [], [], 0
    acc_dtype = torch.float32 if dev.type == "mps" else torch.float64  # MPS has no float64
    n_batches = math.ceil(len(examples) / global_batch)
    for epoch in range(epochs):
        # Every rank builds the same rows in the same order (same seed); each trains its shard.
        rng = random.Random(seed * 1000 + epoch)
        rows = [encode_example(tok, *_stage_texts(ex, stage, cfg, rng)[:2]) for ex in examples]
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


# ----- hf eval ------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """One checkpoint on one data set; tokens are generated tokens before EOS."""

    accuracy: float
    n_correct: int
    avg_tokens: float
    seconds: float
    thoughts: list[int]
    predictions: list[str]
    texts: list[str]
    correct: list[bool]

    @property
    def thoughts_label(self) -> str:
        """'' (none), '2 thoughts', or '1.8 thoughts on average' when counts differ."""
        if not any(self.thoughts):
            return ""
        if len(set(self.thoughts)) == 1:
            return f"{self.thoughts[0]} thoughts"
        return f"{sum(self.thoughts) / len(self.thoughts):.1f} thoughts on average"


def evaluate_model(
    model, examples, prompt_fn, max_new_tokens: int = 64, batch_size: int = 16
) -> EvalResult:
    """Greedy, batched, cached generation on every question; exact match after `### `.

    prompt_fn(example) -> (prompt text, number of thoughts in it). Rows of a batch may hold
    different thought counts: the forward handles any layout.
    """
    import torch

    from coconutblt.data.stages import answer_matches, extract_answer
    from coconutblt.hf.batching import encode_prompt, pad_prompts

    tok = model.tokenizer
    dev = model.device
    was_training = model.training
    model.eval()
    texts, preds, correct, thoughts, n_tokens = [], [], [], [], 0
    start = time.perf_counter()
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        prompts = []
        for ex in chunk:
            text, n = prompt_fn(ex)
            prompts.append(encode_prompt(tok, text))
            thoughts.append(n)
        ids, mask = pad_prompts(prompts, tok.pad_token_id)
        out = model.generate(ids.to(dev), mask.to(dev), max_new_tokens=max_new_tokens)
        for b, ex in enumerate(chunk):
            n = int(out.lengths[b])
            # special tokens stay visible: a generated marker is a fact worth seeing
            text = tok.decode(out.sequences[b, :n].tolist())
            pred = extract_answer(text)
            texts.append(text)
            preds.append(pred)
            correct.append(answer_matches(pred, ex.answer))
            n_tokens += n
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    model.train(was_training)
    n_correct = sum(correct)
    return EvalResult(
        accuracy=n_correct / len(examples),
        n_correct=n_correct,
        avg_tokens=n_tokens / len(examples),
        seconds=seconds,
        thoughts=thoughts,
        predictions=preds,
        texts=texts,
        correct=correct,
    )


def _checkpoint_prompt_fn(meta: dict, n_thoughts: int | None):
    """How a checkpoint is prompted: --n-thoughts N, else the layout its stage trained on."""
    if n_thoughts is not None:
        return lambda ex: _thought_prompt(ex, n_thoughts)
    stage = int(meta.get("stage") or 0)
    cfg = _stage_config(
        stage,
        int(meta.get("c_thought") or 1),
        int(meta.get("max_latent_stage", 3)),
        bool(meta.get("pad_latent_to_max", False)),
    )

    def prompt_fn(ex):
        prompt, _, n = _stage_texts(ex, stage, cfg, for_eval=True)
        return prompt, n

    return prompt_fn


def evaluate_checkpoints(
    ckpts: list[str],
    *,
    data: str,
    max_examples: int | None = None,
    n_thoughts: int | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 64,
    show: int = 3,
    device: str = "auto",
    print_fn=print,
) -> list[EvalResult]:
    """Print the comparison block of the plan's milestone 6 and return the results."""
    import torch

    from coconutblt.hf.coconut_lm import CoconutForCausalLM

    _positive("--max-examples", max_examples)
    _positive("--batch-size", batch_size)
    _positive("--max-new-tokens", max_new_tokens)
    if n_thoughts is not None and n_thoughts < 0:
        raise UserError(f"--n-thoughts must be 0 or more, got {n_thoughts}")
    dev = pick_device(device)
    examples = _load_examples(data, max_examples)
    results, names = [], []
    for path in ckpts:
        model = CoconutForCausalLM.from_pretrained(path)
        model.to(dev)
        prompt_fn = _checkpoint_prompt_fn(model.metadata, n_thoughts)
        with torch.no_grad():
            results.append(evaluate_model(model, examples, prompt_fn, max_new_tokens, batch_size))
        stage = model.metadata.get("stage")
        label = f"Stage {stage}" if stage is not None else "Base"
        names.append(f"{label} ({Path(path).name})")
        del model

    width = max(len(n) for n in names) + 1
    print_fn(f"{len(examples)} examples from {data}")
    for name, r in zip(names, results, strict=True):
        extra = f"  ({r.thoughts_label})" if r.thoughts_label else ""
        print_fn(
            f"{name + ':':<{width}}  Accuracy = {100 * r.accuracy:.2f}%  "
            f"Avg tokens = {r.avg_tokens:.1f}  Time = {r.seconds:.1f}s{extra}"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        if first.avg_tokens > 0:
            gain = 100 * (first.avg_tokens - last.avg_tokens) / first.avg_tokens
            print_fn(f"\nEfficiency gain: {gain:.1f}% fewer tokens ({names[-1]} vs {names[0]})")
        print_fn(f"Quality: {100 * (last.accuracy - first.accuracy):+.2f}% accuracy change")
    for i, ex in enumerate(examples[:show]):
        print_fn(f"\nExample {i + 1}:")
        print_fn(f"Question: {ex.question}")
        for name, r in zip(names, results, strict=True):
            verdict = "correct" if r.correct[i] else "wrong"
            shown = r.texts[i] if len(r.texts[i]) <= 120 else r.texts[i][:117] + "..."
            print_fn(f"{name} answer: {r.predictions[i] or '(none)'} ({verdict})  {shown!r}")
        print_fn(f"Ground truth: {ex.answer}")
    return results
