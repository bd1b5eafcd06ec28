"""Every shipped recipe, end to end, for two optimizer steps, on tiny files in the official formats.

Each run goes through the command a user types (``act-zoo train PIPELINE --config recipe:NAME
--set data.root=...``), in-process. What the tests override, and why:

* the model is shrunk (width 32, 3 blocks, 8 groups of 8 points, ``npoints`` 64): the official
  sizes cannot run eleven recipes in a minute on two cores;
* the stage-I teacher is a tiny random ViT (``{embed_dim: 16, depth: 2, num_heads: 2}``,
  ``pretrained_teacher=false``): the recipe's ViT-B/16-384 weights cannot be downloaded here;
* ``teacher`` / ``init`` point at the stage-I / stage-II runs made here (the recipes name the
  official registry weights, which cannot be downloaded either): so the recipes chain.

Everything else is the recipe's: dataset, variant, split files, batch size, folds (all ten for one
few-shot setting), optimizer, schedule, clipping, double step, augmentation, voting. Each test
asserts that through the run's saved ``train_config.yaml``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from act_zoo.cli import main
from act_zoo.recipes import load_recipes
from act_zoo.train.config import load_config, to_dict

from .tiny_data import write_all

pytestmark = pytest.mark.slow

RUN = ["--set", "run.max_steps=2", "--set", "run.progress=false",
       "--set", "run.tensorboard=false", "--set", "run.threads=1", "--set", "npoints=64"]
TINY_ENCODER = "{embed_dim: 32, depth: 3, num_heads: 2, num_group: 8, group_size: 8, encoder_dims: 32}"
TINY = {
    "stage1": ["--set", "pretrained_teacher=false", "--set",
               ("model={num_group: 8, group_size: 8, num_tokens: 32, encoder_dims: 32, tokens_dims: 16, "
                "decoder_dims: 16, num_prompt_token: 4, teacher: {embed_dim: 16, depth: 2, num_heads: 2}}")],
    "stage2": ["--set", "model={embed_dim: 32, depth: 3, num_heads: 2, decoder_num_heads: 2, cls_dim: 16}"],
    "finetune": ["--set", f"model={TINY_ENCODER}"],
    "fewshot": ["--set", f"model={TINY_ENCODER}"],
    "partseg": ["--set", ("model={embed_dim: 32, depth: 3, num_heads: 2, num_group: 8, group_size: 8, "
                          "encoder_dims: 32, fetch_idx: [0, 1, 2], fp_dims: [64, 32], head_dims: [32, 16], "
                          "label_dim: 8}")],
    "semseg": ["--set", ("model={embed_dim: 32, depth: 3, num_heads: 2, num_group: 8, group_size: 8, "
                         "encoder_dims: 32, fetch_idx: [0, 1, 2], fp_dims: [64, 32], head_dims: [32, 16]}")],
}
# config fields the tests change; everything else must stay the recipe's
CHANGED = {"npoints", "model", "run", "init", "teacher", "pretrained_teacher", "data"}


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    return write_all(tmp_path_factory.mktemp("official_format"))


def run_recipe(name: str, root: Path, out: Path, *extra: str, capsys=None) -> dict:
    recipe = load_recipes()[name]
    argv = ["-q", "train", recipe.pipeline, "--config", f"recipe:{name}", "--set", f"data.root={root}",
            "--out", str(out), *RUN, *TINY[recipe.pipeline], *extra]
    assert main(argv) == 0
    if capsys is not None:
        capsys.readouterr()
    return argv


def assert_recipe_settings_kept(name: str, run_dir: Path, root: Path) -> None:
    """The run's saved config equals the recipe's resolved config except where the test overrides."""
    recipe = load_recipes()[name]
    ran = yaml.safe_load((run_dir / "train_config.yaml").read_text())
    official = to_dict(load_config(recipe.pipeline, f"recipe:{name}"))
    for key, value in official.items():
        if key not in CHANGED:
            assert ran[key] == value, (name, key)
    assert ran["data"] == {**official["data"], "root": str(root)}, name
    kept = {k: v for k, v in official["run"].items() if k not in {"max_steps", "progress", "tensorboard", "threads",
                                                                  "out_dir"}}
    assert {k: ran["run"][k] for k in kept} == kept, name


@pytest.fixture(scope="module")
def stage1_run(roots, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stage1")
    run_recipe("stage1_shapenet55", roots["shapenet55"], out)
    return out


@pytest.fixture(scope="module")
def stage2_run(roots, stage1_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stage2")
    run_recipe("stage2_shapenet55", roots["shapenet55"], out, "--set", f"teacher={stage1_run}")
    return out


def test_every_recipe_is_run_here():
    ran = {"stage1_shapenet55", "stage2_shapenet55", *FINETUNE, *FEWSHOT, "shapenetpart", "s3dis_semseg"}
    assert ran == set(load_recipes())


def test_stage1_recipe(stage1_run, roots):
    summary = json.loads((stage1_run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["task"] == "stage1"
    assert_recipe_settings_kept("stage1_shapenet55", stage1_run, roots["shapenet55"])
    ran = yaml.safe_load((stage1_run / "train_config.yaml").read_text())
    assert ran["run"]["grad_clip"] is None and ran["kl_delay"] == 10_000  # the official runner's behaviour


def test_stage2_recipe_trains_on_train_plus_test(stage2_run, roots):
    summary = json.loads((stage2_run / "summary.json").read_text())
    assert summary["steps"] == 2 and (stage2_run / "encoder" / "model.safetensors").is_file()
    assert_recipe_settings_kept("stage2_shapenet55", stage2_run, roots["shapenet55"])
    ran = yaml.safe_load((stage2_run / "train_config.yaml").read_text())
    assert ran["model"]["mask_ratio"] == 0.8 and ran["teacher_mode"] == "train"


FINETUNE = ("scanobjectnn_hardest", "scanobjectnn_objbg", "scanobjectnn_objonly", "modelnet40")


@pytest.mark.parametrize("name", FINETUNE)
def test_finetune_recipe_from_the_stage2_run(name, roots, stage2_run, tmp_path, capsys):
    recipe = load_recipes()[name]
    run_recipe(name, roots[recipe.dataset], tmp_path, "--set", f"init={stage2_run}", capsys=capsys)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["init"].startswith(str(stage2_run))
    final = summary["final (last epoch)"]
    assert {"acc", "acc_avg", "acc_vote10"} <= set(final)  # with and without voting
    assert "best (selected on the test split, official protocol)" in summary
    assert_recipe_settings_kept(name, tmp_path, roots[recipe.dataset])


FEWSHOT = ("fewshot_5way_10shot", "fewshot_5way_20shot", "fewshot_10way_10shot", "fewshot_10way_20shot")


@pytest.mark.parametrize("name", FEWSHOT)
def test_fewshot_recipe(name, roots, tmp_path, capsys):
    """The first setting runs all 10 official folds; the other three run fold 0 only (10 folds each
    would add a minute; what differs between them, way and shot, is exercised by fold 0)."""
    recipe = load_recipes()[name]
    assert recipe.config["folds"] == list(range(10))
    folds = list(range(10)) if name == FEWSHOT[0] else [0]
    run_recipe(name, roots["modelnet40_fewshot"], tmp_path, "--set", "init=null", "--set", f"folds={folds}",
               capsys=capsys)
    report = json.loads((tmp_path / "fewshot_summary.json").read_text())
    assert report["folds"] == folds and (report["way"], report["shot"]) == (recipe.config["way"], recipe.config["shot"])
    assert len(report["final (last epoch)"]["per_fold"]) == len(folds)
    assert "best (selected on the query split, official protocol)" in report
    ran = yaml.safe_load((tmp_path / f"fold_{folds[-1]}" / "train_config.yaml").read_text())
    assert ran["model"]["cls_dim"] == recipe.config["way"]  # act_zoo's way-logit head (see the recipe notes)
    official = to_dict(load_config("fewshot", f"recipe:{name}"))
    for key in ("optim", "scheduler", "label_smoothing", "point_pool_ratio", "rotate", "vote"):
        assert ran[key] == official[key], key
    assert {k: ran["run"][k] for k in ("max_epoch", "batch_size", "grad_clip")} == {
        k: official["run"][k] for k in ("max_epoch", "batch_size", "grad_clip")}


def test_partseg_recipe_from_the_stage2_run(roots, stage2_run, tmp_path, capsys):
    run_recipe("shapenetpart", roots["shapenetpart"], tmp_path, "--set", f"init={stage2_run}", capsys=capsys)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 2 and {"instance_miou", "class_miou"} <= set(summary["final (last epoch)"])
    assert_recipe_settings_kept("shapenetpart", tmp_path, roots["shapenetpart"])
    ran = yaml.safe_load((tmp_path / "train_config.yaml").read_text())
    assert ran["double_step"] is True and ran["scheduler"]["lr_min"] == 1e-6


def test_semseg_recipe_from_the_stage2_run(roots, stage2_run, tmp_path, capsys):
    run_recipe("s3dis_semseg", roots["s3dis"], tmp_path, "--set", f"init={stage2_run}", capsys=capsys)
    summary = json.loads((tmp_path / "summary.json").read_text())
    final = summary["final (last epoch, whole rooms)"]
    assert summary["steps"] == 2 and {"miou", "macc", "oa", "iou/chair"} <= set(final)
    assert_recipe_settings_kept("s3dis_semseg", tmp_path, roots["s3dis"])
    ran = yaml.safe_load((tmp_path / "train_config.yaml").read_text())
    assert ran["double_step"] is True and ran["votes"] == 3 and ran["min_block_points"] == 1024
