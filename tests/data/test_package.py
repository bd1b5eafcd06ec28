"""Package-level contracts: imports, optional dependencies, error type, picklable datasets."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import act_zoo.data as data
from act_zoo.data import DatasetError

from .builders import write_fewshot, write_modelnet, write_scanobjectnn, write_shapenet55, write_shapenetpart


def test_import_pulls_in_no_optional_or_upper_layer():
    code = (
        "import sys, act_zoo.data\n"
        "bad = [m for m in ('h5py', 'trimesh', 'plyfile', 'act_zoo.models', 'act_zoo.train', 'act_zoo.hub')"
        " if m in sys.modules]\n"
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_public_api():
    for name in ("ShapeNet55", "ModelNet40", "ModelNet40FewShot", "ScanObjectNN", "ShapeNetPart",
                 "PointCloudFolder", "PointCloudList", "SyntheticShapes", "make_few_shot_splits",
                 "convert_modelnet_pickle", "read_points", "DatasetError", "Compose", "NormalizeUnitSphere",
                 "ScaleAndTranslate", "RotateY", "Jitter", "RandomPointDropout", "FPSResample",
                 "RandomResample"):  # fmt: skip
        assert name in data.__all__ and hasattr(data, name)
    assert issubclass(DatasetError, ValueError)


def test_dataset_error_names_the_path_and_pickles():
    err = DatasetError("/x/y.ply", "is empty")
    assert str(err) == "/x/y.ply: is empty" and err.path == "/x/y.ply" and err.problem == "is empty"
    clone = pickle.loads(pickle.dumps(err))
    assert isinstance(clone, DatasetError) and str(clone) == str(err)


@pytest.mark.parametrize(("module", "call"), [
    ("plyfile", lambda p: data.read_points(p / "a.ply")),
    ("trimesh", lambda p: data.read_points(p / "a.off")),
    ("h5py", lambda p: data.ScanObjectNN(p)),
])  # fmt: skip
def test_missing_optional_dependency_says_what_to_install(tmp_path: Path, monkeypatch, module, call):
    (tmp_path / "a.ply").write_bytes(b"ply\n")
    (tmp_path / "a.off").write_bytes(b"OFF\n")
    write_scanobjectnn(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # makes "import module" fail
    with pytest.raises(ImportError, match=rf"'{module}'.*pip install \"act-zoo\[io\]\""):
        call(tmp_path)


def test_every_reader_pickles(tmp_path: Path):
    write_modelnet(tmp_path / "mn", dat=True)
    write_fewshot(tmp_path / "fs")
    write_scanobjectnn(tmp_path / "scan")
    write_shapenet55(tmp_path / "sn")
    write_shapenetpart(tmp_path / "part")
    np.save(tmp_path / "a.npy", np.random.default_rng(0).normal(size=(20, 3)))
    (tmp_path / "l.csv").write_text("a.npy,0\n")
    readers = [
        data.ModelNet40(tmp_path / "mn", split="test", allow_pickle=True, fps_points=16, seed=0),
        data.ModelNet40FewShot(tmp_path / "fs", 5, 2, 0, "train", allow_pickle=True, seed=0),
        data.ScanObjectNN(tmp_path / "scan", seed=0),
        data.ShapeNet55(tmp_path / "sn", npoints=8, seed=0),
        data.ShapeNetPart(tmp_path / "part", npoints=8, seed=0),
        data.PointCloudList(tmp_path / "l.csv", num_points=8),
        data.SyntheticShapes(4, num_points=8, transform=data.Compose([data.RotateY(generator=0)])),
    ]
    for ds in readers:
        clone = pickle.loads(pickle.dumps(ds))
        a, b = ds[0], clone[0]
        pa = a["points"] if isinstance(a, dict) else a[0] if isinstance(a, tuple) else a
        pb = b["points"] if isinstance(b, dict) else b[0] if isinstance(b, tuple) else b
        if isinstance(ds, data.SyntheticShapes):  # the transform's stream advanced in the original
            assert pa.shape == pb.shape
        else:
            assert torch.equal(pa, pb), type(ds).__name__
