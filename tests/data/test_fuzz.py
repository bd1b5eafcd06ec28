"""Fuzzing: garbage, empty, truncated, mutated and huge-header files give DatasetError, never
another exception, a crash or a hang (every example runs under a deadline)."""

from __future__ import annotations

import io
import os
import pickle
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from act_zoo.data import (
    SUPPORTED_EXTENSIONS,
    DatasetError,
    ModelNet40,
    ModelNet40FewShot,
    PointCloudList,
    ScanObjectNN,
    ShapeNet55,
    ShapeNetPart,
    read_points,
)

from .builders import (
    SCAN_FILES,
    pcd_bytes,
    write_fewshot,
    write_modelnet,
    write_scanobjectnn,
    write_shapenet55,
    write_shapenetpart,
)

# the io extra and hypothesis (dev): the whole module skips without them, it never errors at collection
plyfile = pytest.importorskip("plyfile")
trimesh = pytest.importorskip("trimesh")
pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# ACT_ZOO_FUZZ_EXAMPLES=2000 runs a long, randomised campaign; the default is short and fixed
_EXAMPLES = int(os.environ.get("ACT_ZOO_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_EXAMPLES or 50,
    deadline=3000,
    database=None,
    derandomize=not _EXAMPLES,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)


def _valid_files() -> dict[str, bytes]:
    """One small valid file per supported extension."""
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(20, 3)).astype(np.float32)
    out: dict[str, bytes] = {}
    buf = io.BytesIO()
    np.save(buf, pts)
    out[".npy"] = buf.getvalue()
    buf = io.BytesIO()
    np.savez(buf, points=pts)
    out[".npz"] = buf.getvalue()
    out[".txt"] = "\n".join(" ".join(f"{v:.5f}" for v in p) for p in pts).encode()
    out[".xyz"] = out[".txt"]
    out[".csv"] = b"x,y,z\n" + "\n".join(",".join(f"{v:.5f}" for v in p) for p in pts).encode()
    vertex = np.zeros(20, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    vertex["x"], vertex["y"], vertex["z"] = pts.T
    buf = io.BytesIO()
    plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")], text=False).write(buf)
    out[".ply"] = buf.getvalue()
    out[".pcd"] = pcd_bytes(pts, mode="binary_compressed", rgb=rng.integers(0, 256, (20, 3)))
    box = trimesh.creation.box()
    for ext in (".off", ".obj", ".stl"):
        data = box.export(file_type=ext[1:])
        out[ext] = data if isinstance(data, bytes) else data.encode()
    return out


VALID = _valid_files()


def _more_valid_files() -> dict[str, bytes]:
    """Seeds for formats with two encodings: ASCII PLY, and a PCD compressed by real LZF
    (back-references, written by pypcd4) rather than the literal-only stream of pcd_bytes."""
    import pypcd4

    pts = np.repeat(np.random.default_rng(1).normal(size=(10, 3)).astype(np.float32), 3, axis=0)
    vertex = np.zeros(30, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    vertex["x"], vertex["y"], vertex["z"] = pts.T
    buf = io.BytesIO()
    plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")], text=True).write(buf)
    out = {"ascii.ply": buf.getvalue()}
    buf = io.BytesIO()
    pypcd4.PointCloud.from_xyz_points(pts).save(buf, encoding=pypcd4.Encoding.BINARY_COMPRESSED)
    out["lzf.pcd"] = buf.getvalue()
    return out


MORE_VALID = _more_valid_files()
HUGE = {
    ".npy": lambda n: _npy_header(f"({n}, 3)"),
    ".npz": lambda n: _npz_with(_npy_header(f"({n}, 3)")),
    "deflated.npz": lambda n: _npz_with(_npy_header(f"({n}, 3)"), zipfile.ZIP_DEFLATED),
    ".ply": lambda n: (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n"
        "property float x\nproperty float y\nproperty float z\nend_header\n"
    ).encode()
    + b"\0" * 24,
    ".pcd": lambda n: (
        f"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nWIDTH {n}\nHEIGHT 1\nPOINTS {n}\nDATA ascii\n0 0 0\n"
    ).encode(),
    ".off": lambda n: f"OFF\n{n} {n} 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n".encode(),
    ".stl": lambda n: b"\0" * 80 + struct.pack("<I", n % 2**32) + b"\0" * 100,
}


def _npy_header(shape: str) -> bytes:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }"
    header += " " * (63 - len(header) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 24


def _npz_with(member: bytes, compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        zf.writestr("points.npy", member)
    return buf.getvalue()


# byte replacements: (relative position, new value)
FLIPS = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=4)


def _check_cloud_or_error(path: Path) -> None:
    try:
        out = read_points(path, num_points=8)
    except DatasetError as exc:
        assert str(path) in str(exc)
        return
    assert out.dtype == np.float32 and out.shape == (8, 3) and np.isfinite(out).all()


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("ext", SUPPORTED_EXTENSIONS)
@FUZZ
@given(data=st.binary(max_size=3000))
def test_read_points_garbage(fuzz_dir: Path, ext: str, data: bytes):
    path = fuzz_dir / f"garbage{ext}"
    path.write_bytes(data)
    _check_cloud_or_error(path)


@pytest.mark.parametrize("ext", SUPPORTED_EXTENSIONS)
@FUZZ
@given(cut=st.floats(0.0, 1.0, exclude_max=True), flips=FLIPS)
def test_read_points_truncated_and_mutated(fuzz_dir: Path, ext: str, cut: float, flips: list):
    valid = bytearray(VALID[ext])
    for where, value in flips:
        valid[int(where * len(valid))] = value
    path = fuzz_dir / f"mutated{ext}"
    path.write_bytes(bytes(valid[: max(0, int(cut * len(valid)) if cut > 0 else len(valid))]))
    _check_cloud_or_error(path)


@pytest.mark.parametrize("name", sorted(MORE_VALID))
@FUZZ
@given(cut=st.floats(0.0, 1.0, exclude_max=True), flips=FLIPS)
def test_read_points_truncated_and_mutated_second_encodings(fuzz_dir: Path, name: str, cut: float, flips: list):
    valid = bytearray(MORE_VALID[name])
    for where, value in flips:
        valid[int(where * len(valid))] = value
    path = fuzz_dir / f"mutated_{name}"
    path.write_bytes(bytes(valid[: max(0, int(cut * len(valid)) if cut > 0 else len(valid))]))
    _check_cloud_or_error(path)


@pytest.mark.parametrize("ext", sorted(HUGE))
@FUZZ
@given(count=st.integers(10**6, 10**15))
def test_read_points_huge_headers(fuzz_dir: Path, ext: str, count: int):
    """A header declaring far more data than the file holds is refused before any allocation."""
    path = fuzz_dir / f"huge.{ext.lstrip('.')}"
    path.write_bytes(HUGE[ext](count))
    with pytest.raises(DatasetError) as info:
        read_points(path, num_points=8)
    assert str(path) in str(info.value)


def test_every_valid_sample_reads():
    """The fuzz seeds themselves are valid, so the mutations start from real files."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for ext, data in [*VALID.items(), *MORE_VALID.items()]:
            path = Path(d) / f"ok{ext}"
            path.write_bytes(data)
            assert read_points(path, num_points=8).shape == (8, 3), ext


# ----------------------------------------------------------------------------- compressed .npz members

COMPRESSIONS = {"deflate": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2, "lzma": zipfile.ZIP_LZMA}


def _compressed_npz(compression: int) -> bytes:
    pts = np.random.default_rng(1).normal(size=(20, 3)).astype(np.float32)
    member = io.BytesIO()
    np.save(member, pts)
    return _npz_with(member.getvalue(), compression)


def _bounded_read(path: Path, limit: int = 32 * 2**20) -> None:
    """Success or DatasetError, and never more memory than ``limit`` (the LZMA decoder alone
    takes ~8 MB)."""
    tracemalloc.start()
    try:
        _check_cloud_or_error(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit, f"{path.name}: {peak} bytes for a {path.stat().st_size}-byte file"


@pytest.mark.parametrize("compression", sorted(COMPRESSIONS))
@FUZZ
@given(cut=st.floats(0.0, 1.0, exclude_max=True), flips=FLIPS)
def test_compressed_npz_truncated_and_mutated(fuzz_dir: Path, compression: str, cut: float, flips: list):
    valid = bytearray(_compressed_npz(COMPRESSIONS[compression]))
    for where, value in flips:
        valid[int(where * len(valid))] = value
    path = fuzz_dir / f"mutated_{compression}.npz"
    path.write_bytes(bytes(valid[: max(0, int(cut * len(valid)) if cut > 0 else len(valid))]))
    _bounded_read(path)


@pytest.mark.parametrize("compression", sorted(COMPRESSIONS))
@FUZZ
@given(declared=st.integers(0, 2**32 - 1), compressed=st.integers(0, 2**32 - 1), rows=st.integers(0, 2**30),
       forge_compressed=st.booleans())
def test_compressed_npz_forged_sizes(fuzz_dir: Path, compression: str, declared: int, compressed: int, rows: int,
                                     forge_compressed: bool):
    """Any uncompressed / compressed sizes in the zip fields and any shape in the .npy header:
    memory follows the bytes that really inflate (the archive is a few hundred bytes)."""
    data = bytearray(_npz_with(_npy_header(f"({rows}, 3)"), COMPRESSIONS[compression]))
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    for offset in (local + 22, central + 24):
        struct.pack_into("<I", data, offset, declared)
    if forge_compressed:
        for offset in (local + 18, central + 20):
            struct.pack_into("<I", data, offset, compressed)
    path = fuzz_dir / f"forged_{compression}.npz"
    path.write_bytes(bytes(data))
    _bounded_read(path)


def test_compressed_fuzz_seeds_are_valid(fuzz_dir: Path):
    for name, compression in COMPRESSIONS.items():
        path = fuzz_dir / f"seed_{name}.npz"
        path.write_bytes(_compressed_npz(compression))
        assert read_points(path, num_points=8).shape == (8, 3), name


# ----------------------------------------------------------------------------- official readers


def _load_all(make) -> None:
    """Construct a reader and read every item: success or DatasetError, nothing else."""
    try:
        ds = make()
        for i in range(len(ds)):
            ds[i]
    except DatasetError:
        pass


def _corrupt(original: bytes, mode: str, garbage: bytes, cut: float) -> bytes:
    if mode == "garbage":
        return garbage
    if mode == "empty":
        return b""
    return original[: int(cut * len(original))]


CORRUPTION = st.tuples(
    st.sampled_from(["garbage", "empty", "truncated"]), st.binary(max_size=2000), st.floats(0, 1)
)


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("official")
    roots = {"modelnet": base / "mn", "fewshot": base / "fs", "scan": base / "scan", "sn55": base / "sn55",
             "part": base / "part"}  # fmt: skip
    write_modelnet(roots["modelnet"], dat=True)
    write_fewshot(roots["fewshot"])
    write_scanobjectnn(roots["scan"], items=2, points=8)
    write_shapenet55(roots["sn55"], train=2, test=1, points=16)
    write_shapenetpart(roots["part"], cats=("Airplane",), per_cat=2, points=8)
    return roots


def _fuzz_file(path: Path, corruption: tuple[str, bytes, float], make) -> None:
    original = path.read_bytes()
    try:
        path.write_bytes(_corrupt(original, *corruption))
        _load_all(make)
    finally:
        path.write_bytes(original)


@FUZZ
@given(corruption=CORRUPTION)
def test_modelnet_files_fuzz(official, corruption):
    root = official["modelnet"]
    for name in ("modelnet40_test_16pts_fps.dat", "modelnet40_test.txt", "modelnet40_shape_names.txt"):
        _fuzz_file(
            root / name, corruption, lambda: ModelNet40(root, split="test", allow_pickle=True, fps_points=16)
        )
    _fuzz_file(root / "chair" / "chair_0002.txt", corruption,
               lambda: ModelNet40(root, split="test", source="txt", fps_points=16))  # fmt: skip


@FUZZ
@given(data=st.binary(min_size=1, max_size=3000))
def test_modelnet_npz_cache_fuzz(official, data):
    root = official["modelnet"]
    path = root / "modelnet40_train_16pts_fps.npz"
    try:
        path.write_bytes(data)
        _load_all(lambda: ModelNet40(root, split="train", fps_points=16))
    finally:
        path.unlink()


@FUZZ
@given(cut=st.floats(0, 1), flips=FLIPS)
def test_modelnet_pickle_mutations(official, cut, flips):
    path = official["modelnet"] / "modelnet40_test_16pts_fps.dat"
    original = path.read_bytes()
    mutated = bytearray(original)
    for where, value in flips:
        mutated[int(where * len(mutated))] = value
    try:
        path.write_bytes(bytes(mutated[: max(1, int(cut * len(mutated)))]))
        _load_all(lambda: ModelNet40(official["modelnet"], split="test", allow_pickle=True, fps_points=16))
    finally:
        path.write_bytes(original)


@FUZZ
@given(corruption=CORRUPTION)
def test_fewshot_fuzz(official, corruption):
    root = official["fewshot"]
    make = lambda: ModelNet40FewShot(root, 5, 2, 0, "test", allow_pickle=True)  # noqa: E731
    _fuzz_file(root / "5way_2shot" / "0.pkl", corruption, make)


@FUZZ
@given(corruption=CORRUPTION)
def test_scanobjectnn_fuzz(official, corruption):
    root = official["scan"]
    _fuzz_file(root / SCAN_FILES[("PB_T50_RS", "test")], corruption, lambda: ScanObjectNN(root, split="test"))


@FUZZ
@given(corruption=CORRUPTION)
def test_shapenet55_fuzz(official, corruption):
    root = official["sn55"]
    npy = next((root / "shapenet_pc").glob("*test*.npy"))
    make = lambda: ShapeNet55(root, split="test", npoints=8, seed=0)  # noqa: E731
    _fuzz_file(npy, corruption, make)
    _fuzz_file(root / "ShapeNet-55" / "test.txt", corruption, make)


@FUZZ
@given(corruption=CORRUPTION)
def test_shapenetpart_fuzz(official, corruption):
    root = official["part"]
    make = lambda: ShapeNetPart(root, split="trainval", npoints=8, seed=0)  # noqa: E731
    txt = next(p for p in (root / "03000000").iterdir())
    _fuzz_file(txt, corruption, make)
    _fuzz_file(root / "synsetoffset2category.txt", corruption, make)
    _fuzz_file(root / "train_test_split" / "shuffled_train_file_list.json", corruption, make)


@FUZZ
@given(data=st.binary(max_size=2000), ext=st.sampled_from([".csv", ".json"]))
def test_point_cloud_list_fuzz(fuzz_dir, data, ext):
    np.save(fuzz_dir / "a.npy", np.zeros((4, 3)))
    path = fuzz_dir / f"list{ext}"
    path.write_bytes(data)
    _load_all(lambda: PointCloudList(path))


def test_pickle_fuzz_seed_is_a_real_dat(official):
    """The mutation seed above really is an official-format pickle."""
    clouds, labels = pickle.loads((official["modelnet"] / "modelnet40_test_16pts_fps.dat").read_bytes())
    assert len(clouds) == 2 and clouds[0].shape == (16, 6) and labels[0].dtype == np.int32
