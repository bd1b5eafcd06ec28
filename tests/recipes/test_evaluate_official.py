"""``act-zoo evaluate`` of a converted official-format checkpoint on official-format files: the
path a user takes with a released ScanObjectNN checkpoint (``act-zoo convert``, then ``evaluate``)."""

from __future__ import annotations

import re

import h5py
import torch
import yaml
from data.builders import SCAN_FILES, write_scanobjectnn

import act_zoo
from act_zoo.cli import main
from act_zoo.models import ACTClassifier, ClassifierConfig
from act_zoo.recipes import get_recipe

TINY = {"embed_dim": 32, "depth": 1, "num_heads": 2, "group_size": 8, "num_group": 8, "encoder_dims": 32,
        "drop_path_rate": 0.1}


def _model() -> ACTClassifier:
    """A classifier with the recipe's 15-class head on a tiny body, with weights that spread its
    predictions (a random head predicts one class for every cloud)."""
    torch.manual_seed(2)
    model = ACTClassifier(ClassifierConfig(**TINY, cls_dim=get_recipe("scanobjectnn_hardest").config["model"]["cls_dim"],
                                           npoints=64)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        for name, p in model.named_parameters():
            if name.startswith("cls_head_finetune") and p.dim() == 2:
                p.normal_(0, 1.0)
    return model


def test_evaluate_a_converted_official_checkpoint(tmp_path, capsys):
    root = tmp_path / "ScanObjectNN"
    write_scanobjectnn(root, items=12, points=96)
    model = _model()
    # label the test clouds with the model's own predictions: the model scores 100 %, and a converter
    # that lost or re-initialised any weight would not
    direct = act_zoo.evaluate(model, dataset="scanobjectnn", root=root, variant="PB_T50_RS", votes=0)
    assert len(set(direct.predictions.tolist())) > 1
    with h5py.File(root / SCAN_FILES[("PB_T50_RS", "test")], "r+") as f:
        f["label"][...] = direct.predictions
    # the official tools/builder.py save_checkpoint layout of a single-process (DataParallel) run
    ckpt = tmp_path / "ckpt-best.pth"
    torch.save({"base_model": {f"module.{k}": v for k, v in model.state_dict().items()}, "optimizer": {},
                "epoch": 300, "metrics": {"acc": 0.0, "acc_avg": 0.0}, "best_metrics": {"acc": 0.0, "acc_avg": 0.0}},
               ckpt)
    official_yaml = tmp_path / "finetune_scan_hardest.yaml"  # the official file's model section, tiny body
    official_yaml.write_text(yaml.safe_dump({"model": {"NAME": "PointTransformer", **TINY, "cls_dim": 15,
                                                       "transfer_type": "full"}, "npoints": 64}))
    converted = tmp_path / "converted"
    assert main(["convert", str(ckpt), "--config", str(official_yaml), "--out", str(converted)]) == 0
    capsys.readouterr()

    assert main(["evaluate", str(converted), "--dataset", "scanobjectnn", "--root", str(root), "--variant",
                 "PB_T50_RS", "--confusion", "", "--batch-size", "5"]) == 0
    out = capsys.readouterr().out
    assert "evaluated 12 clouds" in out and re.search(r"overall accuracy \(10 votes\): [\d.]+ %", out)
    assert out.strip().splitlines()[-1] == "accuracy: 100.00"
    # the control: the same body with another head does not score 100 %
    other = _model()
    torch.manual_seed(5)
    other.reset_head()
    assert act_zoo.evaluate(other, dataset="scanobjectnn", root=root, variant="PB_T50_RS", votes=0).accuracy < 100
