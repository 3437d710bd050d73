"""`coconutblt generate --ckpt PATH --prompt TEXT`: continue a prompt, print text and bytes/s."""

from __future__ import annotations

import argparse

import torch

from coconutblt.errors import UserError
from coconutblt.runtime.device import pick_device


def register(sub) -> None:
    p = sub.add_parser("generate", help="continue a prompt with a trained checkpoint (KV-cached)")
    p.add_argument("--ckpt", required=True, help="checkpoint file (or run folder) to load")
    p.add_argument(
        "--prompt", required=True, help="prompt text; <|bos|>, <|latent|>, ... become special ids"
    )
    p.add_argument(
        "--max-new-tokens", "--max_new_tokens", dest="max_new_tokens", type=int, default=64
    )
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", "--top_k", dest="top_k", type=int, default=0, help="0 = all ids")
    p.add_argument("--top-p", "--top_p", dest="top_p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument(
        "--thoughts", type=int, default=0, help="append N continuous thoughts to the prompt"
    )
    p.add_argument(
        "--markers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="put <|start-latent|>/<|end-latent|> around the thoughts (default: as the checkpoint "
        "was trained, curriculum.markers)",
    )
    p.add_argument("--bos", action="store_true", help="start the prompt with <|bos|>")
    p.add_argument(
        "--no-cache",
        "--no_cache",
        dest="no_cache",
        action="store_true",
        help="recompute the whole sequence for every byte (slow reference)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--threads", type=int, default=0, help="CPU threads (0 = torch default; 1 is often fastest)"
    )
    p.set_defaults(func=run)


def trained_with_markers(ckpt: dict, source: str) -> bool:
    """Whether the checkpoint's run put markers around its thoughts (True when it has no run
    config, e.g. a checkpoint written by a script)."""
    from coconutblt.train.config import run_config_from_dict, stage_config

    run_config = ckpt.get("run_config")
    if not run_config:
        return True
    return stage_config(run_config_from_dict(run_config, source=source)).uses_markers


def run(args: argparse.Namespace) -> int:
    from coconutblt.checkpoint import model_from_checkpoint, read_checkpoint
    from coconutblt.inference.generate import generate, parse_prompt
    from coconutblt.vocab import BOS_ID, decode_text

    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens {args.max_new_tokens}: give at least 1")
    if args.temperature < 0:
        raise UserError(f"--temperature {args.temperature}: must be >= 0 (0 = greedy)")
    if not 0 < args.top_p <= 1:
        raise UserError(f"--top-p {args.top_p}: must be in (0, 1]")
    if args.top_k < 0 or args.thoughts < 0:
        raise UserError("--top-k and --thoughts must be >= 0")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    ckpt = read_checkpoint(args.ckpt)
    model = model_from_checkpoint(ckpt, args.ckpt, device)
    markers = args.markers if args.markers is not None else trained_with_markers(ckpt, args.ckpt)
    prompt = ([BOS_ID] if args.bos else []) + parse_prompt(args.prompt)
    out = generate(
        model,
        [prompt],
        args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        thoughts=args.thoughts,
        use_cache=not args.no_cache,
        markers=markers,
    )
    print(decode_text(out.prompts[0]) + decode_text(out.tokens[0]))
    mode = "recomputed" if args.no_cache else "cached"
    print(
        f"[{out.n_new} new bytes in {out.prefill_s + out.decode_s:.3f} s: "
        f"{out.bytes_per_s:.1f} bytes/s ({mode}, prefill {out.prefill_s:.3f} s, "
        f"{out.decode_bytes_per_s:.1f} bytes/s after it, {device})]"
    )
    return 0
