"""read_points: every format, the options, and the documented errors."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from act_zoo.data import SUPPORTED_EXTENSIONS, DatasetError, read_points

from .builders import pcd_bytes

plyfile = pytest.importorskip("plyfile")  # the io extra: the whole module skips without it
trimesh = pytest.importorskip("trimesh")


def ref_fps(xyz: np.ndarray, n: int) -> np.ndarray:
    """Naive farthest point sampling from index 0 (lowest index on ties)."""
    picked = [0]
    d = np.full(len(xyz), np.inf)
    for _ in range(n - 1):
        d = np.minimum(d, ((xyz - xyz[picked[-1]]) ** 2).sum(1))
        picked.append(int(np.argmax(d)))
    return np.array(picked)


@pytest.fixture
def pts() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(50, 3)).astype(np.float32)


# ----------------------------------------------------------------------------- formats


def test_npy_npz_and_text(tmp_path: Path, pts):
    np.save(tmp_path / "a.npy", pts)
    np.testing.assert_array_equal(read_points(tmp_path / "a.npy"), pts)
    np.savez(tmp_path / "b.npz", other=np.zeros((2, 3)), points=pts)  # the 'points' key wins
    np.testing.assert_array_equal(read_points(tmp_path / "b.npz"), pts)
    np.savez(tmp_path / "c.npz", pts, np.zeros((2, 3)))  # else the first array
    np.testing.assert_array_equal(read_points(tmp_path / "c.npz"), pts)
    np.savetxt(tmp_path / "d.txt", pts, fmt="%.8g")
    np.testing.assert_allclose(read_points(tmp_path / "d.txt"), pts, rtol=1e-6)
    rows = [[f"{v:.8g}" for v in p] for p in pts]
    (tmp_path / "e.csv").write_text("x,y,z\n" + "\n".join(",".join(r) for r in rows) + "\n")
    np.testing.assert_allclose(read_points(tmp_path / "e.csv"), pts, rtol=1e-6)
    (tmp_path / "f.xyz").write_text("# comment\n" + "\n".join(" ".join(r) + " 7" for r in rows))
    np.testing.assert_allclose(read_points(tmp_path / "f.xyz"), pts, rtol=1e-6)
    out = read_points(tmp_path / "a.npy")
    assert out.dtype == np.float32 and out.shape == (50, 3)


def test_column_layout_normals_and_colours(tmp_path: Path, pts):
    normals = np.tile([0.0, 0.0, 1.0], (50, 1)).astype(np.float32)
    colours = np.tile([255.0, 0.0, 51.0], (50, 1)).astype(np.float32)
    np.save(tmp_path / "a.npy", np.concatenate([pts, normals, colours], axis=1))
    out = read_points(tmp_path / "a.npy", keep_normals=True, keep_colors=True)
    assert out.shape == (50, 9)
    np.testing.assert_array_equal(out[:, 3:6], normals)
    np.testing.assert_allclose(out[:, 6:9], np.tile([1.0, 0.0, 0.2], (50, 1)), atol=1e-6)  # /255
    np.testing.assert_array_equal(read_points(tmp_path / "a.npy", keep_colors=True)[:, 3:], out[:, 6:])
    np.save(tmp_path / "b.npy", pts)
    with pytest.raises(DatasetError, match=r"b\.npy: has no normals"):
        read_points(tmp_path / "b.npy", keep_normals=True)
    with pytest.raises(DatasetError, match=r"b\.npy: has no colours"):
        read_points(tmp_path / "b.npy", keep_colors=True)
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rec = np.zeros(50, dtype=fields)
    rec["x"], rec["y"], rec["z"], rec["red"] = pts[:, 0], pts[:, 1], pts[:, 2], 255
    np.save(tmp_path / "c.npy", rec)
    out = read_points(tmp_path / "c.npy", keep_colors=True)
    np.testing.assert_array_equal(out[:, :3], pts)
    assert np.all(out[:, 3] == 1.0) and np.all(out[:, 4:] == 0.0)


def test_ply_ascii_binary_and_mesh(tmp_path: Path, pts):
    fields = [(k, "f4") for k in ("x", "y", "z", "nx", "ny", "nz")]
    fields += [(k, "u1") for k in ("red", "green", "blue")]
    vertex = np.zeros(50, dtype=fields)
    for i, k in enumerate("xyz"):
        vertex[k] = pts[:, i]
    vertex["nz"], vertex["green"] = 1.0, 255
    for text in (True, False):
        path = tmp_path / f"c{int(text)}.ply"
        plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")], text=text).write(str(path))
        out = read_points(path, keep_normals=True, keep_colors=True)
        np.testing.assert_allclose(out[:, :3], pts, rtol=1e-6)
        assert np.all(out[:, 5] == 1) and np.all(out[:, 7] == 1) and np.all(out[:, 6] == 0)
    box = trimesh.creation.box(extents=(1.0, 2.0, 4.0))
    box.export(tmp_path / "box.ply")
    out = read_points(tmp_path / "box.ply", num_points=300, keep_normals=True)
    _assert_on_box(out, (0.5, 1.0, 2.0))


def _assert_on_box(out: np.ndarray, half: tuple[float, float, float]) -> None:
    assert out.shape[0] == 300
    ratios = np.abs(out[:, :3]) / np.asarray(half)
    assert np.all(ratios <= 1 + 1e-5)
    np.testing.assert_allclose(ratios.max(axis=1), 1.0, atol=1e-5)  # every sample lies on a face
    if out.shape[1] >= 6:  # the face normal is the axis the point lies on
        axis = np.argmax(ratios, axis=1)
        assert np.all(np.abs(out[np.arange(300), 3 + axis]) > 0.999)


@pytest.mark.parametrize("ext", [".off", ".obj", ".stl"])
def test_meshes_are_sampled_by_area_with_a_seed(tmp_path: Path, ext):
    box = trimesh.creation.box(extents=(1.0, 2.0, 4.0))
    path = tmp_path / f"box{ext}"
    box.export(path)
    out = read_points(path, num_points=300, keep_normals=True)
    _assert_on_box(out, (0.5, 1.0, 2.0))
    # area weighting: the two 2x4 faces hold 8/(2+4+8) of the area -> points with |x| == 0.5
    frac = np.mean(np.isclose(np.abs(read_points(path, num_points=4000)[:, 0]), 0.5, atol=1e-5))
    assert abs(frac - 8 / 14) < 0.04
    np.testing.assert_array_equal(read_points(path, num_points=300), read_points(path, num_points=300))
    assert not np.array_equal(read_points(path, num_points=300, seed=1), read_points(path, num_points=300))
    assert read_points(path).shape == (2048, 3)  # the default sample count


def test_pcd_ascii_binary_compressed(tmp_path: Path, pts):
    rgb = np.random.default_rng(1).integers(0, 256, (50, 3))
    normals = np.tile([1.0, 0.0, 0.0], (50, 1))
    for mode in ("ascii", "binary", "binary_compressed"):
        path = tmp_path / f"{mode}.pcd"
        path.write_bytes(pcd_bytes(pts, mode=mode, rgb=rgb, normals=normals))
        out = read_points(path, keep_normals=True, keep_colors=True)
        np.testing.assert_allclose(out[:, :3], pts, rtol=1e-6, err_msg=mode)
        np.testing.assert_array_equal(out[:, 3:6], normals)
        np.testing.assert_allclose(out[:, 6:9] * 255, rgb, atol=1e-4, err_msg=mode)


# ----------------------------------------------------------------------------- sampling


def test_fps_random_and_padding(tmp_path: Path, pts):
    np.save(tmp_path / "a.npy", pts)
    fps = read_points(tmp_path / "a.npy", num_points=10)
    np.testing.assert_array_equal(fps, pts[ref_fps(pts.astype(np.float64), 10)])
    rnd = read_points(tmp_path / "a.npy", num_points=10, sample="random", seed=3)
    assert len({tuple(r) for r in rnd}) == 10 and all(any((r == p).all() for p in pts) for r in rnd)
    again = read_points(tmp_path / "a.npy", num_points=10, sample="random", seed=3)
    np.testing.assert_array_equal(rnd, again)
    assert not np.array_equal(rnd, read_points(tmp_path / "a.npy", num_points=10, sample="random", seed=4))
    padded = read_points(tmp_path / "a.npy", num_points=80)
    assert padded.shape == (80, 3)
    np.testing.assert_array_equal(padded[:50], pts)
    assert all(any((r == p).all() for p in pts) for r in padded[50:])


# ----------------------------------------------------------------------------- errors


def test_errors_name_the_file(tmp_path: Path, pts):
    with pytest.raises(DatasetError, match=r"missing\.ply: file not found"):
        read_points(tmp_path / "missing.ply")
    (tmp_path / "a.foo").write_text("1 2 3")
    with pytest.raises(DatasetError, match=r"a\.foo: unsupported extension"):
        read_points(tmp_path / "a.foo")
    for ext in SUPPORTED_EXTENSIONS:
        (tmp_path / f"empty{ext}").write_bytes(b"")
        with pytest.raises(DatasetError, match=rf"empty\{ext}: is empty"):
            read_points(tmp_path / f"empty{ext}")
    bad = pts.copy()
    bad[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DatasetError, match=r"nan\.npy: 1 of 50 points have NaN"):
        read_points(tmp_path / "nan.npy")
    with_normals = np.concatenate([pts, np.full_like(pts, np.nan)], axis=1)
    np.save(tmp_path / "nan_normals.npy", with_normals)
    np.testing.assert_array_equal(read_points(tmp_path / "nan_normals.npy"), pts)  # unused normals may be NaN
    with pytest.raises(DatasetError, match="50 of 50 points have NaN or infinite normals"):
        read_points(tmp_path / "nan_normals.npy", keep_normals=True)
    np.savetxt(tmp_path / "inf.txt", np.where(bad == bad, bad, np.inf))
    with pytest.raises(DatasetError, match=r"inf\.txt.*infinite"):
        read_points(tmp_path / "inf.txt")
    np.save(tmp_path / "flat.npy", pts[:, :2])
    with pytest.raises(DatasetError, match=r"flat\.npy: expected an array of shape \[N, 3\+\]"):
        read_points(tmp_path / "flat.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match="pickled object array"):
        read_points(tmp_path / "obj.npy")
    (tmp_path / "ragged.txt").write_text("1 2 3\n4 5\n6 7 8\n")
    with pytest.raises(DatasetError, match=r"ragged\.txt"):
        read_points(tmp_path / "ragged.txt")
    (tmp_path / "two.csv").write_text("1,2\n3,4\n")
    with pytest.raises(DatasetError, match="at least 3 columns"):
        read_points(tmp_path / "two.csv")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DatasetError, match="not a text file"):
        read_points(tmp_path / "bin.txt")
    flat = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [2, 0, 0]], faces=[[0, 1, 2]], process=False)
    flat.export(tmp_path / "flat.off")
    with pytest.raises(DatasetError, match="zero surface area"):
        read_points(tmp_path / "flat.off")


def test_truncated_and_huge_headers(tmp_path: Path, pts):
    np.save(tmp_path / "a.npy", pts)
    raw = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[:-10])
    with pytest.raises(DatasetError, match=r"t\.npy: is truncated"):
        read_points(tmp_path / "t.npy")
    # an .npy header declaring 10^12 points in a tiny file
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 3), }"
    header += " " * (63 - len(header) % 64) + "\n"
    magic = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header))
    (tmp_path / "h.npy").write_bytes(magic + header.encode() + b"\0" * 12)
    with pytest.raises(DatasetError, match="truncated"):
        read_points(tmp_path / "h.npy")
    (tmp_path / "h.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 99999999999\nproperty float x\n"
                                     b"property float y\nproperty float z\nend_header\n0 0 0\n")  # fmt: skip
    with pytest.raises(DatasetError, match=r"h\.ply: is truncated"):
        read_points(tmp_path / "h.ply")
    pcd = b"FIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 99999999999\nDATA binary\n"
    (tmp_path / "h.pcd").write_bytes(pcd + b"\0" * 12)
    with pytest.raises(DatasetError, match=r"h\.pcd: is truncated"):
        read_points(tmp_path / "h.pcd")
    (tmp_path / "h.off").write_bytes(b"OFF\n99999999999 99999999 0\n0 0 0\n")
    with pytest.raises(DatasetError, match=r"h\.off: is truncated"):
        read_points(tmp_path / "h.off")
    (tmp_path / "h.stl").write_bytes(b"\0" * 80 + struct.pack("<I", 2**32 - 1) + b"\0" * 50)
    with pytest.raises(DatasetError, match=r"h\.stl: is neither ASCII STL nor binary STL"):
        read_points(tmp_path / "h.stl")
    (tmp_path / "long.ply").write_bytes(b"ply\n" + b"comment " + b"x" * 70000 + b"\n")
    with pytest.raises(DatasetError, match="no complete PLY header"):
        read_points(tmp_path / "long.ply")


def test_option_validation(tmp_path: Path, pts):
    np.save(tmp_path / "a.npy", pts)
    with pytest.raises(ValueError, match="num_points"):
        read_points(tmp_path / "a.npy", num_points=0)
    with pytest.raises(ValueError, match="sample"):
        read_points(tmp_path / "a.npy", sample="grid")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- PLY headers must tell the truth


def _ply(pts: np.ndarray, *, text: bool, faces: list | None = None) -> bytes:
    import io

    v = np.zeros(len(pts), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    v["x"], v["y"], v["z"] = pts.T
    elements = [plyfile.PlyElement.describe(v, "vertex")]
    if faces is not None:
        f = np.empty(len(faces), dtype=[("vertex_indices", "O")])
        f["vertex_indices"] = [np.asarray(x, dtype=np.int32) for x in faces]
        elements.append(plyfile.PlyElement.describe(f, "face"))
    buf = io.BytesIO()
    plyfile.PlyData(elements, text=text).write(buf)
    return buf.getvalue()


@pytest.mark.parametrize(("name", "edit", "match"), [
    ("bin_over_ascii", lambda a, b: a.replace(b"format ascii", b"format binary_little_endian"),
     "declares 'binary_little_endian' but the data is ASCII text"),
    ("ascii_over_bin", lambda a, b: b.replace(b"format binary_little_endian", b"format ascii"),
     "declares 'format ascii' but the data is binary"),
    ("more_ascii", lambda a, b: a.replace(b"element vertex 50", b"element vertex 40"),
     r"holds 50 data lines but its PLY header declares 40 \(vertex 40\)"),
    ("more_binary", lambda a, b: b.replace(b"element vertex 50", b"element vertex 40"),
     r"holds 120 bytes after the elements its PLY header declares \(vertex 40\)"),
    ("fewer_ascii", lambda a, b: a.replace(b"element vertex 50", b"element vertex 60"), "end-of-file|truncated"),
    ("fewer_binary", lambda a, b: b.replace(b"element vertex 50", b"element vertex 60"), "truncated"),
])
def test_ply_header_lies_are_errors(tmp_path: Path, pts, name, edit, match):
    path = tmp_path / f"{name}.ply"
    path.write_bytes(edit(_ply(pts, text=True), _ply(pts, text=False)))
    with pytest.raises(DatasetError, match=rf"{name}\.ply: .*({match})"):
        read_points(path)


def test_truthful_ply_files_still_read(tmp_path: Path, pts):
    for text in (True, False):
        path = tmp_path / f"ok{int(text)}.ply"
        path.write_bytes(_ply(pts, text=text))
        np.testing.assert_allclose(read_points(path), pts, rtol=1e-6)
        path.write_bytes(_ply(pts, text=text) + b"\n")  # a final line break is tolerated
        assert read_points(path).shape == (50, 3)
    # a binary mesh with list properties of mixed lengths: its exact extent is accounted for
    faces = [[0, 1, 2], [2, 3, 4, 5], [5, 6, 7]]
    path = tmp_path / "mesh.ply"
    path.write_bytes(_ply(pts, text=False, faces=faces))
    assert read_points(path, num_points=64).shape == (64, 3)
    path.write_bytes(_ply(pts, text=False, faces=faces) + b"\0" * 13)
    with pytest.raises(DatasetError, match="13 bytes after the elements"):
        read_points(path)


# ----------------------------------------------------------------------------- PCD through pypcd4


def test_pcd_written_by_pypcd4_with_real_lzf(tmp_path: Path):
    pypcd4 = pytest.importorskip("pypcd4")
    rng = np.random.default_rng(3)
    xyz = np.repeat(rng.normal(size=(50, 3)).astype(np.float32), 8, axis=0)  # repeats: LZF back-references
    path = tmp_path / "real.pcd"
    pypcd4.PointCloud.from_xyz_points(xyz).save(path, encoding=pypcd4.Encoding.BINARY_COMPRESSED)
    raw = path.read_bytes()
    csize, usize = struct.unpack("<II", raw[raw.index(b"DATA binary_compressed\n") + 23:][:8])
    assert csize < usize / 2  # really compressed
    np.testing.assert_array_equal(read_points(path), xyz)
    cut = raw[:-40]
    (tmp_path / "cut.pcd").write_bytes(cut)
    with pytest.raises(DatasetError, match=r"cut\.pcd: is truncated"):
        read_points(tmp_path / "cut.pcd")
    body = bytearray(raw)
    start = len(raw) - csize
    body[start:start + 8] = b"\xff" * 8  # corrupt LZF stream
    (tmp_path / "bad.pcd").write_bytes(bytes(body))
    with pytest.raises(DatasetError, match=r"bad\.pcd"):
        read_points(tmp_path / "bad.pcd")


def test_pcd_header_variants(tmp_path: Path, pts):
    rows = "\n".join("  ".join(f"{v:.7g}" for v in p) + " \t" for p in pts)  # runs of blanks, trailing blanks
    no_count = "FIELDS x y z _\nSIZE 4 4 4 4\nTYPE F F F F\nWIDTH 50\nHEIGHT 1\nDATA ascii\n"
    padded = "\n".join(r + " 0" for r in rows.splitlines())
    (tmp_path / "a.pcd").write_text(no_count + padded + "\n")  # no COUNT, no POINTS, a '_' padding field
    np.testing.assert_allclose(read_points(tmp_path / "a.pcd"), pts, rtol=1e-6)
    (tmp_path / "rows.pcd").write_text(no_count.replace("WIDTH 50", "WIDTH 51") + padded + "\n")
    with pytest.raises(DatasetError, match="declares 51 points but the file has 50 rows"):
        read_points(tmp_path / "rows.pcd")


# ----------------------------------------------------------------------------- files, directories, globs


def test_collect_files_expands_directories_and_globs(tmp_path: Path, pts):
    from act_zoo.data import collect_files

    for rel in ("b/2.npy", "b/deep/1.ply", "a.xyz", ".hidden/x.npy", "b/.h.npy", "notes.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    files = collect_files([tmp_path])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a.xyz", "b/2.npy", "b/deep/1.ply"]
    assert collect_files(str(tmp_path / "b" / "**" / "*.ply")) == [tmp_path / "b" / "deep" / "1.ply"]
    # order as given, duplicates once; a named file is taken whatever its extension
    got = collect_files([tmp_path / "notes.md", tmp_path / "b", tmp_path / "b" / "2.npy"])
    assert [f.name for f in got] == ["notes.md", "2.npy", "1.ply"]
    with pytest.raises(FileNotFoundError, match=r"nope\.ply: no such file or directory"):
        collect_files([tmp_path / "nope.ply"])
    with pytest.raises(FileNotFoundError, match="no file matches"):
        collect_files([str(tmp_path / "*.pcd")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: directory holds no files with a supported extension"):
        collect_files([tmp_path / "empty"])
    with pytest.raises(ValueError, match="no input"):
        collect_files([])


# ----------------------------------------------------------------------------- found by a new user (review)


def test_off_with_counts_glued_to_the_magic_reads_like_modelnet_does(tmp_path: Path):
    """ModelNet40's raw .off files often start ``OFF490 518 0`` (no line break after the magic);
    trimesh reads them, so the header pre-check must too (and still check the counts)."""
    box = trimesh.creation.box()
    rows = [" ".join(map(str, v)) for v in box.vertices] + [f"3 {a} {b} {c}" for a, b, c in box.faces]
    (tmp_path / "glued.off").write_text(f"OFF{len(box.vertices)} {len(box.faces)} 0\n" + "\n".join(rows) + "\n")
    (tmp_path / "plain.off").write_text(f"OFF\n{len(box.vertices)} {len(box.faces)} 0\n" + "\n".join(rows) + "\n")
    np.testing.assert_array_equal(read_points(tmp_path / "glued.off"), read_points(tmp_path / "plain.off"))
    (tmp_path / "lying.off").write_text("OFF90000 12 0\n" + "\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match=r"lying\.off: is truncated: OFF header declares 90000 vertices"):
        read_points(tmp_path / "lying.off")
    (tmp_path / "word.off").write_text("OFFSET 1 2\n")
    with pytest.raises(DatasetError, match=r"word\.off: is not an OFF file"):
        read_points(tmp_path / "word.off")


@pytest.mark.parametrize("ext", [".npy", ".txt", ".npz"])
def test_a_transposed_cloud_is_an_error_not_three_points(tmp_path: Path, ext):
    """``[3, N]`` (channels first, as a ``[B, 3, N]`` network input) read as ``[N, 3]`` would be
    3 points whose 'normals' are the 4th-6th points: a plausible wrong cloud. It is refused."""
    pts = np.random.default_rng(1).normal(size=(500, 3))
    path = tmp_path / f"t{ext}"
    if ext == ".npy":
        np.save(path, pts.T.astype(np.float32))
    elif ext == ".npz":
        np.savez(path, points=pts.T)
    else:
        np.savetxt(path, pts.T)
    with pytest.raises(DatasetError, match=r"shape \[3, 500\].*transposed.*\[N, 3\]"):
        read_points(path)
    with pytest.raises(DatasetError, match="transposed"):
        read_points(path, num_points=64)
    np.save(tmp_path / "ok.npy", pts[:9, :].T)  # [3, 9]: three points with normals and colours, as documented
    assert read_points(tmp_path / "ok.npy").shape == (3, 3)


def test_nan_points_of_a_sensor_scan_say_what_to_do(tmp_path: Path, pts):
    """An organised PCD from a depth sensor marks missing returns with NaN: the error says to
    drop those points (act_zoo does not guess which points a user wants)."""
    bad = pts.copy()
    bad[::7] = np.nan
    (tmp_path / "scan.pcd").write_bytes(pcd_bytes(bad, mode="binary"))
    with pytest.raises(DatasetError, match=r"scan\.pcd: 8 of 50 points have NaN or infinite coordinates.*remove"):
        read_points(tmp_path / "scan.pcd")


def test_linked_folders_are_searched_like_real_ones_and_a_loop_ends(tmp_path: Path):
    """A folder linked into a data tree (a shared scan folder, a class folder kept elsewhere) is
    searched like any other, for predict/extract and for the class-per-folder datasets alike; a
    link back to an ancestor is visited once."""
    from act_zoo.data import PointCloudFolder, collect_files

    elsewhere = tmp_path / "elsewhere"
    for rel in ("box/a.npy", "extra/b.npy"):
        (elsewhere / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(elsewhere / rel, np.random.default_rng(0).normal(size=(20, 3)))
    data = tmp_path / "data"
    (data / "cone").mkdir(parents=True)
    np.save(data / "cone" / "c.npy", np.random.default_rng(1).normal(size=(20, 3)))
    (data / "box").symlink_to(elsewhere / "box", target_is_directory=True)
    (data / "cone" / "more").symlink_to(elsewhere / "extra", target_is_directory=True)
    (data / "cone" / "loop").symlink_to(data, target_is_directory=True)
    files = [f.relative_to(data).as_posix() for f in collect_files(data)]
    assert files == ["box/a.npy", "cone/c.npy", "cone/more/b.npy"]
    ds = PointCloudFolder(data, num_points=8)
    assert [(p.relative_to(data).as_posix(), ds.classes[lab]) for p, lab in ds.samples] == [
        ("box/a.npy", "box"), ("cone/c.npy", "cone"), ("cone/more/b.npy", "cone")]


def test_a_text_file_whose_rows_change_width_names_the_row_not_numpy_options(tmp_path: Path):
    path = tmp_path / "half.xyz"
    path.write_text("1 2 3\n4 5 6\n7 8\n")
    with pytest.raises(DatasetError) as info:
        read_points(path)
    msg = str(info.value)
    assert str(path) in msg and "number of columns changed from 3 to 2 at row 3" in msg
    assert "usecols" not in msg  # numpy's own API advice is no use to a reader of this message
