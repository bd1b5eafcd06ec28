"""The ACT part-segmentation network (official ``part_segmentation/models/pt.py``, ``get_model``).

The trunk and head it shares with semantic segmentation live in
:mod:`act_zoo.models.segmentation` (patchify -> mini-PointNet tokens -> Transformer taps of
blocks 3, 7, 11 through the shared final norm -> max/avg pooling -> feature propagation ->
``convs1/bns1/convs2/bns2/convs3`` -> ``log_softmax``). What is part segmentation's own: the
category label embedding ``label_conv_cls`` (Conv1d(16, 64, no bias), BN, LeakyReLU(0.2) on the
one-hot category), appended to the pooled features of every point, and the official decoding
rule (argmax over the category's parts only, :func:`predict_parts`). The IoU metrics are in
:mod:`act_zoo.train.metrics`.

Module names are the official ones (``encoder``, ``pos_embed``, ``blocks``, ``norm``,
``label_conv_cls``, ``propagation_0_cls.mlp_convs/mlp_bns``, ``convs1_cls`` ... ``convs3_cls``,
``bns1_cls``, ``bns2_cls``), so an official ``model_state_dict`` loads as is. The fast and
reference paths (``set_fast_path``) agree within float32 rounding (tested against the official
fixtures and against each other, gradients included).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._shapenetpart import (
    SHAPENETPART_CATEGORIES,
    SHAPENETPART_NUM_CATEGORIES,
    SHAPENETPART_NUM_PARTS,
    SHAPENETPART_SEG_CLASSES,
)
from .segmentation import SegFeatures, SegmentationNet, validate_segmentation_config

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# ShapeNetPart: categories (index = line of synsetoffset2category.txt) and their part labels
# ----------------------------------------------------------------------------------------------
# parts of each category, by category index
SHAPENETPART_PARTS: tuple[tuple[int, ...], ...] = tuple(
    SHAPENETPART_SEG_CLASSES[c] for c in SHAPENETPART_CATEGORIES
)


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartSegConfig:
    """The part-segmentation network. Defaults are the official ShapeNetPart values
    (``get_model(50)``, hard-coded there).

    Attributes:
        embed_dim: Transformer width C (official ``trans_dim``).
        depth: number of blocks; must exceed ``max(fetch_idx)`` (blocks after it are built,
            so checkpoints keep their keys, but never run: their output is unused).
        encoder_dims: mini-PointNet output width; must equal ``embed_dim`` (no ``reduce_dim``).
        cls_dim: number of part labels (50).
        num_classes: number of object categories fed to the label conv (16).
        fp_dims: widths of the feature-propagation convs (official ``[4C, 1024]``).
        head_dims: widths of ``convs1_cls`` and ``convs2_cls`` (512, 256).
        label_dim: width of the label embedding ``label_conv_cls`` (64).
        npoints: points per cloud the official recipe feeds (informational).
        fetch_idx: blocks whose outputs are tapped (0-based).
    """

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    group_size: int = 32
    num_group: int = 128
    encoder_dims: int = 384
    drop_path_rate: float = 0.1
    cls_dim: int = 50
    num_classes: int = 16
    fp_dims: tuple[int, ...] = (1536, 1024)
    head_dims: tuple[int, int] = (512, 256)
    label_dim: int = 64
    npoints: int = 2048
    fetch_idx: tuple[int, ...] = (3, 7, 11)

    def __post_init__(self) -> None:
        validate_segmentation_config(self, ("embed_dim", "depth", "num_heads", "group_size", "num_group",
                                            "encoder_dims", "cls_dim", "num_classes", "label_dim", "npoints"))

    @property
    def feature_dim(self) -> int:
        """Width of the concatenated taps, ``len(fetch_idx) * embed_dim`` (1152)."""
        return len(self.fetch_idx) * self.embed_dim

    @property
    def head_in_dim(self) -> int:
        """Input width of ``convs1_cls``: fp out + max + avg + label (3392)."""
        return self.fp_dims[-1] + 2 * self.feature_dim + self.label_dim


SHAPENETPART = PartSegConfig()


# ----------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------
# official name of the features record of this family (shared with semantic segmentation)
PartSegFeatures = SegFeatures


class ACTPartSeg(SegmentationNet):
    """The official part-segmentation model (``get_model``): ACT encoder taps + PointNet++-style
    feature propagation head with a category embedding. ``forward(points [B, N, 3], category)``
    -> log-probabilities ``[B, N, cls_dim]``."""

    def __init__(self, config: PartSegConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else PartSegConfig()
        self._build_trunk()
        self.label_conv_cls = nn.Sequential(
            nn.Conv1d(config.num_classes, config.label_dim, kernel_size=1, bias=False),
            nn.BatchNorm1d(config.label_dim),
            nn.LeakyReLU(0.2),
        )
        self._build_head(config.head_in_dim)
        self.init_weights()

    # -- head ----------------------------------------------------------------------------------
    def category_one_hot(
        self, category: torch.Tensor | int | Sequence[int], batch: int | None
    ) -> torch.Tensor:
        """Category as index (``[B]``/``[B, 1]`` int, or an int for one cloud) or one-hot
        (``[B, K]``/``[B, 1, K]`` float, or ``[K]`` for one cloud) -> one-hot ``[B, K]`` float
        (``K = num_classes``). ``batch=None`` means a single cloud."""
        K = self.config.num_classes
        if not isinstance(category, torch.Tensor):
            try:
                category = torch.as_tensor(category)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(
                    f"category must be a tensor, an int or a sequence of ints, got {category!r}"
                ) from exc
        if batch is None:  # one cloud: add the batch dimension
            category = category.unsqueeze(0)
        B = 1 if batch is None else batch
        device = self.norm.weight.device
        if category.dtype == torch.bool:
            raise ValueError("category must be integer indices or a float one-hot, got a bool tensor")
        if category.is_floating_point():
            one_hot = category.reshape(category.shape[0], K) if (
                category.dim() == 3 and category.shape[1:] == (1, K)) else category
            if one_hot.shape != (B, K):
                want = f"[{K}]" if batch is None else f"[{B}, {K}] (or [{B}, 1, {K}])"
                got = list(category.shape[1:] if batch is None else category.shape)
                raise ValueError(f"one-hot category must have shape {want}, got {got}")
            if one_hot.device.type != "meta" and not bool(torch.isfinite(one_hot).all()):
                raise ValueError("one-hot category contains NaN or inf values")
            return one_hot.to(device=device, dtype=self.dtype)
        column = category.dim() == 2 and category.shape[1] == 1  # [B, 1], the official cls_label
        idx = category.reshape(category.shape[0]) if column else category
        if idx.shape != (B,):
            want = "an int" if batch is None else f"[{B}] (or [{B}, 1])"
            got = list(category.shape[1:] if batch is None else category.shape)
            raise ValueError(f"category indices must have shape {want}, got {got}")
        if idx.device.type != "meta" and idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= K):
            raise ValueError(f"category index out of range [0, {K}): got {idx.tolist()}")
        return F.one_hot(idx.to(device=device, dtype=torch.long), K).to(self.dtype)

    def forward_head(
        self, features: PartSegFeatures, category: torch.Tensor | int | Sequence[int]
    ) -> torch.Tensor:
        """:class:`PartSegFeatures` + category -> log-probabilities ``[B, N, cls_dim]``
        (``[N, cls_dim]`` for single-cloud features)."""
        single = not features.batched
        feats = features.unsqueeze_batch() if single else features
        B = feats.points.shape[0]
        one_hot = self.category_one_hot(category, None if single else B)  # B K
        label = self.label_conv_cls(one_hot.view(B, -1, 1))[:, :, 0]  # B L
        out = self._seg_head(feats, label)  # B N P
        return out[0] if single else out

    def forward(self, points: torch.Tensor, category: torch.Tensor | int | Sequence[int]) -> torch.Tensor:
        """``points [B, N, 3]`` + category (``[B]`` int or ``[B, num_classes]`` one-hot) ->
        per-point log-probabilities ``[B, N, cls_dim]``; ``[N, 3]`` + int -> ``[N, cls_dim]``."""
        return self.forward_head(self.forward_features(points), category)

    # -- official loss and evaluation ------------------------------------------------------------
    @staticmethod
    def loss(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Official ``get_loss``: ``F.nll_loss`` averaged over all B*N points."""
        return part_seg_loss(log_probs, target)


# ----------------------------------------------------------------------------------------------
# loss and the official decoding rule (main.py); the IoU metrics are in act_zoo.train.metrics
# ----------------------------------------------------------------------------------------------
def part_seg_loss(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Official training loss: ``F.nll_loss(log_probs.view(-1, P), target.view(-1))``."""
    return F.nll_loss(log_probs.reshape(-1, log_probs.shape[-1]), target.reshape(-1).long())


def parts_table(seg_classes: Sequence[Sequence[int]] | None) -> tuple[tuple[int, ...], ...]:
    if seg_classes is None:
        table = SHAPENETPART_PARTS
    else:
        table = tuple(tuple(int(p) for p in c) for c in seg_classes)
    for c, parts in enumerate(table):
        if not parts or list(parts) != list(range(parts[0], parts[0] + len(parts))):
            raise ValueError(f"the parts of category {c} must be a non-empty contiguous range, got {parts}")
    return table


def category_indices(
    category: torch.Tensor | int | Sequence[int], batch: int, num_categories: int
) -> torch.Tensor:
    """Category indices ``[B]`` (int64, CPU) from indices or one-hot."""
    cat = torch.as_tensor(category)
    if cat.is_floating_point():
        cat = cat.reshape(-1, cat.shape[-1]) if cat.dim() >= 1 else cat
        if cat.dim() != 2 or cat.shape[-1] != num_categories:
            raise ValueError(
                f"one-hot category must have {num_categories} columns, got shape {list(cat.shape)}"
            )
        cat = cat.argmax(-1)
    cat = cat.reshape(-1).long().cpu()
    if cat.numel() != batch:
        raise ValueError(f"expected {batch} categories, got {cat.numel()}")
    if cat.numel() and (int(cat.min()) < 0 or int(cat.max()) >= num_categories):
        raise ValueError(f"category index out of range [0, {num_categories}): got {cat.tolist()}")
    return cat


def category_from_target(
    target: torch.Tensor, *, seg_classes: Sequence[Sequence[int]] | None = None
) -> torch.Tensor:
    """Official test-time rule: the category of a shape is that of its first point's part.

    ``target [B, N]`` (or ``[N]``) part labels -> ``[B]`` (or 0-d) int64 category indices."""
    table = parts_table(seg_classes)
    lookup = torch.full((max(max(p) for p in table) + 1,), -1, dtype=torch.long)
    for c, parts in enumerate(table):
        lookup[list(parts)] = c
    first = target.reshape(-1, target.shape[-1])[:, 0].long().cpu()
    if int(first.min()) < 0 or int(first.max()) >= lookup.numel() or bool((lookup[first] < 0).any()):
        raise ValueError(f"part labels {first.tolist()} do not all belong to a category")
    cats = lookup[first]
    return cats[0] if target.dim() == 1 else cats


def predict_parts(
    log_probs: torch.Tensor,
    category: torch.Tensor | int | Sequence[int],
    *,
    seg_classes: Sequence[Sequence[int]] | None = None,
) -> torch.Tensor:
    """Official evaluation rule (``main.py``): argmax over the category's parts only, plus the
    category's first part label. On ties the first part wins (like ``np.argmax``).

    Args:
        log_probs: ``[B, N, P]`` (or ``[N, P]``) scores, e.g. the model's output.
        category: ``[B]`` indices or ``[B, K]`` one-hot (an int for one cloud). The official
            test loop uses :func:`category_from_target` (the true category).
        seg_classes: parts of each category, by category index (default ShapeNetPart).

    Returns:
        ``[B, N]`` (or ``[N]``) int64 part labels.
    """
    table = parts_table(seg_classes)
    single = log_probs.dim() == 2
    lp = log_probs.unsqueeze(0) if single else log_probs
    if lp.dim() != 3:
        raise ValueError(f"log_probs must have shape [B, N, P] or [N, P], got {list(log_probs.shape)}")
    cats = category_indices(category, lp.shape[0], len(table))
    pred = torch.empty(lp.shape[:2], dtype=torch.long, device=lp.device)  # B N
    for c in cats.unique().tolist():
        start, count = table[c][0], len(table[c])
        if start + count > lp.shape[-1]:
            raise ValueError(
                f"category {c} has parts up to {start + count - 1} but log_probs has {lp.shape[-1]}"
            )
        rows = (cats == c).nonzero().flatten().to(lp.device)
        pred[rows] = lp[rows, :, start : start + count].argmax(-1) + start
    return pred[0] if single else pred


__all__ = [
    "SHAPENETPART",
    "SHAPENETPART_CATEGORIES",
    "SHAPENETPART_NUM_CATEGORIES",
    "SHAPENETPART_NUM_PARTS",
    "SHAPENETPART_PARTS",
    "SHAPENETPART_SEG_CLASSES",
    "ACTPartSeg",
    "PartSegConfig",
    "PartSegFeatures",
    "category_from_target",
    "category_indices",
    "part_seg_loss",
    "parts_table",
    "predict_parts",
]
