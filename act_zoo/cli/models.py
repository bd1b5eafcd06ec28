"""``act-zoo list | info | download | convert``: find models, fetch and convert weights."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._main import CLIError


def _cmd_list(args: argparse.Namespace) -> int:
    from ..hub.registry import availability, get_record, list_models

    names = list_models(args.pattern, pretrained=args.pretrained)
    if not names:
        print(f"no model matches {args.pattern!r} (a substring or a glob such as 'act_base.*')", file=sys.stderr)
        return 1
    rows = []
    for name in names:
        rec = get_record(name)
        metric = ", ".join(f"{k} {v}" for k, v in rec.metrics.items()) or "-"
        offline = availability(rec) or "-"
        rows.append((name, f"{rec.num_params / 1e6:.1f}M", rec.task, rec.dataset, offline, metric))
    header = ("name", "params", "task", "dataset", "offline", "metrics")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from ..hub.registry import get_record

    try:
        rec = get_record(args.name)
    except ValueError as exc:
        hint = str(exc).removesuffix("; see act_zoo.list_models()")
        raise CLIError(f"{hint} (run `act-zoo list` to see every registered model)") from None
    print(json.dumps(rec.to_dict(), indent=2))
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from ..hub.registry import get_record, resolve_weights

    rec = get_record(args.name)
    if not rec.has_weights:
        raise CLIError(f"{rec.name} has no published weights")
    print(resolve_weights(rec, progress=not args.quiet))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from ..hub.registry import from_pretrained

    src = Path(args.checkpoint)
    if not src.exists():
        raise CLIError(f"checkpoint not found: {src}")
    config = None
    if args.config:
        from ..hub.convert import split_official_config

        config = split_official_config(args.config)
    model = from_pretrained(src, config=config, strict=not args.no_strict)
    out = model.save_pretrained(args.out, source=str(src))
    print(model.load_report.format())
    print(f"saved {type(model).__name__} to {out}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("list", parents=[common], help="list registered models",
                       description="List registered models. The 'offline' column says which can be used without "
                                   "the network now: 'embedded' (shipped in the package) or 'cached' (downloaded "
                                   "or converted, and verified).")
    s.add_argument("pattern", nargs="?", default="*",
                   help="a substring of the names (`tiny`) or a glob (`act_base.scan*`); default: all")
    s.add_argument("--pretrained", action="store_true", help="only models with published weights")
    s.set_defaults(func=_cmd_list)

    s = sub.add_parser("info", parents=[common], help="show a model's manifest record",
                       description="Show a model's manifest record.")
    s.add_argument("name")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("download", parents=[common], help="download (and convert) a model's weights into the cache",
                       description="Download a registered model's weights into the cache ($ACT_ZOO_HOME), verify "
                                   "them and convert official checkpoints once; prints the cached path.")
    s.add_argument("name")
    s.set_defaults(func=_cmd_download)

    s = sub.add_parser("convert", parents=[common], help="convert an official .pth into a save_pretrained directory",
                       description="Convert an official ACT checkpoint (.pth, any official layout) into config.json + "
                                   "model.safetensors + README.md. Loading is strict and never runs a pickle.")
    s.add_argument("checkpoint", help="official checkpoint (.pth) or safetensors file")
    s.add_argument("--config", help="the official yaml of the run (its model: section is used); inferred if omitted")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--no-strict", action="store_true", help="load even if keys are unexplained (they are reported)")
    s.set_defaults(func=_cmd_convert)
