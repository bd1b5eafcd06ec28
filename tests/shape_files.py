"""A generated class-per-folder tree of procedural shapes in several file formats, for the
predict / evaluate / extract tests (the classes of the embedded ``act_tiny.synthetic10``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

FORMATS = (".npy", ".ply", ".xyz", ".pcd")


def write_file(path: Path, points: np.ndarray) -> Path:
    """``points [N, 3]`` in the format of ``path``'s extension."""
    ext = path.suffix
    path.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".npy":
        np.save(path, points.astype(np.float32))
    elif ext == ".xyz":
        np.savetxt(path, points, fmt="%.7f")
    elif ext == ".ply":
        import plyfile

        v = np.zeros(len(points), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
        v["x"], v["y"], v["z"] = points.T
        buf = io.BytesIO()
        plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")], text=False).write(buf)
        path.write_bytes(buf.getvalue())
    elif ext == ".pcd":
        import pypcd4

        pypcd4.PointCloud.from_xyz_points(points.astype(np.float32)).save(path)
    else:
        raise ValueError(ext)
    return path


def write_shape_folder(root: Path, *, per_class: int = 3, classes: int = 10, num_points: int = 1200,
                       seed: int = 99, offset: float = 0.0) -> list[tuple[Path, str]]:
    """``root/<class>/<i>.<ext>`` files (formats in turn); returns ``(path, class)`` in order.
    ``offset`` moves and scales every cloud (``x * 3 + offset``) so that normalisation matters."""
    from act_zoo.data import SyntheticShapes

    ds = SyntheticShapes(per_class * classes, num_points=num_points, classes=classes, seed=seed)
    out = []
    for i in range(len(ds)):
        pts, label = ds[i]
        name = ds.classes[label]
        path = write_file(root / name / f"{i:03d}{FORMATS[i % len(FORMATS)]}", pts.numpy().astype(np.float64) * 3 + offset)
        out.append((path, name))
    return out
