"""ScanObjectNN, ShapeNet55 and ShapeNetPart from tiny files in the official layouts."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from act_zoo.data import DatasetError, ScanObjectNN, ShapeNet55, ShapeNetPart
from act_zoo.ops import furthest_point_sample

from .builders import SCAN_FILES, write_scanobjectnn, write_shapenet55, write_shapenetpart
from .test_modelnet import ref_pc_normalize

h5py = pytest.importorskip("h5py")  # the io extra: the whole module skips without it

# ----------------------------------------------------------------------------- ScanObjectNN


@pytest.fixture
def scan_root(tmp_path: Path):
    return tmp_path, write_scanobjectnn(tmp_path)


@pytest.mark.parametrize(("variant", "split"), sorted(SCAN_FILES))
def test_scanobjectnn_reads_each_variant_raw(scan_root, variant, split):
    root, files = scan_root
    data, label = files[(variant, split)]
    ds = ScanObjectNN(root, variant=variant, split=split, shuffle_points=False)
    assert ds.path == root / SCAN_FILES[(variant, split)]
    assert len(ds) == len(label) and ds.labels.tolist() == label.tolist()
    for i in range(len(ds)):
        points, lab = ds[i]
        assert points.dtype == torch.float32 and points.shape == (32, 3)
        assert torch.equal(points, torch.from_numpy(data[i]))  # no normalisation, file order
        assert lab == int(label[i])
    assert len(ds.classes) == 15 and ds.classes[0] == "bag" and ds.classes[-1] == "toilet"


def test_scanobjectnn_h5_files_subfolder_and_label_column(tmp_path: Path):
    files = write_scanobjectnn(tmp_path / "h5_files")
    path = tmp_path / "h5_files" / SCAN_FILES[("OBJ_ONLY", "test")]
    data, label = files[("OBJ_ONLY", "test")]
    with h5py.File(path, "w") as f:  # labels stored as [M, 1] and float64 data
        f["data"] = data.astype(np.float64)
        f["label"] = label[:, None]
    ds = ScanObjectNN(tmp_path, variant="OBJ_ONLY", split="test")
    assert ds.labels.tolist() == label.tolist()
    assert ds[0][0].dtype == torch.float32 and torch.allclose(ds[0][0], torch.from_numpy(data[0]))


def test_scanobjectnn_train_shuffle_and_npoints(scan_root):
    root, files = scan_root
    data, _ = files[("PB_T50_RS", "train")]
    a = ScanObjectNN(root, split="train", seed=1)
    b = ScanObjectNN(root, split="train", seed=1)
    assert a.shuffle_points and torch.equal(a[0][0], b[0][0])
    assert not torch.equal(a[0][0], torch.from_numpy(data[0]))
    shuffled, original = a[0][0], torch.from_numpy(data[0])
    assert torch.equal(shuffled[torch.argsort(shuffled[:, 0])], original[torch.argsort(original[:, 0])])
    sub = ScanObjectNN(root, split="test", npoints=10)
    test_data, _ = files[("PB_T50_RS", "test")]
    idx = furthest_point_sample(torch.from_numpy(test_data[:1]), 10)[0]
    assert torch.equal(sub[0][0], torch.from_numpy(test_data[0][idx.numpy()]))
    with pytest.raises(ValueError, match="npoints=64 exceeds"):
        ScanObjectNN(root, split="test", npoints=64)


def test_scanobjectnn_lazy_h5_pickles_without_handle(scan_root):
    root, files = scan_root
    ds = ScanObjectNN(root, variant="OBJ_BG", split="test", in_memory=False)
    first = ds[1][0]
    assert ds._h5 is not None  # opened on first access
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._h5 is None
    assert torch.equal(clone[1][0], first)
    assert torch.equal(first, torch.from_numpy(files[("OBJ_BG", "test")][0][1]))
    ds.close()
    clone.close()


def test_scanobjectnn_dataloader_workers(scan_root):
    root, files = scan_root
    ds = ScanObjectNN(root, variant="OBJ_BG", split="test", in_memory=False)
    ds[0]  # a handle open in the parent must not leak into the workers
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="fork")
    points = torch.cat([p for p, _ in loader])
    assert torch.equal(points, torch.from_numpy(files[("OBJ_BG", "test")][0]))
    ds.close()


def test_scanobjectnn_errors_name_the_file(tmp_path: Path):
    write_scanobjectnn(tmp_path)
    path = tmp_path / SCAN_FILES[("OBJ_BG", "train")]
    path.unlink()
    with pytest.raises(DatasetError, match=r"training_objectdataset\.h5: ScanObjectNN OBJ_BG train file not"):
        ScanObjectNN(tmp_path, variant="OBJ_BG")
    with pytest.raises(ValueError, match="variant"):
        ScanObjectNN(tmp_path, variant="OBJ")
    cases = {
        "no label": {"data": np.zeros((3, 8, 3), np.float32)},
        "wrong shape": {"data": np.zeros((3, 8, 2), np.float32), "label": np.zeros(3, np.int64)},
        "label count": {"data": np.zeros((3, 8, 3), np.float32), "label": np.zeros(4, np.int64)},
        "text data": {"data": np.array([[[b"a", b"b", b"c"]]]), "label": np.zeros(1, np.int64)},
    }
    messages = {"no label": "no 'label'", "wrong shape": r"\[M, N, 3\]", "label count": "must have shape",
                "text data": "numeric"}  # fmt: skip
    for name, content in cases.items():
        with h5py.File(path, "w") as f:
            for k, v in content.items():
                f[k] = v
        with pytest.raises(DatasetError, match=rf"training_objectdataset\.h5.*{messages[name]}"):
            ScanObjectNN(tmp_path, variant="OBJ_BG")
    good = tmp_path / SCAN_FILES[("OBJ_BG", "test")]
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"training_objectdataset\.h5: is not a readable ScanObjectNN h5"):
        ScanObjectNN(tmp_path, variant="OBJ_BG")
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(DatasetError, match=r"training_objectdataset\.h5"):
        ScanObjectNN(tmp_path, variant="OBJ_BG")
    with h5py.File(path, "w") as f:  # a huge declared shape with no data behind it
        f.create_dataset("data", shape=(10**9, 2048, 3), dtype=np.float32, chunks=(1, 2048, 3))
        f.create_dataset("label", shape=(10**9,), dtype=np.int8, chunks=(1024,))
    with pytest.raises(DatasetError, match=r"training_objectdataset\.h5: 'data' declares \d+ bytes"):
        ScanObjectNN(tmp_path, variant="OBJ_BG")


# ----------------------------------------------------------------------------- ShapeNet55


def test_shapenet55_order_ids_and_sampling(tmp_path: Path):
    stored = write_shapenet55(tmp_path, points=64)
    ds = ShapeNet55(tmp_path, split="train", npoints=16, seed=7)
    assert len(ds) == 4
    assert ds.taxonomy_ids[0] == "02691156" and ds.model_ids[1] == "trainmodel001abc"
    for i in range(len(ds)):
        raw = stored[ds.files[i]]
        perm = np.random.default_rng([7, 0, i]).permutation(64)[:16]  # documented seeding contract
        expected = ref_pc_normalize(raw[perm])  # official order: sample first, normalise the sample
        points = ds[i]
        assert isinstance(points, torch.Tensor) and points.shape == (16, 3)
        np.testing.assert_allclose(points.numpy(), expected, atol=1e-6)
        assert abs(float(points.norm(dim=1).max()) - 1) < 1e-6
    first = ds[0]
    ds.set_epoch(1)
    assert not torch.equal(ds[0], first)
    unseeded = ShapeNet55(tmp_path, split="train", npoints=16)
    assert not torch.equal(unseeded[0], unseeded[0])  # fresh draws, as the official global RNG


def test_shapenet55_whole_and_dict_items(tmp_path: Path):
    write_shapenet55(tmp_path)
    ds = ShapeNet55(tmp_path, split="train", whole=True, npoints=8, return_dict=True, seed=0)
    assert len(ds) == 6 and ds.files[0].split("-")[1].startswith("test")  # test lines come first
    item = ds[5]
    assert set(item) == {"points", "taxonomy_id", "model_id"}
    assert item["model_id"] == "trainmodel003abc" and item["points"].shape == (8, 3)


def test_shapenet55_errors(tmp_path: Path):
    stored = write_shapenet55(tmp_path, points=12)
    with pytest.raises(DatasetError, match=r"ShapeNet-55/test\.txt: list file not found"):
        (tmp_path / "ShapeNet-55" / "test.txt").rename(tmp_path / "t.txt")
        ShapeNet55(tmp_path, split="test")
    ds = ShapeNet55(tmp_path, split="train", npoints=16)
    with pytest.raises(DatasetError, match="has 12 points, fewer than npoints=16"):
        ds[0]
    name = next(iter(stored))
    (tmp_path / "shapenet_pc" / name).write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(DatasetError, match=name.replace(".", r"\.")):
        ShapeNet55(tmp_path, split="train", npoints=4)[0]
    np.save(tmp_path / "shapenet_pc" / name, np.zeros((10, 2), np.float32))
    with pytest.raises(DatasetError, match=r"\[N, 3\]"):
        ShapeNet55(tmp_path, split="train", npoints=4)[0]
    (tmp_path / "shapenet_pc" / name).unlink()
    with pytest.raises(DatasetError, match="file not found"):
        ShapeNet55(tmp_path, split="train", npoints=4)[0]
    (tmp_path / "ShapeNet-55" / "train.txt").write_text("no_dash_here.npy\n")
    with pytest.raises(DatasetError, match="taxonomy"):
        ShapeNet55(tmp_path, split="train")


# ----------------------------------------------------------------------------- ShapeNetPart


def test_shapenetpart_order_labels_and_normalisation(tmp_path: Path):
    info = write_shapenetpart(tmp_path, cats=("Chair", "Airplane"), per_cat=4)
    ds = ShapeNetPart(tmp_path, split="trainval", npoints=50, seed=2)
    assert ds.categories[0] == "Airplane" and ds.categories[15] == "Table" and len(ds.categories) == 16
    # categories in file order (Airplane before Chair), files sorted by name, test files excluded
    cats = [c for c, _ in ds.datapath]
    assert cats == ["Airplane"] * 3 + ["Chair"] * 3
    names = [p.stem for _, p in ds.datapath]
    assert names[:3] == sorted(names[:3])
    assert ds.labels.tolist() == [0, 0, 0, 4, 4, 4]
    for i in range(len(ds)):
        item = ds[i]
        cat, path = ds.datapath[i]
        table = info["files"][(cat, path.stem)]
        whole = ref_pc_normalize(table[:, :3])  # normalised over the whole file, before resampling
        choice = np.random.default_rng([2, 0, i]).choice(len(table), 50, replace=True)
        assert item["cls"] == ds.categories.index(cat)
        assert item["points"].shape == (50, 3) and item["seg"].dtype == torch.int64
        np.testing.assert_allclose(item["points"].numpy(), whole[choice], atol=1e-6)
        assert item["seg"].tolist() == table[choice, -1].astype(int).tolist()
        assert set(item["seg"].tolist()) <= set(ds.seg_classes[cat])
    assert len(ShapeNetPart(tmp_path, split="test")) == 2
    assert len(ShapeNetPart(tmp_path, split="val")) == 2
    assert len(ShapeNetPart(tmp_path, split="train")) == 4


def test_shapenetpart_normals_and_class_choice(tmp_path: Path):
    info = write_shapenetpart(tmp_path, cats=("Airplane", "Chair"))
    ds = ShapeNetPart(tmp_path, split="test", use_normals=True, class_choice=["Chair"], seed=0, npoints=8)
    assert len(ds) == 1 and ds[0]["cls"] == 4  # the full numbering is kept
    item = ds[0]
    cat, path = ds.datapath[0]
    table = info["files"][(cat, path.stem)]
    choice = np.random.default_rng([0, 0, 0]).choice(len(table), 8, replace=True)
    assert item["points"].shape == (8, 6)
    np.testing.assert_allclose(item["points"][:, 3:].numpy(), table[choice, 3:6], atol=0)
    with pytest.raises(ValueError, match="Sofa"):
        ShapeNetPart(tmp_path, class_choice=["Sofa"])


def test_shapenetpart_errors(tmp_path: Path):
    info = write_shapenetpart(tmp_path, cats=("Airplane",))
    ds = ShapeNetPart(tmp_path, split="test")
    path = ds.datapath[0][1]
    np.savetxt(path, np.zeros((5, 6)))
    with pytest.raises(DatasetError, match=rf"{path.name}: expected 7 columns"):
        ds[0]
    np.savetxt(path, np.concatenate([np.zeros((5, 6)), np.full((5, 1), 50.0)], axis=1))
    with pytest.raises(DatasetError, match="part labels must be integers in 0..49"):
        ds[0]
    split = tmp_path / "train_test_split" / "shuffled_test_file_list.json"
    split.write_text("{not json")
    with pytest.raises(DatasetError, match=r"shuffled_test_file_list\.json: is not valid JSON"):
        ShapeNetPart(tmp_path, split="test")
    split.write_text(json.dumps(["no-slashes"]))
    with pytest.raises(DatasetError, match="shape_data"):
        ShapeNetPart(tmp_path, split="test")
    split.write_text(json.dumps([]))
    import shutil

    shutil.rmtree(tmp_path / info["synsets"]["Airplane"])
    with pytest.raises(DatasetError, match="category folder of Airplane not found"):
        ShapeNetPart(tmp_path, split="test")
