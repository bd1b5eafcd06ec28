"""Point-cloud transforms: the official ACT / Point-MAE / Point-BERT augmentations.

Every transform is a plain callable object that takes a single cloud ``[N, C]`` or a batch
``[B, N, C]`` (``C >= 3``; a torch tensor, or a numpy array that is converted) and returns a
new tensor; the input is never modified (the official ones work in place). Only the
coordinates ``[..., :3]`` are changed unless a transform says otherwise; a batch gets one
independent draw per cloud, and cloud ``b`` of a batch draws the same numbers that a single
cloud would after ``b`` earlier calls, so a batch of one equals the single-cloud call.

Randomness (``generator=``):

* ``None``: torch's global generator (``torch.manual_seed``; DataLoader workers are seeded
  by PyTorch).
* an ``int`` seed: a private ``torch.Generator`` seeded with it, advancing call after call,
  so the same seed gives the same sequence of results. Inside a DataLoader worker the seed
  is mixed with the worker's seed (``get_worker_info().seed``), so workers do not repeat
  each other's draws, and runs stay reproducible under ``torch.manual_seed``.
* a ``torch.Generator``: used as given (on the CPU).

Official counterparts (``datasets/data_transforms.py``):

=======================  ==================================================================
``ScaleAndTranslate``    ``PointcloudScaleAndTranslate``: per cloud, per axis scale
                         ``U(2/3, 3/2)`` then translate ``U(-0.2, 0.2)``
``RotateY``              ``PointcloudRotate`` (the finetune runner's train augmentation):
                         ``xyz @ R``, ``R = [[c,0,s],[0,1,0],[-s,0,c]]``, angle ``U(0, 2pi)``
``Jitter``               ``PointcloudJitter``: ``clamp(N(0, sigma), -clip, clip)`` per point
``RandomPointDropout``   ``PointcloudRandomInputDropout``: ratio ``U(0, max)``, dropped points
                         become copies of point 0 (all channels, as ``provider.py``)
``NormalizeUnitSphere``  ``pc_normalize``: subtract the centroid, divide by the max radius
``FPSResample``          ``misc.fps`` (pointnet2 CUDA-kernel FPS, first point first); with
                         ``pool`` the training loop's FPS to ``pool`` then a random subset
``RandomResample``       ShapeNet55 ``random_sample`` (without replacement) or ShapeNetPart
                         ``np.random.choice(..., replace=True)``
=======================  ==================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "Compose",
    "FPSResample",
    "Jitter",
    "NormalizeUnitSphere",
    "RandomPointDropout",
    "RandomResample",
    "RotateY",
    "ScaleAndTranslate",
]

PointsLike = torch.Tensor | np.ndarray
GeneratorLike = torch.Generator | int | None


def _as_batch(points: PointsLike) -> tuple[torch.Tensor, bool]:
    """``[N, C]`` or ``[B, N, C]`` -> (``[B, N, C]`` floating tensor, was_single)."""
    if isinstance(points, np.ndarray):
        points = torch.from_numpy(np.ascontiguousarray(points))
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor or numpy array of points, got {type(points).__name__}")
    if points.ndim not in (2, 3) or points.shape[-1] < 3:
        raise ValueError(f"expected points of shape [N, C>=3] or [B, N, C>=3], got {list(points.shape)}")
    if not points.is_floating_point():
        points = points.float()
    single = points.ndim == 2
    return (points.unsqueeze(0) if single else points), single


def _restore(points: torch.Tensor, single: bool) -> torch.Tensor:
    return points[0] if single else points


class Compose:
    """Apply transforms one after another: ``Compose([RotateY(seed), Jitter()])(points)``."""

    def __init__(self, transforms: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose takes callables, got {type(t).__name__}")

    def __call__(self, points: PointsLike) -> torch.Tensor:
        for t in self.transforms:
            points = t(points)
        return points  # type: ignore[return-value]

    def __iter__(self) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
        return iter(self.transforms)

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        body = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{body}\n])" if body else "Compose([])"


class NormalizeUnitSphere:
    """Official ``pc_normalize`` per cloud: centroid to the origin, largest radius to 1.

    Only ``xyz`` is changed. A cloud whose points all coincide is centred only.
    """

    def __call__(self, points: PointsLike) -> torch.Tensor:
        pts, single = _as_batch(points)
        xyz = pts[..., :3]
        centred = xyz - xyz.mean(dim=1, keepdim=True)  # B N 3
        radius = centred.square().sum(-1).sqrt().amax(dim=1, keepdim=True)  # B 1
        radius = torch.where(radius > 0, radius, torch.ones_like(radius))
        out = pts.clone()
        out[..., :3] = centred / radius.unsqueeze(-1)
        return _restore(out, single)

    def __repr__(self) -> str:
        return "NormalizeUnitSphere()"


class _RandomTransform:
    """Owns the randomness of a transform (see the module docstring for ``generator``)."""

    def __init__(self, *, generator: GeneratorLike = None) -> None:
        if isinstance(generator, bool) or not (
            generator is None or isinstance(generator, (int, np.integer, torch.Generator))
        ):
            raise TypeError(f"generator must be None, an int seed or a torch.Generator, got {generator!r}")
        if isinstance(generator, torch.Generator) and generator.device.type != "cpu":
            raise ValueError("generator must be a CPU torch.Generator")
        self.seed: int | None = int(generator) if isinstance(generator, (int, np.integer)) else None
        self._explicit = generator if isinstance(generator, torch.Generator) else None
        self._gen: torch.Generator | None = None
        self._gen_key: Any = None

    def generator(self) -> torch.Generator | None:
        """The generator the next draw uses (None: torch's global one)."""
        if self._explicit is not None:
            return self._explicit
        if self.seed is None:
            return None
        info = torch.utils.data.get_worker_info()
        key = None if info is None else (info.id, info.seed)
        if self._gen is None or key != self._gen_key:
            seed = self.seed
            if info is not None:  # different, reproducible streams per worker (and per epoch)
                mixed = np.random.SeedSequence([self.seed, info.seed % 2**63])
                seed = int(mixed.generate_state(1, np.uint64)[0])
            self._gen = torch.Generator().manual_seed(seed % 2**63)
            self._gen_key = key
        return self._gen

    def _per_cloud(self, batch: int, draw: Callable[[torch.Generator | None], torch.Tensor]) -> torch.Tensor:
        """``[B, ...]``: one ``draw(generator)`` per cloud, in batch order (so cloud ``b`` of a
        batch gets exactly what a single-cloud call would get after ``b`` earlier calls)."""
        gen = self.generator()
        draws = [draw(gen) for _ in range(batch)]
        if not draws:  # an empty batch: the right shape, no draw from the real generator
            return draw(torch.Generator()).unsqueeze(0)[:0]
        return torch.stack(draws)

    def _gen_repr(self) -> str:
        if self._explicit is not None:
            return "generator=<torch.Generator>"
        return f"generator={self.seed}"


class ScaleAndTranslate(_RandomTransform):
    """Official ``PointcloudScaleAndTranslate``: per cloud and axis, ``xyz * U(lo, hi) + U(-t, t)``.

    Args:
        scale_low, scale_high: the scale range (official 2/3 and 3/2).
        translate_range: the translation half-range (official 0.2).
        generator: see the module docstring.
    """

    def __init__(
        self,
        scale_low: float = 2.0 / 3.0,
        scale_high: float = 3.0 / 2.0,
        translate_range: float = 0.2,
        *,
        generator: GeneratorLike = None,
    ) -> None:
        super().__init__(generator=generator)
        if not scale_low <= scale_high or translate_range < 0:
            raise ValueError("need scale_low <= scale_high and translate_range >= 0")
        self.scale_low, self.scale_high = float(scale_low), float(scale_high)
        self.translate_range = float(translate_range)

    def __call__(self, points: PointsLike) -> torch.Tensor:
        pts, single = _as_batch(points)
        # B 6: the scale of x y z, then the shift of x y z
        u = self._per_cloud(pts.shape[0], lambda g: torch.rand(6, generator=g))
        u = u.to(pts.device, pts.dtype)
        scale = self.scale_low + (self.scale_high - self.scale_low) * u[:, :3]  # B 3
        shift = self.translate_range * (2.0 * u[:, 3:] - 1.0)  # B 3
        out = pts.clone()
        out[..., :3] = pts[..., :3] * scale.unsqueeze(1) + shift.unsqueeze(1)
        return _restore(out, single)

    def __repr__(self) -> str:
        return (
            f"ScaleAndTranslate(scale_low={self.scale_low:.4g}, scale_high={self.scale_high:.4g}, "
            f"translate_range={self.translate_range:.4g}, {self._gen_repr()})"
        )


class RotateY(_RandomTransform):
    """Official ``PointcloudRotate``: a random rotation about the vertical ``y`` axis.

    ``xyz @ R`` with ``R = [[cos, 0, sin], [0, 1, 0], [-sin, 0, cos]]`` and the angle drawn
    from ``U(0, max_angle)`` (official: the full turn).

    Args:
        max_angle: upper end of the angle range, in radians.
        normals: also rotate channels 3-5 (normals); other channels are never changed.
        generator: see the module docstring.
    """

    def __init__(
        self, max_angle: float = 2.0 * math.pi, *, normals: bool = False, generator: GeneratorLike = None
    ) -> None:
        super().__init__(generator=generator)
        self.max_angle = float(max_angle)
        self.normals = bool(normals)

    @staticmethod
    def matrix(angle: torch.Tensor) -> torch.Tensor:
        """``[..., 3, 3]`` rotation matrices (row-vector convention, ``xyz @ R``) for ``angle [...]``."""
        c, s = torch.cos(angle), torch.sin(angle)
        zero, one = torch.zeros_like(angle), torch.ones_like(angle)
        rows = [torch.stack(r, dim=-1) for r in ((c, zero, s), (zero, one, zero), (-s, zero, c))]
        return torch.stack(rows, dim=-2)

    def __call__(self, points: PointsLike) -> torch.Tensor:
        pts, single = _as_batch(points)
        u = self._per_cloud(pts.shape[0], lambda g: torch.rand((), generator=g))  # B
        angle = u.double() * self.max_angle  # B
        rot = self.matrix(angle).to(pts.device, pts.dtype)  # B 3 3
        out = pts.clone()
        out[..., :3] = pts[..., :3] @ rot
        if self.normals:
            if pts.shape[-1] < 6:
                raise ValueError(f"RotateY(normals=True) needs 6+ channels, got {pts.shape[-1]}")
            out[..., 3:6] = pts[..., 3:6] @ rot
        return _restore(out, single)

    def __repr__(self) -> str:
        return f"RotateY(max_angle={self.max_angle:.4g}, normals={self.normals}, {self._gen_repr()})"


class Jitter(_RandomTransform):
    """Official ``PointcloudJitter``: add ``clamp(N(0, sigma^2), -clip, clip)`` to every coordinate."""

    def __init__(self, sigma: float = 0.01, clip: float = 0.05, *, generator: GeneratorLike = None) -> None:
        super().__init__(generator=generator)
        if sigma < 0 or clip < 0:
            raise ValueError("sigma and clip must be >= 0")
        self.sigma, self.clip = float(sigma), float(clip)

    def __call__(self, points: PointsLike) -> torch.Tensor:
        pts, single = _as_batch(points)
        N = pts.shape[1]
        noise = self._per_cloud(pts.shape[0], lambda g: torch.randn(N, 3, generator=g))  # B N 3
        noise = (noise * self.sigma).clamp_(-self.clip, self.clip).to(pts.device, pts.dtype)
        out = pts.clone()
        out[..., :3] += noise
        return _restore(out, single)

    def __repr__(self) -> str:
        return f"Jitter(sigma={self.sigma:.4g}, clip={self.clip:.4g}, {self._gen_repr()})"


class RandomPointDropout(_RandomTransform):
    """Official ``PointcloudRandomInputDropout``: drop a random fraction of points, keeping N.

    Per cloud a ratio ``r ~ U(0, max_dropout_ratio)`` is drawn, then every point with
    ``U(0, 1) <= r`` is replaced by a copy of the cloud's first point (all channels).
    """

    def __init__(self, max_dropout_ratio: float = 0.5, *, generator: GeneratorLike = None) -> None:
        super().__init__(generator=generator)
        if not 0 <= max_dropout_ratio < 1:
            raise ValueError(f"max_dropout_ratio must be in [0, 1), got {max_dropout_ratio}")
        self.max_dropout_ratio = float(max_dropout_ratio)

    def __call__(self, points: PointsLike) -> torch.Tensor:
        pts, single = _as_batch(points)
        B, N, _ = pts.shape
        # B 1+N: the ratio draw, then one draw per point
        u = self._per_cloud(B, lambda g: torch.rand(N + 1, generator=g)).to(pts.device)
        ratio = u[:, :1] * self.max_dropout_ratio  # B 1
        drop = u[:, 1:] <= ratio  # B N
        out = torch.where(drop.unsqueeze(-1), pts[:, :1, :].expand_as(pts), pts)
        return _restore(out, single)

    def __repr__(self) -> str:
        return f"RandomPointDropout(max_dropout_ratio={self.max_dropout_ratio:.4g}, {self._gen_repr()})"


class FPSResample(_RandomTransform):
    """Furthest point sampling to ``n`` points (official ``misc.fps``, through :mod:`act_zoo.ops`).

    Without ``pool`` it is deterministic: the official CUDA-kernel rule, starting at point 0.
    With ``pool`` it is the official training-time resampling: FPS to ``min(pool, N)``
    points, then a random subset of ``n`` of them in random order (the finetune runner
    uses ``pool`` 1200/2400/4800/8192 for ``n`` 1024/2048/4096/8192). The official runner
    draws one subset for the whole batch; this draws one per cloud.
    """

    #: the official runner's FPS pool for each number of points
    OFFICIAL_POOL = {1024: 1200, 2048: 2400, 4096: 4800, 8192: 8192}

    def __init__(self, n: int, *, pool: int | None = None, generator: GeneratorLike = None) -> None:
        super().__init__(generator=generator)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if pool is not None and (isinstance(pool, bool) or not isinstance(pool, int) or pool < n):
            raise ValueError(f"pool must be an int >= n ({n}), got {pool!r}")
        self.n, self.pool = n, pool

    def __call__(self, points: PointsLike) -> torch.Tensor:
        from act_zoo.ops import furthest_point_sample, gather_points

        pts, single = _as_batch(points)
        B, N, _ = pts.shape
        if N < self.n:
            raise ValueError(f"cannot FPS-sample {self.n} points from clouds of {N} points")
        k = self.n if self.pool is None else min(self.pool, N)
        idx = furthest_point_sample(pts[..., :3].contiguous(), k)  # B k
        if self.pool is not None:
            pick = self._per_cloud(B, lambda g: torch.randperm(k, generator=g)[: self.n])  # B n
            pick = pick.to(idx.device)
            idx = idx.gather(1, pick)
        return _restore(gather_points(pts, idx), single)

    def __repr__(self) -> str:
        extra = "" if self.pool is None else f", pool={self.pool}, {self._gen_repr()}"
        return f"FPSResample(n={self.n}{extra})"


class RandomResample(_RandomTransform):
    """A random subset of ``n`` points per cloud, in random order.

    ``replace=False`` is the official ShapeNet55 ``random_sample`` (needs ``N >= n``);
    ``replace=True`` is ShapeNetPart's ``np.random.choice(N, n, replace=True)``.
    """

    def __init__(self, n: int, *, replace: bool = False, generator: GeneratorLike = None) -> None:
        super().__init__(generator=generator)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        self.n, self.replace = n, bool(replace)

    def __call__(self, points: PointsLike) -> torch.Tensor:
        pts, single = _as_batch(points)
        B, N, _ = pts.shape
        if self.replace:
            if N == 0:
                raise ValueError("cannot resample clouds of 0 points")
            idx = self._per_cloud(B, lambda g: torch.randint(0, N, (self.n,), generator=g))  # B n
        else:
            if N < self.n:
                raise ValueError(f"cannot draw {self.n} of {N} points without replacement (use replace=True)")
            idx = self._per_cloud(B, lambda g: torch.randperm(N, generator=g)[: self.n])  # B n
        idx = idx.to(pts.device)
        out = pts.gather(1, idx.unsqueeze(-1).expand(-1, -1, pts.shape[-1]))
        return _restore(out, single)

    def __repr__(self) -> str:
        return f"RandomResample(n={self.n}, replace={self.replace}, {self._gen_repr()})"
