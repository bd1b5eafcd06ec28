"""``act-zoo segment``: label every point of a scan with a semantic-segmentation model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._main import CLIError


def _cmd_segment(args: argparse.Namespace) -> int:
    from ..scene import segment

    scan = Path(args.scan)
    if not scan.is_file():
        raise CLIError(f"scan not found: {scan}")
    out = Path(args.out)
    if out.suffix.lower() != ".ply":
        raise CLIError(f"--out must end in .ply, got {out}")
    if args.png is not None and Path(args.png).suffix.lower() != ".png":
        raise CLIError(f"--png must end in .png, got {args.png}")
    result = segment(args.model, scan, block_size=args.block_size, stride=args.stride, batch_size=args.batch_size,
                     passes=args.passes, up=args.up, scale=args.scale, seed=args.seed, device=args.device,
                     progress=not getattr(args, "quiet", False))
    result.write_ply(out)
    print(f"wrote {out}: {len(result.labels):,} points labelled")
    if args.png is not None:
        result.save_top_view(args.png, title=f"{scan.name}: {args.model}")
        print(f"wrote {args.png}")
    total = len(result.labels)
    for name, count in sorted(result.counts().items(), key=lambda kv: -kv[1]):
        print(f"  {name:<12} {count:>10,}  {100 * count / total:5.1f}%")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("segment", parents=[common], help="label every point of a scan (semantic segmentation)",
                       description="Semantic segmentation of a whole scan of any size (e.g. a room of millions of "
                                   "points): overlapping blocks as in the official S3DIS test, per-point "
                                   "log-probabilities averaged over the blocks, every point labelled. Writes a PLY "
                                   "with x y z, a colour per class, label and confidence; --png adds a top view. "
                                   "The scan must be in metres with z up (see --scale and --up).")
    s.add_argument("model", help="registry name (act_base.s3dis_semseg), run directory, hf-hub:org/repo or checkpoint")
    s.add_argument("scan", help="point cloud: .ply .pcd .npy .npz .txt .xyz .csv")
    s.add_argument("--out", required=True, help="output .ply")
    s.add_argument("--png", help="also draw a top view into this .png")
    s.add_argument("--batch-size", type=int, default=16, help="blocks of npoints per forward pass (memory)")
    s.add_argument("--block-size", type=float, help="block side in metres (default: the model's, 1.0)")
    s.add_argument("--stride", type=float, help="block step in metres (default: half a block)")
    s.add_argument("--passes", type=int, default=1, help="coverings of the scan, averaged (official test: 3)")
    s.add_argument("--up", choices=["z", "y"], default="z", help="the scan's up axis")
    s.add_argument("--scale", type=float, default=1.0, help="factor to metres, e.g. 0.001 for millimetres")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: the model's)")
    s.set_defaults(func=_cmd_segment)
