"""Folders of a user's own files for the fine-tuning tests: procedural shapes written as .ply / .npy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from act_zoo.data import SyntheticShapes
from act_zoo.models import ACTEncoder, PointTransformerConfig

# A tiny encoder for the tests that check errors and bookkeeping (not accuracy).
TINY_ENCODER = PointTransformerConfig(embed_dim=32, depth=1, num_heads=2, group_size=8, num_group=8, encoder_dims=32,
                                      npoints=64, drop_path_rate=0.0)


def write_ply(path: Path, points: np.ndarray) -> None:
    import plyfile

    vertex = np.zeros(len(points), dtype=[(k, "f4") for k in "xyz"])
    for j, k in enumerate("xyz"):
        vertex[k] = points[:, j]
    plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")]).write(str(path))


def write_shapes(root: Path, *, per_class: int, classes: int | list[str] = 4, points: int = 700, seed: int = 1,
                 start: int = 0) -> list[Path]:
    """``root/<class>/sNNN.{ply,npy}``: upright procedural shapes (random turn about y), the
    formats alternating. Returns the files written."""
    ds = SyntheticShapes(start + per_class * (classes if isinstance(classes, int) else len(classes)),
                         num_points=points, classes=classes, seed=seed, rotate="y")
    files = []
    for i in range(start, len(ds)):
        pts, label = ds.generate(i)
        folder = root / ds.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"s{i:03d}.{'npy' if i % 2 else 'ply'}"
        if path.suffix == ".npy":
            np.save(path, pts)
        else:
            write_ply(path, pts)
        files.append(path)
    return files


def save_tiny_encoder(path: Path) -> Path:
    ACTEncoder(TINY_ENCODER).save_pretrained(path)
    return path
