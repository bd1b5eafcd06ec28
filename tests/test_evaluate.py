"""act_zoo.evaluate and ``act-zoo evaluate``: the model exactly as saved, on folders and official readers."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from shape_files import write_shape_folder

import act_zoo
from act_zoo.cli import main
from act_zoo.models import ACTClassifier, ClassifierConfig


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate") / "shapes"
    return root, write_shape_folder(root, per_class=2, classes=10, num_points=800, seed=7, offset=12.0)


@pytest.fixture(scope="module")
def embedded():
    return act_zoo.from_pretrained("act_tiny.synthetic10")


@pytest.fixture(scope="module")
def folder_result(embedded, shapes):
    """Python evaluation with 10 votes in batches of 7 (the CLI test compares its batches of 32)."""
    import matplotlib

    root, _ = shapes
    before = {k: v.clone() for k, v in embedded.state_dict().items()}
    backend = matplotlib.get_backend()
    embedded.train()
    res = act_zoo.evaluate(embedded, root, votes=10, batch_size=7, confusion_png=root.parent / "cm.png")
    assert embedded.training  # mode restored
    embedded.eval()
    assert all(torch.equal(before[k], v) for k, v in embedded.state_dict().items())  # head never re-initialised
    assert matplotlib.get_backend() == backend
    return res


def test_evaluate_a_folder_exactly_as_saved(embedded, shapes, folder_result):
    root, written = shapes
    res = folder_result
    assert res.num_samples == 20 and res.votes == 10 and res.class_names == list(embedded.class_names)
    assert res.accuracy == res.plain.accuracy >= 80.0, res.report()  # 10 classes: chance is 10 %
    assert res.voted is not None and 0 <= res.voted.accuracy <= 100
    per = res.per_class()
    assert all(n == 2 for n, _, _ in per.values()) and set(per) == set(embedded.class_names)
    assert res.plain.confusion.sum() == 20 and res.confusion_png.read_bytes()[:4] == b"\x89PNG"
    lines = res.report().splitlines()
    assert lines[-1] == f"accuracy: {res.accuracy:.2f}" and any("10 votes" in ln for ln in lines)
    # evaluate's plain predictions are predict's labels on the same files
    preds = act_zoo.predict(embedded, [p for p, _ in sorted(written, key=lambda w: (w[1], str(w[0])))])
    ds_order = act_zoo.data.PointCloudFolder(root, num_points=614).samples
    by_path = {p.source: p.label for p in preds}
    assert [embedded.class_names[i] for i in res.predictions] == [by_path[str(p)] for p, _ in ds_order]


def test_class_names_must_match(embedded, shapes, tmp_path):
    root, _ = shapes
    subset = tmp_path / "subset"
    for name in ("torus", "box"):  # a test set with some of the model's classes: matched by name
        shutil.copytree(root / name, subset / name)
    res = act_zoo.evaluate(embedded, subset, votes=0)
    assert res.num_samples == 4 and res.accuracy >= 75 and res.voted is None
    assert sorted(set(res.labels.tolist())) == sorted(embedded.class_names.index(c) for c in ("torus", "box"))
    shutil.copytree(root / "box", subset / "spaceship")
    with pytest.raises(ValueError, match=r"the data's classes \['spaceship'\] are not among the model's"):
        act_zoo.evaluate(embedded, subset, votes=0)
    shutil.rmtree(subset / "spaceship")
    nameless = ACTClassifier(dataclasses.replace(embedded.config, class_names=()))
    nameless.load_state_dict(embedded.state_dict())
    with pytest.raises(ValueError, match="the model stores no class names.*class_names="):
        act_zoo.evaluate(nameless, subset, votes=0)
    named = act_zoo.evaluate(nameless, subset, votes=0, class_names=list(embedded.class_names))
    assert named.plain.confusion.tolist() == res.plain.confusion.tolist()


def test_labels_beyond_the_head_and_argument_errors(embedded, tmp_path):
    class Labelled(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.randn(700, 3), 12 if i == 3 else i

    with pytest.raises(ValueError, match="item 3: label 12 is beyond the model's 10-way head"):
        act_zoo.evaluate(embedded, Labelled(), votes=0)
    for kwargs, error, match in [
        ({}, ValueError, "exactly one of data="),
        ({"data": tmp_path, "dataset": "modelnet40"}, ValueError, "exactly one of data="),
        ({"dataset": "imagenet", "root": tmp_path}, ValueError, "unknown dataset 'imagenet'"),
        ({"dataset": "modelnet40"}, ValueError, "needs root="),
        ({"data": tmp_path / "nope"}, FileNotFoundError, "no such folder or list file"),
        ({"data": tmp_path, "votes": -1}, ValueError, "votes"),
    ]:
        with pytest.raises(error, match=match):
            act_zoo.evaluate(embedded, **kwargs)
    with pytest.raises(TypeError, match="classifier"):
        act_zoo.evaluate(act_zoo.from_pretrained("act_tiny.pretrain"), tmp_path)


def test_official_reader_through_the_cli(tmp_path, capsys, monkeypatch):
    from data.builders import write_scanobjectnn

    pytest.importorskip("h5py")
    write_scanobjectnn(tmp_path / "scan", items=5, points=32)
    torch.manual_seed(0)
    cfg = ClassifierConfig(embed_dim=32, depth=1, num_heads=2, group_size=8, num_group=8, encoder_dims=32,
                           npoints=24, cls_dim=15, drop_path_rate=0.0)
    ACTClassifier(cfg).save_pretrained(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    res = act_zoo.evaluate(str(tmp_path / "run"), dataset="scanobjectnn", root=tmp_path / "scan", votes=2)
    assert res.num_samples == 5 and res.source.startswith("scanobjectnn test")
    assert main(["evaluate", "run", "--dataset", "scanobjectnn", "--root", "scan", "--votes", "2"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"accuracy: {res.accuracy:.2f}" and (tmp_path / "confusion_matrix.png").is_file()
    assert main(["evaluate", "run", "--root", "scan"]) == 1
    assert "give --data DIR" in capsys.readouterr().err


def test_cli_evaluate_as_the_readme_writes_it(shapes, folder_result, capsys, monkeypatch):
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    root, _ = shapes
    monkeypatch.chdir(root.parent)
    command = "act-zoo evaluate act_tiny.synthetic10 --data shapes/ --votes 10"
    assert command in (Path(__file__).resolve().parents[1] / "README.md").read_text()  # as a user types it
    assert main(command.split()[1:]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("accuracy: ") and float(out[-1].split(": ")[1]) >= 80.0, out
    # voting is seeded per cloud: batches of 32 here, of 7 in Python, the same votes
    voted = f"overall accuracy (10 votes): {folder_result.voted.accuracy:.2f} %  " \
            f"(mean per-class {folder_result.voted.mean_class_accuracy:.2f} %)"
    assert voted in out, out
    assert out[-1] == f"accuracy: {folder_result.accuracy:.2f}"
    assert any(line.split()[:2] == ["torus", "2"] for line in out)  # per-class rows
    assert "confusion matrix: confusion_matrix.png" in out
    assert (root.parent / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert np.isfinite(float(out[-1].split(": ")[1]))
