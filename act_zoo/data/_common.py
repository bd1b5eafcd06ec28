"""Helpers shared by the readers: optional imports, safe array loading, FPS, seeding.

Nothing here is public API; the readers re-export what users need.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import struct
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DatasetError

logger = logging.getLogger("act_zoo.data")

PathLike = str | os.PathLike[str]
Transform = Callable[[torch.Tensor], torch.Tensor]

IO_EXTRA_HINT = 'pip install "act-zoo[io]"'

# An .npy header longer than this is refused (numpy's own default limit).
_MAX_NPY_HEADER = 10_000
# A zip member that inflates more than this factor (and to more than _BOMB_MIN bytes) is refused.
_MAX_ZIP_RATIO = 1_000
_BOMB_MIN = 256 * 1024 * 1024
# Deflate cannot expand more than 1032:1 (a 258-byte match costs at least 2 bits), so a deflated
# member of c real bytes holds at most c * 1032 (+ slack for the first block) bytes.
_DEFLATE_MAX_RATIO = 1032
# Compressed members are read in chunks of this size, so memory follows the bytes that really
# inflate, not the sizes the zip fields and the .npy header declare.
_STREAM_CHUNK = 1 << 20


def require(module: str, feature: str) -> ModuleType:
    """Import an optional dependency, or raise an ``ImportError`` that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            f"{feature} needs the optional package '{module}', which is not installed: {IO_EXTRA_HINT}"
        ) from exc


# ----------------------------------------------------------------------------- numerics


def pc_normalize(xyz: np.ndarray) -> np.ndarray:
    """Official ``pc_normalize`` / ``pc_norm``: subtract the centroid, divide by the max radius.

    Computed in the dtype of ``xyz`` (float32 for the official readers), in the official order:
    ``centroid = mean(xyz, 0)``; ``xyz - centroid``; ``m = max(sqrt(sum(p**2, 1)))``; divide.
    A cloud whose points all coincide is only centred (the official code would divide by 0).
    """
    centroid = np.mean(xyz, axis=0)
    out = xyz - centroid
    m = np.max(np.sqrt(np.sum(out**2, axis=1))) if len(out) else 0.0
    if m > 0:
        out = out / m
    return out


def fps_numpy(xyz: np.ndarray, n: int, start: int = 0) -> np.ndarray:
    """Farthest point sampling with the official numpy ``farthest_point_sample`` rule.

    Starting from ``start``, each next index is the point whose running minimum squared
    distance to the picked set is largest (the lowest index on ties). Distances are formed
    in the dtype of ``xyz`` as ``(dx*dx + dy*dy) + dz*dz``, like the official
    ``np.sum((xyz - c) ** 2, -1)``; the running minimum is kept in float64 as there.
    Unlike the CUDA kernel there is no skip of points near the origin.

    Args:
        xyz: ``[N, 3]`` points.
        n: number of indices, ``0 <= n <= N``.
        start: first index (the official code draws it with ``np.random.randint(0, N)``).

    Returns:
        ``[n]`` int64 indices.
    """
    N = xyz.shape[0]
    if not 0 <= n <= N:
        raise ValueError(f"cannot sample {n} points from a cloud of {N} points")
    idx = np.zeros(n, dtype=np.int64)
    if n == 0:
        return idx
    cols = [np.ascontiguousarray(xyz[:, c]) for c in range(3)]
    distance = np.full(N, 1e10, dtype=np.float64)
    d = np.empty(N, dtype=xyz.dtype)
    t = np.empty(N, dtype=xyz.dtype)
    far = int(start)
    for i in range(n):
        idx[i] = far
        np.subtract(cols[0], cols[0][far], out=d)
        np.multiply(d, d, out=d)
        for c in (1, 2):
            np.subtract(cols[c], cols[c][far], out=t)
            np.multiply(t, t, out=t)
            np.add(d, t, out=d)
        np.minimum(distance, d, out=distance)
        far = int(np.argmax(distance))
    return idx


def item_rng(seed: int | None, epoch: int, index: int) -> np.random.Generator:
    """Per-item generator: fresh OS entropy when ``seed`` is None, else fixed by (seed, epoch, index)."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([seed, epoch, index])


def check_seed(seed: int | None, name: str = "seed") -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be a non-negative int or None, got {seed!r}")
    return int(seed)


def check_positive_int(value: Any, name: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_cloud(points: np.ndarray, path: PathLike, *, min_cols: int = 3) -> np.ndarray:
    """``points`` must be a finite, non-empty ``[N, >=min_cols]`` numeric array."""
    if points.ndim != 2 or points.shape[1] < min_cols:
        raise DatasetError(path, f"expected points of shape [N, {min_cols}+], got {list(points.shape)}")
    if points.shape[0] == 0:
        raise DatasetError(path, "holds no points")
    if not np.isfinite(points).all():
        bad = int((~np.isfinite(points)).any(axis=1).sum())
        raise DatasetError(path, f"{bad} of {points.shape[0]} points contain NaN or infinite values")
    return points


# ----------------------------------------------------------------------------- text files


def read_text(path: PathLike, what: str = "file") -> str:
    """Read a small UTF-8 text file, raising :class:`DatasetError` naming it when it cannot."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(p, f"{what} not found" if not p.exists() else f"{what} is not a file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DatasetError(p, f"cannot read {what}: {exc}") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(p, f"{what} is not UTF-8 text (byte {exc.start})") from exc


def read_lines(path: PathLike, what: str = "list file") -> list[str]:
    """Non-empty, right-stripped lines of a text file (the official readers ``rstrip`` each line)."""
    lines = [line.strip() for line in read_text(path, what).splitlines()]
    return [line for line in lines if line]


# ----------------------------------------------------------------------------- .npy / .npz


def _read_npy_header(fp: IO[bytes], path: PathLike) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    version = fmt.read_magic(fp)
    if version == (1, 0):
        return fmt.read_array_header_1_0(fp, max_header_size=_MAX_NPY_HEADER)
    if version == (2, 0):
        return fmt.read_array_header_2_0(fp, max_header_size=_MAX_NPY_HEADER)
    reader = getattr(fmt, "_read_array_header", None)
    if version == (3, 0) and reader is not None:
        return reader(fp, version, max_header_size=_MAX_NPY_HEADER)
    raise DatasetError(path, f"unsupported .npy format version {version}")


def read_npy_stream(fp: IO[bytes], available: int, path: PathLike, *, streamed: bool = False) -> np.ndarray:
    """Read one ``.npy`` array from ``fp``, checking its declared size against ``available`` bytes.

    Object (pickled) arrays are refused. The header's shape is validated before anything is
    allocated, so a huge declared shape in a small file is an error, not an allocation.
    ``streamed``: ``available`` is only an upper bound (a compressed stream); the data are read
    in chunks, so memory grows only with the bytes that really arrive.
    """
    start = fp.tell()
    try:
        shape, fortran, dtype = _read_npy_header(fp, path)
    except DatasetError:
        raise
    except (ValueError, SyntaxError, TypeError, EOFError, OverflowError) as exc:
        raise DatasetError(path, f"not a valid .npy array header ({exc})") from exc
    if dtype.hasobject:
        raise DatasetError(path, "holds a pickled object array, which is refused (allow_pickle=False)")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    remaining = available - (fp.tell() - start)
    if nbytes > remaining:
        follow = f"the member can hold at most {max(0, remaining)} bytes" if streamed else f"only {remaining} bytes follow"
        raise DatasetError(path, f"is truncated: its header declares shape {shape} ({nbytes} bytes) but {follow}")
    if streamed:
        buf = bytearray()
        while len(buf) < nbytes:
            chunk = fp.read(min(_STREAM_CHUNK, nbytes - len(buf)))
            if not chunk:
                break
            buf += chunk
        got = len(buf)
    else:
        buf = bytearray(nbytes)
        got = fp.readinto(buf) if nbytes else 0
    if got != nbytes:
        raise DatasetError(path, f"is truncated: expected {nbytes} data bytes, read {got}")
    arr = np.frombuffer(buf, dtype=dtype, count=count)
    return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


def _inflate_bound(info: zipfile.ZipInfo, archive_size: int) -> int:
    """The most bytes a compressed member can really hold: its declared size, and for deflate
    also what its compressed bytes (never more than the archive itself) can expand to."""
    bound = info.file_size
    if info.compress_type == zipfile.ZIP_DEFLATED:
        bound = min(bound, (min(info.compress_size, archive_size) + 1) * _DEFLATE_MAX_RATIO)
    return bound  # bzip2 / lzma have no useful ratio bound: the streamed read is the guard


def nonempty_file(path: PathLike) -> tuple[Path, int]:
    """``(path, size)`` of an existing, non-empty file; otherwise a :class:`DatasetError`."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(p, "file not found")
    size = p.stat().st_size
    if size == 0:
        raise DatasetError(p, "is empty")
    return p, size


def load_npy(path: PathLike) -> np.ndarray:
    """Safely load a ``.npy`` file (no pickle, size-checked header); errors name the file."""
    p, size = nonempty_file(path)
    with open(p, "rb") as fp:
        return read_npy_stream(fp, size, p)


def load_npz(path: PathLike, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Safely load arrays of a ``.npz`` file (no pickle, size-checked members).

    Args:
        path: the archive.
        keys: the arrays to load (all when None); a missing key is a :class:`DatasetError`.
    """
    p, size = nonempty_file(path)
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(p) as zf:
            members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
            wanted = list(members) if keys is None else list(keys)
            missing = [k for k in wanted if k not in members]
            if missing:
                raise DatasetError(p, f"has no array(s) {missing}; it holds {sorted(members)}")
            for key in wanted:
                info = zf.getinfo(members[key])
                ratio = info.file_size / max(1, info.compress_size)
                if info.file_size > _BOMB_MIN and ratio > _MAX_ZIP_RATIO:
                    raise DatasetError(
                        p, f"member {key!r} inflates {info.compress_size} -> {info.file_size} bytes"
                    )
                if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1:
                    out[key] = _read_stored_member(p, info, f"{p}[{key}]")
                else:
                    with zf.open(info) as fp:
                        out[key] = read_npy_stream(fp, _inflate_bound(info, size), f"{p}[{key}]", streamed=True)
    except DatasetError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError,
            ValueError, MemoryError, struct.error) as exc:  # fmt: skip
        raise DatasetError(p, f"not a readable .npz archive ({type(exc).__name__}: {exc})") from exc
    return out


def _read_stored_member(path: Path, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    """Read an uncompressed zip member straight from the file (several times faster than
    ``ZipFile.open``, which checksums and copies in small chunks); sizes are still checked."""
    if info.header_offset + info.file_size > path.stat().st_size:
        raise DatasetError(path, f"is truncated: member {name} declares {info.file_size} bytes past the end")
    with open(path, "rb") as fp:
        fp.seek(info.header_offset)
        local = fp.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise DatasetError(path, f"member {name} has a bad local zip header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        fp.seek(info.header_offset + 30 + name_len + extra_len)
        return read_npy_stream(fp, info.file_size, name)


def npz_keys(path: PathLike) -> list[str]:
    """Array names in a ``.npz`` archive, in archive order."""
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as zf:
            return [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise DatasetError(p, f"not a readable .npz archive ({type(exc).__name__}: {exc})") from exc


def save_npz_atomic(path: PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write an uncompressed ``.npz`` atomically (temporary file, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fp:
            np.savez(fp, **arrays)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


# ----------------------------------------------------------------------------- datasets


class PointDataset(Dataset):
    """Base of the readers: holds the ``transform``, the ``seed`` and the epoch.

    Randomness inside a reader (point shuffling, random sampling) comes from
    :meth:`rng`: fresh OS entropy per access when ``seed`` is None (like the official
    global-numpy code, but without the duplicated streams of forked DataLoader workers),
    otherwise a generator fixed by ``(seed, epoch, index)``. Call :meth:`set_epoch` each
    epoch to get new, still reproducible, draws.
    """

    def __init__(self, *, transform: Transform | None, seed: int | None) -> None:
        super().__init__()
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.transform = transform
        self.seed = check_seed(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draws :meth:`rng` reproduces (only matters with a ``seed``)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The generator for item ``index`` (see the class docstring)."""
        return item_rng(self.seed, self.epoch, index)

    def _to_tensor(self, points: np.ndarray) -> torch.Tensor:
        out = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
        if self.transform is not None:
            out = self.transform(out)
        return out

    def _check_index(self, index: int) -> int:
        n = len(self)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {n}")
        return index

    def __len__(self) -> int:  # pragma: no cover - every reader overrides it
        raise TypeError(f"{type(self).__name__} must define __len__")


def subsample(
    points: np.ndarray, npoints: int, method: str, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Pick ``npoints`` rows of ``points``: ``fps`` (official CUDA-kernel FPS through
    :mod:`act_zoo.ops`, first point first), ``first`` (a prefix) or ``random`` (without
    replacement, in random order)."""
    n = points.shape[0]
    if npoints > n:
        raise ValueError(f"cannot take {npoints} points from a cloud of {n}")
    if npoints == n and method != "random":
        return points
    if method == "first":
        return points[:npoints]
    if method == "random":
        assert rng is not None
        return points[rng.permutation(n)[:npoints]]
    from act_zoo.ops import furthest_point_sample

    xyz = torch.from_numpy(np.ascontiguousarray(points[:, :3], dtype=np.float32)).unsqueeze(0)
    idx = furthest_point_sample(xyz, npoints)[0].numpy()
    return points[idx]
