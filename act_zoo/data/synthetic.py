"""Procedural labelled shapes: an offline, deterministic stand-in for ModelNet / ScanObjectNN / ShapeNet.

``SyntheticShapes(n)`` draws item ``i`` from ``numpy.random.default_rng([seed, i])`` only, so
an item is the same whatever the access order, process or worker. Every class has random
proportions; options add a random rotation, Gaussian noise, partial views (a random side
of the object is cut away, as a single scan sees it) and ScanObjectNN-like background
clutter (a floor patch and nearby objects). Surfaces are sampled uniformly by area, part by
part. Every cloud ends normalised to the unit sphere (``pc_normalize``), in random point order.

The classes (label = position in :data:`SHAPE_CLASSES`, or in ``classes=``):

=============  =============================================================
``sphere``     radius 1
``box``        random side lengths
``cylinder``   random radius / height, with caps
``cone``       random radius / height, with base
``torus``      random ring / tube radii
``capsule``    a cylinder with hemispherical ends
``pyramid``    square base, random height
``ellipsoid``  three random distinct semi-axes
``helix``      a spring: tube around a helix, random turns / pitch
``dumbbell``   two spheres joined by a rod (composition)
``mushroom``   a stem under a domed cap (composition)
``table``      a top on four legs (composition)
``house``      a box with a pyramid roof (composition)
=============  =============================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from ._common import PointDataset, Transform, check_positive_int, check_seed, pc_normalize

__all__ = ["SHAPE_CLASSES", "SyntheticShapes"]

Sampler = Callable[[np.random.Generator, int], np.ndarray]  # (rng, k) -> [k, 3]
Part = tuple[float, Sampler]  # (surface area, sampler)


# ----------------------------------------------------------------------------- surface primitives


def _dirs(rng: np.random.Generator, k: int) -> np.ndarray:
    v = rng.standard_normal((k, 3))
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def _sphere(r: float, center: Sequence[float] = (0, 0, 0)) -> Part:
    return 4 * math.pi * r * r, lambda rng, k: r * _dirs(rng, k) + np.asarray(center)


def _hemisphere(r: float, center: Sequence[float], up: float = 1.0) -> Part:
    def f(rng: np.random.Generator, k: int) -> np.ndarray:
        d = _dirs(rng, k)
        d[:, 1] = up * np.abs(d[:, 1])
        return r * d + np.asarray(center)

    return 2 * math.pi * r * r, f


def _cylinder_side(r: float, y0: float, y1: float, center_xz: Sequence[float] = (0, 0)) -> Part:
    def f(rng: np.random.Generator, k: int) -> np.ndarray:
        t = rng.uniform(0, 2 * math.pi, k)
        y = rng.uniform(y0, y1, k)
        return np.stack([r * np.cos(t) + center_xz[0], y, r * np.sin(t) + center_xz[1]], axis=1)

    return 2 * math.pi * r * abs(y1 - y0), f


def _disk(r: float, y: float, center_xz: Sequence[float] = (0, 0)) -> Part:
    def f(rng: np.random.Generator, k: int) -> np.ndarray:
        t = rng.uniform(0, 2 * math.pi, k)
        rad = r * np.sqrt(rng.uniform(0, 1, k))
        x, z = rad * np.cos(t) + center_xz[0], rad * np.sin(t) + center_xz[1]
        return np.stack([x, np.full(k, y), z], axis=1)

    return math.pi * r * r, f


def _cone_side(r: float, y0: float, h: float) -> Part:
    def f(rng: np.random.Generator, k: int) -> np.ndarray:
        s = np.sqrt(rng.uniform(0, 1, k))  # distance from the apex, area-uniform
        t = rng.uniform(0, 2 * math.pi, k)
        return np.stack([r * s * np.cos(t), y0 + h * (1 - s), r * s * np.sin(t)], axis=1)

    return math.pi * r * math.hypot(r, h), f


def _box(half: Sequence[float], center: Sequence[float] = (0, 0, 0)) -> Part:
    hx, hy, hz = half
    face_area = np.array([hy * hz, hy * hz, hx * hz, hx * hz, hx * hy, hx * hy]) * 4
    total = float(face_area.sum())

    def f(rng: np.random.Generator, k: int) -> np.ndarray:
        h = np.asarray(half, dtype=np.float64)
        face = rng.choice(6, size=k, p=face_area / total)
        pts = rng.uniform(-1, 1, (k, 3)) * h
        axis = face // 2
        pts[np.arange(k), axis] = np.where(face % 2 == 0, -1.0, 1.0) * h[axis]
        return pts + np.asarray(center)

    return total, f


def _triangles(tris: np.ndarray) -> Part:
    """Area-uniform samples of triangles ``[T, 3, 3]``."""
    e1, e2 = tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
    areas = 0.5 * np.linalg.norm(np.cross(e1, e2), axis=1)
    total = float(areas.sum())

    def f(rng: np.random.Generator, k: int) -> np.ndarray:
        which = rng.choice(len(tris), size=k, p=areas / total)
        u, v = rng.uniform(0, 1, k), rng.uniform(0, 1, k)
        flip = u + v > 1
        u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
        return tris[which, 0] + u[:, None] * e1[which] + v[:, None] * e2[which]

    return total, f


def _pyramid_faces(half: float, y0: float, h: float, base: bool = True) -> list[Part]:
    c = np.array([[-half, y0, -half], [half, y0, -half], [half, y0, half], [-half, y0, half]])
    apex = np.array([0.0, y0 + h, 0.0])
    sides = np.stack([np.stack([c[i], c[(i + 1) % 4], apex]) for i in range(4)])
    parts = [_triangles(sides)]
    if base:
        parts.append(_triangles(np.stack([np.stack([c[0], c[1], c[2]]), np.stack([c[0], c[2], c[3]])])))
    return parts


def _compose(rng: np.random.Generator, n: int, parts: list[Part]) -> np.ndarray:
    areas = np.array([a for a, _ in parts], dtype=np.float64)
    counts = rng.multinomial(n, areas / areas.sum())
    return np.concatenate([f(rng, int(c)) for (_, f), c in zip(parts, counts) if c > 0], axis=0)


# ----------------------------------------------------------------------------- classes


def _sphere_cls(rng: np.random.Generator, n: int) -> np.ndarray:
    return _compose(rng, n, [_sphere(1.0)])


def _box_cls(rng: np.random.Generator, n: int) -> np.ndarray:
    return _compose(rng, n, [_box(rng.uniform(0.25, 1.0, 3))])


def _cylinder_cls(rng: np.random.Generator, n: int) -> np.ndarray:
    r, h = rng.uniform(0.25, 0.7), rng.uniform(0.8, 2.2)
    return _compose(rng, n, [_cylinder_side(r, -h / 2, h / 2), _disk(r, -h / 2), _disk(r, h / 2)])


def _cone_cls(rng: np.random.Generator, n: int) -> np.ndarray:
    r, h = rng.uniform(0.35, 0.9), rng.uniform(0.9, 2.0)
    return _compose(rng, n, [_cone_side(r, -h / 2, h), _disk(r, -h / 2)])


def _torus_cls(rng: np.random.Generator, n: int) -> np.ndarray:
    R = 1.0
    r = rng.uniform(0.12, 0.45)

    def f(rng: np.random.Generator, k: int) -> np.ndarray:
        out = np.empty((0, 3))
        while len(out) < k:  # rejection: the surface element grows with R + r cos(v)
            m = 2 * (k - len(out)) + 8
            u, v = rng.uniform(0, 2 * math.pi, m), rng.uniform(0, 2 * math.pi, m)
            keep = rng.uniform(0, 1, m) < (R + r * np.cos(v)) / (R + r)
            u, v = u[keep], v[keep]
            ring = R + r * np.cos(v)
            out = np.concatenate([out, np.stack([ring * np.cos(u), r * np.sin(v), ring * np.sin(u)], axis=1)])
        return out[:k]

    return _compose(rng, n, [(4 * math.pi**2 * R * r, f)])


def _capsule_cls(rng: np.random.Generator, n: int) -> np.ndarray:
    r, h = rng.uniform(0.25, 0.55), rng.uniform(0.8, 2.0)
    ends = [_hemisphere(r, (0, h / 2, 0), 1.0), _hemisphere(r, (0, -h / 2, 0), -1.0)]
    return _compose(rng, n, [_cylinder_side(r, -h / 2, h / 2), *ends])


def _pyramid_cls(rng: np.random.Generator, n: int) -> np.ndarray:
    half, h = rng.uniform(0.5, 1.0), rng.uniform(0.8, 1.8)
    return _compose(rng, n, _pyramid_faces(half, -h / 3, h))


def _ellipsoid_cls(rng: np.random.Generator, n: int) -> np.ndarray:
    a, b, c = rng.permutation([1.0, rng.uniform(0.45, 0.75), rng.uniform(0.2, 0.45)])
    wmax = max(b * c, a * c, a * b)

    def f(rng: np.random.Generator, k: int) -> np.ndarray:
        out = np.empty((0, 3))
        while len(out) < k:  # rejection by the area element of the stretched sphere
            d = _dirs(rng, 2 * (k - len(out)) + 8)
            w = np.sqrt((b * c * d[:, 0]) ** 2 + (a * c * d[:, 1]) ** 2 + (a * b * d[:, 2]) ** 2)
            d = d[rng.uniform(0, 1, len(d)) < w / wmax]
            out = np.concatenate([out, d * np.array([a, b, c])])
        return out[:k]

    p = 1.6075  # Knud Thomsen's surface-area approximation
    area = 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
    return _compose(rng, n, [(area, f)])


def _helix_cls(rng: np.random.Generator, n: int) -> np.ndarray:
    R, turns, pitch = rng.uniform(0.5, 0.9), rng.uniform(2.0, 5.0), rng.uniform(0.3, 0.6)
    tube = rng.uniform(0.06, 0.14)
    length_t = 2 * math.pi * turns
    rise = pitch / (2 * math.pi)  # y per radian

    def f(rng: np.random.Generator, k: int) -> np.ndarray:
        t = rng.uniform(0, length_t, k)
        phi = rng.uniform(0, 2 * math.pi, k)
        centre = np.stack([R * np.cos(t), rise * t - rise * length_t / 2, R * np.sin(t)], axis=1)
        tangent = np.stack([-R * np.sin(t), np.full(k, rise), R * np.cos(t)], axis=1)
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        normal = np.stack([-np.cos(t), np.zeros(k), -np.sin(t)], axis=1)
        binormal = np.cross(tangent, normal)
        return centre + tube * (np.cos(phi)[:, None] * normal + np.sin(phi)[:, None] * binormal)

    return _compose(rng, n, [(2 * math.pi * tube * length_t * math.hypot(R, rise), f)])


def _dumbbell_cls(rng: np.random.Generator, n: int) -> np.ndarray:
    rs, half_len, rr = rng.uniform(0.3, 0.5), rng.uniform(0.6, 1.1), rng.uniform(0.06, 0.14)
    weights = [_sphere(rs, (0, half_len, 0)), _sphere(rs, (0, -half_len, 0))]
    return _compose(rng, n, [*weights, _cylinder_side(rr, -half_len, half_len)])


def _mushroom_cls(rng: np.random.Generator, n: int) -> np.ndarray:
    stem_r, stem_h, cap_r = rng.uniform(0.12, 0.3), rng.uniform(0.6, 1.2), rng.uniform(0.6, 1.0)
    stem = [_cylinder_side(stem_r, 0, stem_h), _disk(stem_r, 0)]
    cap = [_hemisphere(cap_r, (0, stem_h, 0)), _disk(cap_r, stem_h)]
    return _compose(rng, n, stem + cap)


def _table_cls(rng: np.random.Generator, n: int) -> np.ndarray:
    w, d, height = rng.uniform(0.8, 1.4), rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.1)
    top, leg = rng.uniform(0.04, 0.1), rng.uniform(0.04, 0.08)
    parts = [_box((w / 2, top / 2, d / 2), (0, height, 0))]
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(_box((leg, height / 2, leg), (sx * (w / 2 - leg), height / 2, sz * (d / 2 - leg))))
    return _compose(rng, n, parts)


def _house_cls(rng: np.random.Generator, n: int) -> np.ndarray:
    half, wall = rng.uniform(0.5, 0.8), rng.uniform(0.5, 1.0)
    roof = rng.uniform(0.4, 0.9)
    walls = _box((half, wall / 2, half), (0, wall / 2, 0))
    return _compose(rng, n, [walls, *_pyramid_faces(half * 1.1, wall, roof, base=False)])


_GENERATORS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "sphere": _sphere_cls, "box": _box_cls, "cylinder": _cylinder_cls, "cone": _cone_cls,
    "torus": _torus_cls, "capsule": _capsule_cls, "pyramid": _pyramid_cls, "ellipsoid": _ellipsoid_cls,
    "helix": _helix_cls, "dumbbell": _dumbbell_cls, "mushroom": _mushroom_cls, "table": _table_cls,
    "house": _house_cls,
}  # fmt: skip

#: every class, in default label order
SHAPE_CLASSES: tuple[str, ...] = tuple(_GENERATORS)


# ----------------------------------------------------------------------------- scene effects


def _random_rotation(rng: np.random.Generator, mode: str) -> np.ndarray:
    """``[3, 3]``: uniform on SO(3) (``"so3"``) or about the vertical y axis (``"y"``)."""
    if mode == "y":
        a = rng.uniform(0, 2 * math.pi)
        c, s = math.cos(a), math.sin(a)
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def _clutter(rng: np.random.Generator, obj: np.ndarray, k: int) -> np.ndarray:
    """``k`` background points: a floor patch under ``obj`` and up to three nearby distractors."""
    if k == 0:
        return np.empty((0, 3))
    lo, hi = obj.min(0), obj.max(0)
    centre = (lo + hi) / 2
    extent = float(max(hi[0] - lo[0], hi[2] - lo[2], 0.5))
    n_distract = int(rng.integers(0, 4))
    floor_share = rng.uniform(0.4, 0.8) if n_distract else 1.0
    shares = np.concatenate([[floor_share], (1 - floor_share) * rng.dirichlet(np.ones(n_distract) * 2.0)])
    counts = rng.multinomial(k, shares)
    out = []
    floor_y = lo[1] - 0.02
    span = rng.uniform(0.5, 0.8, 2) * extent  # the floor patch (half sizes)
    floor = rng.uniform(-1, 1, (counts[0], 2)) * span
    heights = np.full(counts[0], floor_y)
    out.append(np.stack([floor[:, 0] + centre[0], heights, floor[:, 1] + centre[2]], axis=1))
    for c in counts[1:]:  # distractors standing on the floor beside the object
        a = rng.uniform(0, 2 * math.pi)
        dist = extent * rng.uniform(0.5, 0.8)
        half = rng.uniform(0.08, 0.25, 3)
        pos = np.array([centre[0] + dist * math.cos(a), floor_y + half[1], centre[2] + dist * math.sin(a)])
        _, f = _box(half, pos) if rng.uniform() < 0.6 else _sphere(float(half[1]), pos)
        out.append(f(rng, int(c)))
    return np.concatenate(out, axis=0)


# ----------------------------------------------------------------------------- dataset


class SyntheticShapes(PointDataset):
    """Seeded procedural shapes: items ``(points [num_points, 3], label)`` (or points only).

    Args:
        num_samples: dataset length.
        num_points: points per cloud.
        classes: class names (label order), a number of classes (the first of
            :data:`SHAPE_CLASSES`), or None for all 13.
        seed: item ``i`` is a pure function of ``(seed, i)`` and the options.
        noise: standard deviation of Gaussian noise, relative to the unit-sphere object.
        rotate: ``True``/``"so3"`` a uniform random rotation, ``"y"`` about the vertical
            axis only (ScanObjectNN-like), ``False`` the canonical upright pose.
        partial: keep only a random 50-85 % of the surface, cut by a random plane (a view).
        clutter: add ScanObjectNN-like background (15-40 % of the points): a floor patch
            and up to three nearby objects.
        labelled: return ``(points, label)``; False returns points only (pretraining, like
            ShapeNet55).
        transform: applied to the points tensor last.

    Label ``i % len(classes)`` makes the classes exactly balanced. Generation takes well
    under a millisecond per 1024-point cloud.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        num_points: int = 1024,
        classes: Sequence[str] | int | None = None,
        seed: int = 0,
        noise: float = 0.01,
        rotate: bool | Literal["so3", "y"] = True,
        partial: bool = False,
        clutter: bool = False,
        labelled: bool = True,
        transform: Transform | None = None,
    ) -> None:
        seed_ = check_seed(seed)
        if seed_ is None:
            raise ValueError("seed must be an int")
        super().__init__(transform=transform, seed=seed_)
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 0:
            raise ValueError(f"num_samples must be a non-negative int, got {num_samples!r}")
        self.num_samples = int(num_samples)
        self.num_points = int(check_positive_int(num_points, "num_points"))  # type: ignore[arg-type]
        if classes is None:
            names = list(SHAPE_CLASSES)
        elif isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
            if not 1 <= classes <= len(SHAPE_CLASSES):
                raise ValueError(f"classes must be in 1..{len(SHAPE_CLASSES)}, got {classes}")
            names = list(SHAPE_CLASSES[: int(classes)])
        else:
            names = list(classes)  # type: ignore[arg-type]
            unknown = [c for c in names if c not in _GENERATORS]
            if unknown or not names or len(set(names)) != len(names):
                raise ValueError(
                    f"classes must be distinct names from {SHAPE_CLASSES}; bad: {unknown or names}"
                )
        self.classes: list[str] = names
        if not (isinstance(noise, (int, float)) and noise >= 0):
            raise ValueError(f"noise must be >= 0, got {noise!r}")
        self.noise = float(noise)
        if rotate not in (True, False, "so3", "y"):
            raise ValueError(f"rotate must be True, False, 'so3' or 'y', got {rotate!r}")
        self.rotate: str | None = "so3" if rotate is True else (rotate or None)  # type: ignore[assignment]
        self.partial, self.clutter, self.labelled = bool(partial), bool(clutter), bool(labelled)
        self.labels = np.arange(self.num_samples, dtype=np.int64) % len(self.classes)

    def __len__(self) -> int:
        return self.num_samples

    def generate(self, index: int) -> tuple[np.ndarray, int]:
        """Item ``index`` as (float32 ``[num_points, 3]``, label), before ``transform``."""
        index = self._check_index(index)
        label = int(self.labels[index])
        rng = np.random.default_rng([self.seed, index])  # type: ignore[list-item]
        n = self.num_points
        n_bg = int(round(n * rng.uniform(0.15, 0.4))) if self.clutter else 0
        n_obj = max(1, n - n_bg)
        n_bg = n - n_obj
        keep = rng.uniform(0.5, 0.85) if self.partial else 1.0
        n_gen = int(math.ceil(n_obj / keep))
        obj = pc_normalize(_GENERATORS[self.classes[label]](rng, n_gen))
        if self.rotate is not None:
            obj = obj @ _random_rotation(rng, self.rotate).T
        if self.partial:  # the n_obj points furthest along a random view direction survive
            view = _dirs(rng, 1)[0]
            obj = obj[np.argsort(-(obj @ view), kind="stable")[:n_obj]]
        cloud = np.concatenate([obj, _clutter(rng, obj, n_bg)], axis=0) if n_bg else obj
        if self.noise > 0:
            cloud = cloud + rng.normal(0.0, self.noise, cloud.shape)
        cloud = pc_normalize(cloud)[rng.permutation(n)]
        return cloud.astype(np.float32), label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | torch.Tensor:
        points, label = self.generate(index)
        tensor = self._to_tensor(points)
        return (tensor, label) if self.labelled else tensor

    def __repr__(self) -> str:
        return (
            f"SyntheticShapes(num_samples={self.num_samples}, num_points={self.num_points}, "
            f"classes={len(self.classes)}, "
            f"seed={self.seed}, noise={self.noise}, rotate={self.rotate or False}, partial={self.partial}, "
            f"clutter={self.clutter}, labelled={self.labelled})"
        )
