"""``read_points``: the one point-cloud file reader (custom datasets and ``act-zoo extract``).

Formats, by extension (case-insensitive):

==================  =====================================================================
``.ply``            point clouds and meshes, read with ``plyfile`` (ASCII and binary);
                    a PLY with a non-empty ``face`` element is a mesh and is sampled
``.pcd``            PCL point clouds: ``ascii``, ``binary`` and ``binary_compressed`` (LZF);
                    a small parser of ours (no maintained pip reader exists)
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
"""

from __future__ import annotations

import io
import logging
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._common import (
    PathLike,
    check_choice,
    check_positive_int,
    fps_numpy,
    load_npy,
    load_npz,
    npz_keys,
    require,
)
from .errors import DatasetError

__all__ = [
    "MESH_EXTENSIONS",
    "read_table",
    "POINT_CLOUD_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "read_points",
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
    xyz: np.ndarray  # N 3
    normals: np.ndarray | None = None  # N 3
    colors: np.ndarray | None = None  # N 3, in [0, 1]


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
        num_points: resample to exactly this many points. Clouds with more points are
            reduced by ``sample``; clouds with fewer keep all their points and are padded
            with random repeats (seeded). Meshes are sampled with this many points
            (2048 when None). None keeps a cloud as it is.
        sample: ``"fps"`` (farthest point sampling from the first point, in float64) or
            ``"random"`` (a seeded random subset, in random order). Unused for meshes.
        seed: seed of random subsets, padding and mesh surface sampling.
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
    if ext in MESH_EXTENSIONS or ext == ".ply":
        require("trimesh", f"reading {ext} files")
    try:
        if p.stat().st_size == 0:
            raise DatasetError(p, "is empty")
        loaded = _LOADERS[ext](p)
        if not isinstance(loaded, _Cloud):  # a mesh
            count = num_points if num_points is not None else DEFAULT_MESH_SAMPLES
            cloud = _sample_mesh(loaded, p, count, seed, keep_colors)
        else:
            cloud = loaded
            _validate_cloud(cloud, p)
            if num_points is not None:
                idx = _resample_indices(cloud.xyz, num_points, sample, seed)
                cloud = _Cloud(
                    cloud.xyz[idx],
                    None if cloud.normals is None else cloud.normals[idx],
                    None if cloud.colors is None else cloud.colors[idx],
                )
        return _assemble(cloud, p, keep_normals, keep_colors)
    except DatasetError:
        raise
    except Exception as exc:  # library parse errors of any kind (MemoryError, RecursionError too)
        raise DatasetError(p, f"cannot read {ext} file ({type(exc).__name__}: {exc})") from exc


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
        raise DatasetError(path, f"{bad} of {arr.shape[0]} points have NaN or infinite {name}")


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
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.concatenate(cols, axis=1).astype(np.float32)
    if not np.isfinite(out).all():  # e.g. float64 values beyond the float32 range
        raise DatasetError(path, "has values that are not finite in float32")
    return out


def _resample_indices(xyz: np.ndarray, n: int, method: str, seed: int) -> np.ndarray:
    N = xyz.shape[0]
    rng = np.random.default_rng(seed)
    if N >= n:
        if method == "random":
            return rng.permutation(N)[:n]
        return fps_numpy(np.ascontiguousarray(xyz, dtype=np.float64), n, start=0)
    logger.debug("padding a cloud of %d points to %d with random repeats", N, n)
    return np.concatenate([np.arange(N), rng.integers(0, N, size=n - N)])


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
    arr = arr.astype(np.float64, copy=False)
    normals = arr[:, 3:6] if arr.shape[1] >= 6 else None
    colors = _scale_colors(arr[:, 6:9]) if arr.shape[1] >= 9 else None
    return _Cloud(arr[:, :3], normals, colors)


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
    return _Cloud(xyz, normals, colors)


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
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DatasetError(path, "holds no points")
    delimiter = "," if "," in lines[0] or (len(lines) > 1 and "," in lines[1]) else None

    def tokens(line: str) -> list[str]:
        return [t.strip() for t in line.split(delimiter)] if delimiter else line.split()

    if not all(_NUMBER.match(t) for t in tokens(lines[0])):  # a header line
        lines = lines[1:]
        if not lines:
            raise DatasetError(path, "has a header line but no points")
    bad = next((i for i, ln in enumerate(lines[:2]) if not all(_NUMBER.match(t) for t in tokens(ln))), None)
    if bad is not None:
        raise DatasetError(path, f"line {bad + 1} of the data is not numbers: {lines[bad][:80]!r}")
    try:
        return np.loadtxt(io.StringIO("\n".join(lines)), delimiter=delimiter, ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise DatasetError(path, f"is not a table of numbers ({exc})") from exc


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


def _check_ply_header(path: Path) -> None:
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


def _load_ply(path: Path) -> Any:
    plyfile = require("plyfile", "reading .ply files")
    _check_ply_header(path)
    with open(path, "rb") as fp:
        ply = plyfile.PlyData.read(fp)
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
    names, sizes, types = fields["FIELDS"], fields["SIZE"], fields["TYPE"]
    counts = fields.get("COUNT", ["1"] * len(names))
    if not (len(names) == len(sizes) == len(types) == len(counts)) or not names:
        raise DatasetError(path, "has PCD FIELDS/SIZE/TYPE/COUNT lines of different lengths")
    if not all(s.isdigit() for s in sizes + counts):
        raise DatasetError(path, "has non-integer PCD SIZE or COUNT values")
    dtype_fields = []
    for i, (name, size, typ, count) in enumerate(zip(names, sizes, types, counts)):
        code = _PCD_TYPES.get((typ.upper(), int(size)))
        if code is None or int(count) < 1:
            raise DatasetError(
                path, f"has an unsupported PCD field {name} (TYPE {typ}, SIZE {size}, COUNT {count})"
            )
        unique = name if name not in [f[0] for f in dtype_fields] and name != "_" else f"_pad{i}"
        dtype_fields.append((unique, "<" + code, (int(count),)) if int(count) > 1 else (unique, "<" + code))
    dtype = np.dtype(dtype_fields)
    if "POINTS" in fields:
        npts_s = fields["POINTS"][0] if fields["POINTS"] else ""
    else:
        wh = fields.get("WIDTH", ["0"])[:1] + fields.get("HEIGHT", ["1"])[:1]
        npts_s = str(int(wh[0]) * int(wh[1])) if all(w.isdigit() for w in wh) else ""
    if not npts_s.isdigit():
        raise DatasetError(path, "has no valid PCD POINTS count")
    npts = int(npts_s)
    mode = (fields["DATA"] or [""])[0].lower()
    available = path.stat().st_size - length
    if mode == "ascii":
        ncols = sum(int(c) for c in counts)
        if npts * max(1, 2 * ncols - 1) > available:
            raise DatasetError(
                path, f"is truncated: PCD header declares {npts} points, the file is too short"
            )
        with open(path, "rb") as fp:
            fp.seek(length)
            body = fp.read().decode("ascii", errors="strict")
        rows = [ln for ln in body.splitlines() if ln.strip()]
        if len(rows) != npts:
            raise DatasetError(path, f"PCD header declares {npts} points but the file has {len(rows)} rows")
        if npts == 0:
            raise DatasetError(path, "holds no points")
        table = np.loadtxt(io.StringIO("\n".join(rows)), ndmin=2, dtype=np.float64)
        if table.shape[1] != ncols:
            raise DatasetError(path, f"PCD rows have {table.shape[1]} values, the header declares {ncols}")
        data = np.zeros(npts, dtype=dtype)
        col = 0
        for name in dtype.names or ():
            sub = dtype[name]
            width = int(np.prod(sub.shape)) if sub.shape else 1
            values = table[:, col : col + width]
            if sub.base.kind in "iu":  # ASCII rgb is written as a float or an integer
                values = np.round(values)
            data[name] = values.astype(sub.base) if width > 1 else values[:, 0].astype(sub.base)
            col += width
    elif mode == "binary":
        nbytes = npts * dtype.itemsize
        if nbytes > available:
            raise DatasetError(
                path, f"is truncated: PCD header declares {nbytes} data bytes, the file has {available}"
            )
        with open(path, "rb") as fp:
            fp.seek(length)
            data = np.frombuffer(fp.read(nbytes), dtype=dtype, count=npts)
    elif mode == "binary_compressed":
        data = _pcd_compressed(path, length, available, dtype, npts)
    else:
        raise DatasetError(path, f"has an unknown PCD DATA mode {mode!r}")
    if npts == 0:
        raise DatasetError(path, "holds no points")
    cloud = _fields_to_cloud(_unpack_pcd_rgb(data), path)
    return cloud


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


def _pcd_compressed(path: Path, length: int, available: int, dtype: np.dtype, npts: int) -> np.ndarray:
    if available < 8:
        raise DatasetError(path, "is truncated: binary_compressed PCD has no size words")
    with open(path, "rb") as fp:
        fp.seek(length)
        csize, usize = struct.unpack("<II", fp.read(8))
        if usize != npts * dtype.itemsize:
            raise DatasetError(path, f"PCD declares {npts} points but {usize} uncompressed bytes")
        if csize > available - 8:
            raise DatasetError(
                path, f"is truncated: {csize} compressed bytes declared, {available - 8} present"
            )
        if usize > 0 and usize > 128 * csize + 64:  # LZF cannot expand more than ~88x
            raise DatasetError(path, f"PCD declares {usize} bytes from only {csize} compressed bytes")
        raw = _lzf_decompress(fp.read(csize), usize, path)
    # the payload is column-major: every field's values for all points, field after field
    out = np.zeros(npts, dtype=dtype)
    offset = 0
    for name in dtype.names or ():
        sub = dtype[name]
        nbytes = npts * sub.itemsize
        col = np.frombuffer(raw, dtype=sub.base, count=npts * max(1, int(np.prod(sub.shape))), offset=offset)
        out[name] = col.reshape((npts, *sub.shape))
        offset += nbytes
    return out


def _lzf_decompress(src: bytes, out_len: int, path: Path) -> bytes:
    """Decompress LibLZF data (as PCL writes it) into exactly ``out_len`` bytes."""
    out = bytearray(out_len)
    i = o = 0
    n = len(src)
    while i < n:
        ctrl = src[i]
        i += 1
        if ctrl < 32:  # a literal run of ctrl + 1 bytes
            run = ctrl + 1
            if i + run > n or o + run > out_len:
                raise DatasetError(path, "has corrupt LZF data (literal run past the end)")
            out[o : o + run] = src[i : i + run]
            i += run
            o += run
            continue
        run = ctrl >> 5
        if run == 7:
            if i >= n:
                raise DatasetError(path, "has corrupt LZF data (truncated length)")
            run += src[i]
            i += 1
        if i >= n:
            raise DatasetError(path, "has corrupt LZF data (truncated reference)")
        ref = o - ((ctrl & 0x1F) << 8) - 1 - src[i]
        i += 1
        run += 2
        if ref < 0 or o + run > out_len:
            raise DatasetError(path, "has corrupt LZF data (reference out of range)")
        if ref + run <= o:
            out[o : o + run] = out[ref : ref + run]
        else:  # overlapping copy repeats the pattern
            for k in range(run):
                out[o + k] = out[ref + k]
        o += run
    if o != out_len:
        raise DatasetError(path, f"has corrupt LZF data ({o} bytes decoded, {out_len} declared)")
    return bytes(out)


# ----------------------------------------------------------------------------- meshes


def _check_off_header(path: Path) -> None:
    """Check an OFF header's declared counts against the file size before trimesh parses it."""
    with open(path, "rb") as fp:
        head = fp.read(4096)
    words = re.sub(rb"#[^\n]*", b"", head).split()
    if not words or not words[0].upper().endswith(b"OFF"):
        raise DatasetError(path, "is not an OFF file (no OFF magic)")
    counts = words[1:3]
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
