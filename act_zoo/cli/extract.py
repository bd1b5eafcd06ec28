"""``act-zoo extract``: ACT features of point-cloud / mesh files, directories and globs."""

from __future__ import annotations

import argparse
import sys

from ._main import CLIError


def _cmd_extract(args: argparse.Namespace) -> int:
    from ..data.io import collect_files
    from ..extract import check_output, extract_files

    try:
        check_output(args.out)  # before any file is read or any model loaded
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    files = collect_files(args.inputs)  # nonexistent inputs, empty directories: one clear error
    result = extract_files(args.model, files, out=args.out, tokens=not args.no_tokens, skip_bad=args.skip_bad,
                           batch_size=args.batch_size, device=args.device, amp=args.amp, sample=args.sample,
                           seed=args.seed, num_points=args.num_points,
                           progress=False if getattr(args, "quiet", False) else None)
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in result.arrays(tokens=not args.no_tokens).items())
    print(f"wrote {args.out}: {len(result.files)} files; {shapes}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} unreadable file(s):")
        for name, reason in result.skipped:
            print(f"  {name}: {reason}")
            print(f"act-zoo extract: skipped {name}: {reason}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser(
        "extract", parents=[common], help="extract features of point-cloud / mesh files",
        description="Extract ACT features of files (.ply .pcd .npy .npz .txt .xyz .csv .off .obj .stl; meshes are "
                    "sampled by area), directories (their supported files, recursively, sorted) and glob patterns. "
                    "Each cloud is centred and scaled in float64, then resampled to the model's npoints. Output: "
                    ".npz or .safetensors (global_feature [F, 2C], tokens [F, G, C], centers [F, G, 3], cls [F, C], "
                    "and the file list), or a directory with one .npy per field and files.json.")
    s.add_argument("model", help="registry name, run directory, hf-hub:org/repo, URL or checkpoint")
    s.add_argument("inputs", nargs="+", metavar="FILES_OR_DIRS", help="files, directories or glob patterns")
    s.add_argument("--out", required=True, help="output .npz, .safetensors, or a directory (ending in /)")
    s.add_argument("--skip-bad", action="store_true",
                   help="continue past unreadable files; they are listed (output 'skipped', stdout and stderr)")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--num-points", type=int, default=None, help="points per cloud (default: the model's npoints)")
    s.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: cuda when available)")
    s.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    s.add_argument("--sample", choices=["fps", "random"], default="fps", help="resampling to the model's npoints")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-tokens", action="store_true", help="omit the per-patch tokens from the output")
    s.set_defaults(func=_cmd_extract)
