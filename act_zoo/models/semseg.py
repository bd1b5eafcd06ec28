"""The ACT semantic-segmentation network (official ``semantic_segmentation/models/pt.py``,
``get_model(13)``, trained on S3DIS).

It is the part-segmentation network without the category branch: the shared trunk and head
of :mod:`act_zoo.models.segmentation` -- patchify (FPS + kNN) -> mini-PointNet tokens (no cls
token) -> Transformer, each block sees ``x + pos`` -> blocks 3, 7, 11 through the shared final
LayerNorm -> ``feature [B, 3C, G]`` -> head input ``cat(fp(xyz, feature), max, avg)`` (no
label feature: 1024 + 1152 + 1152 = 3328 channels at full size) -> ``convs1/bns1/ReLU/dp1/
convs2/bns2/ReLU/convs3`` -> ``log_softmax`` -> ``[B, N, 13]``.

Inputs are xyz only, in the official block frame: metres, x and y centred on the block's
centre, z the height above the room's lowest point (see :mod:`act_zoo.data.s3dis`; for whole
scenes of any size use :func:`act_zoo.segment`).

Module names are the official ones (``encoder``, ``pos_embed``, ``blocks``, ``norm``,
``propagation_0_cls.mlp_convs/mlp_bns``, ``convs1_cls`` ... ``convs3_cls``, ``bns1_cls``,
``bns2_cls``), so an official ``best_model.pth`` (``model_state_dict``) loads as is
(:func:`act_zoo.from_official` with ``NAME: SemanticSegmentation``). Fast and reference paths
(``set_fast_path``) agree within float32 rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._s3dis import S3DIS_CLASSES, S3DIS_NUM_CLASSES
from .segmentation import SegFeatures, SegmentationNet, validate_segmentation_config


@dataclass(frozen=True)
class SemSegConfig:
    """The semantic-segmentation network. Defaults are the official S3DIS values
    (``get_model(13)``, where every size is hard-coded).

    Attributes:
        embed_dim: Transformer width C (official ``trans_dim``).
        depth: number of blocks; must exceed ``max(fetch_idx)``.
        encoder_dims: mini-PointNet output width; must equal ``embed_dim`` (no ``reduce_dim``).
        cls_dim: number of classes (13).
        fp_dims: widths of the feature-propagation convs (official ``[4C, 1024]``).
        head_dims: widths of ``convs1_cls`` and ``convs2_cls`` (512, 256).
        npoints: points per block the official recipe feeds (2048).
        block_size: side in metres of the square blocks the model was trained on (1.0);
            :func:`act_zoo.segment` cuts scenes into blocks of this size.
        fetch_idx: blocks whose outputs are tapped (0-based).
        class_names: one name per class (S3DIS by default). Left at the S3DIS default with
            another ``cls_dim``, the names become ``class_0``, ``class_1``, ...
    """

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    group_size: int = 32
    num_group: int = 128
    encoder_dims: int = 384
    drop_path_rate: float = 0.1
    cls_dim: int = S3DIS_NUM_CLASSES
    fp_dims: tuple[int, ...] = (1536, 1024)
    head_dims: tuple[int, int] = (512, 256)
    npoints: int = 2048
    block_size: float = 1.0
    fetch_idx: tuple[int, ...] = (3, 7, 11)
    class_names: tuple[str, ...] = S3DIS_CLASSES

    def __post_init__(self) -> None:
        validate_segmentation_config(self, ("embed_dim", "depth", "num_heads", "group_size", "num_group",
                                            "encoder_dims", "cls_dim", "npoints"))
        names = self.class_names
        if not isinstance(names, Sequence) or isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"SemSegConfig.class_names must be a sequence of strings, got {names!r}")
        names = tuple(names)
        if len(names) != self.cls_dim:
            if names != S3DIS_CLASSES:
                raise ValueError(f"SemSegConfig: {len(names)} class_names for cls_dim={self.cls_dim}")
            names = tuple(f"class_{i}" for i in range(self.cls_dim))
        if len(set(names)) != len(names):
            raise ValueError(f"SemSegConfig.class_names must be unique, got {names}")
        object.__setattr__(self, "class_names", names)
        if not float(self.block_size) > 0:
            raise ValueError(f"SemSegConfig.block_size must be > 0, got {self.block_size}")
        object.__setattr__(self, "block_size", float(self.block_size))

    @property
    def feature_dim(self) -> int:
        """Width of the concatenated taps, ``len(fetch_idx) * embed_dim`` (1152)."""
        return len(self.fetch_idx) * self.embed_dim

    @property
    def head_in_dim(self) -> int:
        """Input width of ``convs1_cls``: fp out + max + avg (3328)."""
        return self.fp_dims[-1] + 2 * self.feature_dim


S3DIS = SemSegConfig()


class ACTSemSeg(SegmentationNet):
    """The official semantic-segmentation model (``get_model(13)``).

    ``forward(points [B, N, 3])`` -> per-point log-probabilities ``[B, N, cls_dim]``
    (``[N, 3]`` -> ``[N, cls_dim]``); ``forward_features`` -> :class:`SegFeatures`."""

    def __init__(self, config: SemSegConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else SemSegConfig()
        self._build_trunk()
        self._build_head(self.config.head_in_dim)
        self.init_weights()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.class_names

    def forward_head(self, features: SegFeatures) -> torch.Tensor:
        """:class:`SegFeatures` -> log-probabilities ``[B, N, cls_dim]`` (``[N, cls_dim]`` for
        single-cloud features)."""
        single = not features.batched
        out = self._seg_head(features.unsqueeze_batch() if single else features, None)  # B N K
        return out[0] if single else out

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """``points [B, N, 3]`` (block frame, see module docstring) -> log-probabilities
        ``[B, N, cls_dim]``; one cloud ``[N, 3]`` -> ``[N, cls_dim]``."""
        return self.forward_head(self.forward_features(points))

    @staticmethod
    def loss(log_probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Official ``get_loss``: class-weighted NLL, see :func:`semseg_loss`."""
        return semseg_loss(log_probs, target, weight)


def semseg_loss(log_probs: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Official training loss ``F.nll_loss(pred.view(-1, K), target.view(-1), weight)``: the
    class-weighted mean ``sum_i w[t_i] * (-log p_i[t_i]) / sum_i w[t_i]`` over all points
    (official weights: :func:`act_zoo.data.s3dis.label_weights` of the training rooms)."""
    K = log_probs.shape[-1]
    if weight is not None:
        weight = weight.to(device=log_probs.device, dtype=log_probs.dtype)
        if weight.shape != (K,):
            raise ValueError(f"class weights must have shape [{K}], got {list(weight.shape)}")
    return F.nll_loss(log_probs.reshape(-1, K), target.reshape(-1).long(), weight=weight)


__all__ = ["S3DIS", "S3DIS_CLASSES", "ACTSemSeg", "SegFeatures", "SemSegConfig", "semseg_loss"]
