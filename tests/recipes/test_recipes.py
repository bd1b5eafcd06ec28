"""The shipped recipes: schema, official values, links to weights and figures, ``recipe:NAME``,
``act-zoo recipes`` and its GPU-hours estimate."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from helpers import FIXTURES

from act_zoo.cli import main
from act_zoo.cli._main import build_parser
from act_zoo.data.check import DATASETS
from act_zoo.hub.manifest import load_records
from act_zoo.recipes import DEFAULT_TFLOPS, RecipeError, get_recipe, load_recipes, parse_recipe, recipe_config
from act_zoo.train.config import PIPELINES, load_config, to_dict
from act_zoo.train.tasks.stage2 import Stage2Task

HERE = Path(__file__).parent
RAW = json.loads((FIXTURES / "keys" / "official_configs_raw.json").read_text())
EXTRA = json.loads((HERE / "official_extra.json").read_text())
OFFICIAL = {**RAW, **EXTRA["configs"]}
DATASET_OF = {  # official dataset config -> act_zoo data.dataset / data.variant
    "cfgs/dataset_configs/ScanObjectNN_hardest.yaml": ("scanobjectnn", "PB_T50_RS"),
    "cfgs/dataset_configs/ScanObjectNN_objectbg.yaml": ("scanobjectnn", "OBJ_BG"),
    "cfgs/dataset_configs/ScanObjectNN_objectonly.yaml": ("scanobjectnn", "OBJ_ONLY"),
    "cfgs/dataset_configs/ModelNet40.yaml": ("modelnet40", None),
    "cfgs/dataset_configs/ModelNet40FewShot.yaml": ("modelnet40_fewshot", None),
    "cfgs/dataset_configs/ShapeNet-55.yaml": ("shapenet55", None),
}
BUILDER = EXTRA["constants"]["tools/builder.py CosineLRScheduler"]


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def official_training(raw: dict) -> dict:
    """The act_zoo fields that the official yaml's optimizer/scheduler/loop keys set."""
    return {
        "optim.name": raw["optimizer"]["type"].lower(), "optim.lr": raw["optimizer"]["kwargs"]["lr"],
        "optim.weight_decay": raw["optimizer"]["kwargs"]["weight_decay"],
        "scheduler.name": {"CosLR": "cosine"}[raw["scheduler"]["type"]],
        "scheduler.warmup_epochs": raw["scheduler"]["kwargs"]["initial_epochs"],
        "scheduler.lr_min": BUILDER["lr_min"], "scheduler.warmup_lr_init": BUILDER["warmup_lr_init"],
        "run.max_epoch": raw["max_epoch"], "run.batch_size": raw["total_bs"], "run.accumulate": raw["step_per_update"],
        "run.grad_clip": raw.get("grad_norm_clip"),
    }


def expected_values(name: str) -> dict:
    """Every recipe field that an official value fixes, from the official files (dotted keys)."""
    recipe = get_recipe(name)
    raw = OFFICIAL.get(recipe.official["config"])
    if recipe.pipeline in ("finetune", "fewshot"):
        exp = official_training(raw)
        assert raw["scheduler"]["kwargs"]["epochs"] == raw["max_epoch"]  # one field in act_zoo: run.max_epoch
        dataset, variant = DATASET_OF[raw["dataset"]["train"]["_base_"]]
        exp.update({"npoints": raw["npoints"], "data.dataset": dataset, "init": "act_base.pretrain"})
        if variant:
            exp["data.variant"] = variant
        for k, v in raw["model"].items():
            if k == "NAME" or (recipe.pipeline == "fewshot" and k == "cls_dim"):  # few-shot: see the recipe note
                continue
            exp[f"model.{k}"] = v
        if recipe.pipeline == "fewshot":
            exp["folds"] = EXTRA["constants"]["main.py --way/--shot/--fold"]["folds"]
        return exp
    if recipe.pipeline == "stage1":
        exp = official_training(raw)
        runner = EXTRA["constants"]["tools/runner_autoencoder.py"]
        assert raw["grad_norm_clip"] == 10 and runner["clips_gradients"] is False
        exp["run.grad_clip"] = None  # the official runner never applies grad_norm_clip (recipe note)
        m = raw["model"]
        exp.update({
            "npoints": raw["npoints"], "data.dataset": "shapenet55", "model.teacher": m["visual_embed_type"],
            "model.freeze_teacher": m["freeze_visual_embed"], "kl_delay": runner["kl_delay_iterations"],
            "temp_start": raw["temp"]["start"], "temp_target": raw["temp"]["target"], "temp_steps": raw["temp"]["ntime"],
            "kl_start": raw["kldweight"]["start"], "kl_target": raw["kldweight"]["target"],
            "kl_steps": raw["kldweight"]["ntime"], "pretrained_teacher": True,
        })
        for k in ("num_prompt_token", "use_deep_prompt", "num_group", "group_size", "num_tokens", "encoder_dims",
                  "tokens_dims", "decoder_dims"):
            exp[f"model.{k}"] = m[k]
        return exp
    if recipe.pipeline == "stage2":
        exp = official_training(raw)
        t = raw["model"]["transformer_config"]
        exp.update({"npoints": raw["dataset"]["train"]["others"]["npoints"], "data.dataset": "shapenet55",
                    "model.loss": raw["model"]["loss"], "teacher": "act_dvae_vit_base.shapenet55"})
        for k in ("mask_ratio", "mask_type", "proj", "embed_dim", "depth", "drop_path_rate", "cls_dim", "num_heads",
                  "decoder_depth", "decoder_num_heads", "cls_loss", "register_shallow_hook"):
            exp[f"model.{k}"] = t[k]
        return exp
    if recipe.pipeline == "partseg":
        c = EXTRA["constants"]["part_segmentation/main.py"]
        m = EXTRA["constants"]["part_segmentation/models/pt.py get_model"]
        assert c["optimizer_steps_per_iteration"] == 2
        return {
            "optim.name": "adamw", "optim.lr": c["learning_rate"], "optim.weight_decay": c["weight_decay"],
            "scheduler.name": "cosine", "scheduler.warmup_epochs": c["warmup_epoch"], "scheduler.lr_min": c["lr_min"],
            "scheduler.warmup_lr_init": c["warmup_lr_init"], "run.max_epoch": c["epoch"], "run.batch_size": c["batch_size"],
            "run.accumulate": 1, "run.grad_clip": c["grad_norm_clip"], "npoints": c["npoint"], "double_step": True,
            "data.dataset": "shapenetpart", "init": "act_base.pretrain", "model.embed_dim": m["trans_dim"],
            "model.depth": m["depth"], "model.num_heads": m["num_heads"], "model.drop_path_rate": m["drop_path_rate"],
            "model.group_size": m["group_size"], "model.num_group": m["num_group"],
            "model.encoder_dims": m["encoder_dims"], "model.cls_dim": c["num_part"],
            "model.num_classes": c["num_classes"], "model.fp_dims": m["fp_mlp"], "model.head_dims": m["head"],
            "model.label_dim": m["label_dim"], "model.fetch_idx": m["fetch_idx"],
        }
    if recipe.pipeline == "semseg":
        c = EXTRA["constants"]["semantic_segmentation/main.py"]
        m = EXTRA["constants"]["semantic_segmentation/models/pt.py get_model"]
        d = EXTRA["constants"]["semantic_segmentation/dataset.py S3DISDataset"]
        t = EXTRA["constants"]["semantic_segmentation/main_test.py"]
        assert c["optimizer_steps_per_iteration"] == 2 and t["block_points"] == c["npoint"]
        return {
            "optim.name": "adamw", "optim.lr": c["learning_rate"], "optim.weight_decay": c["weight_decay"],
            "scheduler.name": "cosine", "scheduler.warmup_epochs": c["warmup_epoch"], "scheduler.lr_min": c["lr_min"],
            "scheduler.warmup_lr_init": c["warmup_lr_init"], "run.max_epoch": c["epoch"], "run.batch_size": c["batch_size"],
            "run.accumulate": 1, "run.grad_clip": c["grad_norm_clip"], "npoints": c["npoint"], "double_step": True,
            "data.dataset": "s3dis", "init": "act_base.pretrain", "test_area": c["test_area"], "class_weights": True,
            "block_size": d["block_size"], "sample_rate": d["sample_rate"],
            "min_block_points": d["min_block_points_exclusive"], "stride": t["stride"], "votes": t["num_votes"],
            "model.embed_dim": m["trans_dim"], "model.depth": m["depth"], "model.num_heads": m["num_heads"],
            "model.drop_path_rate": m["drop_path_rate"], "model.group_size": m["group_size"],
            "model.num_group": m["num_group"], "model.encoder_dims": m["encoder_dims"], "model.cls_dim": c["num_classes"],
            "model.fp_dims": m["fp_mlp"], "model.head_dims": m["head"], "model.fetch_idx": m["fetch_idx"],
        }
    raise AssertionError(f"no official mapping for pipeline {recipe.pipeline}")


RECIPES = sorted(load_recipes())


# ----------------------------------------------------------------------------------------------
# schema
# ----------------------------------------------------------------------------------------------
def test_the_official_runs_are_all_shipped():
    assert set(RECIPES) >= {
        "stage1_shapenet55", "stage2_shapenet55", "scanobjectnn_hardest", "scanobjectnn_objbg", "scanobjectnn_objonly",
        "modelnet40", "fewshot_5way_10shot", "fewshot_5way_20shot", "fewshot_10way_10shot", "fewshot_10way_20shot",
        "shapenetpart", "s3dis_semseg"}


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_schema_and_every_key_known(name):
    recipe = get_recipe(name)
    assert recipe.pipeline in PIPELINES and recipe.dataset in DATASETS
    cfg = load_config(recipe.pipeline, f"recipe:{name}")  # unknown config keys raise here
    assert type(cfg) is PIPELINES[recipe.pipeline]
    assert to_dict(load_config(recipe.pipeline, None, [f"{k}={json.dumps(v)}" for k, v in flat(dict(recipe.config)).items()
                                                       if not isinstance(v, list) or v])) == to_dict(cfg)
    # the data-check arguments parse as the command line would
    args = build_parser().parse_args(["data", "check", recipe.dataset, "/x", *recipe.data_check])
    assert args.dataset == recipe.dataset
    assert cfg.data.dataset in (recipe.dataset, "modelnet40_fewshot")
    assert recipe.official["batch"] == cfg.run.batch_size
    assert recipe.compute.train_gflop_per_sample > 0 and recipe.compute.eval_gflop_per_sample > 0


def test_schema_errors_name_the_problem():
    good = yaml.safe_load((Path(__file__).parents[2] / "act_zoo" / "recipes" / "modelnet40.yaml").read_text())
    parse_recipe(good, where="x")
    for mutate, match in [
        (lambda d: d.update(colour="red"), r"unknown keys \['colour'\]"),
        (lambda d: d.pop("pipeline"), r"missing keys \['pipeline'\]"),
        (lambda d: d.update(stage="IV"), "stage: expected one of"),
        (lambda d: d["results"][0].update(voting="yes"), "voting: expected true or false"),
        (lambda d: d["results"][0].update(value=-1), "value: expected a non-negative number"),
        (lambda d: d["compute"].update(train_samples=1.5), "train_samples: expected a non-negative integer"),
        (lambda d: d["official"].pop("batch"), r"official: missing keys \['batch'\]"),
        (lambda d: d.update(produces="act_base.modelnet40"), "produces: expected a list"),
    ]:
        bad = copy.deepcopy(good)
        mutate(bad)
        with pytest.raises(RecipeError, match=match):
            parse_recipe(bad, where="x")


# ----------------------------------------------------------------------------------------------
# official values
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_resolves_to_the_official_values(name):
    recipe = get_recipe(name)
    resolved = flat(to_dict(load_config(recipe.pipeline, f"recipe:{name}")))
    expected = expected_values(name)
    assert expected, name
    wrong = {k: (resolved.get(k, "<absent>"), v) for k, v in expected.items() if resolved.get(k, "<absent>") != v}
    assert not wrong, f"{name}: (resolved, official) {wrong}"


def test_official_quirks_hold():
    s1 = load_config("stage1", "recipe:stage1_shapenet55")
    assert s1.model.spec.embed_dim == RAW["cfgs/autoencoder/act_dvae_with_pretrained_transformer.yaml"]["model"][
        "visual_embed_dim"]
    assert s1.model.prompt_dropout == json.loads((FIXTURES / "keys" / "model_configs.json").read_text())[
        "dvae_act_vit_base"]["prompt_dropout"]
    # stage II: ShapeNet-55 train + test, and the teacher weight the recipe names has the official dvae_config
    assert RAW["cfgs/pretrain/pretrain_act_distill.yaml"]["dataset"]["train"]["others"]["whole"] is True
    assert Stage2Task.whole_train is True
    dvae = RAW["cfgs/pretrain/pretrain_act_distill.yaml"]["model"]["dvae_config"]
    teacher = load_records()[get_recipe("stage2_shapenet55").config["teacher"]].config
    assert teacher["teacher"] == dvae["visual_embed_type"]
    for k in ("num_prompt_token", "use_deep_prompt", "num_group", "group_size", "num_tokens", "encoder_dims",
              "tokens_dims", "decoder_dims"):
        assert teacher[k] == dvae[k], k
    # few-shot: the official head keeps cls_dim 40; act_zoo's is way-wide and the recipe says so
    for name in ("fewshot_5way_10shot", "fewshot_10way_20shot"):
        recipe = get_recipe(name)
        assert "cls_dim" not in recipe.config["model"] and any("cls_dim: 40" in n for n in recipe.notes)


# ----------------------------------------------------------------------------------------------
# links: registry weights and the paper's figures
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", RECIPES)
def test_links_resolve(name):
    recipe = get_recipe(name)
    records = load_records()
    for weight in recipe.produces:
        assert weight in records, f"{name} produces unknown weight {weight}"
    for field in ("init", "teacher"):
        source = recipe.config.get(field)
        if source:
            assert source in records, f"{name}.{field}: {source} is not a registry name"
    for result in recipe.results:  # the paper's tables, or the official MODEL_ZOO.md where the figure is from
        assert ("Table" in result.source or "MODEL_ZOO.md" in result.source) and result.protocol
    # a run that produced a released classifier reports the manifest's figure
    for weight in recipe.produces:
        rec = records[weight]
        if "overall_accuracy" in rec.metrics:
            oa = [r for r in recipe.results if r.metric == "overall_accuracy"]
            assert oa and oa[0].value == rec.metrics["overall_accuracy"], (name, weight)
            assert oa[0].voting == ("TEST_VOTE" in (rec.metrics_note or "")), (name, "voting")


def test_fewshot_figures_are_the_model_zoo_table():
    figures = {(5, 10): (96.8, 2.3), (5, 20): (98.0, 1.4), (10, 10): (93.3, 4.0), (10, 20): (95.6, 2.8)}
    for (way, shot), (value, std) in figures.items():
        recipe = get_recipe(f"fewshot_{way}way_{shot}shot")
        assert (recipe.config["way"], recipe.config["shot"]) == (way, shot)
        assert [(r.value, r.std, r.voting) for r in recipe.results] == [(value, std, False)]


# ----------------------------------------------------------------------------------------------
# recipe:NAME and the CLI
# ----------------------------------------------------------------------------------------------
def test_recipe_config_errors_are_clear():
    with pytest.raises(ValueError, match=r"recipe 'modelnet40' is a finetune run, not stage1: use `act-zoo train "
                                         r"finetune --config recipe:modelnet40`"):
        load_config("stage1", "recipe:modelnet40")
    with pytest.raises(ValueError, match=r"unknown recipe 'scanobjectnn'; known recipes: .*scanobjectnn_hardest"):
        load_config("finetune", "recipe:scanobjectnn")
    cfg = recipe_config("modelnet40")
    cfg["model"]["cls_dim"] = 3  # a copy: the recipe itself is untouched
    assert get_recipe("modelnet40").config["model"]["cls_dim"] == 40


def test_cli_print_config_and_wrong_pipeline(capsys):
    assert main(["train", "finetune", "--config", "recipe:scanobjectnn_hardest", "--set", "data.root=/data/scan",
                 "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert (cfg["npoints"], cfg["model"]["num_group"], cfg["model"]["cls_dim"]) == (2048, 128, 15)
    assert cfg["data"] == {**cfg["data"], "dataset": "scanobjectnn", "variant": "PB_T50_RS", "root": "/data/scan"}
    assert main(["train", "stage1", "--config", "recipe:modelnet40"]) == 1
    err = capsys.readouterr().err
    assert "recipe 'modelnet40' is a finetune run, not stage1" in err
    assert main(["train", "finetune", "--config", "recipe:nope"]) == 1
    assert "known recipes: " in capsys.readouterr().err


def test_act_zoo_recipes_lists_every_recipe(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["name", "stage", "pipeline", "dataset"]
    for name in RECIPES:
        recipe = get_recipe(name)
        row = next(line for line in lines if line.startswith(name + " "))
        assert f"{recipe.gpu_hours():.2f}" in row and f"{recipe.official['batch']} / n/s" in row
        for result in recipe.results:
            assert result.format() in row
    assert "OA 88.21" in out and "OA 93.7 (vote)" in out and "OA 96.8 ± 2.3" in out and "inst mIoU 86.14" in out
    assert f"{DEFAULT_TFLOPS:g} TFLOP/s" in out and "lower bound" in out
    assert main(["recipes", "--tflops", str(2 * DEFAULT_TFLOPS), "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["stage1_shapenet55"]["gpu_hours"] == pytest.approx(get_recipe("stage1_shapenet55").gpu_hours() / 2,
                                                                     abs=1e-3)


def test_act_zoo_recipes_name_shows_the_details(capsys):
    assert main(["recipes", "modelnet40"]) == 0
    out = capsys.readouterr().out
    assert "act-zoo train finetune --config recipe:modelnet40 --set data.root=ROOT" in out
    assert "act-zoo data check modelnet40 ROOT" in out
    assert "act_base.modelnet40 (overall_accuracy 93.7)" in out and "TEST_VOTE" in out
    assert "cfgs/finetune_classification/full/finetune_modelnet.yaml" in out


# ----------------------------------------------------------------------------------------------
# the GPU-hours estimate
# ----------------------------------------------------------------------------------------------
def test_gpu_hours_arithmetic():
    r = get_recipe("scanobjectnn_hardest")
    c = r.compute
    train = (11416 // 32) * 32 * c.train_gflop_per_sample * 301  # epochs 0..300, last partial batch dropped
    evals = 300 * 2882 * c.eval_gflop_per_sample  # a test pass after every epoch but epoch 0
    assert r.gpu_hours(20.0) == pytest.approx((train + evals) / 20e3 / 3600)
    fs = get_recipe("fewshot_10way_20shot")
    assert fs.compute.runs == 10 and fs.compute.train_samples == 200 and fs.compute.eval_samples == 200
    with pytest.raises(ValueError, match="tflops must be positive"):
        r.gpu_hours(0)


def test_stored_flops_are_what_the_script_counts():
    """The compute figures of the recipes come from scripts/recipe_flops.py (recounted here for
    ModelNet40, the cheapest full-size model: 4.86 GFLOP per forward, 3x that to train)."""
    path = Path(__file__).parents[2] / "scripts" / "recipe_flops.py"
    spec = importlib.util.spec_from_file_location("recipe_flops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    train, evaluate = module.recipe_flops("modelnet40")
    c = get_recipe("modelnet40").compute
    assert (round(train, 2), round(evaluate, 2)) == (c.train_gflop_per_sample, c.eval_gflop_per_sample)
    for name in ("fewshot_5way_10shot", "fewshot_10way_20shot"):  # the same network
        other = get_recipe(name).compute
        assert (other.train_gflop_per_sample, other.eval_gflop_per_sample) == (c.train_gflop_per_sample,
                                                                               c.eval_gflop_per_sample)
