"""``act-zoo show``: a picture of what the encoder separates (PCA of the patch tokens as colours)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._main import CLIError


def _cmd_show(args: argparse.Namespace) -> int:
    cloud = Path(args.file)
    if not cloud.is_file():
        raise CLIError(f"file not found: {cloud}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise CLIError(f"--out must end in .png, got {out}")
    if args.max_points < 1:
        raise CLIError(f"--max-points must be >= 1, got {args.max_points}")

    from ..hub.cache import atomic_path
    from ..hub.registry import from_pretrained
    from ..viz import patch_pca_figure

    model = from_pretrained(args.model)
    fig = patch_pca_figure(model, cloud, title=f"{args.model}  |  {cloud.name}", max_points=args.max_points,
                           seed=args.seed, dpi=args.dpi)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    print(f"wrote {out}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("show", parents=[common], help="draw a cloud coloured by a PCA of its patch tokens",
                       description="Draw FILE's points coloured by a 3-component PCA of MODEL's patch tokens (each "
                                   "point takes the colour of its patch, the one with the nearest centre): patches "
                                   "the encoder finds alike look alike. Writes a PNG; no display needed.")
    s.add_argument("model", help="registry name, hf-hub:org/repo, URL, directory or checkpoint (an ACT encoder, "
                                 "classifier or stage-II model)")
    s.add_argument("file", help="a point cloud or mesh (.ply .pcd .npy .npz .txt .xyz .csv .off .obj .stl)")
    s.add_argument("--out", required=True, help="output .png")
    s.add_argument("--max-points", type=int, default=8192, help="points drawn (a seeded subset of larger clouds)")
    s.add_argument("--seed", type=int, default=0, help="seed of resampling, mesh sampling and the drawn subset")
    s.add_argument("--dpi", type=int, default=100)
    s.set_defaults(func=_cmd_show)
