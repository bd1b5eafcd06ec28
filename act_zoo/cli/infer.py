"""``act-zoo predict`` and ``act-zoo evaluate``: a classifier, exactly as saved, on your files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ._main import CLIError


def _class_names(text: str | None) -> list[str] | None:
    if not text:
        return None
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise CLIError(f"--class-names must be comma-separated non-empty names, got {text!r}")
    return names


def _progress(args: argparse.Namespace) -> bool | None:
    return False if getattr(args, "quiet", False) else None


def _writable(path: Path, flag: str) -> None:
    """Fail before any work when ``path`` cannot be written."""
    if path.is_dir():
        raise CLIError(f"{flag} {path} is a directory; give a file name")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create the folder of {flag} {path}: {exc.strerror or exc}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CLIError(f"{flag} {path}: the folder {folder} is not writable")


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..data import DatasetError
    from ..data.io import collect_files
    from ..prediction import predict, prediction_rows, write_predictions

    if args.out:
        _writable(Path(args.out), "--out")
    files = collect_files(args.inputs)
    try:
        preds = predict(args.model, files, top_k=args.top_k, batch_size=args.batch_size, device=args.device,
                        seed=args.seed, skip_bad=args.skip_bad, class_names=_class_names(args.class_names),
                        progress=_progress(args))
    except DatasetError as exc:  # an unreadable input: say how to predict the others
        raise CLIError(f"{exc}\n(--skip-bad predicts the other files and lists the unreadable ones)") from exc
    for row in prediction_rows(preds):
        print("\t".join(row))
    for name, reason in preds.skipped:
        print(f"act-zoo predict: skipped {name}: {reason}", file=sys.stderr)
    if args.out:
        write_predictions(preds, args.out)
        print(f"wrote {len(preds)} predictions to {args.out}", file=sys.stderr)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate

    if (args.data is None) == (args.dataset is None):
        raise CLIError("give --data DIR (a class-per-folder tree or a .csv/.json list; S3DIS-format room files for a "
                       "segmentation model) or --dataset NAME --root ROOT")
    png = None
    if args.confusion:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print('act-zoo evaluate: warning: matplotlib is not installed, no confusion-matrix PNG '
                  '(pip install "act-zoo[train]")', file=sys.stderr)
        else:
            png = Path(args.confusion)
            _writable(png, "--confusion")
    result = evaluate(args.model, args.data, dataset=args.dataset, root=args.root, split=args.split,
                      variant=args.variant, votes=args.votes, batch_size=args.batch_size, device=args.device,
                      seed=args.seed, allow_pickle=args.allow_pickle, num_workers=args.workers,
                      class_names=_class_names(args.class_names), confusion_png=png, progress=_progress(args),
                      test_area=args.test_area)
    print(result.report())  # its last line: "accuracy: X" ("miou: X" for semantic segmentation)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    model_help = "registry name, run directory (act-zoo train output), hf-hub:org/repo, URL or checkpoint"
    p = sub.add_parser(
        "predict", parents=[common], help="predict the class of point-cloud / mesh files",
        description="Predict the class of each file (files, directories searched recursively, glob patterns). "
                    "Each cloud is centred and scaled (in float64) and FPS-resampled to the model's npoints. "
                    "Prints one tab-separated line per file: path, class, probability (softmax) -- with "
                    "--top-k K, K class/probability pairs on the line, best first. --out also writes them "
                    "with a header line (comma-separated for .csv, tab-separated otherwise).")
    p.add_argument("model", help=model_help)
    p.add_argument("inputs", nargs="+", metavar="FILES_OR_DIRS", help="files, directories or glob patterns")
    p.add_argument("--top-k", type=int, default=1, help="classes per file, best first (default 1)")
    p.add_argument("--out", help="also write the predictions to this .csv (or .tsv) file")
    p.add_argument("--skip-bad", action="store_true", help="continue past unreadable files (listed on stderr)")
    p.add_argument("--class-names", help="comma-separated output names, for a model that stores none")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", help="e.g. cpu, cuda (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="seed of padding / mesh sampling")
    p.set_defaults(func=_cmd_predict)

    e = sub.add_parser(
        "evaluate", parents=[common], help="accuracy of a classifier (or mIoU of a segmentation model) on labelled data",
        description="Evaluate a classifier exactly as saved: overall and per-class accuracy, without and with "
                    "the official voting (seeded, reproducible), and a confusion-matrix PNG. The last line "
                    "printed is 'accuracy: X' (percent, without voting: the share of files `act-zoo predict` gets right; "
                    "the voting accuracy is the line above). A semantic-segmentation model is evaluated on whole "
                    "rooms in the S3DIS format (--dataset s3dis --root ROOT, or --data ROOM_FILES_DIR): official "
                    "whole-room test, mIoU / mAcc / OA and per-class IoU, last line 'miou: X'.")
    e.add_argument("model", help=model_help)
    e.add_argument("--data", help="a class-per-folder directory, or a .csv/.json list of path,label")
    e.add_argument("--dataset", choices=["modelnet40", "modelnet10", "scanobjectnn", "s3dis"],
                   help="an official dataset instead of --data (with --root)")
    e.add_argument("--root", help="the official dataset's folder")
    e.add_argument("--split", choices=["train", "test"], default="test")
    e.add_argument("--variant", choices=["PB_T50_RS", "OBJ_BG", "OBJ_ONLY"], help="ScanObjectNN variant")
    e.add_argument("--allow-pickle", action="store_true", help="permit the official ModelNet .dat pickles")
    e.add_argument("--votes", type=int, help="voting passes (official: 10 for classifiers, 3 for S3DIS rooms; "
                                              "0: no voting)")
    e.add_argument("--test-area", type=int, default=5, help="s3dis: the area whose rooms are evaluated (official 5)")
    e.add_argument("--confusion", default="confusion_matrix.png",
                   help="confusion-matrix PNG to write (default %(default)s; '' for none)")
    e.add_argument("--class-names", help="comma-separated output names, for a model that stores none")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--workers", type=int, default=0, help="DataLoader workers preparing the data")
    e.add_argument("--device", help="e.g. cpu, cuda (default: cuda when available)")
    e.add_argument("--seed", type=int, default=0, help="seed of padding and of the voting draws")
    e.set_defaults(func=_cmd_evaluate)
