"""scripts/package_embedded.py on a real (tiny) three-stage run: weights, manifest record, provenance."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from pathlib import Path

import pytest

from act_zoo.hub.manifest import read_manifest_file
from act_zoo.train import load_config, train
from act_zoo.train.provenance import code_commit, command_line

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("package_embedded", ROOT / "scripts" / "package_embedded.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """examples/pretrain_pipeline.py's three stages, shrunk (a tiny random ViT teacher; ~10 s)."""
    out = tmp_path_factory.mktemp("pipeline")
    common = ["data.dataset=synthetic", "npoints=64", "run.batch_size=8", "run.progress=false", "run.tensorboard=false",
              "scheduler.warmup_epochs=0", "run.seed=3", "data.data_seed=5", "data.num_classes=4",
              "data.num_samples=16", "data.test_samples=8", "run.max_epoch=0", "run.threads=1"]
    t0 = time.time()
    train("stage1", load_config("stage1", None, common + [
        f"run.out_dir={out / 'stage1'}", "pretrained_teacher=false",
        "model={group_size: 8, num_group: 8, num_tokens: 16, encoder_dims: 32, tokens_dims: 16, decoder_dims: 16, "
        "teacher: tinyvit_e32_d2_h2, num_prompt_token: 2}"]))
    train("stage2", load_config("stage2", None, common + [
        f"run.out_dir={out / 'stage2'}", f"teacher={out / 'stage1'}",
        "model={embed_dim: 32, depth: 1, num_heads: 2, decoder_num_heads: 2, cls_dim: 16}"]))
    s3 = train("finetune", load_config("finetune", None, common + [
        f"run.out_dir={out / 'stage3'}", f"init={out / 'stage2'}", "vote=0",
        "model={embed_dim: 32, depth: 1, num_heads: 2, num_group: 8, group_size: 8, encoder_dims: 32, cls_dim: 4}"]))
    return out, s3, time.time() - t0


def test_package_a_run_with_its_provenance(tiny_run, tmp_path, capsys):
    run, s3, elapsed = tiny_run
    weights, manifest = tmp_path / "weights", tmp_path / "embedded.json"
    assert _script().main([str(run), "--weights-dir", str(weights), "--manifest", str(manifest)]) == 0
    assert "wrote" in capsys.readouterr().out
    records = {r.name: r for r in read_manifest_file(manifest)}  # validated against the schema on read
    clf, enc = records["act_tiny.synthetic10"], records["act_tiny.pretrain"]
    for rec, src in ((clf, run / "stage3"), (enc, run / "stage2" / "encoder")):
        shipped = weights / Path(rec.sources[0]["path"]).name
        assert shipped.read_bytes() == (src / "model.safetensors").read_bytes()
        assert rec.sha256 == hashlib.sha256(shipped.read_bytes()).hexdigest()
    acc = s3["final (last epoch)"]["acc"]
    assert clf.metrics == {"overall_accuracy": round(acc, 2)}
    assert clf.config["class_names"] == ["sphere", "box", "cylinder", "cone"] and clf.config["cls_dim"] == 4
    assert "8 procedural shapes" in clf.metrics_note and "4 classes" in clf.dataset
    prov = clf.provenance
    assert prov == enc.provenance
    assert prov["command"] == command_line()  # the command that ran the stages (here: pytest's)
    assert (prov["commit"], prov.get("worktree")) == code_commit()
    assert prov["teacher"] == "tinyvit_e32_d2_h2 (randomly initialised, frozen, 2 prompt tokens)"
    assert (prov["seed"], prov["data_seed"]) == (3, 5)
    assert 0 < prov["wall_time_s"] <= elapsed + 1
    assert prov["final_metrics"]["stage3"]["acc"] == pytest.approx(acc, abs=1e-4)
    stage2 = json.loads((run / "stage2" / "summary.json").read_text())
    assert prov["final_metrics"]["stage2"]["val_loss"] == pytest.approx(stage2["final (last epoch)"]["val_loss"], abs=1e-4)
    assert set(prov["final_metrics"]["stage1"]) >= {"cdl1", "cdl2"}


def test_a_run_without_provenance_is_refused(tiny_run, tmp_path):
    run, _, _ = tiny_run
    old = tmp_path / "old_run"
    for stage in ("stage1", "stage2", "stage3"):
        (old / stage).mkdir(parents=True)
        for name in ("summary.json", "train_config.yaml"):
            (old / stage / name).write_bytes((run / stage / name).read_bytes())
    summary = json.loads((old / "stage2" / "summary.json").read_text())
    del summary["provenance"]
    (old / "stage2" / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(SystemExit, match="stage2 recorded no provenance"):
        _script().main([str(old), "--weights-dir", str(tmp_path / "w"), "--manifest", str(tmp_path / "m.json")])
    assert not (tmp_path / "w").exists() and not (tmp_path / "m.json").exists()
    with pytest.raises(SystemExit, match="summary.json is missing"):
        _script().main([str(tmp_path / "nothing"), "--weights-dir", str(tmp_path / "w"),
                        "--manifest", str(tmp_path / "m.json")])
