"""`coconutblt eval-bpb --ckpt PATH FILES...`: bits-per-byte, bytes per patch, a histogram PNG."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "eval-bpb", help="bits-per-byte and patch statistics of a checkpoint on text"
    )
    p.add_argument("--ckpt", required=True, help="checkpoint file (or run folder) to load")
    p.add_argument(
        "files", nargs="*", help="text files or folders (none: the Python standard library)"
    )
    p.add_argument("--seq-len", "--seq_len", dest="seq_len", type=int, default=1024)
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=8)
    p.add_argument(
        "--max-bytes",
        "--max_bytes",
        dest="max_bytes",
        type=int,
        default=1 << 20,
        help="read at most this many bytes (default 1 MiB; 0 = all)",
    )
    p.add_argument(
        "--plot",
        default=None,
        help="patch-size histogram PNG (default: patch_sizes.png beside the checkpoint)",
    )
    p.add_argument("--no-plot", action="store_true", help="write no histogram")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from coconutblt.checkpoint import load_model
    from coconutblt.data.corpora import read_corpus
    from coconutblt.errors import UserError
    from coconutblt.inference.evaluate_bpb import bits_per_byte, save_patch_histogram
    from coconutblt.runtime.device import pick_device

    if args.seq_len < 2 or args.batch_size < 1 or args.max_bytes < 0:
        raise UserError("--seq-len must be >= 2, --batch-size >= 1 and --max-bytes >= 0")
    model = load_model(args.ckpt, pick_device(args.device))
    blob = read_corpus(args.files, args.max_bytes or None)
    data = torch.frombuffer(bytearray(blob), dtype=torch.uint8) if blob else torch.zeros(0)
    seq_len = min(args.seq_len, model.config.max_seq_len)
    res = bits_per_byte(model, data, seq_len, args.batch_size)
    print(
        f"bits per byte: {res.bpb:.4f} over {res.n_predicted:,} predicted bytes "
        f"({res.n_windows} windows of up to {seq_len} bytes)"
    )
    print(f"bytes per patch: {res.bytes_per_patch:.3f} ({res.n_patches:,} patches)")
    sizes = " ".join(f"{n}:{c}" for n, c in enumerate(res.patch_hist) if n > 0 and c > 0)
    print(f"patch sizes (length:count): {sizes}")
    if not args.no_plot:
        ckpt = Path(args.ckpt)
        default = (ckpt if ckpt.is_dir() else ckpt.parent) / "patch_sizes.png"
        title = f"{ckpt.name}: {res.bytes_per_patch:.2f} bytes/patch, {res.bpb:.3f} bpb"
        path = save_patch_histogram(res, args.plot or default, title)
        print(f"histogram: {path}")
    return 0
