"""`coconutblt hf tokens | train | eval | merge-lora | tiny-base`: the Coconut reproduction path on a local
Hugging Face model (the library is `coconutblt.hf`; docs/hf_coconut.md walks through it).

The parser only: each `run_*` passes the flags to one library call. transformers, torch and
the library are imported inside the `run_*` functions, so registering the parser (every
`coconutblt` command does) imports none of them.
"""

from __future__ import annotations

import argparse


def add_hf_parser(subparsers) -> argparse.ArgumentParser:
    """Register `hf` with `tokens`, `train`, `eval`, `merge-lora`, `tiny-base`; each sets
    `func`."""
    hf = subparsers.add_parser("hf", help="Coconut on a local Hugging Face causal LM")
    sub = hf.add_subparsers(dest="hf_command", metavar="{tokens,train,eval,merge-lora,tiny-base}")
    sub.required = True

    p = sub.add_parser("tokens", help="add the three Coconut tokens and show what changed")
    p.add_argument("--base-model", required=True, help="local Hugging Face model folder")
    p.add_argument("--prompt", default="The answer is", help="text for the generation check")
    p.set_defaults(func=run_tokens)

    p = sub.add_parser("train", help="train one curriculum stage (0 = written reasoning)")
    p.add_argument(
        "--base-model",
        help="local Hugging Face model folder (stage 0; with a LoRA --load: where its base is)",
    )
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
    p.add_argument("--out", help="output folder (replaced atomically; not needed with --plan)")
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
    lora = p.add_argument_group("LoRA (PEFT): train an adapter and the 3 token rows, not the model")
    lora.add_argument("--lora-r", type=int, help="adapter rank (e.g. 16); off by default")
    lora.add_argument("--lora-alpha", type=float, help="adapter scale alpha (default: 2 x r)")
    lora.add_argument("--lora-dropout", type=float, default=0.0, help="default 0")
    lora.add_argument(
        "--lora-targets",
        help="comma-separated module names or all-linear "
        "(default: PEFT's for the architecture; Llama: q_proj,v_proj; GPT-2: c_attn)",
    )
    lora.add_argument(
        "--merge-lora",
        metavar="DIR",
        help="after the last epoch also save the adapter merged into its base, a full model, to DIR",
    )
    p.add_argument(
        "--parallel",
        choices=("fsdp", "ddp"),
        default="fsdp",
        help="under torchrun: FSDP2 shards weights, gradients and AdamW (default); DDP copies",
    )
    p.add_argument(
        "--report-to",
        nargs="+",
        default=[],
        metavar="TRACKER",
        help="mirror metrics.jsonl into tensorboard and/or wandb (logs in --out)",
    )
    p.add_argument(
        "--plan",
        action="store_true",
        help="print the memory plan (weights, gradients, AdamW, activations; full vs LoRA) and exit",
    )
    p.set_defaults(func=run_train)

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
    p.add_argument("--base-model", help="base model folder of LoRA checkpoints (if moved)")
    p.set_defaults(func=run_eval)

    p = sub.add_parser("merge-lora", help="merge a LoRA checkpoint into its base: a full folder")
    p.add_argument("--ckpt", required=True, help="checkpoint folder holding an adapter")
    p.add_argument("--out", required=True, help="output folder (replaced atomically)")
    p.add_argument("--base-model", help="the base model folder (default: the recorded one)")
    p.set_defaults(func=run_merge_lora)

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
    p.set_defaults(func=run_tiny_base)
    return hf


register = add_hf_parser  # the name `coconutblt.cli` calls in every command module


def _quiet_transformers() -> None:
    """One progress bar (ours) on the terminal, not transformers' per-shard load/save bars."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def run_tokens(args: argparse.Namespace) -> int:
    from coconutblt.hf.tokens_report import tokens_report

    _quiet_transformers()
    tokens_report(args.base_model, prompt=args.prompt)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from coconutblt.hf.lora import LoraSettings, parse_targets
    from coconutblt.hf.train import plan_stage, train_stage

    _quiet_transformers()
    lora = None
    if args.lora_r is not None:
        lora = LoraSettings(
            r=args.lora_r,
            alpha=args.lora_alpha,
            dropout=args.lora_dropout,
            targets=parse_targets(args.lora_targets),
        )
    if args.plan:
        plan_stage(
            base_model=args.base_model,
            load=args.load,
            data=args.data,
            stage=args.stage,
            c_thought=args.c_thought,
            max_latent_stage=args.max_latent_stage,
            pad_latent_to_max=args.pad_latent_to_max,
            batch_size=args.batch_size,
            max_examples=args.max_examples,
            bf16=args.bf16,
            lora=lora,
        )
        return 0
    if args.out is None:
        from coconutblt.errors import UserError

        raise UserError("hf train needs --out (the checkpoint folder to write), or --plan")
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
        lora=lora,
        merge_lora=args.merge_lora,
        parallel=args.parallel,
        report_to=args.report_to,
    )
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from coconutblt.hf.evaluate import evaluate_checkpoints

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
        base_model=args.base_model,
    )
    return 0


def run_merge_lora(args: argparse.Namespace) -> int:
    from coconutblt.hf.lora import merge_checkpoint

    _quiet_transformers()
    merge_checkpoint(args.ckpt, args.out, base_model=args.base_model)
    return 0


def run_tiny_base(args: argparse.Namespace) -> int:
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
