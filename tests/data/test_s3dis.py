"""S3DIS rooms in the official collect_indoor3d_data format, the training blocks, the class
weights, the whole-room blocking and ``check_s3dis``."""

import numpy as np
import pytest
import torch

from act_zoo._s3dis import S3DIS_CLASSES, S3DIS_ROOMS_PER_AREA
from act_zoo.cli import main
from act_zoo.data import DatasetError
from act_zoo.data.blocks import (
    block_chunks,
    block_frame,
    block_rng,
    grid_shape,
    iter_chunk_batches,
    scene_blocks,
)
from act_zoo.data.check import CheckOptions, check_dataset
from act_zoo.data.s3dis import S3DIS, label_weights, list_rooms, read_room, split_rooms
from act_zoo.data.synthetic_scene import synthetic_room, write_s3dis_room


def write_tiny_s3dis(root, *, rooms_per_area=None, points=3000, size=(3.0, 2.5, 2.4)):
    """A folder of tiny rooms; default: 2 rooms in each of Areas 1-6."""
    root.mkdir(parents=True, exist_ok=True)
    rooms_per_area = rooms_per_area or {a: 2 for a in range(1, 7)}
    k = 0
    for area, n in rooms_per_area.items():
        for j in range(n):
            xyz, labels = synthetic_room(points, size=size, chairs=2, seed=k)
            write_s3dis_room(root / f"Area_{area}_office_{j + 1}.npy", xyz, labels, seed=k)
            k += 1
    return root


@pytest.fixture(scope="module")
def s3dis_root(tmp_path_factory):
    return write_tiny_s3dis(tmp_path_factory.mktemp("s3dis") / "stanford_indoor3d")


# ------------------------------------------------------------------------------ rooms and split
def test_rooms_split_and_reader(s3dis_root):
    rooms = list_rooms(s3dis_root)
    assert [r.name for r in rooms] == sorted(r.name for r in rooms) and len(rooms) == 12
    (s3dis_root / "notes.txt").write_text("ignored")
    test = split_rooms(s3dis_root, "test")
    train = split_rooms(s3dis_root, "train")
    assert {r.area for r in test} == {5} and {r.area for r in train} == {1, 2, 3, 4, 6} and len(train) == 10
    assert {r.area for r in split_rooms(s3dis_root, "test", test_area=2)} == {2}
    data = read_room(test[0].path)
    raw = np.load(test[0].path)
    assert data.xyz.dtype == np.float64 and np.array_equal(data.xyz, raw[:, :3])
    assert np.array_equal(data.labels, raw[:, 6].astype(np.int64)) and data.rgb.shape == (3000, 3)
    with pytest.raises(ValueError, match="split"):
        split_rooms(s3dis_root, "val")
    with pytest.raises(DatasetError, match="folder not found"):
        list_rooms(s3dis_root / "missing")


@pytest.mark.parametrize("case,match", [
    ("shape", r"\[N, 7\]"), ("nan", "NaN"), ("label", "labels must be integers in 0..12"),
    ("fraction", "labels must be integers"), ("object", "pickled object"), ("empty_file", "empty"),
])
def test_bad_room_files_name_the_file(tmp_path, case, match):
    path = tmp_path / "Area_1_bad_1.npy"
    good = np.zeros((5, 7))
    if case == "shape":
        np.save(path, np.zeros((5, 6)))
    elif case == "nan":
        good[2, 1] = np.nan
        np.save(path, good)
    elif case == "label":
        good[:, 6] = 13
        np.save(path, good)
    elif case == "fraction":
        good[:, 6] = 1.5
        np.save(path, good)
    elif case == "object":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(b"")
    with pytest.raises(DatasetError, match=match) as err:
        read_room(path)
    assert str(path) in str(err.value)


# ------------------------------------------------------------------------------ class weights
def test_label_weights_is_the_official_formula(caplog):
    hist = np.array([1000, 800, 3000, 5, 40, 70, 90, 200, 150, 20, 300, 60, 400])
    lw = hist.astype(np.float32)
    lw = lw / np.sum(lw)
    official = np.power(np.amax(lw) / lw, 1 / 3.0)  # semantic_segmentation/dataset.py
    got = label_weights(hist)
    assert got.dtype == np.float32 and np.array_equal(got, official.astype(np.float32))
    assert got[2] == 1.0 and got[3] == got.max()
    with caplog.at_level("WARNING"):
        w = label_weights(np.array([10, 0, 5]))
    assert w[1] == 0.0 and np.isfinite(w).all() and "no point" in caplog.text
    with pytest.raises(ValueError):
        label_weights(np.zeros(13))


# ------------------------------------------------------------------------------ training blocks
def test_training_blocks_follow_the_official_protocol(s3dis_root):
    ds = S3DIS(s3dis_root, split="train", npoints=256, min_points=100, seed=0)
    # official length: int(total * sample_rate / npoints), each room round(share * that) times
    counts = np.array([len(np.load(r.path)) for r in ds.rooms], dtype=np.float64)
    num_iter = int(counts.sum() / 256)
    assert len(ds) == sum(int(round(c / counts.sum() * num_iter)) for c in counts)
    hist = sum(np.bincount(np.load(r.path)[:, 6].astype(int), minlength=13) for r in ds.rooms)
    assert np.array_equal(ds.histogram, hist) and np.array_equal(ds.labelweights, label_weights(hist))
    item = ds[0]
    pts, seg = item["points"], item["seg"]
    assert pts.shape == (256, 3) and pts.dtype == torch.float32 and seg.shape == (256,) and seg.dtype == torch.int64
    # x, y centred on the picked point: inside the 1 m window; z is the stored height
    assert float(pts[:, :2].abs().max()) <= 0.5 + 1e-6
    room = np.load(ds.rooms[int(ds.room_idxs[0])].path)
    z = set(np.round(room[:, 2].astype(np.float32), 5).tolist())
    assert set(np.round(pts[:, 2].numpy(), 5).tolist()) <= z
    again = ds[0]
    assert torch.equal(again["points"], pts) and torch.equal(again["seg"], seg)  # seeded per item
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["points"], pts)


def test_blocks_sample_with_replacement_only_when_short(s3dis_root):
    few = S3DIS(s3dis_root, split="test", npoints=4096, min_points=100, seed=1, sample_rate=8.0)
    pts = few[0]["points"]
    assert len(np.unique(pts.numpy(), axis=0)) < 4096  # a window holds fewer than 4096: repeats
    many = S3DIS(s3dis_root, split="test", npoints=64, min_points=100, seed=1)
    pts = many[0]["points"].numpy()
    assert len(np.unique(pts, axis=0)) == 64  # enough points: no repeats


def test_no_dense_window_is_an_error_naming_the_room(s3dis_root):
    ds = S3DIS(s3dis_root, split="test", npoints=256, min_points=10**6, max_draws=5, seed=0)
    with pytest.raises(DatasetError, match="more than 1000000 points after 5 draws") as err:
        ds[0]
    assert "Area_5_office" in str(err.value)


# ------------------------------------------------------------------------------ whole-room blocks
def _official_blocks(xyz, block_size=1.0, stride=0.5, padding=0.001):
    """ScannetDatasetWholeScene's loops, written out (rows outer, columns inner)."""
    lo, hi = xyz[:, :3].min(0), xyz[:, :3].max(0)
    gx = int(np.ceil(float(hi[0] - lo[0] - block_size) / stride) + 1)
    gy = int(np.ceil(float(hi[1] - lo[1] - block_size) / stride) + 1)
    out = {}
    for iy in range(gy):
        for ix in range(gx):
            s_x = lo[0] + ix * stride
            e_x = min(s_x + block_size, hi[0])
            s_x = e_x - block_size
            s_y = lo[1] + iy * stride
            e_y = min(s_y + block_size, hi[1])
            s_y = e_y - block_size
            idx = np.where((xyz[:, 0] >= s_x - padding) & (xyz[:, 0] <= e_x + padding)
                           & (xyz[:, 1] >= s_y - padding) & (xyz[:, 1] <= e_y + padding))[0]
            if idx.size:
                out[(ix, iy)] = (idx, (s_x + block_size / 2.0, s_y + block_size / 2.0))
    return out


@pytest.mark.parametrize("size", [(3.3, 2.2), (1.0, 7.1), (0.7, 2.0), (0.3, 2.0)])
def test_scene_blocks_match_the_official_loops(size):
    rng = np.random.default_rng(0)
    xyz = rng.random((4000, 3)) * (*size, 2.5)
    xyz[:50, 0] = np.round(xyz[:50, 0] * 2) / 2  # points exactly on block edges
    got = {b.cell: b for b in scene_blocks(xyz)}
    want = _official_blocks(xyz)
    if size[0] < 0.5:  # the official formula gives no column at all here; ours has one column
        assert not want and grid_shape(xyz)[0] == 1  # spanning all x, with the official rows
        hi_x, lo_y, hi_y = xyz[:, 0].max(), xyz[:, 1].min(), xyz[:, 1].max()
        for iy in range(int(np.ceil((hi_y - lo_y - 1.0) / 0.5)) + 1):
            e_y = min(lo_y + iy * 0.5 + 1.0, hi_y)
            rows = np.flatnonzero((xyz[:, 1] >= e_y - 1.0 - 0.001) & (xyz[:, 1] <= e_y + 0.001))
            want[(0, iy)] = (rows, (hi_x - 1.0 + 0.5, e_y - 1.0 + 0.5))
    assert set(got) == set(want)
    for cell, (idx, center) in want.items():
        assert np.array_equal(got[cell].index, idx) and got[cell].center == center
    covered = np.zeros(len(xyz), bool)
    for b in got.values():
        covered[b.index] = True
    assert covered.all()


def test_block_chunks_pad_shuffle_and_cover():
    index = np.arange(100, 1100)  # a block of 1000 points
    rng = np.random.default_rng(0)
    chunks = block_chunks(index, 256, rng)
    assert chunks.shape == (4, 256)  # padded to 1024
    flat = chunks.ravel()
    assert set(flat.tolist()) == set(index.tolist())  # every point at least once
    assert len(flat) - len(np.unique(flat)) == 24  # 24 padding points, drawn without replacement
    small = block_chunks(np.arange(10), 256, np.random.default_rng(0))  # padding > block: with replacement
    assert small.shape == (1, 256) and set(small.ravel().tolist()) == set(range(10))
    b = next(iter(scene_blocks(np.random.default_rng(1).random((500, 3)))))
    assert np.array_equal(block_chunks(b.index, 64, block_rng(3, 0, b)), block_chunks(b.index, 64, block_rng(3, 0, b)))
    assert not np.array_equal(block_chunks(b.index, 64, block_rng(3, 1, b)), block_chunks(b.index, 64, block_rng(3, 0, b)))


def test_block_frame_and_batches():
    xyz = np.random.default_rng(2).random((3000, 3)) * (2.5, 2.0, 3.0) + (1e5, -2e5, 0.0)  # far from the origin
    batches = list(iter_chunk_batches(xyz, npoints=128, batch_size=5))
    assert all(p.shape[0] <= 5 and p.shape[1:] == (128, 3) and p.dtype == np.float32 for p, _ in batches)
    seen = np.zeros(len(xyz), bool)
    for pts, idx in batches:
        seen[idx.ravel()] = True
        assert np.abs(pts[..., :2]).max() <= 0.5 + 0.001 + 1e-5  # centred in float64 before the cast
        assert np.allclose(pts[..., 2], xyz[idx, 2], atol=1e-6)
    assert seen.all()
    b = next(iter(scene_blocks(xyz)))
    f = block_frame(xyz, b.index, b.center)
    assert np.allclose(f[:, 0], xyz[b.index, 0] - b.center[0], atol=1e-6)
    # the same chunks whatever the batch size
    a = np.concatenate([i for _, i in iter_chunk_batches(xyz, npoints=128, batch_size=3)])
    c = np.concatenate([i for _, i in iter_chunk_batches(xyz, npoints=128, batch_size=7)])
    assert np.array_equal(a, c)


# ------------------------------------------------------------------------------ data check
def test_data_check_s3dis_counts_and_problems(tmp_path, s3dis_root, capsys):
    full = tmp_path / "full"
    full.mkdir()
    rng = np.random.default_rng(0)
    for area, n in S3DIS_ROOMS_PER_AREA.items():
        for j in range(n):
            data = np.concatenate([rng.random((8, 6)), rng.integers(0, 13, (8, 1))], axis=1)
            data[:, :3] -= data[:, :3].min(0)
            np.save(full / f"Area_{area}_room_{j}.npy", data)
    report = check_dataset("s3dis", full, CheckOptions(samples=300))
    assert report.ok, report.lines
    assert "every room file is an [N, 7] array: 2,176 points in 272 rooms" in [t for _, t in report.lines]
    assert any("read 272 of 272 rooms" in t for _, t in report.lines)
    # the command as a user types it
    assert main(["data", "check", "s3dis", str(full)]) == 0
    assert "OK: s3dis" in capsys.readouterr().out
    # the tiny folder has 2 rooms per area: every area is reported, a warning with --no-expect-counts
    small = check_dataset("s3dis", s3dis_root)
    assert not small.ok and any("Area_5 (test): 2 rooms, the official release has 68" in p for p in small.problems)
    assert check_dataset("s3dis", s3dis_root, CheckOptions(expect_counts=False)).ok
    assert main(["data", "check", "s3dis", str(s3dis_root)]) == 1
    assert "FAILED" in capsys.readouterr().out
    # a broken file and a room not at the origin
    np.save(full / "Area_1_room_0.npy", np.zeros((4, 5)))
    shifted = np.load(full / "Area_2_room_0.npy")
    shifted[:, 2] += 3.0
    np.save(full / "Area_2_room_0.npy", shifted)
    report = check_dataset("s3dis", full, CheckOptions(samples=300))
    assert any("Area_1_room_0.npy" in p and "[N, 7]" in p for p in report.problems)
    assert any("Area_2_room_0.npy" in p and "not the origin" in p for p in report.problems)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "collect_indoor3d_data" in check_dataset("s3dis", empty).problems[0]


def test_synthetic_room():
    xyz, labels = synthetic_room(20_000, seed=3)
    assert xyz.shape == (20_000, 3) and labels.shape == (20_000,) and np.allclose(xyz.min(0), 0)
    present = {S3DIS_CLASSES[c] for c in np.unique(labels)}
    assert {"floor", "ceiling", "wall", "table", "chair", "door", "window"} <= present
    assert np.median(xyz[labels == 1][:, 2]) < 0.05 < np.median(xyz[labels == 0][:, 2]) - 2.5  # floor, ceiling
    x2, l2 = synthetic_room(20_000, seed=3)
    assert np.array_equal(xyz, x2) and np.array_equal(labels, l2)
