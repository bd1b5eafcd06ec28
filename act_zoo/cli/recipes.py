"""``act-zoo recipes [NAME]``: the official runs shipped as recipes, and what each costs."""

from __future__ import annotations

import argparse
import json

_STAGE_ORDER = {"I": 0, "II": 1, "III": 2}
_PIPELINE_ORDER = ("stage1", "stage2", "finetune", "fewshot", "partseg")


def _order(recipe) -> tuple:
    pipe = _PIPELINE_ORDER.index(recipe.pipeline) if recipe.pipeline in _PIPELINE_ORDER else len(_PIPELINE_ORDER)
    return _STAGE_ORDER[recipe.stage], pipe, recipe.name


def _estimate_note(tflops: float) -> str:
    return (f"GPU-h: an estimate, not a measurement: FLOPs of the full-size model's official (reference) computation, "
            f"counted with torch's flop formulas (a training sample's forward + backward, an evaluated sample's "
            f"forward), x samples x epochs (and x folds), plus the per-epoch test pass, on one GPU sustaining "
            f"{tflops:g} TFLOP/s (assumed: about 13 % of an A100's TF32 peak; --tflops rescales). FPS/kNN kernels, "
            f"data loading and voting passes are not counted, so treat it as a lower bound.")


def _result(recipe) -> str:
    return "; ".join(r.format() for r in recipe.results) or "-"


def _table(recipes, tflops: float) -> None:
    header = ("name", "stage", "pipeline", "dataset", "paper result", "official batch / GPUs", "GPU-h (est.)")
    rows = [(r.name, r.stage, r.pipeline, r.dataset, _result(r),
             f"{r.official['batch']} / {'n/s' if r.official['hardware'].startswith('not stated') else r.official['hardware']}",
             f"{r.gpu_hours(tflops):.2f}") for r in recipes]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print()
    print("n/s: the official repository does not state the GPUs used (its README was tested with CUDA 11.3, "
          "PyTorch 1.10).")
    print(_estimate_note(tflops))
    print("Run one:  act-zoo train PIPELINE --config recipe:NAME --set data.root=ROOT   "
          "(details: act-zoo recipes NAME)")


def _details(recipe, tflops: float) -> None:
    from ..hub.manifest import load_records

    records = load_records()
    print(f"{recipe.name}: {recipe.title}")
    print(f"  stage {recipe.stage}, pipeline {recipe.pipeline}, dataset {recipe.dataset}")
    print(f"  run:          {recipe.command}")
    print(f"  config:       act-zoo train {recipe.pipeline} --config recipe:{recipe.name} --print-config")
    print(f"  check data:   {recipe.data_check_command}")
    print(f"  official:     {recipe.official['config']}")
    print(f"                {recipe.official['command']}")
    print(f"                batch {recipe.official['batch']}, GPUs: {recipe.official['hardware']}")
    for name in recipe.produces:
        rec = records.get(name)
        metrics = ", ".join(f"{k} {v}" for k, v in rec.metrics.items()) if rec and rec.metrics else "no metric"
        print(f"  produced:     {name} ({metrics})")
    for r in recipe.results:
        print(f"  paper:        {r.format()}  [{r.source}]")
        print(f"                protocol: {r.protocol}" + (f"; {r.note}" if r.note else ""))
    c = recipe.compute
    print(f"  estimate:     {recipe.gpu_hours(tflops):.2f} GPU-h = {recipe.train_pflop():.1f} PFLOP / {tflops:g} TFLOP/s "
          f"({c.runs} run(s) x {recipe.epochs} epochs x {c.train_samples // recipe.batch_size * recipe.batch_size} "
          f"samples x {c.train_gflop_per_sample:g} GFLOP, + {recipe.epochs - 1} test passes x {c.eval_samples} x "
          f"{c.eval_gflop_per_sample:g} GFLOP)")
    for note in recipe.notes:
        print(f"  note:         {note}")


def _cmd_recipes(args: argparse.Namespace) -> int:
    from ..recipes import get_recipe, load_recipes

    if args.tflops <= 0:
        raise ValueError(f"--tflops must be positive, got {args.tflops}")
    if args.name:
        recipe = get_recipe(args.name)
        if args.json:
            print(json.dumps({"name": recipe.name, "pipeline": recipe.pipeline, "stage": recipe.stage,
                              "config": recipe.config, "gpu_hours": recipe.gpu_hours(args.tflops)}, indent=2))
        else:
            _details(recipe, args.tflops)
        return 0
    recipes = sorted(load_recipes().values(), key=_order)
    if args.json:
        print(json.dumps([{"name": r.name, "stage": r.stage, "pipeline": r.pipeline, "dataset": r.dataset,
                           "results": [r2.__dict__ for r2 in r.results], "official_batch": r.official["batch"],
                           "official_hardware": r.official["hardware"], "gpu_hours": round(r.gpu_hours(args.tflops), 3)}
                          for r in recipes], indent=2))
        return 0
    _table(recipes, args.tflops)
    return 0


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from ..recipes import DEFAULT_TFLOPS

    s = sub.add_parser("recipes", parents=[common], help="list the official runs shipped as recipes",
                       description="The official ACT runs (stage I, stage II, fine-tuning, few-shot, part "
                                   "segmentation) shipped as recipes with the official configs' values: the paper's "
                                   "result, the official batch, an estimate of GPU-hours. Run one with "
                                   "act-zoo train PIPELINE --config recipe:NAME --set data.root=ROOT.")
    s.add_argument("name", nargs="?", help="show one recipe in detail")
    s.add_argument("--tflops", type=float, default=DEFAULT_TFLOPS,
                   help=f"sustained TFLOP/s of your GPU for the estimate (default {DEFAULT_TFLOPS:g})")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=_cmd_recipes)
