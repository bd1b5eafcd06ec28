"""The one preparation path for a cloud: read -> validate -> normalise -> resample -> batch.

Custom datasets (:class:`~act_zoo.data.PointCloudFolder`, :class:`~act_zoo.data.PointCloudList`),
:func:`act_zoo.extract_features`, :func:`act_zoo.predict` and :func:`act_zoo.evaluate` all
prepare a cloud here and nowhere else:

1. **read** -- a file with :func:`~act_zoo.data.read_points` (any supported format; a mesh is
   sampled by area with ``mesh_samples`` points and the user's ``seed``), in float64; or an
   in-memory ``[N, 3]`` tensor/array, taken as it is (moved to the CPU, float64).
2. **validate** -- shape ``[N, 3]`` (plus the normals/colour columns asked for), a real
   numeric dtype, data (not the ``meta`` device), at least one point, finite values; a
   cloud whose points all coincide cannot be normalised and is refused.
3. **normalise** (``normalize=True``, the official ``pc_normalize``) -- subtract the centroid
   and divide by the largest radius, **in float64**, and only then cast to float32. A cloud
   offset by 1e7 therefore gives the same points (to float32 rounding) as the centred cloud.
   Coordinates so large, relative to the cloud's size, that the input's own precision no
   longer resolves the shape (e.g. a unit object at 1e20 in float64, or at 1e6 in float32)
   are an error, as is overflow: never a NaN feature. Normals and colours are unchanged.
4. **resample** to ``num_points``: ``"fps"`` -- furthest point sampling with the official
   kernel rule through :mod:`act_zoo.ops` (start at point 0, lowest index on ties, in
   float32), or ``"random"`` -- a random subset in random order. A cloud with fewer points
   keeps all of them, followed by random repeats (padding); one with exactly
   ``num_points`` is kept as it is. The random draws come from a generator seeded **per
   item** by the user's ``seed`` and a digest of the cloud's own values, never by its
   position: a cloud is prepared the same whatever the batch size, the order of the list
   or its neighbours. (A moved or edited cloud has other values, hence other draws.)
5. **batch** -- :func:`batch_clouds` stacks prepared clouds into ``[B, num_points, C]``
   float32, with each cloud's centre and scale (to map results back into its own frame).

Steps 1-4 are one picklable call, ``CloudPreparer(...)(source)``, so a thread pool or a
``DataLoader`` worker can prepare clouds while the network runs;
``CloudPreparer(...).prepare_many(sources)`` prepares several at once, identically, with one
batched FPS call per group of same-sized clouds.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .errors import DatasetError

__all__ = [
    "CloudBatch",
    "CloudPreparer",
    "CloudSource",
    "PreparedCloud",
    "batch_clouds",
    "fps_indices",
    "item_generator",
    "normalize_cloud",
    "prepare_cloud",
    "resample_indices",
    "validate_cloud",
]

CloudSource = str | os.PathLike | np.ndarray | torch.Tensor

#: a cloud whose input precision (its largest coordinate x the dtype's epsilon) exceeds this
#: fraction of its radius has lost its shape to rounding: refused rather than normalised
MAX_RELATIVE_RESOLUTION = 1e-2
#: without normalisation, float32 squared distances of larger coordinates overflow
MAX_UNNORMALISED_COORDINATE = 1e18


@dataclass(frozen=True)
class PreparedCloud:
    """One cloud, ready for the network.

    Attributes:
        points: float32 ``[num_points, C]``: ``xyz`` (normalised unless ``normalize=False``),
            then normals, then colours when asked for.
        center: float64 ``[3]``: the centroid that was subtracted (zeros without normalisation).
        scale: the radius that was divided by (1.0 without normalisation); a point ``p`` of
            ``points`` is ``p * scale + center`` in the input's own coordinates.
        name: the file path, or ``"cloud <i>"`` for an in-memory cloud.
        num_input_points: points before resampling (after mesh sampling).
    """

    points: np.ndarray
    center: np.ndarray
    scale: float
    name: str
    num_input_points: int

    @property
    def padded(self) -> bool:
        """True when the cloud had fewer points than ``num_points`` (random repeats were added)."""
        return self.num_input_points < self.points.shape[0]


@dataclass(frozen=True)
class CloudBatch:
    """Prepared clouds stacked: ``points [B, n, C]`` float32, ``centers [B, 3]`` and
    ``scales [B]`` float64 (each cloud's frame), ``names`` (``B`` strings)."""

    points: torch.Tensor
    centers: torch.Tensor
    scales: torch.Tensor
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.points.shape[0])


def _check_int(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class CloudPreparer:
    """Steps 1-4 of the module docstring for one cloud: ``CloudPreparer(1024)(source)``.

    Args:
        num_points: points per prepared cloud (``>= 1``).
        sample: ``"fps"`` or ``"random"`` (see the module docstring).
        seed: the user's seed (``>= 0``): mixed with each cloud's digest for its random draws,
            and the seed of mesh surface sampling.
        normalize: centre and scale to the unit sphere (in float64) first.
        mesh_samples: points sampled by area from a mesh file before resampling.
        keep_normals, keep_colors: keep the file's normals / colours as extra columns
            (a file without them is an error); in-memory clouds must then carry the columns.

    A frozen, picklable value: safe to send to ``DataLoader`` workers or threads.
    """

    num_points: int
    sample: Literal["fps", "random"] = "fps"
    seed: int = 0
    normalize: bool = True
    mesh_samples: int = 8192
    keep_normals: bool = False
    keep_colors: bool = False

    def __post_init__(self) -> None:
        _check_int(self.num_points, "num_points", minimum=1)
        _check_int(self.seed, "seed", minimum=0)
        _check_int(self.mesh_samples, "mesh_samples", minimum=1)
        if self.sample not in ("fps", "random"):
            raise ValueError(f"sample must be 'fps' or 'random', got {self.sample!r}")

    @property
    def width(self) -> int:
        """Columns of a prepared cloud: 3, plus 3 for normals, plus 3 for colours."""
        return 3 + 3 * bool(self.keep_normals) + 3 * bool(self.keep_colors)

    def read(self, source: CloudSource, name: str | None = None) -> tuple[np.ndarray, float, str]:
        """Steps 1-2: ``(float64 [N, width] validated cloud, its input precision, name)``; the
        precision is the relative epsilon of the dtype the values came in (see :func:`validate_cloud`)."""
        if isinstance(source, (str, os.PathLike)):
            from .io import read_cloud_array

            path = Path(source)
            name = name or str(path)
            arr, eps = read_cloud_array(path, mesh_samples=self.mesh_samples, seed=self.seed,
                                        keep_normals=self.keep_normals, keep_colors=self.keep_colors)
            arr, _ = validate_cloud(arr, name, width=self.width)
            return arr, eps, name
        name = name or "cloud"
        arr, eps = validate_cloud(source, name, width=self.width)
        return arr, eps, name

    def __call__(self, source: CloudSource, name: str | None = None) -> PreparedCloud:
        """Steps 1-4 for one file or in-memory cloud; errors are ``ValueError``\\ s naming it."""
        arr, eps, name = self.read(source, name)
        return self.prepare_array(arr, name, input_eps=eps)

    def prepare_array(self, arr: np.ndarray, name: str, *, input_eps: float = 0.0) -> PreparedCloud:
        """Steps 3-4 for a cloud already read and validated (float64 ``[N, width]``)."""
        staged = self._stage(arr, name, input_eps)
        if staged.fps_xyz is not None:
            staged.idx = fps_indices(staged.fps_xyz[None], self.num_points)[0]
        return staged.finish()

    def prepare_many(
        self, sources: Sequence[CloudSource], names: Sequence[str | None] | None = None
    ) -> list[PreparedCloud | ValueError | OSError]:
        """Steps 1-4 for many clouds, each exactly as ``self(source, name)`` prepares it, with one
        FPS call per group of same-sized clouds (a batched FPS amortises the per-step cost of
        the torch backend and lets a compiled one spread the batch over threads).

        Returns, in order, each cloud's :class:`PreparedCloud`, or the ``ValueError`` /
        ``OSError`` that preparing it raised (other exceptions propagate)."""
        names = list(names) if names is not None else [None] * len(sources)
        if len(names) != len(sources):
            raise ValueError(f"{len(sources)} sources but {len(names)} names")
        out: list[PreparedCloud | ValueError | OSError | _Staged] = []
        for source, name in zip(sources, names):
            try:
                arr, eps, name = self.read(source, name)
                out.append(self._stage(arr, name, eps))
            except (ValueError, OSError) as exc:
                out.append(exc)
        waiting: dict[int, list[int]] = {}  # clouds that need FPS, by size
        for i, item in enumerate(out):
            if isinstance(item, _Staged) and item.fps_xyz is not None:
                waiting.setdefault(item.fps_xyz.shape[0], []).append(i)
        for size, members in waiting.items():
            step = max(1, FPS_BATCH_POINTS // size)  # bounded memory for large clouds
            for start in range(0, len(members), step):
                group = members[start:start + step]
                xyz = np.stack([out[i].fps_xyz for i in group])  # b N 3, float32
                for i, idx in zip(group, fps_indices(xyz, self.num_points)):
                    out[i].idx = idx
        return [item.finish() if isinstance(item, _Staged) else item for item in out]

    def _stage(self, arr: np.ndarray, name: str, input_eps: float) -> _Staged:
        """Step 3 and the random draws of step 4; FPS (when needed) is left to the caller."""
        xyz = arr[:, :3]
        if self.normalize:
            xyz, center, scale = normalize_cloud(xyz, name, input_eps=input_eps)
        else:
            center, scale = np.zeros(3), 1.0
            big = float(np.abs(xyz).max())
            if big > MAX_UNNORMALISED_COORDINATE:
                raise ValueError(
                    f"{name}: coordinates up to {big:.3g} overflow float32 distance computations "
                    f"without normalisation; use normalize=True"
                )
        with np.errstate(over="ignore", invalid="ignore"):
            both = xyz if arr.shape[1] == 3 else np.concatenate([xyz, arr[:, 3:]], axis=1)
            points = both.astype(np.float32)
        if not np.isfinite(points).all():
            raise ValueError(f"{name}: values beyond the float32 range")
        n, N = self.num_points, arr.shape[0]
        staged = _Staged(points, center, scale, name, int(N))
        if N == n:
            return staged
        if N < n or self.sample == "random":
            staged.idx = resample_indices(points[:, :3], n, self.sample, item_generator(arr, self.seed))
            return staged
        # FPS is invariant to translation and scale, except for the official kernel's skip of
        # points near the origin: unnormalised clouds are sampled in a unit-sphere copy
        staged.fps_xyz = np.ascontiguousarray(points[:, :3] if self.normalize else _unit_copy(arr[:, :3]))
        return staged


#: most points (clouds x points) :meth:`CloudPreparer.prepare_many` hands to one FPS call
FPS_BATCH_POINTS = 1 << 22


@dataclass
class _Staged:
    """A cloud between steps 3 and 4: normalised float32 points, waiting for its indices."""

    points: np.ndarray
    center: np.ndarray
    scale: float
    name: str
    num_input_points: int
    fps_xyz: np.ndarray | None = None  # float32 [N, 3] to sample by FPS, when FPS is needed
    idx: np.ndarray | None = None  # the resampling indices (None: keep the cloud as it is)

    def finish(self) -> PreparedCloud:
        if self.fps_xyz is not None and self.idx is None:
            raise RuntimeError(f"{self.name}: FPS indices were never computed")
        points = self.points if self.idx is None else self.points[self.idx]
        return PreparedCloud(np.ascontiguousarray(points), self.center, self.scale, self.name,
                             self.num_input_points)


def prepare_cloud(
    source: CloudSource,
    *,
    num_points: int,
    sample: Literal["fps", "random"] = "fps",
    seed: int = 0,
    normalize: bool = True,
    mesh_samples: int = 8192,
    name: str | None = None,
) -> PreparedCloud:
    """``CloudPreparer(num_points, ...)(source, name)``: one cloud through steps 1-4."""
    return CloudPreparer(num_points, sample, seed, normalize, mesh_samples)(source, name)


def validate_cloud(points: np.ndarray | torch.Tensor, name: str, *, width: int = 3) -> tuple[np.ndarray, float]:
    """Step 2: ``(float64 [N, width] copy, input precision)`` of an in-memory cloud, or a
    ``ValueError`` naming it. The precision is the epsilon of the input's floating dtype
    (float32: 1.19e-7; 0 for integers, which float64 holds exactly up to 2**53)."""
    if isinstance(points, torch.Tensor):
        if points.device.type == "meta":
            raise ValueError(f"{name}: is on the meta device (it has a shape but no values)")
        if points.is_complex() or points.dtype == torch.bool:
            raise ValueError(f"{name}: unsupported dtype {points.dtype} (expected real numbers)")
        dtype_eps = torch.finfo(points.dtype).eps if points.is_floating_point() else 0.0
        arr = points.detach().to("cpu", torch.float64).numpy()
    elif isinstance(points, np.ndarray):
        if points.dtype.kind not in "iuf":
            raise ValueError(f"{name}: unsupported dtype {points.dtype} (expected real numbers)")
        dtype_eps = float(np.finfo(points.dtype).eps) if points.dtype.kind == "f" else 0.0
        arr = np.asarray(points, dtype=np.float64)
    else:
        raise TypeError(f"{name}: expected a tensor, array or path, got {type(points).__name__}")
    if arr.ndim != 2 or arr.shape[1] != width:
        cols = "3" if width == 3 else f"{width} (xyz + normals/colours)"
        raise ValueError(f"{name}: a cloud must have shape [N, {cols}], got {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: empty cloud (0 points)")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int((~finite).any(axis=1).sum())
        raise ValueError(f"{name}: {bad} of {arr.shape[0]} points contain NaN or inf values")
    return np.ascontiguousarray(arr), dtype_eps


def item_generator(arr: np.ndarray, seed: int) -> np.random.Generator:
    """The generator of one cloud: seeded by ``seed`` and a digest of the cloud's values and shape."""
    digest = hashlib.blake2b(np.ascontiguousarray(arr, dtype=np.float64).tobytes(), digest_size=16,
                             person=b"act_zoo.prepare", salt=str(arr.shape).encode()[:16]).digest()
    return np.random.default_rng(np.random.SeedSequence([int(seed), int.from_bytes(digest, "little")]))


def normalize_cloud(xyz: np.ndarray, name: str, *, input_eps: float = 0.0) -> tuple[np.ndarray, np.ndarray, float]:
    """Step 3: ``(normalised float64 [N, 3], centroid [3], radius)``, computed in float64.

    ``input_eps``: the relative precision of the values as the user had them (float32:
    1.19e-7); float64's own is always assumed at least.

    Raises:
        ValueError: overflow, all points coincident, or coordinates so far from the origin
            relative to the cloud's size that the input's precision no longer resolves it.
    """
    eps = max(float(input_eps), float(np.finfo(np.float64).eps))
    xyz = np.asarray(xyz, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        center = np.einsum("ij->j", xyz) / xyz.shape[0]  # 3: xyz.mean(axis=0)'s sums, ~3x faster on [N, 3]
        centred = xyz - center  # N 3
        radius = float(np.sqrt(np.einsum("ij,ij->i", centred, centred).max()))
        if not 0.0 < radius < float("inf"):  # the squares overflowed (or all points coincide): scale first
            peak = float(np.abs(centred).max()) if np.isfinite(centred).all() else float("inf")
            radius = 0.0
            if 0.0 < peak < float("inf"):  # scaled by the peak so that squaring cannot overflow
                radius = peak * float(np.sqrt(np.square(centred / peak).sum(axis=1).max()))
    if not (np.isfinite(center).all() and np.isfinite(radius)):
        raise ValueError(f"{name}: coordinates too large to normalise (overflow at |x| up to "
                         f"{float(np.abs(xyz).max()):.3g})")
    if radius == 0.0:
        raise ValueError(f"{name}: all {xyz.shape[0]} points coincide; a single location cannot be normalised")
    magnitude = max(float(xyz.max()), -float(xyz.min()))
    resolution = magnitude * eps
    if resolution > MAX_RELATIVE_RESOLUTION * radius:
        raise ValueError(
            f"{name}: coordinates reach {magnitude:.3g} but the cloud's radius is only {radius:.3g}: at the "
            f"input's precision its points are rounded to ~{resolution:.3g} ({100 * resolution / radius:.2g} % "
            f"of its size), so its shape is lost; subtract an origin first (or give float64 coordinates)"
        )
    centred /= radius
    return centred, center, radius


def resample_indices(xyz: np.ndarray, n: int, method: str, rng: np.random.Generator) -> np.ndarray | None:
    """Step 4: indices of ``n`` points of ``xyz [N, 3]`` (None: keep the cloud as it is, N == n).

    ``N > n``: ``"fps"`` (official kernel rule through :mod:`act_zoo.ops`, on ``xyz`` as
    float32, start at point 0) or ``"random"`` (a subset in random order from ``rng``).
    ``N < n``: all points, then ``n - N`` random repeats from ``rng``.
    """
    N = xyz.shape[0]
    if N == n:
        return None
    if N < n:
        return np.concatenate([np.arange(N), rng.integers(0, N, size=n - N)])
    if method == "random":
        return rng.permutation(N)[:n]
    return fps_indices(xyz[None], n)[0]


def fps_indices(xyz: np.ndarray, n: int) -> np.ndarray:
    """``[B, n]`` FPS indices of same-sized clouds ``xyz [B, N, 3]`` (as float32), one
    :func:`act_zoo.ops.furthest_point_sample` call: each row as its cloud alone would get."""
    from ..ops import furthest_point_sample

    pts = torch.from_numpy(np.ascontiguousarray(xyz, dtype=np.float32))  # B N 3
    return furthest_point_sample(pts, n).numpy()


def _unit_copy(xyz: np.ndarray) -> np.ndarray:
    """float32 ``(xyz - centroid) / radius`` (centred only when the radius is 0), in float64 first."""
    centred = xyz - xyz.mean(axis=0)
    radius = float(np.sqrt(np.square(centred).sum(axis=1).max()))
    return (centred / radius if radius > 0 else centred).astype(np.float32)


def batch_clouds(clouds: Sequence[PreparedCloud]) -> CloudBatch:
    """Step 5: stack prepared clouds (all of the same ``num_points`` and width)."""
    if not clouds:
        raise ValueError("no clouds to batch")
    shapes = {c.points.shape for c in clouds}
    if len(shapes) != 1:
        raise ValueError(f"prepared clouds differ in shape: {sorted(shapes)}")
    points = torch.from_numpy(np.stack([c.points for c in clouds]))  # B n C
    centers = torch.from_numpy(np.stack([c.center for c in clouds]).astype(np.float64))  # B 3
    scales = torch.tensor([c.scale for c in clouds], dtype=torch.float64)  # B
    return CloudBatch(points, centers, scales, [c.name for c in clouds])


def as_dataset_error(exc: Exception, name: str) -> DatasetError:
    """A preparation failure as the :class:`DatasetError` datasets raise (naming the file once)."""
    if isinstance(exc, DatasetError):
        return exc
    text = str(exc)
    problem = text[len(name) + 2:] if text.startswith(f"{name}: ") else text
    return DatasetError(name, problem)
