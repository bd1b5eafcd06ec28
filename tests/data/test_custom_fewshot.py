"""PointCloudFolder, PointCloudList (with the on-disk cache) and make_few_shot_splits."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from act_zoo.data import DatasetError, PointCloudFolder, PointCloudList, SyntheticShapes, make_few_shot_splits
from act_zoo.data import prepare as prepare_module
from act_zoo.data.prepare import prepare_cloud


trimesh = pytest.importorskip("trimesh")  # the io extra: the whole module skips without it


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "tree"
    (root / "chair" / "deep").mkdir(parents=True)
    (root / "airplane").mkdir()
    (root / "empty").mkdir()
    (root / ".hidden").mkdir()
    np.save(root / "chair" / "b.npy", rng.normal(size=(40, 3)) * 2 + 3)
    np.savetxt(root / "chair" / "deep" / "a.txt", rng.normal(size=(40, 3)))
    trimesh.creation.icosphere().export(root / "airplane" / "s.off")
    (root / "airplane" / "notes.md").write_text("ignored")
    np.save(root / ".hidden" / "x.npy", np.zeros((5, 3)))
    return root


def test_folder_classes_samples_and_items(tree: Path):
    ds = PointCloudFolder(tree, num_points=16)
    assert ds.classes == ["airplane", "chair", "empty"]  # sorted, hidden folders skipped
    assert [(p.relative_to(tree).as_posix(), label) for p, label in ds.samples] == [
        ("airplane/s.off", 0), ("chair/b.npy", 1), ("chair/deep/a.txt", 1),
    ]  # fmt: skip
    assert ds.labels.tolist() == [0, 1, 1]
    for i in range(len(ds)):
        points, label = ds[i]
        assert points.shape == (16, 3) and points.dtype == torch.float32 and label == ds.labels[i]
        assert float(points.norm(dim=1).max()) <= 1 + 1e-6  # normalised (the whole file, then resampled)
        # the one preparation path: the same cloud extract_features / predict would use
        np.testing.assert_array_equal(points.numpy(), prepare_cloud(ds.samples[i][0], num_points=16).points)
    raw = PointCloudFolder(tree, num_points=16, normalize=False)[1][0].numpy()
    whole = np.load(tree / "chair" / "b.npy")
    np.testing.assert_allclose(ds[1][0].numpy(), (raw - whole.mean(0)) / np.linalg.norm(whole - whole.mean(0), axis=1).max(),
                               atol=1e-5)
    only_npy = PointCloudFolder(tree, num_points=8, extensions=["npy"])
    assert len(only_npy) == 1
    assert pickle.loads(pickle.dumps(ds))[2][0].shape == (16, 3)


def test_folder_errors(tmp_path: Path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        PointCloudFolder(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    with pytest.raises(DatasetError, match="holds no files"):
        PointCloudFolder(tmp_path)
    (tmp_path / "a" / "x.npy").write_bytes(b"junk")
    ds = PointCloudFolder(tmp_path)
    with pytest.raises(DatasetError, match=r"x\.npy"):
        ds[0]


def test_list_csv_and_json(tmp_path: Path):
    rng = np.random.default_rng(1)
    for name in ("a", "b", "c"):
        np.save(tmp_path / f"{name}.npy", rng.normal(size=(30, 3)))
    (tmp_path / "l.csv").write_text("path,label\na.npy,sofa\nb.npy,chair\n\nc.npy,sofa\n")
    ds = PointCloudList(tmp_path / "l.csv", num_points=8)
    assert ds.classes == ["chair", "sofa"] and ds.labels.tolist() == [1, 0, 1]
    assert ds[2][0].shape == (8, 3)
    ints = tmp_path / "sub" / "l.json"
    ints.parent.mkdir()
    ints.write_text(json.dumps([["../a.npy", 2], {"path": str(tmp_path / "b.npy"), "label": 0}]))
    ds = PointCloudList(ints, num_points=8)
    assert ds.labels.tolist() == [2, 0] and ds.classes == ["0", "1", "2"]
    named = tmp_path / "n.json"
    samples = [["a.npy", "chair"], ["b.npy", "sofa"]]
    named.write_text(json.dumps({"classes": ["sofa", "chair"], "samples": samples}))
    assert PointCloudList(named).labels.tolist() == [1, 0]
    # a relative root
    (tmp_path / "r.csv").write_text("a.npy,1\n")
    assert PointCloudList(tmp_path / "r.csv", root=tmp_path, classes=["x", "y"]).classes == ["x", "y"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("m.csv", "a.npy,0\nmissing.npy,1\n", r"missing\.npy: listed in .*m\.csv but not found"),
        ("mix.csv", "a.npy,0\na.npy,chair\n", "all integers or all class names"),
        ("short.csv", "a.npy\n", "row 1 is not 'path,label'"),
        ("bad.json", "{nope", "is not valid JSON"),
        ("shape.json", json.dumps({"samples": [["a.npy"]]}), "sample 0 is not"),
        ("neg.csv", "a.npy,-1\n", ">= 0"),
        ("none.csv", "path,label\n", "lists no samples"),
        ("l.yaml", "a.npy: 0", "must be .csv or .json"),
        ("unk.json", json.dumps({"classes": ["x"], "samples": [["a.npy", "y"]]}), r"\['y'\] are not in"),
    ],
)
def test_list_errors(tmp_path: Path, name: str, content: str, message: str):
    np.save(tmp_path / "a.npy", np.zeros((4, 3)))
    (tmp_path / name).write_text(content)
    with pytest.raises(DatasetError, match=message):
        PointCloudList(tmp_path / name)


def test_cache_is_used_and_invalidated(tmp_path: Path, tree: Path, monkeypatch):
    cache = tmp_path / "cache"
    ds = PointCloudFolder(tree, num_points=16, cache_dir=cache)
    first = [ds[i][0] for i in range(len(ds))]
    assert sorted(f.name.startswith(".") for f in cache.iterdir()) == [False] * 3  # no temporary files left

    def boom(*args, **kwargs):
        raise AssertionError("a cache hit must not read or prepare the file")

    monkeypatch.setattr(prepare_module.CloudPreparer, "__call__", boom)
    again = PointCloudFolder(tree, num_points=16, cache_dir=cache)
    assert all(torch.equal(a, again[i][0]) for i, a in enumerate(first))
    monkeypatch.undo()
    # other options are another cache entry; a changed file is re-read
    PointCloudFolder(tree, num_points=8, cache_dir=cache)[0]
    assert len(list(cache.iterdir())) == 4
    np.save(tree / "chair" / "b.npy", np.random.default_rng(5).normal(size=(60, 3)))
    changed = PointCloudFolder(tree, num_points=16, cache_dir=cache)[1][0]
    assert not torch.equal(changed, first[1])
    # a corrupt cache file is ignored and rewritten
    for f in cache.glob("*.npy"):
        f.write_bytes(b"junk")
    assert torch.equal(PointCloudFolder(tree, num_points=16, cache_dir=cache)[0][0], first[0])


# ----------------------------------------------------------------------------- few-shot splits


def test_few_shot_splits_are_seeded_balanced_and_disjoint():
    labels = np.repeat(np.arange(12), 30)
    a = make_few_shot_splits(labels, way=5, shot=10, query=20, seed=4)
    b = make_few_shot_splits(labels, way=5, shot=10, query=20, seed=4)
    c = make_few_shot_splits(labels, way=5, shot=10, query=20, seed=5)
    assert a == b and a != c
    assert len(a.classes) == 5 and len(set(a.classes)) == 5
    assert len(a.support) == 50 and len(a.query_indices) == 100
    assert not set(a.support) & set(a.query_indices)
    for idx, lab in [*zip(a.support, a.support_labels), *zip(a.query_indices, a.query_labels)]:
        assert labels[idx] == a.classes[lab]  # episode label i <-> i-th chosen class
    assert np.bincount(a.support_labels).tolist() == [10] * 5
    assert np.bincount(a.query_labels).tolist() == [20] * 5
    assert list(a.support_labels) != sorted(a.support_labels)  # shuffled, like the official lists


def test_few_shot_from_datasets_with_separate_query_pool():
    train = SyntheticShapes(60, num_points=32, classes=6)
    test = SyntheticShapes(36, num_points=32, classes=6, seed=1)
    split = make_few_shot_splits(train, way=3, shot=4, query=5, seed=0, query_labels=test)
    support, query = split.datasets(train, test)
    assert len(support) == 12 and len(query) == 15
    points, label = query[0]
    assert points.shape == (32, 3) and label == split.query_labels[0]
    assert test.labels[split.query_indices[0]] == split.classes[label]
    with pytest.raises(ValueError, match="only 0 classes"):
        make_few_shot_splits(train, way=3, shot=4, query=20, seed=0, query_labels=test)
    with pytest.raises(ValueError, match="cannot draw a 7-way split"):
        make_few_shot_splits(train, way=7, shot=2, seed=0)
    with pytest.raises(ValueError, match="integer labels"):
        make_few_shot_splits([0.5, 1.5], way=1, shot=1, seed=0)
