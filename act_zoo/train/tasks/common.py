"""Data and weight plumbing shared by the pipelines."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ...hub.convert import KeyRule, LoadReport, load_with_rules
from ...models import ACTClassifier, ACTDistillation, ACTEncoder, ACTPartSeg, PromptedDiscreteVAE
from ...ops import furthest_point_sample, gather_points
from ..config import DataConfig
from .files import FileSplits, build_file_splits

FILE_DATASETS = ("folder", "list")

logger = logging.getLogger(__name__)


def _need_root(data: DataConfig) -> str:
    if not data.root:
        raise ValueError(f"data.root is required for dataset {data.dataset!r}")
    return data.root


def build_dataset(data: DataConfig, *, split: str, npoints: int, labelled: bool, seed: int,
                  whole: bool = False, fewshot: tuple[int, int, int] | None = None) -> Dataset:
    """The dataset a config names. Clouds keep enough points for the official 1.2x FPS pool."""
    from ... import data as D

    name = data.dataset
    pool = data.points_per_cloud or int(math.ceil(1.2 * npoints))
    if name == "synthetic":
        n = data.num_samples if split == "train" else data.test_samples
        return D.SyntheticShapes(n, num_points=pool, classes=data.num_classes, seed=data.data_seed + (0 if split == "train" else 7919),
                                 noise=data.noise, partial=data.partial, clutter=data.clutter, labelled=labelled)
    if name == "shapenet55":
        return D.ShapeNet55(_need_root(data), split=split, npoints=npoints, whole=whole, seed=seed)
    if name == "modelnet40":
        return D.ModelNet40(_need_root(data), split=split, allow_pickle=data.allow_pickle, seed=seed)
    if name == "scanobjectnn":
        return D.ScanObjectNN(_need_root(data), variant=data.variant or "PB_T50_RS", split=split, seed=seed)
    if name == "modelnet40_fewshot":
        if fewshot is None:
            raise ValueError("modelnet40_fewshot needs way/shot/fold")
        way, shot, fold = fewshot
        return D.ModelNet40FewShot(_need_root(data), way, shot, fold, split=split, allow_pickle=data.allow_pickle, seed=seed)
    if name == "shapenetpart":
        return D.ShapeNetPart(_need_root(data), split="trainval" if split == "train" else split, npoints=npoints, seed=seed)
    if name in FILE_DATASETS:  # never the training files for evaluation: a held-out split or test_root
        splits = build_file_splits(data, npoints=npoints, seed=seed, labelled=labelled)
        return splits.train if split == "train" else splits.eval_set
    raise ValueError(f"unknown dataset {name!r}")


class DatasetsMixin:
    """Train/test datasets built lazily from ``cfg.data`` (or given to the task), default collate.

    For your own files (``folder`` / ``list``) the evaluation set is the held-out validation
    split unless only a test set exists: ``file_splits().eval_name`` says which."""

    cfg: Any
    labelled: bool = True
    whole_train: bool = False  # official stage II: ShapeNet-55 train + test
    _train: Dataset | None = None
    _test: Dataset | None = None
    _file_splits: FileSplits | None = None

    def file_splits(self) -> FileSplits | None:
        """The checked splits of a ``folder`` / ``list`` dataset (built once), else None."""
        if self._file_splits is None and self.cfg.data.dataset in FILE_DATASETS:
            self._file_splits = build_file_splits(self.cfg.data, npoints=self.cfg.npoints, seed=self.cfg.run.seed,
                                                  progress=self.cfg.run.progress, labelled=self.labelled)
        return self._file_splits

    def _build(self, split: str) -> Dataset:
        splits = self.file_splits()
        if splits is not None:
            return splits.train if split == "train" else splits.eval_set
        return build_dataset(self.cfg.data, split=split, npoints=self.cfg.npoints, labelled=self.labelled,
                             seed=self.cfg.run.seed, whole=self.whole_train and split == "train")

    def train_dataset(self) -> Dataset:
        if self._train is None:
            self._train = self._build("train")
        return self._train

    def test_dataset(self) -> Dataset:
        if self._test is None:
            self._test = self._build("test")
        return self._test

    def collate(self, items: list[Any]) -> Any:
        return torch.utils.data.default_collate(list(items))


def points_of(batch: Any) -> torch.Tensor:
    """The ``[B, N, 3]`` points of a collated batch (tensor, (points, label) or dict)."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, dict):
        return batch["points"]
    return batch[0]


def fps_subset(points: torch.Tensor, npoints: int, *, pool_ratio: float = 1.2) -> torch.Tensor:
    """Official training/voting sampling: FPS to ``pool_ratio x npoints`` (at most N), then one
    random ``npoints`` subset of that pool for the whole batch (global torch RNG)."""
    B, N, _ = points.shape
    pool = min(N, int(round(pool_ratio * npoints)))
    if pool < npoints:
        raise ValueError(f"clouds have {N} points, fewer than npoints={npoints}")
    idx = furthest_point_sample(points, pool)  # B pool
    idx = idx[:, torch.randperm(pool)[:npoints].to(idx.device)]  # B npoints
    return gather_points(points, idx)


def fps_exact(points: torch.Tensor, npoints: int) -> torch.Tensor:
    """Official ``misc.fps``: FPS to ``npoints`` (identity when the cloud already has that many)."""
    if points.shape[1] == npoints:
        return points
    return gather_points(points, furthest_point_sample(points, npoints))


# Fields an encoder's weights are only valid under (shapes, or how a shape is split into heads).
# num_group / group_size / npoints may differ (the official ScanObjectNN recipe fine-tunes a
# 64-group pretrained encoder with 128 groups).
WEIGHT_ARCH_FIELDS = ("embed_dim", "depth", "num_heads", "encoder_dims", "mlp_ratio")
ENCODER_FIELDS = WEIGHT_ARCH_FIELDS + ("group_size", "num_group", "npoints", "drop_path_rate")


def init_encoder(source: str | nn.Module) -> ACTEncoder:
    """The ACT encoder (or classifier) of any pretrained source: a stage-II run directory or
    checkpoint, an encoder/classifier run, a registry name, a hub id or an official file."""
    from ...hub.registry import from_pretrained

    model = from_pretrained(source) if isinstance(source, str) else source
    if isinstance(model, ACTDistillation):
        model = model.encoder
    if not isinstance(model, ACTEncoder):
        raise ValueError(f"{source!r} is a {type(model).__name__}, not an ACT encoder or stage-II model")
    return model


def encoder_state(source: str | nn.Module) -> tuple[dict[str, torch.Tensor], str]:
    """The ACT encoder weights (fine-tuning layout) of :func:`init_encoder`'s source."""
    model = init_encoder(source)
    skip = ("lm_head.", "cls_head.", "cls_head_finetune.", "side", "side_alpha", "side_projection.")
    return {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}, type(model).__name__


def check_init_architecture(model: nn.Module, init: nn.Module, source: str) -> None:
    """Refuse pretrained weights whose architecture differs from ``model``'s, naming each field
    and the overrides that match it (a key dump, or heads silently re-split, otherwise)."""
    mine, theirs = model.config, init_encoder(init).config
    diff = [(f, getattr(mine, f), getattr(theirs, f)) for f in WEIGHT_ARCH_FIELDS
            if hasattr(mine, f) and hasattr(theirs, f) and getattr(mine, f) != getattr(theirs, f)]
    if diff:
        lines = "\n".join(f"  {f}: model {a}, init {b}" for f, a, b in diff)
        fix = " ".join(f"--set model.{f}={b}" for f, _, b in diff)
        raise ValueError(f"the init weights {source} have another architecture than the model:\n{lines}\n"
                         f"match them with {fix}, or use `act-zoo train finetune --data DIR --init {source}`, "
                         "which takes the architecture from the init model")


def load_encoder_into(model: nn.Module, source: str | nn.Module, *, keep_head: bool = False,
                      name: str | None = None) -> LoadReport:
    """Official fine-tuning start: pretrained encoder, fresh head (PyTorch default init).
    ``keep_head``: also load the init classifier's head (same classes; the caller checked)."""
    name = name or (source if isinstance(source, str) else type(source).__name__)
    init = init_encoder(source)
    check_init_architecture(model, init, name)
    state, kind = encoder_state(init)
    report = LoadReport(model_name=type(model).__name__, source=f"{name} ({kind})")
    fresh = (KeyRule(r"cls_head_finetune\..*", "fine-tuning head, freshly initialised"),
             KeyRule(r"side(_alpha|_projection\..*|\..*)", "side-tuning branch, freshly initialised"),
             KeyRule(r"(label_conv_cls|propagation_0_cls|convs\d_cls|bns\d_cls)\..*", "part-seg head, fresh"))
    unexpected = (KeyRule(r"cls_token|cls_pos", "no cls token in part segmentation"),
                  KeyRule(r"reduce_dim\..*", "encoder projection not used by this model"))
    if keep_head:
        if not isinstance(init, ACTClassifier) or not isinstance(model, ACTClassifier):
            raise ValueError(f"keep_head: {name} has no classifier head to keep")
        state.update({k: v for k, v in init.state_dict().items() if k.startswith("cls_head_finetune.")})
        fresh = fresh[1:]
    load_with_rules(model, state, report=report, may_be_missing=fresh, may_be_unexpected=unexpected)
    if isinstance(model, ACTClassifier) and not keep_head:
        model.reset_head()
    logger.info("initialised from %s:\n%s", name, report.format())
    return report


def load_teacher(source: str) -> PromptedDiscreteVAE:
    """A stage-I autoencoder from a run directory, registry name or official checkpoint."""
    from ...hub.registry import from_pretrained

    model = from_pretrained(source)
    if isinstance(model, ACTDistillation):
        model = model.teacher
    if not isinstance(model, PromptedDiscreteVAE):
        raise ValueError(f"{source!r} is a {type(model).__name__}, not a stage-I autoencoder")
    return model


def accuracy_metrics(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Overall accuracy and the official ``acc_avg`` (balanced accuracy: mean per-class recall
    over the classes present), in percent."""
    pred, target = pred.view(-1).cpu(), target.view(-1).cpu()
    oa = (pred == target).float().mean().item() * 100 if len(target) else 0.0
    recalls = [((pred == c) & (target == c)).sum().item() / n for c in range(num_classes)
               if (n := int((target == c).sum())) > 0]
    return {"acc": oa, "acc_avg": 100.0 * sum(recalls) / max(1, len(recalls))}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    t = torch.tensor(list(values), dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=True)) if len(t) > 1 else 0.0


__all__ = ["ENCODER_FIELDS", "FILE_DATASETS", "WEIGHT_ARCH_FIELDS", "ACTPartSeg", "DatasetsMixin", "accuracy_metrics",
           "build_dataset", "check_init_architecture", "encoder_state", "fps_exact", "fps_subset", "init_encoder",
           "load_encoder_into", "load_teacher", "mean_std", "points_of"]
