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
    if name == "folder":
        root = _need_root(data) if split == "train" else (data.test_root or _need_root(data))
        return D.PointCloudFolder(root, num_points=pool, seed=seed)
    if name == "list":
        root = _need_root(data) if split == "train" else data.test_root
        if not root:
            raise ValueError("data.test_root (the test list) is required for dataset 'list'")
        return D.PointCloudList(root, num_points=pool, seed=seed)
    raise ValueError(f"unknown dataset {name!r}")


class DatasetsMixin:
    """Train/test datasets built lazily from ``cfg.data`` (or given to the task), default collate."""

    cfg: Any
    labelled: bool = True
    whole_train: bool = False  # official stage II: ShapeNet-55 train + test
    _train: Dataset | None = None
    _test: Dataset | None = None

    def _build(self, split: str) -> Dataset:
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


def encoder_state(source: str) -> tuple[dict[str, torch.Tensor], str]:
    """The ACT encoder weights (fine-tuning layout) of any pretrained source: a stage-II run
    directory or checkpoint, an encoder/classifier, a registry name or an official file."""
    from ...hub.registry import from_pretrained

    model = from_pretrained(source)
    if isinstance(model, ACTDistillation):
        model = model.encoder
    if not isinstance(model, ACTEncoder):
        raise ValueError(f"{source!r} is a {type(model).__name__}, not an ACT encoder or stage-II model")
    skip = ("lm_head.", "cls_head.", "cls_head_finetune.", "side", "side_alpha", "side_projection.")
    return {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}, type(model).__name__


def load_encoder_into(model: nn.Module, source: str) -> LoadReport:
    """Official fine-tuning start: pretrained encoder, fresh head (PyTorch default init)."""
    state, kind = encoder_state(source)
    report = LoadReport(model_name=type(model).__name__, source=f"{source} ({kind})")
    fresh = (KeyRule(r"cls_head_finetune\..*", "fine-tuning head, freshly initialised"),
             KeyRule(r"side(_alpha|_projection\..*|\..*)", "side-tuning branch, freshly initialised"),
             KeyRule(r"(label_conv_cls|propagation_0_cls|convs\d_cls|bns\d_cls)\..*", "part-seg head, fresh"))
    unexpected = (KeyRule(r"cls_token|cls_pos", "no cls token in part segmentation"),
                  KeyRule(r"reduce_dim\..*", "encoder projection not used by this model"))
    load_with_rules(model, state, report=report, may_be_missing=fresh, may_be_unexpected=unexpected)
    if isinstance(model, ACTClassifier):
        model.reset_head()
    logger.info("initialised from %s:\n%s", source, report.format())
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


__all__ = ["ACTPartSeg", "DatasetsMixin", "accuracy_metrics", "build_dataset", "encoder_state", "fps_exact", "fps_subset",
           "load_encoder_into", "load_teacher", "mean_std", "points_of"]
