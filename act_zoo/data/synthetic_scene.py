"""A procedural indoor room with S3DIS labels, for offline tests, examples and benchmarks of
semantic segmentation (no real scan is needed).

:func:`synthetic_room` samples the surfaces of axis-aligned boxes uniformly by area: floor,
ceiling, four walls (with a door and a window cut into them as labels), a table, chairs
around it, a bookcase, a board and a few clutter boxes, with a little Gaussian noise. Labels
are the S3DIS class indices (:data:`act_zoo.data.s3dis.S3DIS_CLASSES`). The room's minimum is
at the origin, like the official preprocessed rooms.
"""

from __future__ import annotations

import numpy as np

from .._s3dis import S3DIS_CLASSES

__all__ = ["synthetic_room", "write_s3dis_room"]

_L = {name: i for i, name in enumerate(S3DIS_CLASSES)}


def _faces(lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The 6 faces of a box as (origin, edge u, edge v)."""
    d = hi - lo
    ex, ey, ez = np.diag(d)
    return [(lo, ex, ey), (lo + ez, ex, ey), (lo, ex, ez), (lo + ey, ex, ez), (lo, ey, ez), (lo + ex, ey, ez)]


def _sample(rng: np.random.Generator, planes: list[tuple[tuple, tuple, tuple, int]],
            boxes: list[tuple[tuple, tuple, int]], n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points on the planes (origin, edge u, edge v, label) and box surfaces, by area."""
    faces = [tuple(np.asarray(a, float) for a in p[:3]) for p in planes]
    labels = [p[3] for p in planes]
    for lo, hi, label in boxes:
        for f in _faces(np.asarray(lo, float), np.asarray(hi, float)):
            faces.append(f)
            labels.append(label)
    area = np.array([np.linalg.norm(np.cross(u, v)) for _, u, v in faces])
    counts = rng.multinomial(n, area / area.sum())
    pts, lab = [], []
    for (o, u, v), label, k in zip(faces, labels, counts):
        st = rng.random((k, 2))
        pts.append(o + st[:, :1] * u + st[:, 1:] * v)
        lab.append(np.full(k, label, dtype=np.int64))
    xyz = np.concatenate(pts) + rng.normal(scale=noise, size=(n, 3))
    return xyz, np.concatenate(lab)


def synthetic_room(
    num_points: int = 200_000,
    *,
    size: tuple[float, float, float] = (6.0, 5.0, 3.0),
    chairs: int = 4,
    noise: float = 0.005,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A procedural room: ``(xyz float64 [num_points, 3], labels int64 [num_points])``.

    ``size`` is (width x, depth y, height z) in metres; the table stands in the middle with
    ``chairs`` chairs around it. The same ``seed`` gives the same room."""
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    W, D, H = size
    if min(size) < 1.0:
        raise ValueError(f"a room needs every side >= 1 m, got {size}")
    rng = np.random.default_rng(seed)
    cx, cy = W / 2, D / 2
    planes = [  # origin, edge u, edge v, label
        ((0, 0, 0), (W, 0, 0), (0, D, 0), _L["floor"]),
        ((0, 0, H), (W, 0, 0), (0, D, 0), _L["ceiling"]),
        ((0, 0, 0), (0, D, 0), (0, 0, H), _L["wall"]),
        ((W, 0, 0), (0, D, 0), (0, 0, H), _L["wall"]),
        ((0, 0, 0), (W, 0, 0), (0, 0, H), _L["wall"]),
        ((0, D, 0), (W, 0, 0), (0, 0, H), _L["wall"]),
    ]
    boxes: list[tuple[tuple, tuple, int]] = [
        # table: top and four legs
        ((cx - 0.8, cy - 0.5, 0.72), (cx + 0.8, cy + 0.5, 0.76), _L["table"]),
        *[((cx + sx * 0.75 - 0.03, cy + sy * 0.45 - 0.03, 0), (cx + sx * 0.75 + 0.03, cy + sy * 0.45 + 0.03, 0.72),
           _L["table"]) for sx in (-1, 1) for sy in (-1, 1)],
        # bookcase against the x = W wall, board on the y = 0 wall
        ((W - 0.4, 0.5, 0), (W - 0.02, 1.5, 1.9), _L["bookcase"]),
        ((1.0, 0.0, 0.9), (2.5, 0.03, 1.9), _L["board"]),
    ]
    for k in range(chairs):  # around the table, alternating sides
        side = 1 if k % 2 == 0 else -1
        x = cx - 0.5 + (k // 2) * 1.0 * (1 if chairs > 2 else 0.5)
        y0 = cy + side * 0.85
        boxes.append(((x - 0.22, y0 - 0.22, 0.42), (x + 0.22, y0 + 0.22, 0.46), _L["chair"]))  # seat
        back = y0 + side * 0.22
        boxes.append(((x - 0.22, min(back, back + side * 0.03), 0.46), (x + 0.22, max(back, back + side * 0.03), 0.9),
                      _L["chair"]))
        for lx in (-0.2, 0.2):
            for ly in (-0.2, 0.2):
                boxes.append(((x + lx - 0.015, y0 + ly - 0.015, 0), (x + lx + 0.015, y0 + ly + 0.015, 0.42), _L["chair"]))
    for _ in range(3):  # clutter boxes on the floor near the walls
        s = rng.uniform(0.15, 0.4, size=3)
        x0, y0 = rng.uniform(0.1, W - 0.6), rng.uniform(D - 0.8, D - 0.5)
        boxes.append(((x0, y0, 0), (x0 + s[0], y0 + s[1], s[2]), _L["clutter"]))
    xyz, labels = _sample(rng, planes, boxes, num_points, noise)
    wall = labels == _L["wall"]
    # a door in the x = 0 wall and a window in the y = D wall (labels only)
    door = wall & (xyz[:, 0] < 0.05) & (np.abs(xyz[:, 1] - 1.2) < 0.45) & (xyz[:, 2] < 2.1)
    window = wall & (xyz[:, 1] > D - 0.05) & (np.abs(xyz[:, 0] - cx) < 0.8) & (np.abs(xyz[:, 2] - 1.6) < 0.6)
    labels[door] = _L["door"]
    labels[window] = _L["window"]
    xyz -= xyz.min(0)
    return xyz, labels


def write_s3dis_room(path, xyz: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> None:
    """Save a room in the official ``collect_indoor3d_data.py`` format: float64 ``[N, 7]``
    (x y z, r g b in 0-255, label) with the room minimum at the origin."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(len(xyz), 3)).astype(np.float64)
    data = np.concatenate([xyz - xyz.min(0), rgb, labels[:, None].astype(np.float64)], axis=1)
    np.save(path, data)
