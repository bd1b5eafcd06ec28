"""``read_points``: the one point-cloud file reader (custom datasets and ``act-zoo extract``).

Formats, by extension (case-insensitive):

==================  =====================================================================
``.ply``            point clouds and meshes, read with ``plyfile`` (ASCII and binary);
                    a PLY with a non-empty ``face`` element is a mesh and is sampled
``.pcd``            PCL point clouds: ``ascii``, ``binary`` and ``binary_compressed`` (LZF),
                    decoded by ``pypcd4``; the header is checked here first
``.npy``            a ``[N, C>=3]`` array, or a structured array with fields ``x y z``
``.npz``            key ``points``, ``xyz`` or ``data`` if present, else the first array
``.txt .xyz .csv``  whitespace- or comma-separated numbers, one point a line, an optional
                    header line
``.off .obj .stl``  meshes read with ``trimesh`` and sampled by area
==================  =====================================================================

Plain column arrays (``.npy``, ``.npz``, text) are read as ``x y z [nx ny nz [r g b]]``:
normals are columns 4-6, colours columns 7-9, whatever else the file holds is ignored.
PLY, PCD and structured arrays name their fields (``nx``/``normal_x``, ``red``/``r``/``rgb``).
Colours are returned in ``[0, 1]`` (8-bit values are divided by 255).

Meshes are sampled uniformly by area with ``trimesh.sample.sample_surface`` and a fixed
``seed`` (``num_points`` samples, 2048 when it is None); normals of mesh samples are the
face normals.

Every problem with a file (missing, empty, garbage, truncated, a header declaring more data
than the file holds, NaN or infinite coordinates, wrong shape) raises
:class:`~act_zoo.data.DatasetError` naming the file. Declared counts are checked against
the file size before anything is allocated, so a huge header never hangs or exhausts memory.
A PLY header must tell the truth: a binary format over an ASCII body (or the reverse), and
data beyond the declared elements, are errors, not a silent misreading or truncation.

:func:`collect_files` turns files, directories (recursive) and glob patterns into the sorted
list of files to read.
"""

from __future__ import annotations

import glob
import io
import logging
import os
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._common import (
    PathLike,
    check_choice,
    check_positive_int,
    load_npy,
    load_npz,
    npz_keys,
    require,
)
from .errors import DatasetError

__all__ = [
    "MESH_EXTENSIONS",
    "POINT_CLOUD_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "collect_files",
    "read_cloud_array",
    "read_points",
    "read_table",
]

logger = logging.getLogger(__name__)

POINT_CLOUD_EXTENSIONS: tuple[str, ...] = (".ply", ".pcd", ".npy", ".npz", ".txt", ".xyz", ".csv")
MESH_EXTENSIONS: tuple[str, ...] = (".off", ".obj", ".stl")
SUPPORTED_EXTENSIONS: tuple[str, ...] = POINT_CLOUD_EXTENSIONS + MESH_EXTENSIONS

DEFAULT_MESH_SAMPLES = 2048
_MAX_HEADER_BYTES = 64 * 1024  # PLY / PCD headers longer than this are refused
_NPZ_KEYS = ("points", "xyz", "data")


@dataclass
class _Cloud:
    xyz: np.ndarray  # N 3, float64
    normals: np.ndarray | None = None  # N 3
    colors: np.ndarray | None = None  # N 3, in [0, 1]
    eps: float = 0.0  # relative precision of the stored coordinates (float32 files: 1.19e-7)


def _eps_of(dtype: np.dtype) -> float:
    return float(np.finfo(dtype).eps) if dtype.kind == "f" else 0.0


def read_points(
    path: PathLike,
    *,
    num_points: int | None = None,
    sample: Literal["fps", "random"] = "fps",
    seed: int = 0,
    keep_normals: bool = False,
    keep_colors: bool = False,
) -> np.ndarray:
    """Read a point cloud (or sample a mesh) from a file.

    Args:
        path: the file; its extension picks the format (see the module docstring).
        num_points: resample to exactly this many points, with the resampling step of
            :mod:`act_zoo.data.prepare` (without its normalisation): clouds with more points
            are reduced by ``sample``; clouds with fewer keep all their points, followed by
            random repeats. Meshes are sampled with this many points (2048 when None). None
            keeps a cloud as it is.
        sample: ``"fps"`` (furthest point sampling, official kernel rule, from the first
            point) or ``"random"`` (a random subset, in random order). Unused for meshes.
        seed: seed of mesh surface sampling, and (mixed with a digest of the cloud's values)
            of random subsets and padding.
        keep_normals: append the normals as columns 3-5 (``DatasetError`` if the file has none).
        keep_colors: append the colours, in ``[0, 1]``, as the next three columns
            (``DatasetError`` if the file has none).

    Returns:
        float32 ``[N, 3]``, ``[N, 6]`` or ``[N, 9]``: ``xyz``, then normals, then colours.

    Raises:
        DatasetError: the file is missing, unreadable, empty, truncated, garbage, of the
            wrong shape, holds NaN/inf coordinates or lacks the requested normals/colours.
        ImportError: the format needs an optional package that is not installed
            (``pip install "act-zoo[io]"``).
    """
    p = Path(path)
    num_points = check_positive_int(num_points, "num_points", allow_none=True)
    check_choice(sample, "sample", ("fps", "random"))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if num_points is not None:
        from .prepare import CloudPreparer, as_dataset_error

        prep = CloudPreparer(num_points, sample, int(seed), normalize=False, mesh_samples=num_points,
                             keep_normals=keep_normals, keep_colors=keep_colors)
        try:
            return prep(p).points
        except ValueError as exc:
            raise as_dataset_error(exc, str(p)) from exc
    arr, _ = read_cloud_array(p, mesh_samples=DEFAULT_MESH_SAMPLES, seed=int(seed), keep_normals=keep_normals,
                              keep_colors=keep_colors)
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(np.float32)
    if not np.isfinite(out).all():  # e.g. float64 values beyond the float32 range
        raise DatasetError(p, "has values that are not finite in float32")
    return out


def read_cloud_array(
    path: PathLike, *, mesh_samples: int, seed: int, keep_normals: bool = False, keep_colors: bool = False
) -> tuple[np.ndarray, float]:
    """Step 1 of :mod:`act_zoo.data.prepare`: a file's cloud as float64 ``[N, 3 (+3 +3)]``
    (meshes sampled by area with ``mesh_samples`` points and ``seed``), and the relative
    precision its coordinates were stored with (1.19e-7 for float32 data, 0 for text and
    float64). Errors are :class:`DatasetError` naming the file, as :func:`read_points`."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        supported = " ".join(SUPPORTED_EXTENSIONS)
        raise DatasetError(p, f"unsupported extension {p.suffix!r}; supported: {supported}")
    if not p.exists():
        raise DatasetError(p, "file not found")
    if not p.is_file():
        raise DatasetError(p, "is not a file")
    # import optional dependencies first, so that a missing one is an ImportError and any
    # other ImportError raised while parsing (trimesh's lazy imports) is a file problem
    if ext == ".ply":
        require("plyfile", "reading .ply files")
    if ext == ".pcd":
        require("pypcd4", "reading .pcd files")
    if ext in MESH_EXTENSIONS or ext == ".ply":
        require("trimesh", f"reading {ext} files")
    try:
        if p.stat().st_size == 0:
            raise DatasetError(p, "is empty")
        loaded = _LOADERS[ext](p)
        if not isinstance(loaded, _Cloud):  # a mesh
            cloud = _sample_mesh(loaded, p, mesh_samples, seed, keep_colors)
        else:
            cloud = loaded
            _validate_cloud(cloud, p)
        return _assemble(cloud, p, keep_normals, keep_colors), cloud.eps
    except DatasetError:
        raise
    except Exception as exc:  # library parse errors of any kind (MemoryError, RecursionError too)
        raise DatasetError(p, f"cannot read {ext} file ({type(exc).__name__}: {exc})") from exc


def collect_files(
    inputs: PathLike | Iterable[PathLike], *, extensions: Sequence[str] = SUPPORTED_EXTENSIONS
) -> list[Path]:
    """The files named by ``inputs``, in order, without duplicates.

    Each input is a file (taken as it is, whatever its extension: reading it says what is
    wrong), a directory (every file below it with one of ``extensions``, recursively, hidden
    files and folders skipped, sorted), or a glob pattern (``scans/*.ply``, ``data/**/*.pcd``;
    sorted matches; directories it matches are expanded as above).

    Raises:
        FileNotFoundError: an input that does not exist and matches nothing (naming it).
        ValueError: a directory (or pattern) that holds no file with a known extension.
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise ValueError("no input files or directories given")
    exts = {"." + e.lower().lstrip(".") for e in extensions}
    out: list[Path] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"expected a path, directory or glob pattern, got {type(item).__name__}")
        p = Path(item).expanduser()
        if p.is_dir():
            found = files_under(p, exts)
            if not found:
                raise ValueError(f"{p}: directory holds no files with a supported extension ({' '.join(sorted(exts))})")
            out += found
        elif p.exists():
            out.append(p)
        elif glob.has_magic(str(p)):
            matches = sorted(glob.glob(str(p), recursive=True))
            if not matches:
                raise FileNotFoundError(f"{item}: no file matches this pattern")
            found = []
            for m in map(Path, matches):
                if m.is_dir():
                    found += files_under(m, exts)
                elif m.is_file() and m.suffix.lower() in exts:
                    found.append(m)
            if not found:
                raise ValueError(f"{item}: matches no file with a supported extension ({' '.join(sorted(exts))})")
            out += found
        else:
            raise FileNotFoundError(f"{item}: no such file or directory")
    seen: set[Path] = set()
    unique = []
    for f in out:
        if f not in seen:
            seen.add(f)
            unique.append(f)
    return unique


def files_under(root: Path, exts: set[str]) -> list[Path]:
    """Files below ``root`` (recursively) with one of ``exts`` (lower-case, with the dot),
    hidden files and folders skipped, sorted: the rule of directories everywhere.

    Linked folders are searched like real ones (``Path.rglob`` before Python 3.13 silently
    skips them); each folder is visited once, and a link back to ``root`` or one of its
    ancestors is not followed (it would loop, or reach other classes' files)."""
    root_real = os.path.realpath(root)
    seen: set[tuple[int, int]] = set()
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        keep = []
        for d in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, d))
            if not d.startswith(".") and real != root_real and not root_real.startswith(real.rstrip(os.sep) + os.sep):
                keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            f = Path(dirpath) / name
            if not name.startswith(".") and f.suffix.lower() in exts and f.is_file():
                found.append(f)
    return sorted(found)


# ----------------------------------------------------------------------------- common


def _validate_cloud(cloud: _Cloud, path: Path) -> None:
    xyz = cloud.xyz
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise DatasetError(path, f"expected points of shape [N, 3], got {list(xyz.shape)}")
    if xyz.shape[0] == 0:
        raise DatasetError(path, "holds no points")
    _check_finite(xyz, "coordinates", path)


def _check_finite(arr: np.ndarray, name: str, path: Path) -> None:
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        hint = ("; remove those points first (depth sensors and organised PCL clouds mark missing returns with NaN)"
                if name == "coordinates" else "")
        raise DatasetError(path, f"{bad} of {arr.shape[0]} points have NaN or infinite {name}{hint}")


def _assemble(cloud: _Cloud, path: Path, keep_normals: bool, keep_colors: bool) -> np.ndarray:
    cols = [cloud.xyz]  # only what was asked for is checked: NaN normals of a file are fine unless kept
    if keep_normals:
        if cloud.normals is None:
            raise DatasetError(path, "has no normals (keep_normals=True)")
        _check_finite(cloud.normals, "normals", path)
        cols.append(cloud.normals)
    if keep_colors:
        if cloud.colors is None:
            raise DatasetError(path, "has no colours (keep_colors=True)")
        _check_finite(cloud.colors, "colours", path)
        cols.append(cloud.colors)
    return (cols[0] if len(cols) == 1 else np.concatenate(cols, axis=1)).astype(np.float64, copy=False)


def _scale_colors(colors: np.ndarray) -> np.ndarray:
    colors = colors.astype(np.float64)
    if colors.size and np.nanmax(colors) > 1.0:
        colors = colors / 255.0
    return colors


def _columns_to_cloud(arr: np.ndarray, path: Path) -> _Cloud:
    """``x y z [nx ny nz [r g b]]`` columns (or a structured array with named fields)."""
    if arr.dtype.names:
        return _fields_to_cloud(arr, path)
    if arr.dtype.kind not in "iuf":
        raise DatasetError(path, f"holds {arr.dtype} values, expected numbers")
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise DatasetError(path, f"expected an array of shape [N, 3+] (x y z ...), got {list(arr.shape)}")
    if arr.shape[0] <= 9 < arr.shape[1]:  # [3, N] / [6, N]: channels first, not 3 points with extra columns
        raise DatasetError(path, f"has shape {list(arr.shape)}: it looks transposed (channels first); a cloud is "
                                 f"[N, 3] (x y z [normals [colours]] per row): save array.T")
    eps = _eps_of(arr.dtype)
    arr = arr.astype(np.float64, copy=False)
    normals = arr[:, 3:6] if arr.shape[1] >= 6 else None
    colors = _scale_colors(arr[:, 6:9]) if arr.shape[1] >= 9 else None
    return _Cloud(arr[:, :3], normals, colors, eps)


_NORMAL_FIELDS = (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z"))
_COLOR_FIELDS = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))


def _fields_to_cloud(arr: np.ndarray, path: Path) -> _Cloud:
    names = set(arr.dtype.names or ())
    if not {"x", "y", "z"} <= names:
        raise DatasetError(path, f"has no x, y, z fields (fields: {sorted(names)})")
    arr = arr.reshape(-1)

    def stack(fields: tuple[str, ...]) -> np.ndarray:
        cols = []
        for f in fields:
            col = arr[f]
            if col.ndim != 1 or col.dtype.kind not in "iuf":
                raise DatasetError(path, f"field {f!r} is not a scalar number")
            cols.append(col.astype(np.float64))
        return np.stack(cols, axis=1)

    xyz = stack(("x", "y", "z"))
    normals = next((stack(f) for f in _NORMAL_FIELDS if set(f) <= names), None)
    colors = None
    for f in _COLOR_FIELDS:
        if set(f) <= names:
            kind = arr[f[0]].dtype
            colors = stack(f)
            if kind.kind in "iu":
                colors = colors / float(np.iinfo(kind).max)
            break
    return _Cloud(xyz, normals, colors, _eps_of(arr["x"].dtype))


# ----------------------------------------------------------------------------- numpy files


def _load_npy(path: Path) -> _Cloud:
    return _columns_to_cloud(load_npy(path), path)


def _load_npz(path: Path) -> _Cloud:
    keys = npz_keys(path)
    if not keys:
        raise DatasetError(path, "holds no arrays")
    key = next((k for k in _NPZ_KEYS if k in keys), keys[0])
    return _columns_to_cloud(load_npz(path, [key])[key], path)


# ----------------------------------------------------------------------------- text files

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|inf|infinity)$", re.IGNORECASE)


def read_table(path: PathLike) -> np.ndarray:
    """All columns of a text point file as float64 ``[N, C]`` (whitespace or comma separated,
    an optional header line, ``#`` comments). Used by ``.txt``/``.xyz``/``.csv`` and by the
    official ModelNet / ShapeNetPart readers. Errors are :class:`DatasetError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(p, "file not found" if not p.exists() else "is not a file")
    try:
        return _parse_table(p)
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(p, f"cannot read text file ({type(exc).__name__}: {exc})") from exc


def _parse_table(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(path, f"is not a text file (undecodable byte at offset {exc.start})") from exc
    # only the first lines are looked at in Python (delimiter, header line, a clear error for
    # non-numbers); numpy's C parser reads the rest (2-3x faster than filtering every line here)
    head: list[tuple[int, str]] = []  # (line index, line) of the first 3 lines with data
    for i, line in enumerate(io.StringIO(text, newline=None)):
        if line.strip() and not line.lstrip().startswith("#"):
            head.append((i, line.rstrip("\n")))
            if len(head) == 3:
                break
    if not head:
        raise DatasetError(path, "holds no points")
    delimiter = "," if "," in head[0][1] or (len(head) > 1 and "," in head[1][1]) else None

    def tokens(line: str) -> list[str]:
        return [t.strip() for t in line.split(delimiter)] if delimiter else line.split()

    skiprows = 0
    if not all(_NUMBER.match(t) for t in tokens(head[0][1])):  # a header line
        skiprows = head[0][0] + 1
        head = head[1:]
        if not head:
            raise DatasetError(path, "has a header line but no points")
    bad = next((i for i, (_, ln) in enumerate(head[:2]) if not all(_NUMBER.match(t) for t in tokens(ln))), None)
    if bad is not None:
        raise DatasetError(path, f"line {bad + 1} of the data is not numbers: {head[bad][1][:80]!r}")
    try:
        return np.loadtxt(io.StringIO(text, newline=None), delimiter=delimiter, comments="#", skiprows=skiprows,
                          ndmin=2, dtype=np.float64)
    except ValueError as exc:
        # numpy's advice ("use `usecols` ...") is about its own API, not something a reader of
        # this message can pass: keep what it says about the file
        reason = str(exc).split("; use `usecols`", 1)[0]
        raise DatasetError(path, f"is not a table of numbers ({reason})") from exc


def _load_text(path: Path) -> _Cloud:
    arr = _parse_table(path)
    if arr.shape[1] < 3:
        raise DatasetError(path, f"needs at least 3 columns (x y z), found {arr.shape[1]}")
    return _columns_to_cloud(arr, path)


# ----------------------------------------------------------------------------- PLY

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


def _read_header(path: Path, terminator: bytes, what: str) -> tuple[bytes, int]:
    """The header bytes up to and including the line ``terminator``, and its length."""
    with open(path, "rb") as fp:
        head = fp.read(_MAX_HEADER_BYTES)
    pos = 0
    while True:
        nl = head.find(b"\n", pos)
        if nl < 0:
            raise DatasetError(path, f"has no complete {what} header in its first {_MAX_HEADER_BYTES} bytes")
        line = head[pos:nl].strip()
        pos = nl + 1
        if line.split(b" ")[0].upper() == terminator:
            return head[:pos], pos


@dataclass
class _PlyLayout:
    fmt: str  # ascii, binary_little_endian, binary_big_endian
    length: int  # header bytes
    elements: list[tuple[str, int, list[tuple[int, int]]]]  # name, count, (fixed bytes, list-count bytes)


def _check_ply_header(path: Path) -> _PlyLayout:
    """Validate the PLY header and check declared element counts against the file size."""
    header, length = _read_header(path, b"END_HEADER", "PLY")
    try:
        text = header.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DatasetError(path, "has a PLY header that is not ASCII") from exc
    lines = [ln.split() for ln in text.splitlines()]
    if not lines or lines[0] != ["ply"]:
        raise DatasetError(path, "is not a PLY file (no 'ply' magic line)")
    fmt = None
    # name, count, [(fixed bytes, list-count bytes) per property]
    elements: list[tuple[str, int, list[tuple[int, int]]]] = []
    for words in lines[1:]:
        if not words or words[0] in ("comment", "obj_info", "end_header"):
            continue
        if words[0] == "format":
            if len(words) != 3 or words[1] not in ("ascii", "binary_little_endian", "binary_big_endian"):
                raise DatasetError(path, f"has an unknown PLY format line {' '.join(words)!r}")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise DatasetError(path, f"has a bad PLY element line {' '.join(words)!r}")
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise DatasetError(path, "has a PLY property before any element")
            props = elements[-1][2]
            if len(words) == 5 and words[1] == "list":
                if words[2] not in _PLY_TYPES or words[3] not in _PLY_TYPES:
                    raise DatasetError(path, f"has an unknown PLY list type in {' '.join(words)!r}")
                props.append((0, np.dtype(_PLY_TYPES[words[2]]).itemsize))
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                props.append((np.dtype(_PLY_TYPES[words[1]]).itemsize, 0))
            else:
                raise DatasetError(path, f"has a bad PLY property line {' '.join(words)!r}")
        else:
            raise DatasetError(path, f"has an unknown PLY header line {' '.join(words)[:60]!r}")
    if fmt is None:
        raise DatasetError(path, "has no PLY format line")
    available = path.stat().st_size - length
    needed = 0
    for _name, count, props in elements:
        if fmt == "ascii":  # at least one digit and a separator per value
            row = max(1, 2 * len(props) - 1)
        else:
            row = sum(fixed + count_bytes for fixed, count_bytes in props)
        needed += count * row
    if needed > available:
        raise DatasetError(
            path,
            f"is truncated: its PLY header declares at least {needed} bytes of data, "
            f"the file has {available}",
        )
    return _PlyLayout(fmt, length, elements)


_ASCII_NUMBER_BYTES = frozenset(b"0123456789+-.eEnaNAiIfF \t\r\n")
_TEXT_BYTES = frozenset(range(32, 127)) | frozenset(b"\t\r\n")


def _check_ply_body_kind(path: Path, layout: _PlyLayout) -> None:
    """The body must be what the header's format line says: ASCII text, or binary data."""
    with open(path, "rb") as fp:
        fp.seek(layout.length)
        head = fp.read(256)
    if not head:
        return
    if layout.fmt == "ascii":
        if not set(head) <= _TEXT_BYTES:
            raise DatasetError(path, "its PLY header declares 'format ascii' but the data is binary, not text")
    elif len(head) >= 16 and set(head[:64]) <= _ASCII_NUMBER_BYTES:
        # binary floats almost never consist of digits, signs, dots and spaces only
        raise DatasetError(path, f"its PLY header declares '{layout.fmt}' but the data is ASCII text "
                                 f"({head[:40].decode('ascii', 'replace')!r}...)")


def _check_ply_extent(path: Path, layout: _PlyLayout, ply: Any) -> None:
    """The data must end where the declared elements end: more data than declared is an error."""
    declared = ", ".join(f"{name} {count}" for name, count, _ in layout.elements)
    mismatch = "the header's counts do not match the data"
    if layout.fmt == "ascii":
        with open(path, "rb") as fp:
            fp.seek(layout.length)
            rows = sum(1 for line in fp if line.strip())
        expected = sum(count for _, count, _ in layout.elements)
        if rows != expected:
            raise DatasetError(path, f"holds {rows} data lines but its PLY header declares {expected} "
                                     f"({declared}): {mismatch}")
        return
    used = 0
    for (_name, count, props), element in zip(layout.elements, ply.elements):
        for (fixed, count_bytes), prop in zip(props, element.properties):
            used += fixed * count
            if count_bytes:  # a list property: its count, then its values, row by row
                values = sum(len(v) for v in element.data[prop.name])
                used += count_bytes * count + values * np.dtype(prop.val_dtype).itemsize
    extra = path.stat().st_size - layout.length - used
    if extra > 0:
        with open(path, "rb") as fp:
            fp.seek(layout.length + used)
            tail = fp.read(64)
        if extra > 2 or tail.strip(b"\r\n"):  # a final line break is tolerated
            raise DatasetError(path, f"holds {extra} bytes after the elements its PLY header declares "
                                     f"({declared}): {mismatch}")


def _load_ply(path: Path) -> Any:
    plyfile = require("plyfile", "reading .ply files")
    layout = _check_ply_header(path)
    _check_ply_body_kind(path, layout)
    with open(path, "rb") as fp:
        ply = plyfile.PlyData.read(fp)
    _check_ply_extent(path, layout, ply)
    names = [el.name for el in ply.elements]
    if "vertex" not in names:
        raise DatasetError(path, f"has no 'vertex' element (elements: {names})")
    vertex = ply["vertex"].data
    cloud = _fields_to_cloud(vertex, path)
    if "face" in names and len(ply["face"].data):
        face = ply["face"].data
        field = next((f for f in ("vertex_indices", "vertex_index") if f in (face.dtype.names or ())), None)
        if field is None:
            raise DatasetError(path, "has a 'face' element without vertex_indices")
        return _ply_mesh(path, cloud, face[field])
    return cloud


def _ply_mesh(path: Path, cloud: _Cloud, polygons: np.ndarray) -> Any:
    trimesh = require("trimesh", "sampling .ply meshes")
    tris: list[np.ndarray] = []
    lengths = np.fromiter((len(f) for f in polygons), dtype=np.int64, count=len(polygons))
    for k in np.unique(lengths):
        if k < 3:
            continue
        faces = np.stack([np.asarray(f, dtype=np.int64) for f, n in zip(polygons, lengths) if n == k])  # F k
        fan = np.stack([faces[:, [0, j, j + 1]] for j in range(1, k - 1)], axis=1).reshape(-1, 3)  # F*(k-2) 3
        tris.append(fan)
    if not tris:
        raise DatasetError(path, "has faces but none with 3 or more vertices")
    faces = np.concatenate(tris)
    n = cloud.xyz.shape[0]
    if faces.min() < 0 or faces.max() >= n:
        raise DatasetError(path, f"has face indices outside the {n} vertices")
    _validate_cloud(cloud, path)
    colors = None
    if cloud.colors is not None:
        colors = np.clip(np.round(cloud.colors * 255), 0, 255).astype(np.uint8)
    return trimesh.Trimesh(vertices=cloud.xyz, faces=faces, vertex_colors=colors, process=False)


# ----------------------------------------------------------------------------- PCD

_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
              ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}  # fmt: skip


def _load_pcd(path: Path) -> _Cloud:
    """Check the header against the file (before anything is allocated), then let pypcd4
    decode the data (ascii, binary, binary_compressed/LZF) from a canonical header: one with
    every optional line filled in (COUNT defaults to 1, POINTS to WIDTH x HEIGHT) and unique
    field names (pypcd4 would name ``_`` padding fields from Python's global ``random``)."""
    pypcd4 = require("pypcd4", "reading .pcd files")
    header, length = _read_header(path, b"DATA", "PCD")
    try:
        text = header.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DatasetError(path, "has a PCD header that is not ASCII") from exc
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        fields[words[0].upper()] = words[1:]
    for key in ("FIELDS", "SIZE", "TYPE", "DATA"):
        if key not in fields:
            raise DatasetError(path, f"has no {key} line in its PCD header")
    names, sizes, types = fields["FIELDS"], fields["SIZE"], [t.upper() for t in fields["TYPE"]]
    counts = fields.get("COUNT", ["1"] * len(names))
    if not (len(names) == len(sizes) == len(types) == len(counts)) or not names:
        raise DatasetError(path, "has PCD FIELDS/SIZE/TYPE/COUNT lines of different lengths")
    if not all(s.isdigit() for s in sizes + counts):
        raise DatasetError(path, "has non-integer PCD SIZE or COUNT values")
    itemsize, unique = 0, []
    for i, (name, size, typ, count) in enumerate(zip(names, sizes, types, counts)):
        if (typ, int(size)) not in _PCD_TYPES or int(count) < 1:
            raise DatasetError(
                path, f"has an unsupported PCD field {name} (TYPE {typ}, SIZE {size}, COUNT {count})"
            )
        itemsize += int(size) * int(count)
        ok = re.fullmatch(r"[A-Za-z0-9]\w*", name) and name not in unique
        unique.append(name if ok else f"pad{i}_")
    if "POINTS" in fields:
        npts_s = fields["POINTS"][0] if fields["POINTS"] else ""
    else:
        wh = fields.get("WIDTH", ["0"])[:1] + fields.get("HEIGHT", ["1"])[:1]
        npts_s = str(int(wh[0]) * int(wh[1])) if all(w.isdigit() for w in wh) else ""
    if not npts_s.isdigit():
        raise DatasetError(path, "has no valid PCD POINTS count")
    npts = int(npts_s)
    if npts == 0:
        raise DatasetError(path, "holds no points")
    mode = (fields["DATA"] or [""])[0].lower()
    available = path.stat().st_size - length
    ncols = sum(int(c) for c in counts)
    if mode == "ascii":
        if npts * max(1, 2 * ncols - 1) > available:
            raise DatasetError(path, f"is truncated: PCD header declares {npts} points, the file is too short")
    elif mode == "binary":
        if npts * itemsize > available:
            raise DatasetError(
                path, f"is truncated: PCD header declares {npts * itemsize} data bytes, the file has {available}"
            )
    elif mode == "binary_compressed":
        _check_pcd_compressed(path, length, available, npts * itemsize)
    else:
        raise DatasetError(path, f"has an unknown PCD DATA mode {mode!r}")
    with open(path, "rb") as fp:
        fp.seek(length)
        body = fp.read()
    if mode == "ascii":  # pypcd4 splits on single spaces: collapse runs of blanks, drop blank lines
        rows = [b" ".join(line.split()) for line in body.splitlines() if line.strip()]
        if len(rows) != npts:
            raise DatasetError(path, f"PCD header declares {npts} points but the file has {len(rows)} rows")
        body = b"\n".join(rows) + b"\n"
    canonical = (
        f"VERSION 0.7\nFIELDS {' '.join(unique)}\nSIZE {' '.join(sizes)}\nTYPE {' '.join(types)}\n"
        f"COUNT {' '.join(counts)}\nWIDTH {npts}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {npts}\nDATA {mode}\n"
    )
    data = np.atleast_1d(pypcd4.PointCloud.from_fileobj(io.BytesIO(canonical.encode() + body)).pc_data)
    if len(data) != npts:
        raise DatasetError(path, f"PCD header declares {npts} points but the data holds {len(data)}")
    return _fields_to_cloud(_unpack_pcd_rgb(data), path)


def _check_pcd_compressed(path: Path, length: int, available: int, nbytes: int) -> None:
    if available < 8:
        raise DatasetError(path, "is truncated: binary_compressed PCD has no size words")
    with open(path, "rb") as fp:
        fp.seek(length)
        csize, usize = struct.unpack("<II", fp.read(8))
    if usize != nbytes:
        raise DatasetError(path, f"PCD declares {nbytes} bytes of points but {usize} uncompressed bytes")
    if csize > available - 8:
        raise DatasetError(path, f"is truncated: {csize} compressed bytes declared, {available - 8} present")
    if usize > 0 and usize > 128 * csize + 64:  # LZF cannot expand more than ~88x
        raise DatasetError(path, f"PCD declares {usize} bytes from only {csize} compressed bytes")


def _unpack_pcd_rgb(data: np.ndarray) -> np.ndarray:
    """Split a packed ``rgb``/``rgba`` field into ``red green blue`` uint8 fields."""
    names = data.dtype.names or ()
    packed = next((n for n in ("rgb", "rgba") if n in names), None)
    if packed is None or any(c in names for c in ("red", "r")) or data[packed].ndim != 1:
        return data
    raw = np.ascontiguousarray(data[packed])
    if raw.dtype.itemsize != 4:
        return data
    bits = raw.view(np.uint32)
    out_fields = [(n, data.dtype[n]) for n in names if n != packed]
    out = np.zeros(len(data), dtype=out_fields + [("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for n, _ in out_fields:
        out[n] = data[n]
    out["red"] = (bits >> 16) & 0xFF
    out["green"] = (bits >> 8) & 0xFF
    out["blue"] = bits & 0xFF
    return out


# ----------------------------------------------------------------------------- meshes


def _check_off_header(path: Path) -> None:
    """Check an OFF header's declared counts against the file size before trimesh parses it."""
    with open(path, "rb") as fp:
        head = fp.read(4096)
    words = re.sub(rb"#[^\n]*", b"", head).split()
    # the magic may carry the vertex count with no line break: ModelNet40's raw files start
    # "OFF490 518 0" (trimesh reads them), so "OFF<digits>" is the magic and the first count
    magic = re.fullmatch(rb"([A-Za-z]*OFF)(\d*)", words[0]) if words else None
    if magic is None:
        raise DatasetError(path, "is not an OFF file (no OFF magic)")
    counts = (([magic.group(2)] if magic.group(2) else []) + words[1:3])[:2]
    if len(counts) < 2 or not all(c.isdigit() for c in counts):
        raise DatasetError(path, "has no vertex and face counts after the OFF magic")
    nv, nf = int(counts[0]), int(counts[1])
    if nv * 5 + nf * 7 > path.stat().st_size:
        raise DatasetError(path, f"is truncated: OFF header declares {nv} vertices and {nf} faces")


def _load_mesh(path: Path) -> Any:
    trimesh = require("trimesh", f"reading {path.suffix} files")
    ext = path.suffix.lower()
    if ext == ".off":
        _check_off_header(path)
    elif ext == ".stl":
        _check_stl(path)
    with open(path, "rb") as fp, np.errstate(all="ignore"):
        loaded = trimesh.load(fp, file_type=ext[1:], process=False)
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
        if not geoms:
            raise DatasetError(path, "holds no mesh faces")
        loaded = trimesh.util.concatenate(geoms) if len(geoms) > 1 else geoms[0]
    if isinstance(loaded, trimesh.PointCloud):
        colors = None
        if loaded.colors is not None and len(loaded.colors) == len(loaded.vertices):
            colors = np.asarray(loaded.colors, dtype=np.float64)[:, :3] / 255.0
        return _Cloud(np.asarray(loaded.vertices, dtype=np.float64), None, colors)
    if not isinstance(loaded, trimesh.Trimesh):
        raise DatasetError(path, f"is not a mesh (trimesh read a {type(loaded).__name__})")
    if len(loaded.faces) == 0:
        if len(loaded.vertices) == 0:
            raise DatasetError(path, "holds no vertices or faces")
        return _Cloud(np.asarray(loaded.vertices, dtype=np.float64))
    return loaded


def _check_stl(path: Path) -> None:
    """A binary STL's triangle count must match the file size; otherwise it must look like ASCII STL."""
    size = path.stat().st_size
    with open(path, "rb") as fp:
        head = fp.read(4096)
    if size >= 84:
        (count,) = struct.unpack("<I", head[80:84])
        if 84 + 50 * count == size:
            return  # binary STL
    if head.lstrip().lower().startswith(b"solid") and b"facet" in head.lower():
        return  # ASCII STL
    if size < 84:
        raise DatasetError(path, f"is neither ASCII STL nor binary STL ({size} bytes)")
    raise DatasetError(
        path, f"is neither ASCII STL nor binary STL (binary header declares {count} triangles = "
        f"{84 + 50 * count} bytes, the file has {size})"
    )


def _sample_mesh(mesh: Any, path: Path, count: int, seed: int, keep_colors: bool) -> _Cloud:
    trimesh = require("trimesh", "sampling meshes")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    if len(vertices) == 0 or not np.isfinite(vertices).all():
        raise DatasetError(path, "has no vertices or NaN/infinite vertex coordinates")
    area = float(mesh.area)
    if not np.isfinite(area) or area <= 0:
        raise DatasetError(path, "mesh has zero surface area; nothing to sample")
    points, face_index = trimesh.sample.sample_surface(mesh, count, seed=seed)
    normals = np.asarray(mesh.face_normals, dtype=np.float64)[face_index]
    colors = None
    if keep_colors and mesh.visual is not None and mesh.visual.defined:
        try:
            face_colors = np.asarray(mesh.visual.to_color().face_colors, dtype=np.float64)
            colors = face_colors[face_index, :3] / 255.0
        except (AttributeError, ValueError, IndexError) as exc:
            logger.debug("no colours from %s: %s", path, exc)
    return _Cloud(np.asarray(points, dtype=np.float64), normals, colors)


_LOADERS = {
    ".ply": _load_ply,
    ".pcd": _load_pcd,
    ".npy": _load_npy,
    ".npz": _load_npz,
    ".txt": _load_text,
    ".xyz": _load_text,
    ".csv": _load_text,
    ".off": _load_mesh,
    ".obj": _load_mesh,
    ".stl": _load_mesh,
}
