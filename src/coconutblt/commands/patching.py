"""`coconutblt entropy train` and `coconutblt patch calibrate|stats`: the patching study.

entropy train   train the small byte LM whose next-byte entropy places patch boundaries
patch calibrate find the threshold giving a target mean patch size; write it into a config
patch stats     patch sizes of fixed / space / entropy patching, and a passage figure
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from coconutblt.errors import UserError
from coconutblt.runtime.files import atomic_write

DEFAULT_TARGET = 4.5


def register(sub) -> None:
    ent = sub.add_parser("entropy", help="the entropy model used for patching (train)")
    ent_sub = ent.add_subparsers(dest="entropy_command", metavar="SUBCOMMAND")
    t = ent_sub.add_parser(
        "train", help="train the entropy model (small byte LM) and save DIR/entropy.pt"
    )
    t.add_argument(
        "--data",
        nargs="+",
        default=[],
        metavar="PATH",
        help="text files or folders (default: Python stdlib sources)",
    )
    t.add_argument("--out", required=True, metavar="DIR", help="folder for entropy.pt")
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--seq-len", type=int, default=256, help="bytes per training window")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--d-model", type=int, default=64)
    t.add_argument("--n-layers", type=int, default=2)
    t.add_argument("--n-heads", type=int, default=2)
    t.add_argument(
        "--window",
        type=int,
        default=128,
        help="sliding attention window in bytes (<= --seq-len; 0 = full)",
    )
    t.add_argument(
        "--max-bytes", type=int, default=20_000_000, help="read at most this much of the corpus"
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    t.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=run_entropy_train)
    ent.set_defaults(func=_needs_subcommand(ent))

    pat = sub.add_parser(
        "patch", help="calibrate the entropy threshold; patch statistics and figures"
    )
    pat_sub = pat.add_subparsers(dest="patch_command", metavar="SUBCOMMAND")
    c = pat_sub.add_parser(
        "calibrate", help="threshold giving a target mean patch size; write it into a config"
    )
    c.add_argument(
        "--entropy-model",
        required=True,
        metavar="DIR",
        help="folder (or .pt) written by `entropy train`",
    )
    c.add_argument(
        "--data",
        nargs="+",
        default=[],
        metavar="PATH",
        help="text to calibrate on (default: Python stdlib sources)",
    )
    c.add_argument("--target-bytes-per-patch", type=float, default=DEFAULT_TARGET)
    c.add_argument("--rule", choices=["global", "relative"], default="global")
    c.add_argument(
        "--max-patch-size",
        type=int,
        default=None,
        help="default: the config's model.max_patch_size, else 16",
    )
    c.add_argument(
        "--seq-len",
        type=int,
        default=None,
        help="window length (default: the config's data.seq_len, else the entropy model's)",
    )
    c.add_argument(
        "--max-bytes", type=int, default=2_000_000, help="calibrate on at most this much text"
    )
    c.add_argument(
        "--config", metavar="IN.yaml", help="config to start from (all its other keys are kept)"
    )
    c.add_argument(
        "--out-config",
        metavar="OUT.yaml",
        help="write the calibrated config here (default: print it)",
    )
    c.set_defaults(func=run_calibrate)

    s = pat_sub.add_parser(
        "stats", help="bytes per patch (mean, median, histogram) and a passage figure"
    )
    s.add_argument(
        "--data",
        nargs="+",
        default=[],
        metavar="PATH",
        help="text to measure (default: Python stdlib sources)",
    )
    s.add_argument(
        "--patcher",
        choices=["fixed", "space", "entropy"],
        default=None,
        help="default: entropy with --entropy-model, else fixed",
    )
    s.add_argument(
        "--entropy-model", metavar="DIR", help="folder (or .pt) written by `entropy train`"
    )
    s.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"entropy threshold (default: calibrated to {DEFAULT_TARGET} bytes/patch)",
    )
    s.add_argument("--rule", choices=["global", "relative"], default="global")
    s.add_argument(
        "--target-bytes-per-patch",
        type=float,
        default=DEFAULT_TARGET,
        help="used when --threshold is not given",
    )
    s.add_argument("--patch-size", type=int, default=4, help="fixed patcher's patch size")
    s.add_argument(
        "--max-patch-size", type=int, default=16, help="cap of the space and entropy patchers"
    )
    s.add_argument(
        "--seq-len",
        type=int,
        default=None,
        help="window length (default: the entropy model's, else 256)",
    )
    s.add_argument("--max-bytes", type=int, default=1_000_000)
    s.add_argument(
        "--passage-bytes", type=int, default=96, help="bytes shown in the passage figure"
    )
    s.add_argument(
        "--out",
        default="patch_stats",
        metavar="DIR",
        help="folder for passage.png, histogram.png, stats.json",
    )
    s.set_defaults(func=run_stats)
    pat.set_defaults(func=_needs_subcommand(pat))


def _needs_subcommand(parser: argparse.ArgumentParser):
    def run(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return run


def _positive(value, flag: str) -> None:
    if value is not None and value <= 0:
        raise UserError(f"{flag} must be > 0")


# ---------------------------------------------------------------------------- entropy train
def run_entropy_train(args: argparse.Namespace) -> int:
    from coconutblt.patching_study.entropy_train import EntropyTrainConfig, train_entropy_model

    if Path(args.out).is_file():
        raise UserError(
            f"--out {args.out}: is a file; give a folder (entropy.pt is written inside it)"
        )
    cfg = EntropyTrainConfig(
        data=list(args.data),
        max_bytes=args.max_bytes,
        steps=args.steps,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        lr=args.lr,
        d_model=args.d_model,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
        window=args.window,
        seed=args.seed,
        device=args.device,
        num_threads=args.threads,
    )
    cfg.check()
    res = train_entropy_model(cfg, args.out, progress=not args.quiet)
    first, last = res.losses[0][1], res.losses[-1][1]
    print(
        f"entropy model: {sum(p.numel() for p in res.model.parameters()):,} parameters, "
        f"window {cfg.window or 'full'}, trained {cfg.steps} steps on {res.train_bytes:,} bytes "
        f"in {res.seconds:.1f}s ({res.bytes_per_second:,.0f} bytes/s)"
    )
    print(
        f"train loss {first:.3f} -> {last:.3f} nats/byte; held-out {res.heldout_bpb:.3f} bits/byte"
    )
    print(f"wrote {res.path}")
    return 0


# ---------------------------------------------------------------------------- shared helpers
def _corpus_windows(data: list[str], seq_len: int, max_bytes: int):
    import torch

    from coconutblt.data.corpora import read_corpus
    from coconutblt.patching_study.entropies import windows_of

    blob = read_corpus(data, max_bytes)
    if len(blob) < 2 * seq_len:
        raise UserError(
            f"{len(blob)} bytes of text is too little for windows of {seq_len}; add text or lower --seq-len"
        )
    return windows_of(torch.frombuffer(bytearray(blob), dtype=torch.uint8), seq_len)


def _entropies(model, windows):
    from coconutblt.patching_study.entropies import window_entropies

    return window_entropies(model, windows)


# ---------------------------------------------------------------------------- patch calibrate
def run_calibrate(args: argparse.Namespace) -> int:
    import dataclasses

    import yaml

    from coconutblt.checkpoint import entropy_checkpoint_path, load_entropy_model
    from coconutblt.config_tree import read_yaml
    from coconutblt.patching_study.calibrate import (
        calibrate_threshold,
        calibrated_config,
        write_config,
    )

    _positive(args.target_bytes_per_patch, "--target-bytes-per-patch")
    _positive(args.max_patch_size, "--max-patch-size")
    _positive(args.seq_len, "--seq-len")
    base = read_yaml(args.config) if args.config else {}
    model = load_entropy_model(args.entropy_model)
    cap = args.max_patch_size or int((base.get("model") or {}).get("max_patch_size") or 16)
    seq_len = args.seq_len or int(
        (base.get("data") or {}).get("seq_len") or model.train_seq_len or 256
    )
    windows = _corpus_windows(args.data, seq_len, args.max_bytes)
    ent = _entropies(model, windows)
    cal = calibrate_threshold(windows, ent, args.target_bytes_per_patch, args.rule, cap)
    key = "threshold" if cal.rule == "global" else "relative_threshold"
    print(
        f"calibrated on {cal.n_bytes:,} bytes (windows of {seq_len}, max_patch_size {cap}): "
        f"{key} = {cal.threshold:.4f} nats -> {cal.achieved:.3f} bytes/patch "
        f"(target {cal.target:g}, {100 * cal.rel_error:.1f}% off, {cal.iterations} bisection steps)"
    )
    if not cal.within:
        print(
            "warning: the achieved size is more than 5% off the target (too little text, or the size jumps here)"
        )
    ckpt_path = entropy_checkpoint_path(args.entropy_model).resolve()
    tree = calibrated_config(base, cal, str(ckpt_path), dataclasses.asdict(model.cfg))
    if args.out_config:
        write_config(tree, args.out_config)
        print(
            f"wrote {args.out_config} (model.entropy_patcher.{key}, model.patcher=entropy, training.entropy_model)"
        )
    else:
        print(
            yaml.safe_dump(
                {"model": tree["model"], "training": tree["training"]}, sort_keys=False
            ).rstrip()
        )
    return 0


# ---------------------------------------------------------------------------- patch stats
def run_stats(args: argparse.Namespace) -> int:
    from coconutblt.checkpoint import load_entropy_model
    from coconutblt.patching_study.calibrate import calibrate_threshold
    from coconutblt.patching_study.plots import passage_entropies, plot_histograms, plot_passage
    from coconutblt.patching_study.stats import compare_patchers, comparison_table, text_histogram

    for flag in (
        "patch_size",
        "max_patch_size",
        "seq_len",
        "max_bytes",
        "passage_bytes",
        "target_bytes_per_patch",
    ):
        _positive(getattr(args, flag), "--" + flag.replace("_", "-"))
    patcher = args.patcher or ("entropy" if args.entropy_model else "fixed")
    if patcher == "entropy" and not args.entropy_model:
        raise UserError(
            "--patcher entropy needs --entropy-model DIR (train one with `coconutblt entropy train --out DIR`)"
        )
    model = load_entropy_model(args.entropy_model) if args.entropy_model else None
    seq_len = args.seq_len or (
        model.train_seq_len if model is not None and model.train_seq_len else 256
    )
    windows = _corpus_windows(args.data, seq_len, args.max_bytes)
    ent = _entropies(model, windows) if model is not None else None
    threshold = args.threshold
    if ent is not None and threshold is None:
        cal = calibrate_threshold(
            windows, ent, args.target_bytes_per_patch, args.rule, args.max_patch_size
        )
        threshold = cal.threshold
        print(
            f"threshold {threshold:.4f} ({args.rule}) calibrated to {cal.achieved:.2f} bytes/patch on this text"
        )
    stats = compare_patchers(
        windows, args.patch_size, args.max_patch_size, ent, threshold or 0.0, args.rule
    )
    main = stats[patcher]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # the passage figure: a stretch from the middle of the text, inside one window
    from coconutblt.model.patching import patch_starts

    w = len(windows) // 2
    row = windows[w : w + 1]
    length = min(args.passage_bytes, seq_len - 1)
    offset = max(1, min(seq_len // 4, seq_len - length))
    if patcher == "entropy":
        starts = patch_starts(
            row, "entropy", args.max_patch_size, ent[w : w + 1], threshold, args.rule, threshold
        )
    elif patcher == "space":
        starts = patch_starts(row, "space", args.max_patch_size)
    else:
        starts = patch_starts(row, "fixed", args.patch_size)
    passage = row[0, offset : offset + length].tolist()
    pent = passage_entropies(ent[w], offset, length) if ent is not None else None
    png = plot_passage(
        out / "passage.png",
        passage,
        starts[0, offset : offset + length].tolist(),
        pent,
        threshold if (ent is not None and args.rule == "global") else None,
        title=f"{main.name}: next-byte entropy and patch starts (grey)"
        if ent is not None
        else f"{main.name}: patch starts (grey)",
    )
    hist = plot_histograms(out / "histogram.png", list(stats.values()))
    table = comparison_table(stats)
    atomic_write(out / "stats.md", table + "\n")
    atomic_write(
        out / "stats.json",
        json.dumps(
            {k: vars(v) for k, v in stats.items()}
            | {"patcher": patcher, "threshold": threshold, "seq_len": seq_len},
            indent=2,
        ),
    )
    print(f"{windows.numel():,} bytes in windows of {seq_len}")
    print(table)
    print(
        f"\n{main.name}: mean {main.mean:.2f}, median {main.median:g} bytes/patch, {100 * main.share_at_cap:.1f}% at max size {main.cap}"
    )
    print(text_histogram(main))
    print(f"wrote {png}, {hist}, {out / 'stats.json'}")
    return 0
