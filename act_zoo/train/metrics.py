"""Segmentation metrics of both segmentation families, as the official scripts compute them.

Part segmentation (``part_segmentation/main.py``): per-shape part IoU over the shape's
category (a part absent from both prediction and target counts as 1), instance mIoU (mean
over shapes) and class mIoU (mean over categories of the per-category means).

Semantic segmentation (``semantic_segmentation/main_test.py``): true positives, unions and
ground-truth counts per class are **summed over all points of all rooms** first; then
IoU_c = TP_c / union_c, mIoU = the mean of IoU_c over all classes, mAcc = the mean of
TP_c / GT_c over all classes, OA = sum TP / sum GT. Like the official script, a class with no
point in the prediction or the ground truth scores 0 and still counts in the means (the
official ``+ 1e-6`` in the denominators changes nothing else); :class:`SemSegScores` names
such classes (``absent``) so a mean over fewer classes never passes unnoticed.

The metrics live in ``train/`` (not next to the models) because a network knows no
evaluation protocol; the models keep only the decoding rules of their own outputs
(:func:`act_zoo.models.partseg.predict_parts`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._shapenetpart import SHAPENETPART_CATEGORIES
from ..models.partseg import category_from_target, category_indices, parts_table

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# part segmentation (ShapeNetPart)
# ----------------------------------------------------------------------------------------------
def part_iou(
    pred: torch.Tensor,
    target: torch.Tensor,
    category: int,
    *,
    seg_classes: Sequence[Sequence[int]] | None = None,
) -> torch.Tensor:
    """Per-part IoU of one shape over its category's parts (official metric).

    ``pred [N]``, ``target [N]`` part labels -> float64 ``[num parts of the category]``. A part
    absent from both the prediction and the target counts as IoU 1."""
    table = parts_table(seg_classes)
    if pred.shape != target.shape or pred.dim() != 1:
        raise ValueError(f"pred and target must both be [N], got {list(pred.shape)} and {list(target.shape)}")
    category = int(category)
    if not 0 <= category < len(table):
        raise ValueError(f"category index out of range [0, {len(table)}): got {category}")
    ious = []
    for part in table[category]:
        p, t = pred == part, target == part
        union = int((p | t).sum())
        ious.append(1.0 if union == 0 else int((p & t).sum()) / union)
    return torch.tensor(ious, dtype=torch.float64)


def shape_iou(
    pred: torch.Tensor,
    target: torch.Tensor,
    category: torch.Tensor | int | Sequence[int] | None = None,
    *,
    seg_classes: Sequence[Sequence[int]] | None = None,
) -> torch.Tensor:
    """Mean part IoU per shape: ``[B, N]`` -> float64 ``[B]`` (``[N]`` -> 0-d).

    ``category`` defaults to the official rule, :func:`~act_zoo.models.partseg.category_from_target`."""
    single = pred.dim() == 1
    p, t = (pred.unsqueeze(0), target.unsqueeze(0)) if single else (pred, target)
    if p.shape != t.shape or p.dim() != 2:
        raise ValueError(
            f"pred and target must both be [B, N] or [N], got {list(pred.shape)} and {list(target.shape)}"
        )
    table = parts_table(seg_classes)
    if category is None:
        cats = category_from_target(t, seg_classes=table)
    else:
        cats = category_indices(category, p.shape[0], len(table))
    out = torch.stack(
        [part_iou(p[i], t[i], int(cats[i]), seg_classes=table).mean() for i in range(p.shape[0])]
    )  # B
    return out[0] if single else out


def instance_miou(shape_ious: torch.Tensor | Sequence[float]) -> float:
    """Instance mIoU: the mean of the per-shape IoUs over all shapes."""
    s = torch.as_tensor(shape_ious, dtype=torch.float64).reshape(-1)
    if not s.numel():
        raise ValueError("no shapes to average")
    return float(s.mean())


def per_class_miou(
    shape_ious: torch.Tensor | Sequence[float],
    categories: torch.Tensor | Sequence[int],
    *,
    names: Sequence[str] = SHAPENETPART_CATEGORIES,
) -> dict[str, float]:
    """Mean shape IoU of each category that has shapes: ``{name: mIoU}``."""
    s = torch.as_tensor(shape_ious, dtype=torch.float64).reshape(-1)
    c = torch.as_tensor(categories).reshape(-1).long().cpu()
    if s.numel() != c.numel():
        raise ValueError(f"{s.numel()} shape IoUs but {c.numel()} categories")
    if c.numel() and (int(c.min()) < 0 or int(c.max()) >= len(names)):
        raise ValueError(f"category index out of range [0, {len(names)}): got {c.unique().tolist()}")
    return {names[k]: float(s[c == k].mean()) for k in c.unique().tolist()}


def class_miou(
    shape_ious: torch.Tensor | Sequence[float],
    categories: torch.Tensor | Sequence[int],
    *,
    names: Sequence[str] = SHAPENETPART_CATEGORIES,
) -> float:
    """Class mIoU: shapes averaged within each category first, then the categories averaged.

    Categories without any shape are left out (the official loop would give NaN for them;
    on the full ShapeNetPart test set every category has shapes, so the values agree)."""
    per = per_class_miou(shape_ious, categories, names=names)
    if not per:
        raise ValueError("no shapes to average")
    return sum(per.values()) / len(per)


# ----------------------------------------------------------------------------------------------
# semantic segmentation (S3DIS): counts summed over all points, then the ratios
# ----------------------------------------------------------------------------------------------
def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, *,
                     ignore_index: int | None = None) -> torch.Tensor:
    """int64 ``[C, C]`` counts, rows = ground truth, columns = prediction.

    ``pred`` and ``target`` hold class indices of the same shape (any shape). Labels outside
    ``[0, C)`` raise ``ValueError``, except ``target == ignore_index``, which is skipped."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {list(pred.shape)} and {list(target.shape)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    p = pred.reshape(-1).long().cpu()
    t = target.reshape(-1).long().cpu()
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    for name, v in (("target", t), ("pred", p)):
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= num_classes):
            bad = v[(v < 0) | (v >= num_classes)].unique()[:8].tolist()
            raise ValueError(f"{name} holds labels outside [0, {num_classes}): {bad}")
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).view(num_classes, num_classes)


@dataclass(frozen=True)
class SemSegScores:
    """Per-class counts summed over every evaluated point, and the official ratios.

    Attributes:
        tp: ``[C]`` true positives.
        union: ``[C]`` points predicted as c or labelled c.
        gt: ``[C]`` points labelled c.
        class_names: one name per class.
        confusion: int64 ``[C, C]`` counts (rows ground truth, columns prediction), when known.
    """

    tp: torch.Tensor
    union: torch.Tensor
    gt: torch.Tensor
    class_names: tuple[str, ...]
    confusion: torch.Tensor | None = None

    @classmethod
    def from_confusion(cls, confusion: torch.Tensor, class_names: Sequence[str]) -> SemSegScores:
        c = confusion.long()
        if c.dim() != 2 or c.shape[0] != c.shape[1] or c.shape[0] != len(class_names):
            raise ValueError(f"confusion {list(c.shape)} does not match {len(class_names)} class names")
        tp = c.diagonal().clone()
        return cls(tp, c.sum(0) + c.sum(1) - tp, c.sum(1), tuple(class_names), c.clone())

    @property
    def iou(self) -> torch.Tensor:
        """float64 ``[C]``: TP / union (0 for a class absent from prediction and ground truth)."""
        return self.tp.double() / self.union.double().clamp(min=1)

    @property
    def acc(self) -> torch.Tensor:
        """float64 ``[C]``: TP / GT (per-class recall; 0 for a class with no labelled point)."""
        return self.tp.double() / self.gt.double().clamp(min=1)

    @property
    def miou(self) -> float:
        """Official mIoU: the mean of :attr:`iou` over all classes."""
        return float(self.iou.mean())

    @property
    def macc(self) -> float:
        """Official mAcc: the mean of :attr:`acc` over all classes."""
        return float(self.acc.mean())

    @property
    def oa(self) -> float:
        """Overall accuracy: sum TP / sum GT."""
        return float(self.tp.sum()) / max(1, int(self.gt.sum()))

    @property
    def absent(self) -> tuple[str, ...]:
        """Classes with no labelled point (they score 0 in mIoU/mAcc, as in the official script)."""
        return tuple(n for n, g in zip(self.class_names, self.gt.tolist()) if g == 0)

    def to_dict(self, *, percent: bool = True) -> dict[str, float]:
        """``{"miou", "macc", "oa", "iou/<class name>" ...}`` (percent by default)."""
        k = 100.0 if percent else 1.0
        out = {"miou": k * self.miou, "macc": k * self.macc, "oa": k * self.oa}
        out.update({f"iou/{n}": k * float(v) for n, v in zip(self.class_names, self.iou)})
        return out

    def format(self) -> str:
        """A per-class table plus the three summary numbers (percent)."""
        width = max(len(n) for n in self.class_names)
        lines = [f"{'class':<{width}}  {'IoU':>6}  {'acc':>6}  {'points':>10}"]
        for n, i, a, g in zip(self.class_names, self.iou.tolist(), self.acc.tolist(), self.gt.tolist()):
            lines.append(f"{n:<{width}}  {100 * i:6.2f}  {100 * a:6.2f}  {g:>10d}")
        lines.append(f"mIoU {100 * self.miou:.2f}  mAcc {100 * self.macc:.2f}  OA {100 * self.oa:.2f}")
        if self.absent:
            lines.append(f"note: {len(self.absent)} classes have no labelled point and score 0 in the means: "
                         f"{', '.join(self.absent)}")
        return "\n".join(lines)


class SemSegMeter:
    """Accumulates a confusion matrix over batches/rooms; :meth:`compute` gives :class:`SemSegScores`."""

    def __init__(self, class_names: Sequence[str], *, ignore_index: int | None = None) -> None:
        if not class_names:
            raise ValueError("class_names must not be empty")
        self.class_names = tuple(class_names)
        self.ignore_index = ignore_index
        C = len(self.class_names)
        self.confusion = torch.zeros(C, C, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        self.confusion += confusion_matrix(pred, target, len(self.class_names), ignore_index=self.ignore_index)

    def compute(self) -> SemSegScores:
        scores = SemSegScores.from_confusion(self.confusion, self.class_names)
        if scores.absent:
            logger.warning("%d of %d classes have no labelled point and score 0 in mIoU/mAcc (official rule): %s",
                           len(scores.absent), len(self.class_names), ", ".join(scores.absent))
        return scores


def semseg_scores(pred: torch.Tensor, target: torch.Tensor, class_names: Sequence[str], *,
                  ignore_index: int | None = None) -> SemSegScores:
    """Scores of one set of predictions (all points of all rooms at once)."""
    meter = SemSegMeter(class_names, ignore_index=ignore_index)
    meter.update(pred, target)
    return meter.compute()


__all__ = [
    "SemSegMeter",
    "SemSegScores",
    "class_miou",
    "confusion_matrix",
    "instance_miou",
    "part_iou",
    "per_class_miou",
    "semseg_scores",
    "shape_iou",
]
