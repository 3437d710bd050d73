"""Seed script: `python scripts/export_hf.py --ckpt runs/tiny/best.pt --out exports/tiny-hf`."""

import sys

from coconutblt.cli import main

if __name__ == "__main__":
    sys.exit(main(["export-hf", *sys.argv[1:]]))
