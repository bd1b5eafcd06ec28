"""What the two segmentation families share (official ``part_segmentation`` and
``semantic_segmentation`` ``models/pt.py``, whose ``get_model`` differ only by the category
label branch).

:class:`SegmentationNet` holds the common trunk and head, with the official module names as
top-level attributes so official ``model_state_dict`` files load as they are:

* trunk: patchify (FPS + kNN) -> mini-PointNet tokens (no cls token, no ``reduce_dim``) ->
  Transformer, each block sees ``x + pos`` -> the outputs of blocks ``fetch_idx`` (3, 7, 11),
  each through the shared final LayerNorm -> ``feature [B, 3C, G]`` (:class:`SegFeatures`);
* head: max and mean pooling over the groups (+ any per-cloud extra, the part-seg category
  embedding) -> feature propagation from the G centres to the N points
  (:class:`~act_zoo.layers.PointNetFeaturePropagation`) -> ``convs1/bns1/ReLU/dp1/convs2/bns2/
  ReLU/convs3`` -> ``log_softmax`` -> ``[B, N, classes]``.

Two paths compute the same function (``set_fast_path``):

* reference (``set_fast_path(False)``): the official sequence of ops -- channels-first
  Conv1d, manual attention ``(q * scale) @ k^T``, the interpolated features materialised at
  every point, the pooled features repeated N times and concatenated;
* fast (default): fused attention and the fast mini-PointNet; the head runs channels-last
  and exploits linearity twice -- (1) the first feature-propagation conv is applied to the G
  centre features before interpolation; (2) the per-cloud part of ``convs1`` (pooled
  features, label) is computed once per cloud instead of once per point. In eval mode every
  BatchNorm of the head is folded into the preceding layer on the fly (recomputed at each
  call from the canonical parameters). In eval mode without autograd, the blocks run through
  the in-place single-stream maths of :meth:`TransformerEncoder.forward_inference`, stopping
  after the last tapped block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import MiniPointNet, TransformerEncoder, drop_path_schedule, trunc_normal_init
from ..layers.propagation import PointNetFeaturePropagation, bn_channels_last, conv_affine, relu_
from ..ops import Patches, group_points
from .common import PretrainedMixin, prepare_points, set_fast_path


def validate_segmentation_config(cfg: Any, positive: Sequence[str]) -> None:
    """Checks shared by :class:`PartSegConfig` and :class:`SemSegConfig` (called from their
    ``__post_init__``); list-valued fields are turned into tuples."""
    name = type(cfg).__name__
    for key in ("fp_dims", "head_dims", "fetch_idx"):  # yaml/json give lists
        value = getattr(cfg, key)
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ValueError(f"{name}.{key} must be a sequence of ints, got {value!r}")
        object.__setattr__(cfg, key, tuple(int(v) for v in value))
    for key in positive:
        if int(getattr(cfg, key)) < 1:
            raise ValueError(f"{name}.{key} must be >= 1, got {getattr(cfg, key)}")
    if cfg.embed_dim % cfg.num_heads:
        raise ValueError(f"embed_dim {cfg.embed_dim} is not divisible by num_heads {cfg.num_heads}")
    if cfg.encoder_dims != cfg.embed_dim:
        raise ValueError(
            f"encoder_dims ({cfg.encoder_dims}) must equal embed_dim ({cfg.embed_dim}): "
            "the official segmentation models have no reduce_dim"
        )
    if not 0.0 <= cfg.drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {cfg.drop_path_rate}")
    if not cfg.fp_dims or min(cfg.fp_dims) < 1:
        raise ValueError(f"fp_dims must be a non-empty sequence of positive widths, got {cfg.fp_dims}")
    if len(cfg.head_dims) != 2 or min(cfg.head_dims) < 1:
        raise ValueError(f"head_dims must be two positive widths (convs1, convs2), got {cfg.head_dims}")
    f = cfg.fetch_idx
    if not f or min(f) < 0 or any(b <= a for a, b in zip(f, f[1:])):
        raise ValueError(f"fetch_idx must be non-empty, non-negative and strictly increasing, got {f}")
    if cfg.depth <= max(f):
        raise ValueError(
            f"depth ({cfg.depth}) must exceed max(fetch_idx) = {max(f)}: the output of block {max(f)} "
            "is tapped (the official model needs depth >= 12)"
        )


@dataclass
class SegFeatures:
    """What a segmentation model's ``forward_features`` returns.

    Attributes:
        feature: ``[B, T*C, G]`` the normed taps concatenated along channels, in tap order
            (the official ``x``; 1152 channels at full size).
        taps: ``T`` tensors ``[B, G, C]``: ``norm(output of block i)`` for i in ``fetch_idx``.
        centers: ``[B, G, 3]`` patch centres (FPS points).
        points: ``[B, N, 3]`` the cloud, in the model's dtype (feature propagation needs it).
    """

    feature: torch.Tensor
    taps: tuple[torch.Tensor, ...]
    centers: torch.Tensor
    points: torch.Tensor
    batched: bool = field(default=True, repr=False)

    def global_feature(self) -> torch.Tensor:
        """``cat(max over groups, mean over groups)`` of :attr:`feature`: ``[B, 2*T*C]``."""
        return torch.cat([self.feature.max(dim=-1)[0], self.feature.mean(dim=-1)], dim=-1)

    def squeeze_batch(self) -> SegFeatures:
        taps = tuple(t[0] for t in self.taps)
        return type(self)(self.feature[0], taps, self.centers[0], self.points[0], batched=False)

    def unsqueeze_batch(self) -> SegFeatures:
        return type(self)(self.feature[None], tuple(t[None] for t in self.taps), self.centers[None],
                          self.points[None], batched=True)


class SegmentationNet(PretrainedMixin, nn.Module):
    """Trunk + feature-propagation head shared by :class:`~act_zoo.models.ACTPartSeg` and
    :class:`~act_zoo.models.ACTSemSeg` (see the module docstring). Subclasses call
    :meth:`_build_trunk`, add their own modules, call :meth:`_build_head`, then
    :meth:`init_weights` -- that order is the official key order."""

    config: Any

    # -- construction ------------------------------------------------------------------------
    def _build_trunk(self) -> None:
        cfg = self.config
        C = cfg.embed_dim
        self.encoder = MiniPointNet(cfg.encoder_dims)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, C))
        self.blocks = TransformerEncoder(
            C,
            cfg.depth,
            cfg.num_heads,
            drop_path_rate=drop_path_schedule(cfg.drop_path_rate, cfg.depth),
            scale_before_matmul=True,  # segmentation Attention: (q * scale) @ k^T
        )
        self.norm = nn.LayerNorm(C)

    def _build_head(self, head_in_dim: int) -> None:
        cfg = self.config
        self.propagation_0_cls = PointNetFeaturePropagation(cfg.feature_dim + 3, cfg.fp_dims)
        h1, h2 = cfg.head_dims
        self.convs1_cls = nn.Conv1d(head_in_dim, h1, 1)
        self.dp1 = nn.Dropout(0.5)
        self.convs2_cls = nn.Conv1d(h1, h2, 1)
        self.convs3_cls = nn.Conv1d(h2, cfg.cls_dim, 1)
        self.bns1_cls = nn.BatchNorm1d(h1)
        self.bns2_cls = nn.BatchNorm1d(h2)

    def init_weights(self) -> None:
        """The official fresh init (``_init_weights``): trunc_normal(0.02) with zero bias for
        every Linear and Conv1d (mini-PointNet included), LayerNorm 1/0, BatchNorm default."""
        self.apply(trunc_normal_init)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.reset_parameters()

    def set_fast_path(self, enabled: bool = True) -> SegmentationNet:
        """Fast paths (default) or the official reference ops everywhere (see module docstring)."""
        return set_fast_path(self, enabled)

    @property
    def fast(self) -> bool:
        """Whether the head takes its fast path: follows the blocks' switch, so that
        :func:`act_zoo.models.common.set_fast_path` flips the whole model."""
        return self.blocks.fast

    @property
    def dtype(self) -> torch.dtype:
        return self.norm.weight.dtype

    # -- encoder -------------------------------------------------------------------------------
    def patchify(self, points: torch.Tensor) -> Patches:
        """``points [B, N, 3]`` -> FPS centres and kNN neighbourhoods (official ``Group``)."""
        return group_points(points, self.config.num_group, self.config.group_size)

    def forward_taps(self, tokens: torch.Tensor, centers: torch.Tensor) -> list[torch.Tensor]:
        """Patch tokens ``[B, G, C]`` -> ``norm(block_i output)`` ``[B, G, C]`` for i in
        ``fetch_idx``; blocks after the last tap are skipped."""
        pos = self.pos_embed(centers)  # B G C
        fetch = self.config.fetch_idx
        # on the inference path the yielded stream is updated in place: norm() copies it
        return [self.norm(x) for i, x in self.blocks.iter_blocks(tokens, pos, depth=fetch[-1] + 1) if i in fetch]

    def forward_features(self, points: torch.Tensor) -> SegFeatures:
        """``points [B, N, 3]`` (or one cloud ``[N, 3]``) -> :class:`SegFeatures`.

        Note the official ``forward`` takes ``[B, 3, N]``; here points are ``[B, N, 3]``."""
        points, unbatched = prepare_points(
            points, num_group=self.config.num_group, group_size=self.config.group_size, dtype=self.dtype
        )
        patches = self.patchify(points)
        tokens = self.encoder(patches.neighborhood)  # B G C
        taps = self.forward_taps(tokens, patches.center)  # T x [B G C]
        feature = torch.cat([t.transpose(1, 2) for t in taps], dim=1)  # B TC G
        feats = SegFeatures(feature, tuple(taps), patches.center, points)
        return feats.squeeze_batch() if unbatched else feats

    # -- head ----------------------------------------------------------------------------------
    def _seg_head(self, feats: SegFeatures, extra: torch.Tensor | None) -> torch.Tensor:
        """Batched features + an optional per-cloud vector ``[B, L]`` appended after max and
        avg (the part-seg label embedding) -> log-probabilities ``[B, N, cls_dim]``."""
        return self._head_fast(feats, extra) if self.fast else self._head_reference(feats, extra)

    def _head_reference(self, feats: SegFeatures, extra: torch.Tensor | None) -> torch.Tensor:
        """The official head, op for op (channels-first)."""
        x = feats.feature  # B TC G
        N = feats.points.shape[1]
        x_max = torch.max(x, 2)[0]  # B TC
        x_avg = torch.mean(x, 2)  # B TC
        x_max_feature = x_max.unsqueeze(-1).repeat(1, 1, N)  # B TC N
        x_avg_feature = x_avg.unsqueeze(-1).repeat(1, 1, N)  # B TC N
        parts = [x_max_feature, x_avg_feature]
        if extra is not None:
            parts.append(extra.unsqueeze(-1).repeat(1, 1, N))  # B L N
        x_global = torch.cat(parts, 1)  # B 2TC(+L) N
        f = self.propagation_0_cls(feats.points, feats.centers, x)  # B F N
        x = torch.cat((f, x_global), 1)  # B F+2TC(+L) N
        x = F.relu(self.bns1_cls(self.convs1_cls(x)))  # B H1 N
        x = self.dp1(x)
        x = F.relu(self.bns2_cls(self.convs2_cls(x)))  # B H2 N
        x = self.convs3_cls(x)  # B K N
        return F.log_softmax(x, dim=1).permute(0, 2, 1)  # B N K

    def _head_fast(self, feats: SegFeatures, extra: torch.Tensor | None) -> torch.Tensor:
        """Channels-last head: ``convs1`` split into its per-point (fp) and per-cloud (max,
        avg, extra) halves, eval-mode BatchNorms folded (see module docstring)."""
        x = feats.feature  # B TC G
        inplace = not torch.is_grad_enabled()
        pooled = [torch.max(x, 2)[0], torch.mean(x, 2)] + ([extra] if extra is not None else [])
        g = torch.cat(pooled, dim=1)  # B 2TC(+L)
        f = self.propagation_0_cls.forward_fast(feats.points, feats.centers, x)  # B N F
        Fd = f.shape[-1]
        w, b, folded = conv_affine(self.convs1_cls, self.bns1_cls)
        per_cloud = F.linear(g, w[:, Fd:], b).unsqueeze(1)  # B 1 H1
        h = torch.matmul(f, w[:, :Fd].t())  # B N H1
        h = h.add_(per_cloud) if inplace else h + per_cloud
        h = relu_(h if folded else bn_channels_last(self.bns1_cls, h), inplace)  # B N H1
        h = self.dp1(h)
        w, b, folded = conv_affine(self.convs2_cls, self.bns2_cls)
        h = F.linear(h, w, b)  # B N H2
        h = relu_(h if folded else bn_channels_last(self.bns2_cls, h), inplace)
        logits = F.linear(h, self.convs3_cls.weight[:, :, 0], self.convs3_cls.bias)  # B N K
        return F.log_softmax(logits, dim=-1)  # B N K


__all__ = ["SegFeatures", "SegmentationNet", "validate_segmentation_config"]
