"""``act-zoo train {stage1,stage2,finetune,fewshot,partseg}`` (also under ``torchrun``)."""

from __future__ import annotations

import argparse
import json
import logging

from .config import PIPELINES, dump_config, load_config

logger = logging.getLogger(__name__)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", choices=sorted(PIPELINES), help="which stage to run")
    p.add_argument("--config", help="YAML config (any subset of the pipeline's fields; official defaults otherwise)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one value, dotted keys, e.g. --set run.max_epoch=10 --set optim.lr=1e-4")
    p.add_argument("--out", help="run directory (run.out_dir)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest intact checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the previous run in --out and start again (a new run refuses a non-empty --out)")
    p.add_argument("--seeds", help="comma-separated seeds: one run per seed, then mean ± std of the final metrics")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run_train(args: argparse.Namespace) -> int:
    from .distributed import cleanup

    try:
        return _run_train(args)
    finally:
        cleanup()  # leave torchrun's process group (a no-op in a plain process)


def _run_train(args: argparse.Namespace) -> int:
    from .api import sweep_seeds, train

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"run.out_dir={args.out}")
    cfg = load_config(args.pipeline, args.config, overrides)
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    if args.seeds:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError as exc:
            raise ValueError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from exc
        report = sweep_seeds(args.pipeline, cfg, seeds, resume=args.resume, overwrite=args.overwrite)
        for k, v in report["metrics"].items():
            print(f"{k}: {v['mean']:.2f} ± {v['std']:.2f}  (seeds {report['seeds']})")
        return 0
    summary = train(args.pipeline, cfg, resume=args.resume, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2, default=str))
    return 0
