"""ModelNet40 and its few-shot splits, from tiny files in the official layouts."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from act_zoo.data import DatasetError, ModelNet40, ModelNet40FewShot, convert_modelnet_pickle
from act_zoo.ops import furthest_point_sample

from .builders import MODELNET_CLASSES, write_fewshot, write_modelnet


def ref_pc_normalize(pc: np.ndarray) -> np.ndarray:
    """The official pc_normalize, written out."""
    centroid = np.mean(pc, axis=0)
    pc = pc - centroid
    m = np.max(np.sqrt(np.sum(pc**2, axis=1)))
    return pc / m


def ref_official_fps(point: np.ndarray, npoint: int, start: int) -> np.ndarray:
    """The official numpy farthest_point_sample with its random start replaced by ``start``."""
    N, _ = point.shape
    xyz = point[:, :3]
    centroids = np.zeros((npoint,))
    distance = np.ones((N,)) * 1e10
    farthest = start
    for i in range(npoint):
        centroids[i] = farthest
        dist = np.sum((xyz - xyz[farthest, :]) ** 2, -1)
        mask = dist < distance
        distance[mask] = dist[mask]
        farthest = np.argmax(distance, -1)
    return point[centroids.astype(np.int32)]


@pytest.fixture
def mn_dat(tmp_path: Path):
    root = tmp_path / "modelnet40_normal_resampled"
    stored = write_modelnet(root, dat=True)
    return root, stored


def test_dat_order_labels_and_normalisation(mn_dat):
    root, stored = mn_dat
    ds = ModelNet40(root, split="train", allow_pickle=True, fps_points=16, shuffle_points=False)
    assert ds.source == "dat"
    assert ds.classes == list(MODELNET_CLASSES)
    assert len(ds) == 4
    # night_stand_0001 -> "night_stand" (everything before the last underscore)
    assert ds.labels.tolist() == [0, 1, 2, 0]
    for i in range(len(ds)):
        points, label = ds[i]
        assert points.dtype == torch.float32 and points.shape == (16, 3)
        assert label == ds.labels[i] and isinstance(label, int)
        np.testing.assert_allclose(points.numpy(), ref_pc_normalize(stored["train"][i][:, :3]), atol=1e-6)
    test = ModelNet40(root, split="test", allow_pickle=True, fps_points=16)
    assert test.labels.tolist() == [2, 1]
    assert not test.shuffle_points  # official: only the train split shuffles


def test_normals_are_kept_but_not_normalised(mn_dat):
    root, stored = mn_dat
    ds = ModelNet40(root, split="test", allow_pickle=True, fps_points=16, use_normals=True)
    points, _ = ds[1]
    assert points.shape == (16, 6)
    np.testing.assert_allclose(points[:, 3:].numpy(), stored["test"][1][:, 3:], atol=0)
    np.testing.assert_allclose(points[:, :3].numpy(), ref_pc_normalize(stored["test"][1][:, :3]), atol=1e-6)


def test_pickle_needs_opt_in_and_converter_writes_equivalent_npz(mn_dat):
    root, _ = mn_dat
    with pytest.raises(DatasetError, match=r"modelnet40_train_16pts_fps\.dat.*convert_modelnet_pickle"):
        ModelNet40(root, split="train", fps_points=16)
    via_pickle = ModelNet40(root, split="train", allow_pickle=True, fps_points=16, shuffle_points=False)
    out = convert_modelnet_pickle(root / "modelnet40_train_16pts_fps.dat")
    assert out == root / "modelnet40_train_16pts_fps.npz" and out.is_file()
    via_npz = ModelNet40(root, split="train", fps_points=16, shuffle_points=False)  # no allow_pickle needed
    assert via_npz.source == "npz"
    for i in range(len(via_npz)):
        a, la = via_pickle[i]
        b, lb = via_npz[i]
        assert torch.equal(a, b) and la == lb
    # a second conversion does not redo the work unless asked
    mtime = out.stat().st_mtime_ns
    convert_modelnet_pickle(root / "modelnet40_train_16pts_fps.dat")
    assert out.stat().st_mtime_ns == mtime


def test_npoints_first_and_fps(mn_dat):
    root, stored = mn_dat
    first = ModelNet40(root, split="test", allow_pickle=True, fps_points=16, npoints=8, sample="first")
    full = ref_pc_normalize(stored["test"][0][:, :3]).astype(np.float32)
    np.testing.assert_allclose(first[0][0].numpy(), full[:8], atol=1e-6)
    fps = ModelNet40(root, split="test", allow_pickle=True, fps_points=16, npoints=8)
    idx = furthest_point_sample(torch.from_numpy(full).unsqueeze(0), 8)[0]
    np.testing.assert_allclose(fps[0][0].numpy(), full[idx.numpy()], atol=1e-6)
    with pytest.raises(ValueError, match="npoints"):
        ModelNet40(root, split="test", allow_pickle=True, fps_points=16, npoints=32)


def test_train_shuffle_is_seeded_and_keeps_the_points(mn_dat):
    root, stored = mn_dat
    a = ModelNet40(root, split="train", allow_pickle=True, fps_points=16, seed=3)
    b = ModelNet40(root, split="train", allow_pickle=True, fps_points=16, seed=3)
    plain = ModelNet40(root, split="train", allow_pickle=True, fps_points=16, shuffle_points=False)
    pa, pb, pp = a[2][0], b[2][0], plain[2][0]
    assert torch.equal(pa, pb)
    assert not torch.equal(pa, pp)
    assert torch.equal(torch.sort(pa[:, 0]).values, torch.sort(pp[:, 0]).values)
    a.set_epoch(1)
    assert not torch.equal(a[2][0], pb)


def test_txt_source_matches_the_official_fps_preprocessing(tmp_path: Path):
    root = tmp_path / "mn"
    write_modelnet(root, txt_points=40)
    ds = ModelNet40(root, split="train", source="txt", fps_points=16, fps_seed=5, shuffle_points=False)
    assert ds.source == "txt"
    for i in range(len(ds)):
        sid = ds.shape_ids[i]
        txt = root / "_".join(sid.split("_")[:-1]) / f"{sid}.txt"
        raw = np.loadtxt(txt, delimiter=",").astype(np.float32)
        start = int(np.random.default_rng([5, i]).integers(len(raw)))
        expected = ref_pc_normalize(ref_official_fps(raw, 16, start)[:, :3])
        np.testing.assert_allclose(ds[i][0].numpy(), expected, atol=1e-6)
    cache = ModelNet40.build_cache(root, split="train", fps_points=16, fps_seed=5)
    cached = ModelNet40(root, split="train", fps_points=16, shuffle_points=False)
    assert cached.source == "npz" and cache.name == "modelnet40_train_16pts_fps.npz"
    for i in range(len(ds)):
        assert torch.equal(cached[i][0], ds[i][0])
    with pytest.raises(FileExistsError):
        ModelNet40.build_cache(root, split="train", fps_points=16)


def test_modelnet_errors_name_the_file(tmp_path: Path):
    root = tmp_path / "mn"
    write_modelnet(root, dat=True)
    with pytest.raises(DatasetError, match="modelnet40_normal_resampled/"):
        ModelNet40(tmp_path / "nope")
    empty = tmp_path / "empty"
    write_modelnet(empty)
    for f in (empty / "chair").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"has neither modelnet40_test_8192pts_fps\.npz, .*\.dat nor"):
        ModelNet40(empty, split="test")
    (root / "modelnet40_shape_names.txt").rename(root / "x.txt")
    with pytest.raises(DatasetError, match="modelnet40_shape_names.txt.*not found"):
        ModelNet40(root, allow_pickle=True, fps_points=16)
    (root / "x.txt").rename(root / "modelnet40_shape_names.txt")

    # a split list naming a class that does not exist
    (root / "modelnet40_test.txt").write_text("chair_0002\nsofa_0001\n")
    with pytest.raises(DatasetError, match=r"modelnet40_test\.txt.*'sofa'"):
        ModelNet40(root, split="test", allow_pickle=True, fps_points=16)
    (root / "modelnet40_test.txt").write_text("chair_0002\nnight_stand_0002\n")

    dat = root / "modelnet40_test_16pts_fps.dat"
    full = dat.read_bytes()
    dat.write_bytes(full[: len(full) // 2])  # truncated
    with pytest.raises(DatasetError, match=r"modelnet40_test_16pts_fps\.dat.*(truncated|pickle)"):
        ModelNet40(root, split="test", allow_pickle=True, fps_points=16)
    # one shape too many for the split list
    clouds, labels = pickle.loads(full)
    dat.write_bytes(pickle.dumps([clouds + clouds[:1], labels + labels[:1]]))
    with pytest.raises(DatasetError, match="holds 3 shapes but modelnet40_test.txt lists 2"):
        ModelNet40(root, split="test", allow_pickle=True, fps_points=16)
    # a label that disagrees with the list
    dat.write_bytes(pickle.dumps([clouds, [np.array([0], np.int32), labels[1]]]))
    with pytest.raises(DatasetError, match="label 0 of item 0 disagrees"):
        ModelNet40(root, split="test", allow_pickle=True, fps_points=16)
    # a cloud of the wrong shape
    dat.write_bytes(pickle.dumps([[clouds[0][:, :2], clouds[1]], labels]))
    with pytest.raises(DatasetError, match=r"cloud 0 .*\[N, 3\+\]"):
        ModelNet40(root, split="test", allow_pickle=True, fps_points=16)
    # a pickle that calls something other than numpy is refused, not executed
    dat.write_bytes(pickle.dumps([[clouds[0]], [Path("x")]]))
    with pytest.raises(DatasetError, match="not allowed"):
        ModelNet40(root, split="test", allow_pickle=True, fps_points=16)


def test_txt_source_errors(tmp_path: Path):
    root = tmp_path / "mn"
    write_modelnet(root)
    with pytest.raises(DatasetError, match=r"night_stand_0002\.txt: has 40 points, fewer than the 64"):
        ModelNet40(root, split="test", source="txt", fps_points=64)[1]
    ds = ModelNet40(root, split="test", source="txt", fps_points=16)
    (root / "chair" / "chair_0002.txt").write_text("1,2\n3,4\n")
    with pytest.raises(DatasetError, match=r"chair_0002\.txt"):
        ds[0]
    (root / "chair" / "chair_0002.txt").unlink()
    with pytest.raises(DatasetError, match=r"chair_0002\.txt.*not found"):
        ds[0]


def test_numpy1_pickles_load(mn_dat):
    """Official pickles were written by numpy 1.x, whose arrays reference ``numpy.core``."""
    root, stored = mn_dat
    dat = root / "modelnet40_test_16pts_fps.dat"
    clouds, labels = pickle.loads(dat.read_bytes())
    raw = pickle.dumps([clouds, labels], protocol=2)
    raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in raw
    dat.write_bytes(raw)
    ds = ModelNet40(root, split="test", allow_pickle=True, fps_points=16)
    np.testing.assert_allclose(ds[0][0].numpy(), ref_pc_normalize(stored["test"][0][:, :3]), atol=1e-6)


# ----------------------------------------------------------------------------- few-shot


def test_fewshot_items_follow_the_official_pickle(tmp_path: Path):
    data = write_fewshot(tmp_path, way=5, shot=2, fold=3)
    ds = ModelNet40FewShot(tmp_path, 5, 2, 3, "train", allow_pickle=True, shuffle_points=False)
    assert len(ds) == 10
    for i, (pts, label, cls) in enumerate(data["train"]):
        points, lab = ds[i]
        assert lab == label and ds.class_ids[i] == int(cls)
        np.testing.assert_allclose(points.numpy(), ref_pc_normalize(pts[:, :3]), atol=1e-6)
    test = ModelNet40FewShot(tmp_path, 5, 2, 3, "test", allow_pickle=True)
    assert len(test) == 15 and sorted(set(test.labels.tolist())) == [0, 1, 2, 3, 4]


def test_fewshot_without_pickle_uses_the_converted_npz(tmp_path: Path):
    write_fewshot(tmp_path, way=10, shot=2, fold=0)
    with pytest.raises(DatasetError, match=r"0\.pkl.*convert_modelnet_pickle"):
        ModelNet40FewShot(tmp_path, 10, 2, 0, "train")
    outs = convert_modelnet_pickle(tmp_path)  # a folder: every pickle below it
    assert outs == [tmp_path / "10way_2shot" / "0.npz"]
    for split in ("train", "test"):
        opts = dict(shuffle_points=False, use_normals=True)
        a = ModelNet40FewShot(tmp_path, 10, 2, 0, split, allow_pickle=True, **opts)
        b = ModelNet40FewShot(tmp_path, 10, 2, 0, split, **opts)
        assert len(a) == len(b) and np.array_equal(a.class_ids, b.class_ids)
        for i in range(len(a)):
            assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]


def test_fewshot_accepts_the_dataset_md_folder_spelling(tmp_path: Path):
    write_fewshot(tmp_path, way=5, shot=2, fold=1)
    (tmp_path / "5way_2shot").rename(tmp_path / "5way2shot")
    assert len(ModelNet40FewShot(tmp_path, 5, 2, 1, "test", allow_pickle=True)) == 15


def test_fewshot_errors(tmp_path: Path):
    write_fewshot(tmp_path, way=5, shot=2, fold=0)
    with pytest.raises(DatasetError, match=r"10way_20shot.*available: \['5way_2shot'\]"):
        ModelNet40FewShot(tmp_path, 10, 20, 0, "train")
    with pytest.raises(DatasetError, match=r"7\.pkl.*not found"):
        ModelNet40FewShot(tmp_path, 5, 2, 7, "train")
    pkl = tmp_path / "5way_2shot" / "0.pkl"
    bad = {"train": [(np.zeros((4, 6), np.float32), 7, np.int32(1))], "test": []}
    pkl.write_bytes(pickle.dumps(bad))
    with pytest.raises(DatasetError, match="episode labels outside 0..4"):
        ModelNet40FewShot(tmp_path, 5, 2, 0, "train", allow_pickle=True)
    pkl.write_bytes(pickle.dumps(["not", "a", "dict"]))
    with pytest.raises(DatasetError, match="few-shot pickle"):
        ModelNet40FewShot(tmp_path, 5, 2, 0, "train", allow_pickle=True)
    with pytest.raises(DatasetError, match="neither a ModelNet .dat nor a few-shot pickle"):
        convert_modelnet_pickle(pkl)
