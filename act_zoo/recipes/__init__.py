"""Recipes: the official ACT runs, shipped as data (one ``<name>.yaml`` per run in this folder).

A recipe holds the training config of one published run with the official configs' values
(``config:``, any subset of the pipeline's fields, resolved over act_zoo's defaults by
:func:`act_zoo.train.load_config` as ``--config recipe:NAME``), where those values come from,
the registry weights the run produced, the paper's figure, and the counts used for the GPU-hours
estimate. Adding a run means adding one file; :func:`load_recipes` picks it up.

Schema (every key is checked; unknown keys are an error)::

    name: scanobjectnn_hardest          # = the file name
    pipeline: finetune                  # act-zoo train PIPELINE
    stage: III                          # I | II | III
    title: ...
    dataset: scanobjectnn               # `act-zoo data check DATASET ROOT`
    data_check: [--variant, PB_T50_RS]  # extra arguments of that check (optional)
    official: {config, command, batch, hardware}
    produces: [registry names]          # weights made by this run (may be empty)
    results:                            # the published figures (may be empty)
      - {metric, value, std?, voting, source, protocol, note?}
    config: {...}                       # pipeline config fields
    compute: {train_gflop_per_sample, eval_gflop_per_sample, train_samples, eval_samples, runs?, source}
    notes: [...]                        # official quirks and deviations, one line each

GPU-hours are an estimate, never a measurement: FLOPs per sample (counted with
``torch.utils.flop_counter`` on the full-size model's reference path: forward + backward for a
training sample, forward for an evaluated one; ``scripts/recipe_flops.py``) x samples x epochs,
divided by an assumed sustained throughput (:data:`DEFAULT_TFLOPS`). FPS/kNN kernels, data
loading and the final voting passes are not counted.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

__all__ = [
    "DEFAULT_TFLOPS",
    "Compute",
    "Recipe",
    "RecipeError",
    "Result",
    "get_recipe",
    "list_recipes",
    "load_recipes",
    "recipe_config",
]

#: assumed sustained training throughput (TFLOP/s) of one GPU running the official fp32/TF32 code:
#: about 13 % of an A100's 156 TFLOP/s TF32 peak, a typical share for this small-width model
DEFAULT_TFLOPS = 20.0

STAGES = ("I", "II", "III")
METRIC_LABELS = {"overall_accuracy": "OA", "class_miou": "cls mIoU", "instance_miou": "inst mIoU", "miou": "mIoU"}
_TOP = {"name", "pipeline", "stage", "title", "dataset", "data_check", "official", "produces", "results",
        "config", "compute", "notes"}
_REQUIRED = _TOP - {"data_check", "notes"}
_OFFICIAL = {"config", "command", "batch", "hardware"}
_RESULT = {"metric", "value", "std", "voting", "source", "protocol", "note"}
_RESULT_REQUIRED = {"metric", "value", "voting", "source", "protocol"}
_COMPUTE = {"train_gflop_per_sample", "eval_gflop_per_sample", "train_samples", "eval_samples", "runs", "source"}


class RecipeError(ValueError):
    """A recipe file breaks the schema, or a recipe name or pipeline is wrong."""


@dataclass(frozen=True)
class Result:
    """One published figure: ``value`` (± ``std``) of ``metric``, with or without voting."""

    metric: str
    value: float
    voting: bool
    source: str
    protocol: str
    std: float | None = None
    note: str | None = None

    def format(self) -> str:
        """``"OA 93.7 (vote)"``, ``"OA 96.8 ± 2.3"``: the value as the paper prints it."""
        pm = f" ± {self.std}" if self.std is not None else ""
        return f"{METRIC_LABELS.get(self.metric, self.metric)} {self.value}{pm}{' (vote)' if self.voting else ''}"


@dataclass(frozen=True)
class Compute:
    """What the GPU-hours estimate multiplies (see the module docstring)."""

    train_gflop_per_sample: float
    eval_gflop_per_sample: float
    train_samples: int
    eval_samples: int
    runs: int
    source: str


@dataclass(frozen=True)
class Recipe:
    name: str
    pipeline: str
    stage: str
    title: str
    dataset: str
    data_check: tuple[str, ...]
    official: Mapping[str, Any]
    produces: tuple[str, ...]
    results: tuple[Result, ...]
    config: Mapping[str, Any]
    compute: Compute
    notes: tuple[str, ...]

    # -- derived -----------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return int(self.config["run"]["batch_size"])

    @property
    def epochs(self) -> int:
        """Epochs per run: ``0 .. run.max_epoch`` (the official loops' ``range(max_epoch + 1)``)."""
        return int(self.config["run"]["max_epoch"]) + 1

    def train_pflop(self) -> float:
        """Training + per-epoch evaluation FLOPs of the whole recipe (all runs), in PFLOP."""
        c = self.compute
        steps = c.train_samples // self.batch_size  # the last partial batch is dropped (official drop_last)
        train = steps * self.batch_size * c.train_gflop_per_sample * self.epochs
        evals = (self.epochs - 1) * c.eval_samples * c.eval_gflop_per_sample  # every epoch but epoch 0
        return c.runs * (train + evals) / 1e6

    def gpu_hours(self, tflops: float = DEFAULT_TFLOPS) -> float:
        """Estimated GPU-hours on one GPU sustaining ``tflops`` TFLOP/s (see the module docstring)."""
        if not tflops > 0:
            raise ValueError(f"tflops must be positive, got {tflops}")
        return self.train_pflop() * 1e3 / tflops / 3600

    @property
    def data_check_command(self) -> str:
        return " ".join(["act-zoo data check", self.dataset, "ROOT", *self.data_check])

    @property
    def command(self) -> str:
        """The command that runs it (``ROOT`` stands for the dataset folder)."""
        return f"act-zoo train {self.pipeline} --config recipe:{self.name} --set data.root=ROOT"


# ----------------------------------------------------------------------------------------------
# loading and schema
# ----------------------------------------------------------------------------------------------
def _keys(data: Any, allowed: set[str], required: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise RecipeError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = set(data) - allowed
    if unknown:
        raise RecipeError(f"{where}: unknown keys {sorted(unknown)}; valid: {sorted(allowed)}")
    missing = required - set(data)
    if missing:
        raise RecipeError(f"{where}: missing keys {sorted(missing)}")
    return data


def _number(value: Any, where: str, *, integer: bool = False) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value < 0:
        raise RecipeError(f"{where}: expected a non-negative {'integer' if integer else 'number'}, got {value!r}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RecipeError(f"{where}: expected a list of non-empty strings")
    return tuple(value)


def parse_recipe(data: Any, *, where: str) -> Recipe:
    """Validate one recipe mapping (a parsed YAML file) and build the :class:`Recipe`."""
    d = _keys(data, _TOP, _REQUIRED, where)
    for key in ("name", "pipeline", "title", "dataset"):
        if not isinstance(d[key], str) or not d[key]:
            raise RecipeError(f"{where}.{key}: expected a non-empty string")
    if d["stage"] not in STAGES:
        raise RecipeError(f"{where}.stage: expected one of {STAGES}, got {d['stage']!r}")
    official = _keys(d["official"], _OFFICIAL, _OFFICIAL, f"{where}.official")
    _number(official["batch"], f"{where}.official.batch", integer=True)
    results = []
    if not isinstance(d["results"], list):
        raise RecipeError(f"{where}.results: expected a list")
    for i, r in enumerate(d["results"]):
        w = f"{where}.results[{i}]"
        r = _keys(r, _RESULT, _RESULT_REQUIRED, w)
        if not isinstance(r["voting"], bool):
            raise RecipeError(f"{w}.voting: expected true or false")
        std = r.get("std")
        results.append(Result(metric=str(r["metric"]), value=float(_number(r["value"], f"{w}.value")),
                              voting=r["voting"], source=str(r["source"]), protocol=str(r["protocol"]),
                              std=None if std is None else float(_number(std, f"{w}.std")), note=r.get("note")))
    c = _keys(d["compute"], _COMPUTE, _COMPUTE - {"runs"}, f"{where}.compute")
    compute = Compute(
        train_gflop_per_sample=float(_number(c["train_gflop_per_sample"], f"{where}.compute.train_gflop_per_sample")),
        eval_gflop_per_sample=float(_number(c["eval_gflop_per_sample"], f"{where}.compute.eval_gflop_per_sample")),
        train_samples=_number(c["train_samples"], f"{where}.compute.train_samples", integer=True),
        eval_samples=_number(c["eval_samples"], f"{where}.compute.eval_samples", integer=True),
        runs=_number(c.get("runs", 1), f"{where}.compute.runs", integer=True),
        source=str(c["source"]),
    )
    config = d["config"]
    if not isinstance(config, Mapping) or not isinstance(config.get("run"), Mapping):
        raise RecipeError(f"{where}.config: expected a mapping with a run: section")
    for key in ("batch_size", "max_epoch"):
        _number(config["run"].get(key), f"{where}.config.run.{key}", integer=True)
    return Recipe(
        name=d["name"], pipeline=d["pipeline"], stage=d["stage"], title=d["title"], dataset=d["dataset"],
        data_check=_strings(d.get("data_check", []), f"{where}.data_check"), official=dict(official),
        produces=_strings(d["produces"], f"{where}.produces"), results=tuple(results), config=config,
        compute=compute, notes=_strings(d.get("notes", []), f"{where}.notes"),
    )


@cache
def load_recipes() -> dict[str, Recipe]:
    """Every shipped recipe, by name (the ``*.yaml`` files of this package, validated)."""
    out: dict[str, Recipe] = {}
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        where = f"recipes/{entry.name}"
        try:
            data = yaml.safe_load(entry.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise RecipeError(f"{where}: not valid YAML: {exc}") from exc
        recipe = parse_recipe(data, where=where)
        if recipe.name != entry.name[: -len(".yaml")]:
            raise RecipeError(f"{where}: name {recipe.name!r} differs from the file name")
        out[recipe.name] = recipe
    return out


def list_recipes() -> list[str]:
    return list(load_recipes())


def get_recipe(name: str) -> Recipe:
    recipes = load_recipes()
    if name not in recipes:
        raise RecipeError(f"unknown recipe {name!r}; known recipes: {', '.join(recipes)} (see `act-zoo recipes`)")
    return recipes[name]


def recipe_config(name: str, pipeline: str | None = None) -> dict[str, Any]:
    """The config mapping of recipe ``name`` (a deep copy), checked to belong to ``pipeline``."""
    recipe = get_recipe(name)
    if pipeline is not None and pipeline != recipe.pipeline:
        raise RecipeError(
            f"recipe {name!r} is a {recipe.pipeline} run, not {pipeline}: "
            f"use `act-zoo train {recipe.pipeline} --config recipe:{name}`"
        )
    return copy.deepcopy(dict(recipe.config))
