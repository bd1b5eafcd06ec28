"""The ``act-zoo`` command: find models, fetch and convert weights, extract features, train.

    act-zoo list [PATTERN] [--pretrained]
    act-zoo info NAME
    act-zoo download NAME
    act-zoo convert OFFICIAL.pth [--config CFG.yaml] --out DIR
    act-zoo extract NAME FILES... --out feats.npz
    act-zoo train {stage1,stage2,finetune,fewshot,partseg} --config CFG.yaml [overrides]

Every command has ``--help``; errors are one clear line on stderr and a non-zero exit code
(1: the operation failed, 2: bad usage).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("act_zoo.cli")


class CLIError(Exception):
    """A failure to report as one line, exit code 1."""


def _cmd_list(args: argparse.Namespace) -> int:
    from .hub.registry import get_record, list_models

    names = list_models(args.pattern, pretrained=args.pretrained)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    rows = []
    for name in names:
        rec = get_record(name)
        metric = ", ".join(f"{k} {v}" for k, v in rec.metrics.items()) or "-"
        rows.append((name, f"{rec.num_params / 1e6:.1f}M", rec.task, rec.dataset, metric))
    widths = [max(len(r[i]) for r in rows + [("name", "params", "task", "dataset", "metrics")]) for i in range(5)]
    for row in [("name", "params", "task", "dataset", "metrics")] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .hub.registry import get_record

    print(json.dumps(get_record(args.name).to_dict(), indent=2))
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from .hub.registry import get_record, resolve_weights

    rec = get_record(args.name)
    if not rec.has_weights:
        raise CLIError(f"{rec.name} has no published weights")
    print(resolve_weights(rec, progress=not args.quiet))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .hub.registry import from_pretrained

    src = Path(args.checkpoint)
    if not src.exists():
        raise CLIError(f"checkpoint not found: {src}")
    config = None
    if args.config:
        from .hub.convert import split_official_config

        config = split_official_config(args.config)
    model = from_pretrained(src, config=config, strict=not args.no_strict)
    out = model.save_pretrained(args.out, source=str(src))
    print(model.load_report.format())
    print(f"saved {type(model).__name__} to {out}")
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from .extract import extract_features
    from .hub.cache import atomic_path
    from .hub.registry import from_pretrained

    files = [Path(f) for f in args.files]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise CLIError(f"file(s) not found: {', '.join(missing)}")
    model = from_pretrained(args.model)
    if args.device:
        model = model.to(args.device)
    feats = []
    for start in tqdm(range(0, len(files), args.batch_size), desc="extract", unit="batch", disable=args.quiet):
        chunk = files[start:start + args.batch_size]
        feats.append(extract_features(model, chunk, batch_size=args.batch_size, sample=args.sample, seed=args.seed,
                                      amp=args.amp))
    arrays = {
        "global_feature": torch.cat([f.global_feature for f in feats]).numpy(),
        "centers": torch.cat([f.centers for f in feats]).numpy(),
        "files": np.array([str(f) for f in files]),
    }
    if not args.no_tokens:
        arrays["tokens"] = torch.cat([f.tokens for f in feats]).numpy()
    out = Path(args.out)
    if out.suffix != ".npz":
        raise CLIError(f"--out must end in .npz, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items())
    print(f"wrote {out}: {shapes}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .train.cli import run_train

    return run_train(args)


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    p = argparse.ArgumentParser(prog="act-zoo", description="ACT point-cloud Transformers: models, weights, features.")
    p.add_argument("--version", action="version", version=f"act-zoo {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="list registered models", description="List registered models.")
    s.add_argument("pattern", nargs="?", default="*", help="glob over names (default: all)")
    s.add_argument("--pretrained", action="store_true", help="only models with published weights")
    s.set_defaults(func=_cmd_list)

    s = sub.add_parser("info", help="show a model's manifest record", description="Show a model's manifest record.")
    s.add_argument("name")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("download", help="download (and convert) a model's weights into the cache",
                       description="Download a registered model's weights into the cache ($ACT_ZOO_HOME), verify "
                                   "them and convert official checkpoints once; prints the cached path.")
    s.add_argument("name")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_download)

    s = sub.add_parser("convert", help="convert an official .pth into a save_pretrained directory",
                       description="Convert an official ACT checkpoint (.pth, any official layout) into config.json + "
                                   "model.safetensors + README.md. Loading is strict and never runs a pickle.")
    s.add_argument("checkpoint", help="official checkpoint (.pth) or safetensors file")
    s.add_argument("--config", help="the official yaml of the run (its model: section is used); inferred if omitted")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--no-strict", action="store_true", help="load even if keys are unexplained (they are reported)")
    s.set_defaults(func=_cmd_convert)

    s = sub.add_parser("extract", help="extract features of point-cloud / mesh files",
                       description="Extract ACT features of files (.ply .pcd .npy .npz .txt .xyz .csv .off .obj .stl; "
                                   "meshes are sampled by area with a fixed seed) into an .npz with global_feature "
                                   "[F, 2C], tokens [F, G, C], centers [F, G, 3] and the file list.")
    s.add_argument("model", help="registry name, hf-hub:org/repo, URL, directory or checkpoint")
    s.add_argument("files", nargs="+")
    s.add_argument("--out", required=True, help="output .npz")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: the model's)")
    s.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    s.add_argument("--sample", choices=["fps", "random"], default="fps", help="resampling to the model's npoints")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-tokens", action="store_true", help="omit the per-patch tokens from the output")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_extract)

    s = sub.add_parser("train", help="run a training pipeline (stage1, stage2, finetune, fewshot, partseg)",
                       description="Run an ACT training pipeline. Defaults are the official configs; a YAML file and "
                                   "--set key=value override any field. Multi-process: torchrun --nproc-per-node N "
                                   "-m act_zoo.cli train ...")
    from .train.cli import add_train_arguments

    add_train_arguments(s)
    s.set_defaults(func=_cmd_train)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError, OSError) as exc:
        if args.verbose:
            logger.exception("failed")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"act-zoo {args.command}: error: {first}", file=sys.stderr)
        if len(str(exc).strip().splitlines()) > 1:
            print("\n".join("  " + line for line in str(exc).strip().splitlines()[1:12]), file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
