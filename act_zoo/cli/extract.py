"""``act-zoo extract``: ACT features of point-cloud / mesh files, directories and globs.

Under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` set) each process does its contiguous block of
the sorted file list and writes its own output, with a rank suffix
(``feats.npz`` -> ``feats.rank0-of-4.npz``); nothing else is coordinated.
"""

from __future__ import annotations

import argparse
import os
import sys

from ._main import CLIError


def _torchrun_shard() -> tuple[tuple[int, int] | None, int]:
    """``((rank, world), local_rank)`` from the variables torchrun sets; ``(None, 0)`` outside."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as exc:
        raise CLIError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({exc})") from exc
    return ((rank, world) if world > 1 else None), local


def _cmd_extract(args: argparse.Namespace) -> int:
    from ..data.io import collect_files
    from ..extract import check_output, extract_to

    try:
        check_output(args.out)  # before any file is read or any model loaded
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    shard, local_rank = _torchrun_shard()
    device = args.device
    if device is None and shard is not None:
        import torch

        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    files = collect_files(args.inputs)  # nonexistent inputs, empty directories: one clear error
    summary = extract_to(args.model, files, args.out, resume=args.resume, shard=shard, tokens=not args.no_tokens,
                         skip_bad=args.skip_bad, batch_size=args.batch_size, workers=args.workers, device=device,
                         amp=args.amp, sample=args.sample, seed=args.seed, num_points=args.num_points,
                         progress=False if getattr(args, "quiet", False) else None)
    shapes = ", ".join(f"{k} {list(v)}" for k, v in summary.shapes.items())
    where = f" (rank {summary.shard[0]} of {summary.shard[1]})" if summary.shard[1] > 1 else ""
    print(f"wrote {summary.path}{where}: {len(summary.files)} files; {shapes}")
    if args.resume:
        print(f"resumed: {summary.resumed} file(s) done by an earlier run, {summary.computed} computed now")
    if summary.skipped:
        print(f"skipped {len(summary.skipped)} unreadable file(s):")
        for name, reason in summary.skipped:
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
                    "the file list and a meta record), or a directory with one .npy per field, files.json and "
                    "meta.json. Threads read and prepare the next files while the network runs; rows are streamed "
                    "to OUT.partial/ and assembled at the end (memory does not grow with the number of files). "
                    "Under torchrun each rank does a contiguous block of the file list and writes OUT with a rank "
                    "suffix (feats.npz -> feats.rank0-of-2.npz).")
    s.add_argument("model", help="registry name, run directory, hf-hub:org/repo, URL or checkpoint")
    s.add_argument("inputs", nargs="+", metavar="FILES_OR_DIRS", help="files, directories or glob patterns")
    s.add_argument("--out", required=True, help="output .npz, .safetensors, or a directory (ending in /)")
    s.add_argument("--resume", action="store_true",
                   help="continue an interrupted run into the same --out (same files, model and settings, else an "
                        "error); files already written are not read again")
    s.add_argument("--skip-bad", action="store_true",
                   help="continue past unreadable files; they are listed (output 'skipped', stdout and stderr)")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--workers", type=int, default=None,
                   help="threads reading and preparing files while the network runs (default: one per core, at "
                        "most 4; 0: none)")
    s.add_argument("--num-points", type=int, default=None, help="points per cloud (default: the model's npoints)")
    s.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: cuda when available; under torchrun "
                                    "cuda:LOCAL_RANK)")
    s.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    s.add_argument("--sample", choices=["fps", "random"], default="fps", help="resampling to the model's npoints")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-tokens", action="store_true", help="omit the per-patch tokens from the output")
    s.set_defaults(func=_cmd_extract)
