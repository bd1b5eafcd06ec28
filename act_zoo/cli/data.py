"""``act-zoo data check DATASET ROOT``: validate a downloaded official dataset before training."""

from __future__ import annotations

import argparse

_MARK = {"ok": "ok     ", "warning": "warning", "problem": "PROBLEM"}


def _cmd_check(args: argparse.Namespace) -> int:
    from ..data.check import DATASETS, CheckOptions, check_dataset

    opts = CheckOptions(expect_counts=args.expect_counts, samples=args.samples, allow_pickle=args.allow_pickle,
                        variants=tuple(args.variant) if args.variant else None, way=args.way, shot=args.shot)
    spec = DATASETS[args.dataset]
    report = check_dataset(args.dataset, args.root, opts)
    print(f"{spec.title} at {report.root}")
    print(f"  get it: {spec.source}")
    for status, text in report.lines:
        print(f"  {_MARK[status]}  {text}")
    if report.ok:
        tail = f", {len(report.warnings)} warning(s)" if report.warnings else ""
        print(f"OK: {args.dataset} at {report.root} is ready{tail}")
        return 0
    print(f"FAILED: {len(report.problems)} problem(s) (marked PROBLEM above); the expected layout:")
    print("\n".join("  " + line for line in spec.layout.splitlines()))
    return 1


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from ..data.check import DATASETS

    s = sub.add_parser("data", parents=[common], help="check a downloaded official dataset",
                       description="Tools for the official datasets.")
    group = s.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    c = group.add_parser(
        "check", parents=[common], help="validate an official dataset: layout, split sizes, samples, labels",
        description="Validate a downloaded official dataset before hours of training: the expected layout, items "
                    "per split against the official release, a sample of items read through the official reader, "
                    "label ranges; prints where the official instructions say to get it. Exit code 0 when it is "
                    "ready, 1 with the list of problems.")
    c.add_argument("dataset", choices=list(DATASETS), help="which dataset")
    c.add_argument("root", help="its folder (e.g. data/ScanObjectNN, data/ModelNet/modelnet40_normal_resampled)")
    c.add_argument("--expect-counts", action=argparse.BooleanOptionalAction, default=True,
                   help="require the official split sizes and points per item (default); --no-expect-counts "
                        "reports a difference as a warning (subsets, test files)")
    c.add_argument("--samples", type=int, default=8, help="items read per split (default 8)")
    c.add_argument("--allow-pickle", action="store_true",
                   help="read the official ModelNet .dat/.pkl pickles (restricted unpickler; converting them once "
                        "with act_zoo.data.convert_modelnet_pickle is the alternative)")
    c.add_argument("--variant", action="append", choices=["PB_T50_RS", "OBJ_BG", "OBJ_ONLY"],
                   help="scanobjectnn: check only this variant (repeatable; default all three)")
    c.add_argument("--way", type=int, help="modelnet40_fewshot: only this way (5 or 10)")
    c.add_argument("--shot", type=int, help="modelnet40_fewshot: only this shot (10 or 20)")
    c.set_defaults(func=_cmd_check)
