"""Seed script: `python scripts/estimate_params.py --d_model 2048 --n_layers 20`."""

import sys

from coconutblt.cli import main

if __name__ == "__main__":
    sys.exit(main(["estimate-params", *sys.argv[1:]]))
