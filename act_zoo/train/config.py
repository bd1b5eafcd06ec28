"""Training configs: frozen dataclasses whose defaults are the official ACT configs.

A YAML file gives any subset of fields (nested sections as mappings); ``--set a.b=value``
overrides single values (parsed as YAML scalars). Unknown keys are an error naming them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..models import ClassifierConfig, DistillConfig, DVAEConfig, PartSegConfig, SemSegConfig
from ..models.common import config_from_dict, config_to_dict


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with the official two parameter groups (no decay for 1-D params, ``*.bias`` and
    names containing ``token``)."""

    name: str = "adamw"  # adamw | adam | sgd
    lr: float = 5e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class SchedulerConfig:
    """timm ``CosineLRScheduler`` as the official builder configures it, stepped per epoch."""

    name: str = "cosine"  # cosine | constant
    warmup_epochs: int = 10
    warmup_lr_init: float = 1e-6
    lr_min: float = 1e-7


@dataclass(frozen=True)
class DataConfig:
    """Where training data comes from.

    ``dataset``: ``synthetic`` (procedural shapes, offline), ``shapenet55``, ``modelnet40``,
    ``scanobjectnn`` (``variant`` PB_T50_RS | OBJ_BG | OBJ_ONLY), ``modelnet40_fewshot``,
    ``shapenetpart``, ``folder`` (class-per-folder tree at ``root``) or ``list`` (``root`` is a
    CSV/JSON list for training, ``test_root`` for testing).

    Your own files (``folder`` / ``list``; ``test_root`` may be either kind): every file is read
    once before training (unreadable ones are listed; ``skip_bad`` trains without them and the
    summary reports them). ``val_split``: the share of each class held out from ``root`` as a
    seeded (``data_seed``), stratified, file-level *validation* split; None means 0.2 without
    ``test_root`` and none with it. Evaluating on the training files is never done: with
    ``val_split: 0`` a ``test_root`` is required, and a test file that is also a training file
    is an error."""

    dataset: str = "synthetic"
    root: str | None = None
    test_root: str | None = None
    variant: str | None = None
    allow_pickle: bool = False
    num_workers: int = 0
    # synthetic shapes
    num_samples: int = 512
    test_samples: int = 128
    num_classes: int = 10
    noise: float = 0.01
    partial: bool = False
    clutter: bool = False
    points_per_cloud: int | None = None  # points generated per synthetic cloud (default: 1.2 x npoints)
    data_seed: int = 0
    # your own files (folder / list)
    val_split: float | None = None
    skip_bad: bool = False


@dataclass(frozen=True)
class RunConfig:
    """The loop. ``batch_size`` is the global batch (all processes and accumulation steps
    together); ``max_epoch`` has the official meaning: epochs ``0 .. max_epoch`` run."""

    out_dir: str = "runs/act"
    max_epoch: int = 300
    batch_size: int = 32
    accumulate: int = 1
    grad_clip: float | None = 10.0
    amp: str = "no"  # no | bf16 | fp16
    seed: int = 0
    device: str = "auto"
    val_every: int = 1
    ckpt_every_steps: int = 0  # 0: a checkpoint at the end of every epoch only
    keep_checkpoints: int = 2
    log_every: int = 10
    max_steps: int | None = None  # stop early after this many optimizer steps (quick runs, tests)
    threads: int | None = None
    deterministic: bool = False
    progress: bool = True
    tensorboard: bool = True
    fast_path: bool = True


@dataclass(frozen=True)
class Stage1Config:
    """Stage I (``act_dvae_with_pretrained_transformer.yaml``): Gumbel temperature 1 -> 0.0625
    and KL weight 0 -> 0.1 over 100k iterations (the KL ramp starts after 10k), AdamW 5e-4 /
    wd 5e-4, batch 64, no gradient clipping (the official autoencoder runner never clips)."""

    model: DVAEConfig = DVAEConfig()
    pretrained_teacher: bool = True
    data: DataConfig = DataConfig(dataset="shapenet55")
    npoints: int = 1024
    optim: OptimConfig = OptimConfig(lr=5e-4, weight_decay=5e-4)
    scheduler: SchedulerConfig = SchedulerConfig()
    run: RunConfig = RunConfig(batch_size=64, grad_clip=None, out_dir="runs/stage1")
    temp_start: float = 1.0
    temp_target: float = 0.0625
    temp_steps: int = 100_000
    kl_start: float = 0.0
    kl_target: float = 0.1
    kl_steps: int = 100_000
    kl_delay: int = 10_000


@dataclass(frozen=True)
class Stage2Config:
    """Stage II (``pretrain_act_distill.yaml``): mask 0.8, decoder depth 2, cosine loss,
    AdamW 1e-3 / wd 0.05, batch 128, scale-and-translate augmentation, no clipping.

    ``teacher``: the stage-I result (a run directory, a registry name such as
    ``act_dvae_vit_base.shapenet55``, or an official checkpoint); its config replaces
    ``model.dvae``. ``teacher_mode``: ``train`` (official: BN batch statistics, prompt dropout,
    fresh Gumbel noise) or ``eval``."""

    model: DistillConfig = DistillConfig()
    teacher: str | None = None
    teacher_mode: str = "train"
    data: DataConfig = DataConfig(dataset="shapenet55")
    npoints: int = 1024
    optim: OptimConfig = OptimConfig(lr=1e-3, weight_decay=0.05)
    scheduler: SchedulerConfig = SchedulerConfig()
    run: RunConfig = RunConfig(batch_size=128, grad_clip=None, out_dir="runs/stage2")


@dataclass(frozen=True)
class FinetuneConfig:
    """Stage III (``finetune_*.yaml``): AdamW 5e-4 / wd 0.05, cosine 300 epochs with 10 warm-up,
    batch 32, clip 10, plain cross-entropy; training batches are FPS-sampled to 1.2 x npoints,
    a random npoints subset is kept, then a random rotation about y.

    ``init``: pretrained weights (stage-II run dir, registry name, official checkpoint) or
    None for training from scratch. ``vote``: passes of the voting evaluation (10, official);
    ``test_vote_repeats``: the official TEST_VOTE (best of N repeated votes), off by default and
    always reported as such. ``keep_head``: keep the head of an ``init`` classifier (None: only
    when its ``class_names`` are the data's; the official start is a fresh head).

    Epochs: ``run.max_epoch`` keeps the official meaning, epochs ``0 .. max_epoch`` run, so
    ``max_epoch: 300`` is 301 epochs. ``act-zoo train finetune --data DIR --epochs E`` (Python
    ``finetune(epochs=E)``) runs exactly ``E`` epochs: it sets ``run.max_epoch = E - 1``."""

    model: ClassifierConfig = ClassifierConfig()
    init: str | None = None
    data: DataConfig = DataConfig(dataset="modelnet40")
    npoints: int = 1024
    optim: OptimConfig = OptimConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    run: RunConfig = RunConfig(out_dir="runs/finetune")
    label_smoothing: float = 0.0
    point_pool_ratio: float = 1.2
    rotate: bool = True
    vote: int = 10
    test_vote_repeats: int = 0
    keep_head: bool | None = None


@dataclass(frozen=True)
class FewShotConfig(FinetuneConfig):
    """Few-shot (``fewshot_modelnet.yaml``: 150 epochs): one fine-tuning run per fold, mean ± std."""

    way: int = 5
    shot: int = 10
    folds: tuple[int, ...] = tuple(range(10))
    query: int = 20
    run: RunConfig = RunConfig(max_epoch=150, out_dir="runs/fewshot")
    data: DataConfig = DataConfig(dataset="modelnet40_fewshot")


@dataclass(frozen=True)
class PartSegTrainConfig:
    """Part segmentation (``part_segmentation/main.py``): AdamW 2e-4 / wd 0.05, cosine 300 epochs,
    10 warm-up from 1e-6, lr_min 1e-6, batch 16, clip 10; random scale U(0.8, 1.25) and shift
    U(-0.1, 0.1) per shape. ``double_step``: the official loop calls ``optimizer.step()`` twice
    per iteration (once before and once after clipping); kept by default, off on request."""

    model: PartSegConfig = PartSegConfig()
    init: str | None = None
    data: DataConfig = DataConfig(dataset="shapenetpart")
    npoints: int = 2048
    optim: OptimConfig = OptimConfig(lr=2e-4, weight_decay=0.05)
    scheduler: SchedulerConfig = SchedulerConfig(lr_min=1e-6)
    run: RunConfig = RunConfig(batch_size=16, out_dir="runs/partseg")
    double_step: bool = True


@dataclass(frozen=True)
class SemSegTrainConfig:
    """S3DIS semantic segmentation (``semantic_segmentation/main.py`` and ``main_test.py``).

    Optimisation as part segmentation: AdamW 2e-4 / wd 0.05, cosine over 60 epochs with 10
    warm-up epochs from 1e-6, lr_min 1e-6, batch 32, clip 10, ``double_step`` (two optimizer
    steps per iteration, as the official loop; off on request). The official loop runs epochs
    0..59; this loop runs 0..``run.max_epoch`` (one more epoch, at the schedule's floor).

    Data (:class:`~act_zoo.data.S3DIS`, ``data.root`` = the ``collect_indoor3d_data`` folder):
    ``npoints`` (2048) points of a ``block_size`` (1 m) window around a random room point,
    redrawn until it holds more than ``min_block_points`` (1024); ``sample_rate`` scales the
    blocks per epoch; per-block scale U(0.8, 1.25) and shift U(-0.1, 0.1); class-weighted NLL
    with the training rooms' weights. ``test_area`` (5) is held out.

    Evaluation: ``eval_protocol`` ``blocks`` (default, ``main.py`` every epoch: random blocks of
    the test area, fixed by the run seed) or ``rooms`` (``main_test.py``: whole rooms, blocks at
    ``stride``, ``votes`` voting passes); the final evaluation always uses whole rooms."""

    model: SemSegConfig = SemSegConfig()
    init: str | None = None
    data: DataConfig = DataConfig(dataset="s3dis")
    npoints: int = 2048
    test_area: int = 5
    block_size: float = 1.0
    sample_rate: float = 1.0
    min_block_points: int = 1024
    stride: float = 0.5
    votes: int = 3
    eval_protocol: str = "blocks"  # blocks | rooms
    eval_batch_size: int = 32
    class_weights: bool = True
    optim: OptimConfig = OptimConfig(lr=2e-4, weight_decay=0.05)
    scheduler: SchedulerConfig = SchedulerConfig(lr_min=1e-6)
    run: RunConfig = RunConfig(max_epoch=60, batch_size=32, out_dir="runs/semseg")
    double_step: bool = True


PIPELINES: dict[str, type] = {
    "stage1": Stage1Config,
    "stage2": Stage2Config,
    "finetune": FinetuneConfig,
    "fewshot": FewShotConfig,
    "partseg": PartSegTrainConfig,
    "semseg": SemSegTrainConfig,
}


# ----------------------------------------------------------------------------------------------
# dict / YAML <-> dataclass
# ----------------------------------------------------------------------------------------------
def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict (YAML-safe) of a training config."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if not f.init:
            continue
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            v = config_to_dict(v) if hasattr(v, "__module__") and v.__module__.startswith("act_zoo.models") else to_dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Light type coercion for YAML values (ints for floats, lists for tuples)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if value is None:
        return None
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if annotation in (int, float, str, bool) and not isinstance(value, annotation):
        if annotation is float and isinstance(value, (int, float)):
            return float(value)
        if annotation in (int, float) and isinstance(value, str):  # YAML reads "1e-3" as a string
            try:
                return annotation(float(value)) if annotation is float else int(value)
            except ValueError:
                pass
        raise ValueError(f"{where}: expected {annotation.__name__}, got {value!r}")
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and isinstance(value, str):
        numeric = [a for a in typing.get_args(annotation) if a in (int, float)]
        for a in numeric:
            try:
                return a(value) if a is int else float(value)
            except ValueError:
                continue
    del args
    return value


def from_dict(cls: type, data: Mapping[str, Any], *, where: str = "") -> Any:
    """Build ``cls`` from a (partial) mapping; nested sections merge into the defaults."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    defaults = cls()
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{where or cls.__name__}: unknown keys {sorted(unknown)}; valid: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        default = getattr(defaults, name)
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(default):
            merged = (config_to_dict(default) if type(default).__module__.startswith("act_zoo.models")
                      else to_dict(default))
            if not isinstance(value, Mapping):
                raise ValueError(f"{key}: expected a mapping")
            merged = _deep_merge(merged, value)
            if type(default).__module__.startswith("act_zoo.models"):
                kwargs[name] = config_from_dict(type(default), merged)
            else:
                kwargs[name] = from_dict(type(default), merged, where=key)
        else:
            kwargs[name] = _coerce(value, hints.get(name), key)
    return cls(**kwargs)


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["run.max_epoch=3", "optim.lr=1e-3"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return out


RECIPE_PREFIX = "recipe:"  # --config recipe:NAME names a shipped recipe (act_zoo/recipes/NAME.yaml)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds (an empty file is ``{}``); a clear error otherwise."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: the config must be a mapping")
    return dict(loaded)


def load_config(pipeline: str, path: str | Path | None = None, overrides: Sequence[str] = ()) -> Any:
    """The config of ``pipeline``: official defaults, then the YAML file, then overrides.

    ``path`` may name a shipped recipe, ``"recipe:NAME"`` (see ``act-zoo recipes``): its config,
    which must belong to ``pipeline``."""
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; choose one of {sorted(PIPELINES)}")
    data: dict[str, Any] = {}
    if isinstance(path, str) and path.startswith(RECIPE_PREFIX):
        from ..recipes import recipe_config

        data = recipe_config(path[len(RECIPE_PREFIX):], pipeline=pipeline)
    elif path is not None:
        data = read_config_file(path)
    data = _deep_merge(data, parse_overrides(overrides))
    return from_dict(PIPELINES[pipeline], data)


def dump_config(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


__all__ = [
    "PIPELINES",
    "DataConfig",
    "FewShotConfig",
    "FinetuneConfig",
    "OptimConfig",
    "PartSegTrainConfig",
    "RunConfig",
    "SchedulerConfig",
    "SemSegTrainConfig",
    "Stage1Config",
    "Stage2Config",
    "dump_config",
    "from_dict",
    "load_config",
    "parse_overrides",
    "to_dict",
]
