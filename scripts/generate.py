"""Seed script: `python scripts/generate.py --ckpt checkpoints/final.pt --prompt "Hello"
--max_new_tokens 64` (any `coconutblt generate` flag works)."""

import sys

from coconutblt.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
