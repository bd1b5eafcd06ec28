"""``act-zoo data check``: official split sizes, layout problems, unreadable items, label ranges,
on tiny files written in the official formats."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest

from act_zoo.cli import main
from act_zoo.data import convert_modelnet_pickle
from act_zoo.data.check import DATASETS, CheckOptions, check_dataset, sample_indices

from .builders import (
    SCAN_FILES,
    write_fewshot,
    write_modelnet,
    write_scanobjectnn,
    write_shapenet55,
    write_shapenetpart,
)

LOOSE = CheckOptions(expect_counts=False)


def test_official_split_sizes():
    """The figures the check compares against (see act_zoo/data/check.py for their sources)."""
    counts = {name: dict(spec.counts) for name, spec in DATASETS.items()}
    assert counts["modelnet40"] == {"train": 9843, "test": 2468}
    assert counts["scanobjectnn"] == {"PB_T50_RS train": 11416, "PB_T50_RS test": 2882, "OBJ_BG train": 2309,
                                      "OBJ_BG test": 581, "OBJ_ONLY train": 2309, "OBJ_ONLY test": 581}
    assert counts["shapenet55"] == {"train": 41952, "test": 10518}
    # ACT trains part segmentation on train + val: 12137 + 1870 = 14007
    assert counts["shapenetpart"] == {"train": 12137, "val": 1870, "test": 2874}
    assert counts["modelnet40_fewshot"]["10way_20shot train"] == 200 and counts["modelnet40_fewshot"][
        "5way_10shot test"] == 100
    for spec in DATASETS.values():
        assert spec.source and "http" in spec.source and spec.layout


def test_sample_indices_spread_over_the_split():
    assert sample_indices(100, 5) == [0, 25, 50, 74, 99]
    assert sample_indices(3, 8) == [0, 1, 2] and sample_indices(0, 8) == [] and sample_indices(5, 0) == []


def test_official_counts_pass_and_tiny_counts_are_a_problem_unless_accepted(tmp_path):
    """OBJ_BG with exactly the official 2309 / 581 items (tiny clouds): the counts pass; the other
    variants' tiny files are a count problem by default and a warning with expect_counts=False."""
    write_scanobjectnn(tmp_path, items=4, points=16)
    rng = np.random.default_rng(0)
    for split, n in (("train", 2309), ("test", 581)):
        with h5py.File(tmp_path / SCAN_FILES[("OBJ_BG", split)], "w") as f:
            f.create_dataset("data", data=rng.normal(size=(n, 16, 3)).astype(np.float32))
            f.create_dataset("label", data=np.arange(n) % 15)
    strict = check_dataset("scanobjectnn", tmp_path)
    assert not strict.ok
    assert ("ok", "OBJ_BG train (training_objectdataset.h5): 2309 items (official 2309)") in strict.lines
    assert ("ok", "OBJ_BG test labels: 0..14 (15 distinct)") in strict.lines
    assert any("PB_T50_RS train" in p and "4 items, the official release has 11416" in p for p in strict.problems)
    assert any("OBJ_BG train: 16 points per item, official 2048" in p for p in strict.problems)
    only_bg = check_dataset("scanobjectnn", tmp_path, CheckOptions(variants=("OBJ_BG",)))
    assert [p for p in only_bg.problems if "points per item" not in p] == []
    loose = check_dataset("scanobjectnn", tmp_path, LOOSE)
    assert loose.ok and any("11416" in w for w in loose.warnings)


def test_scanobjectnn_missing_file_bad_labels_and_unreadable(tmp_path):
    write_scanobjectnn(tmp_path, items=5, points=16)
    (tmp_path / SCAN_FILES[("OBJ_ONLY", "test")]).unlink()
    with h5py.File(tmp_path / SCAN_FILES[("OBJ_BG", "train")], "r+") as f:
        f["label"][0] = 20
    (tmp_path / SCAN_FILES[("PB_T50_RS", "test")]).write_bytes(b"not an h5 file")
    report = check_dataset("scanobjectnn", tmp_path, LOOSE)
    assert not report.ok
    text = "\n".join(report.problems)
    assert "test_objectdataset.h5: ScanObjectNN OBJ_ONLY test file not found" in text
    assert re.search(r"OBJ_BG train: labels \d+\.\.20 \(\d distinct\); 1 item\(s\) outside 0\.\.14", text)
    assert "is not a readable ScanObjectNN h5 file" in text
    assert check_dataset("scanobjectnn", tmp_path, CheckOptions(expect_counts=False, variants=("OBJ_ONLY",))).problems


def test_shapenet55_missing_and_corrupt_clouds(tmp_path):
    write_shapenet55(tmp_path, train=4, test=2, points=32)
    assert check_dataset("shapenet55", tmp_path, LOOSE).ok
    names = (tmp_path / "ShapeNet-55" / "train.txt").read_text().split()
    (tmp_path / "shapenet_pc" / names[1]).unlink()
    (tmp_path / "shapenet_pc" / names[-1]).write_bytes(b"\x93NUMPY garbage")
    report = check_dataset("shapenet55", tmp_path, LOOSE)
    assert any("1 of 4 listed clouds are missing" in p and names[1] in p for p in report.problems)
    assert any("item 3 cannot be read" in p and names[-1] in p for p in report.problems)
    strict = check_dataset("shapenet55", tmp_path)
    assert any("categories (taxonomy ids): 4 synsets, the official release has 55" in p for p in strict.problems)


def test_modelnet40_pickles_need_converting_or_allow_pickle(tmp_path):
    write_modelnet(tmp_path, dat=True, fps_points=24, txt_points=24)
    for split in ("train", "test"):  # the official file names
        (tmp_path / f"modelnet40_{split}_24pts_fps.dat").rename(tmp_path / f"modelnet40_{split}_8192pts_fps.dat")
    report = check_dataset("modelnet40", tmp_path, LOOSE)
    assert any("is a pickle and allow_pickle=False" in p and "convert_modelnet_pickle" in p for p in report.problems)
    assert check_dataset("modelnet40", tmp_path, CheckOptions(expect_counts=False, allow_pickle=True)).ok
    convert_modelnet_pickle(tmp_path)
    report = check_dataset("modelnet40", tmp_path, LOOSE)
    assert report.ok and ("ok", "train: points come from the npz files") in report.lines
    strict = check_dataset("modelnet40", tmp_path)
    assert any("classes (modelnet40_shape_names.txt): 3 names, the official release has 40" in p for p in strict.problems)
    assert any("train stored clouds: 24 points per item, official 8192" in p for p in strict.problems)


def test_shapenetpart_part_labels_and_missing_files(tmp_path):
    info = write_shapenetpart(tmp_path, cats=("Airplane", "Chair"), per_cat=4, points=20)
    report = check_dataset("shapenetpart", tmp_path, LOOSE)
    assert report.ok and ("ok", "trainval (what ACT trains on): 6 shapes (official 14007)") in report.lines
    # a Chair file with an Airplane part label, and a listed train shape without its file
    (_, model), table = next((k, v) for k, v in info["files"].items() if k[0] == "Chair" and k[1].startswith("m001"))
    table[0, -1] = 2
    np.savetxt(tmp_path / info["synsets"]["Chair"] / f"{model}.txt", table, fmt="%.6f")
    missing = info["splits"]["train"][0].split("/")[2]
    next((tmp_path).rglob(f"{missing}.txt")).unlink()
    report = check_dataset("shapenetpart", tmp_path, LOOSE)
    text = "\n".join(report.problems)
    assert "part labels outside the category's parts" in text and "Chair" in text and "allowed [12, 13, 14, 15]" in text
    assert "train: 1 of the 4 listed shapes have no .txt file" in text


def test_fewshot_folds(tmp_path):
    for fold in range(10):
        write_fewshot(tmp_path, way=5, shot=10, fold=fold, seed=fold)
    opts = CheckOptions(expect_counts=False, way=5, shot=10)
    report = check_dataset("modelnet40_fewshot", tmp_path, opts)
    folder = tmp_path / "5way_10shot"
    assert report.problems == [
        (f"5-way 10-shot: folds [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] are pickles ({folder}/*.pkl); convert them once with "
         f"act_zoo.data.convert_modelnet_pickle('{folder}') or check with --allow-pickle")]
    convert_modelnet_pickle(tmp_path / "5way_10shot")
    report = check_dataset("modelnet40_fewshot", tmp_path, opts)
    assert report.ok, report.problems
    assert any("10 folds, [50] support clouds each, labels 0..4" in text for _, text in report.lines)
    assert any("[15] query clouds per fold, the official splits have 100" in w for w in report.warnings)
    (tmp_path / "5way_10shot" / "7.npz").unlink()
    (tmp_path / "5way_10shot" / "7.pkl").unlink()
    report = check_dataset("modelnet40_fewshot", tmp_path, CheckOptions(expect_counts=False))
    assert "5-way 10-shot: folds [7] missing" in report.problems[0]
    assert any("5-way 20-shot: folder" in p and "not found" in p for p in report.problems)


def test_options_that_do_not_apply_and_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="variants do not apply to modelnet40"):
        check_dataset("modelnet40", tmp_path, CheckOptions(variants=("OBJ_BG",)))
    with pytest.raises(ValueError, match="unknown dataset 'modelnet'"):
        check_dataset("modelnet", tmp_path)
    report = check_dataset("modelnet40", tmp_path / "nowhere")
    assert report.problems == [f"{tmp_path / 'nowhere'}: folder not found"]


def test_cli_exit_codes_source_and_layout(tmp_path, capsys):
    write_scanobjectnn(tmp_path, items=4, points=16)
    assert main(["data", "check", "scanobjectnn", str(tmp_path), "--variant", "PB_T50_RS"]) == 1
    out = capsys.readouterr().out
    assert "get it: the official website (https://hkust-vgd.github.io/scanobjectnn/)" in out
    assert re.search(r"PROBLEM\s+PB_T50_RS train .*4 items, the official release has 11416", out)
    assert "FAILED: " in out and "expected layout:" in out and "main_split_nobg/" in out
    assert main(["data", "check", "scanobjectnn", str(tmp_path), "--variant", "PB_T50_RS", "--no-expect-counts"]) == 0
    out = capsys.readouterr().out
    assert "OK: scanobjectnn" in out and "warning" in out and "expected layout" not in out
    assert main(["data", "check", "modelnet40", str(tmp_path), "--variant", "OBJ_BG"]) == 1
    assert "do not apply to modelnet40" in capsys.readouterr().err
