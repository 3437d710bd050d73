"""`coconutblt export-hf --ckpt PATH --out DIR`: a folder `AutoModelForCausalLM` loads.

The folder holds config.json (with `auto_map`), model.safetensors, the model's code (flattened
from this package) and a byte tokenizer, so `from_pretrained(DIR, trust_remote_code=True)` and
`pipeline("text-generation", model=DIR, trust_remote_code=True)` need neither coconutblt nor a
network. By default the export is then loaded that way, its logits compared with the native
model's and its tokenizer checked.
"""

from __future__ import annotations

import argparse
import sys

VERIFY_TOL = 1e-5


def register(sub) -> None:
    p = sub.add_parser(
        "export-hf",
        help="export a checkpoint to a Hugging Face folder (trust_remote_code)",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--ckpt", required=True, help="coconutblt checkpoint (.pt) or run folder")
    p.add_argument("--out", required=True, help="folder to write (created; must be empty)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip loading the export with transformers, comparing logits, checking the tokenizer",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from coconutblt.checkpoint import load_model
    from coconutblt.export.hf_folder import (
        check_out_dir,
        export_hf,
        export_summary,
        verify_export,
    )

    check_out_dir(args.out, args.overwrite)  # before reading a checkpoint that may be large
    model = load_model(args.ckpt)
    out = export_hf(model, args.out, overwrite=args.overwrite)
    sizes = export_summary(out)
    print(
        f"wrote {out}/: " + ", ".join(f"{name} ({n / 1024:.1f} KiB)" for name, n in sizes.items())
    )
    if args.verify:
        diff = verify_export(out, model)
        if diff > VERIFY_TOL:
            print(
                f"coconutblt export-hf: verification failed: AutoModelForCausalLM logits differ from "
                f"the native model's by up to {diff:.3g}",
                file=sys.stderr,
            )
            return 1
        print(
            f"verified: AutoModelForCausalLM logits match the native model (max |diff| {diff:.2g}); "
            "the tokenizer maps text to its bytes"
        )
    print(f"load with: AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True)")
    print(f"or: pipeline('text-generation', model={str(out)!r}, trust_remote_code=True)")
    return 0
