"""act_zoo.predict and ``act-zoo predict`` on generated files with the embedded classifier."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from shape_files import write_shape_folder

import act_zoo
from act_zoo.cli import main
from act_zoo.models import ACTClassifier, ACTEncoder, ClassifierConfig, PointTransformerConfig

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict") / "shapes"
    return root, write_shape_folder(root, per_class=2, classes=10, offset=-40.0)


@pytest.fixture(scope="module")
def embedded():
    return act_zoo.from_pretrained("act_tiny.synthetic10")


def test_predict_names_the_classes_of_files(embedded, shapes):
    root, written = shapes
    preds = act_zoo.predict(embedded, root, top_k=3)
    by_path = {p.source: p for p in preds}
    assert sorted(by_path) == sorted(str(p) for p, _ in written)  # a directory: all its files
    right = sum(by_path[str(p)].label == name for p, name in written)
    assert right >= 0.8 * len(written), right  # 10 classes: chance is 10 %
    for p in preds:
        assert len(p.classes) == 3 and len(set(p.classes)) == 3 and p.label == p.classes[0]
        assert p.probabilities == tuple(sorted(p.probabilities, reverse=True)) and 0 < sum(p.probabilities) <= 1 + 1e-6
        assert all(c in embedded.class_names for c in p.classes)
    # the same answer as the raw network on the prepared clouds
    from act_zoo.data import prepare_cloud

    x = torch.from_numpy(prepare_cloud(written[0][0], num_points=512).points)[None]
    with torch.no_grad():
        probs = embedded(x).softmax(-1)[0]
    assert by_path[str(written[0][0])].probability == pytest.approx(float(probs.max()), abs=1e-5)


def test_predict_inputs_batches_and_errors(embedded, shapes, tmp_path):
    _, written = shapes
    paths = [p for p, _ in written[:7]]
    one_by_one = act_zoo.predict(embedded, paths, batch_size=1)
    batched = act_zoo.predict(embedded, list(reversed(paths)), batch_size=32)
    for a, b in zip(one_by_one, reversed(batched)):
        assert a.source == b.source and a.classes == b.classes and a.probability == pytest.approx(b.probability, abs=1e-5)
    cloud = np.load(written[0][0]) if written[0][0].suffix == ".npy" else None
    assert cloud is not None
    mem = act_zoo.predict(embedded, [cloud, torch.from_numpy(cloud)])
    assert [p.source for p in mem] == ["cloud 0", "cloud 1"] and mem[0].classes == mem[1].classes
    bad = tmp_path / "bad.xyz"
    bad.write_text("1 2\n")
    with pytest.raises(ValueError, match=r"bad\.xyz"):
        act_zoo.predict(embedded, [paths[0], bad])
    kept = act_zoo.predict(embedded, [paths[0], bad], skip_bad=True)
    assert len(kept) == 1 and kept.skipped[0][0] == str(bad)
    with pytest.raises(ValueError, match="top_k"):
        act_zoo.predict(embedded, paths, top_k=11)
    with pytest.raises(TypeError, match="extract_features"):
        act_zoo.predict(ACTEncoder(PointTransformerConfig(embed_dim=32, depth=1, num_heads=2, npoints=64,
                                                          num_group=8, group_size=8, encoder_dims=32)), paths)


def test_class_names_from_the_model_or_placeholders():
    cfg = ClassifierConfig(embed_dim=32, depth=1, num_heads=2, group_size=8, num_group=8, encoder_dims=32,
                           npoints=64, cls_dim=3, drop_path_rate=0.0)
    nameless = ACTClassifier(cfg).eval()
    cloud = torch.randn(100, 3)
    assert set(act_zoo.predict(nameless, cloud, top_k=3)[0].classes) == {"class_0", "class_1", "class_2"}
    given = act_zoo.predict(nameless, cloud, top_k=3, class_names=["a", "b", "c"])[0]
    assert set(given.classes) == {"a", "b", "c"}
    with pytest.raises(ValueError, match="2 class names were given for the model's 3-way head"):
        act_zoo.predict(nameless, cloud, class_names=["a", "b"])
    named = ACTClassifier(dataclasses.replace(cfg, class_names=("x", "y", "z")))
    named.load_state_dict(nameless.state_dict())
    named.train()
    p = act_zoo.predict(named, cloud, top_k=3)[0]
    assert p.classes == tuple({"class_0": "x", "class_1": "y", "class_2": "z"}[c]
                              for c in act_zoo.predict(nameless, cloud, top_k=3)[0].classes)
    assert named.training  # the caller's mode comes back


def test_cli_predict_as_the_readme_writes_it(shapes, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    root, written = shapes
    monkeypatch.chdir(root.parent)
    command = "act-zoo predict act_tiny.synthetic10 shapes/ --top-k 3 --out preds.csv"
    assert command in README.read_text()  # the README's line, as a user types it
    assert main(command.split()[1:]) == 0
    cap = capsys.readouterr()
    lines = cap.out.strip().splitlines()
    assert len(lines) == len(written)  # one line per file
    truth = {str(p.relative_to(root.parent)): name for p, name in written}
    right = 0
    for line in lines:
        cols = line.split("\t")
        assert len(cols) == 7 and cols[0] in truth  # path, then 3 x (class, probability)
        assert all(0.0 <= float(x) <= 1.0 for x in cols[2::2])
        right += cols[1] == truth[cols[0]]
    assert right >= 0.8 * len(lines)
    with open(root.parent / "preds.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["path", "class", "probability", "class_2", "probability_2", "class_3", "probability_3"]
    assert ["\t".join(r) for r in rows[1:]] == lines
    assert "wrote 20 predictions to preds.csv" in cap.err
    # a glob, a bad --out, a missing input
    assert main(["predict", "act_tiny.synthetic10", "shapes/box/*"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["predict", "act_tiny.synthetic10", "shapes/nope.ply"]) == 1
    assert "nope.ply: no such file or directory" in capsys.readouterr().err
    assert main(["predict", "act_tiny.synthetic10", "shapes/", "--out", "shapes"]) == 1
    assert "is a directory" in capsys.readouterr().err
