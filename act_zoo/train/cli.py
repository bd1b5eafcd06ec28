"""``act-zoo train {stage1,stage2,finetune,fewshot,partseg,semseg}`` (also under ``torchrun``)."""

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
    p.add_argument("--resume", action="store_true", help="continue from the run directory's latest checkpoint")
    p.add_argument("--seeds", help="comma-separated seeds: one run per seed, then mean ± std of the final metrics")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run_train(args: argparse.Namespace) -> int:
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
        report = sweep_seeds(args.pipeline, cfg, seeds, resume=args.resume)
        for k, v in report["metrics"].items():
            print(f"{k}: {v['mean']:.2f} ± {v['std']:.2f}  (seeds {report['seeds']})")
        return 0
    summary = train(args.pipeline, cfg, resume=args.resume)
    print(json.dumps(summary, indent=2, default=str))
    return 0
