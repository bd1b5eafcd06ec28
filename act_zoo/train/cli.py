"""``act-zoo train {stage1,stage2,finetune,fewshot,partseg,semseg}`` (also under ``torchrun``), and
``act-zoo train finetune --data DIR --init NAME --out RUN`` for your own files."""

from __future__ import annotations

import argparse
import json
import logging
import os

from .config import PIPELINES, dump_config, load_config
from .tasks.files import DEFAULT_VAL_SPLIT

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
    add_finetune_arguments(p)


def add_finetune_arguments(p: argparse.ArgumentParser) -> None:
    """``act-zoo train finetune --data DIR --init NAME --out RUN``: your own files, one command."""
    g = p.add_argument_group("fine-tune on your own files (finetune --data DIR; see README 'Your own data')")
    g.add_argument("--data", metavar="DIR", help="class-per-folder tree (DIR/<class>/<files>) or a .csv/.json list; "
                   "the architecture comes from --init, the head from the data's classes")
    g.add_argument("--init", metavar="NAME_OR_RUN", help="pretrained model to start from: registry name (e.g. "
                   "act_tiny.pretrain), run directory, hf-hub:org/repo or file; 'none' trains from scratch")
    g.add_argument("--epochs", type=int, metavar="E", help="run exactly E epochs (default: scaled to the data)")
    g.add_argument("--val-split", type=float, default=None, metavar="F",
                   help=f"share of each class held out as the validation split (default {DEFAULT_VAL_SPLIT}; 0 needs --test-data)")
    g.add_argument("--test-data", metavar="DIR2", help="a separate test set (same classes); must not share files with --data")
    g.add_argument("--skip-bad", action="store_true", help="train without unreadable files (listed in the summary)")


def _own_data_flags(args: argparse.Namespace) -> list[str]:
    given = (("--init", args.init is not None), ("--epochs", args.epochs is not None),
             ("--val-split", args.val_split is not None), ("--test-data", args.test_data is not None),
             ("--skip-bad", args.skip_bad))
    return [flag for flag, value in given if value]


def run_finetune_data(args: argparse.Namespace) -> int:
    """``act-zoo train finetune --data DIR ...``: plan (printed), train, report."""
    import sys

    from .own_data import plan_finetune, run_plan
    from .rundir import check_run_directory

    if args.seeds:
        raise ValueError("--seeds is not supported with --data; run once per --set run.seed=S")
    quiet = bool(getattr(args, "quiet", False))
    out = args.out
    if not out:
        raise ValueError("--out RUN is required with --data: the run directory (load it with "
                         "act_zoo.from_pretrained(RUN))")
    main = _is_rank_zero()  # under torchrun, rank 0 alone checks --out and speaks
    if main and not args.print_config:  # a run directory that would be refused, before the data is read
        check_run_directory(out, resume=args.resume, overwrite=bool(getattr(args, "overwrite", False)))
    plan = plan_finetune(args.data, args.init, out, epochs=args.epochs,
                         val_split=DEFAULT_VAL_SPLIT if args.val_split is None else args.val_split, test_data=args.test_data,
                         skip_bad=args.skip_bad, overrides=list(args.overrides), config=args.config,
                         progress=not quiet)
    if main and (quiet or args.print_config):
        for note in plan.notes:
            print(f"warning: {note}", file=sys.stderr)
    elif main:
        print(plan.describe(), file=sys.stderr, flush=True)
    if args.print_config:
        print(dump_config(plan.config), end="")
        return 0
    summary = run_plan(plan, resume=args.resume, overwrite=bool(getattr(args, "overwrite", False)))
    if not main:
        return 0
    splits = plan.splits
    print(f"saved {out} (act_zoo.from_pretrained({str(out)!r}); card {out}/README.md, report {out}/summary.json, "
          f"files of each split {out}/splits.json)")
    if splits.skipped:
        print(f"skipped {len(splits.skipped)} unreadable files (listed in summary.json)")
    last = None
    for name in ("validation", "test"):
        section = summary.get(f"{name} (last epoch)")
        if section:
            votes = [f"{k[len('acc_'):]}: {v:.2f}" for k, v in section.items() if k.startswith("acc_vote")]
            print(f"{name} ({section['files']} files, last epoch): accuracy {section['acc']:.2f} %, class-balanced "
                  f"{section['acc_avg']:.2f} %" + (f", {votes[0]} %" if votes else ""))
            last = (name, section["acc"])
    if last is not None:
        print(f"{last[0]} accuracy: {last[1]:.2f}")
    return 0


def _is_rank_zero() -> bool:
    """True in a plain process and in torchrun's rank 0 (``RANK``, set before any process group)."""
    return os.environ.get("RANK", "0") == "0"


def run_train(args: argparse.Namespace) -> int:
    from .distributed import cleanup

    try:
        return _run_train(args)
    finally:
        cleanup()  # leave torchrun's process group (a no-op in a plain process)


def _run_train(args: argparse.Namespace) -> int:
    from .api import sweep_seeds, train

    if getattr(args, "data", None):
        if args.pipeline != "finetune":
            raise ValueError(f"--data is for `act-zoo train finetune`, not {args.pipeline}")
        return run_finetune_data(args)
    if flags := _own_data_flags(args):
        raise ValueError(f"{', '.join(flags)} only apply to `act-zoo train finetune --data DIR`")
    overrides = list(args.overrides)
    if getattr(args, "quiet", False):  # no progress bars (an explicit --set run.progress=... still wins)
        overrides.insert(0, "run.progress=false")
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
    if _is_rank_zero():
        print(json.dumps(summary, indent=2, default=str))
    return 0
