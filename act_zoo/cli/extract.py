"""``act-zoo extract``: ACT features of point-cloud / mesh files."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._main import CLIError


def _cmd_extract(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from ..extract import extract_features
    from ..hub.cache import atomic_path
    from ..hub.registry import from_pretrained

    files = [Path(f) for f in args.files]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise CLIError(f"file(s) not found: {', '.join(missing)}")
    model = from_pretrained(args.model)
    if args.device:
        model = model.to(args.device)
    feats = []
    for start in tqdm(range(0, len(files), args.batch_size), desc="extract", unit="batch", disable=args.quiet):
        chunk = files[start:start + args.batch_size]
        feats.append(extract_features(model, chunk, batch_size=args.batch_size, sample=args.sample, seed=args.seed,
                                      amp=args.amp))
    arrays = {
        "global_feature": torch.cat([f.global_feature for f in feats]).numpy(),
        "centers": torch.cat([f.centers for f in feats]).numpy(),
        "files": np.array([str(f) for f in files]),
    }
    if not args.no_tokens:
        arrays["tokens"] = torch.cat([f.tokens for f in feats]).numpy()
    out = Path(args.out)
    if out.suffix != ".npz":
        raise CLIError(f"--out must end in .npz, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items())
    print(f"wrote {out}: {shapes}")
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("extract", parents=[common], help="extract features of point-cloud / mesh files",
                       description="Extract ACT features of files (.ply .pcd .npy .npz .txt .xyz .csv .off .obj .stl; "
                                   "meshes are sampled by area with a fixed seed) into an .npz with global_feature "
                                   "[F, 2C], tokens [F, G, C], centers [F, G, 3] and the file list.")
    s.add_argument("model", help="registry name, hf-hub:org/repo, URL, directory or checkpoint")
    s.add_argument("files", nargs="+")
    s.add_argument("--out", required=True, help="output .npz")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--device", help="e.g. cpu, cuda, cuda:1 (default: the model's)")
    s.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    s.add_argument("--sample", choices=["fps", "random"], default="fps", help="resampling to the model's npoints")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-tokens", action="store_true", help="omit the per-patch tokens from the output")
    s.set_defaults(func=_cmd_extract)
