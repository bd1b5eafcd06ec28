"""The ACT part-segmentation network (official ``part_segmentation/models/pt.py``, ``get_model``).

One file, read top to bottom: patchify (FPS + kNN) -> mini-PointNet patch tokens (no cls
token, no ``reduce_dim``) -> Transformer, each block sees ``x + pos`` -> the outputs of blocks
``fetch_idx`` (3, 7, 11), each through the shared final LayerNorm -> ``feature [B, 3C, G]``
-> head: max and mean pooling over the groups, a category label embedding, feature
propagation from the G centres to the N points (3 nearest centres, inverse squared-distance
weights), ``convs1/bns1/convs2/bns2/convs3`` -> ``log_softmax`` -> ``[B, N, parts]``.

Module names are the official ones (``encoder``, ``pos_embed``, ``blocks``, ``norm``,
``label_conv_cls``, ``propagation_0_cls.mlp_convs/mlp_bns``, ``convs1_cls`` ... ``convs3_cls``,
``bns1_cls``, ``bns2_cls``), so an official ``model_state_dict`` loads as is.

Two paths compute the same function (switch with :meth:`ACTPartSeg.set_fast_path`):

* reference (``set_fast_path(False)``): the official sequence of ops -- channels-first
  Conv1d, manual attention ``(q * scale) @ k^T``, the interpolated features materialised at
  every point, the pooled features repeated N times and concatenated;
* fast (default): fused attention and the fast mini-PointNet; the head runs channels-last
  and exploits linearity twice -- (1) the first feature-propagation conv is applied to the
  G centre features *before* interpolation (the weights sum to 1, so
  ``W @ sum_j w_j f_j = sum_j w_j (W @ f_j)``), which replaces a ``(3C+3) x 4C`` product per
  point by one per centre; (2) the pooled/label part of ``convs1`` is computed once per cloud
  instead of once per point. In eval mode every BatchNorm of the head is folded into the
  preceding layer on the fly (recomputed at each call from the canonical parameters). In
  eval mode without autograd, the blocks run through the in-place single-stream maths of
  :meth:`TransformerEncoder.forward_inference`, stopping after the last tapped block.

Both paths agree within float32 rounding (tested against the official fixtures and against
each other, gradients included).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._shapenetpart import (
    SHAPENETPART_CATEGORIES,
    SHAPENETPART_NUM_CATEGORIES,
    SHAPENETPART_NUM_PARTS,
    SHAPENETPART_SEG_CLASSES,
)
from ..layers import (
    MiniPointNet,
    TransformerEncoder,
    drop_path_schedule,
    fold_batchnorm,
    trunc_normal_init,
)
from ..ops import Patches, group_points
from .common import PretrainedMixin, prepare_points, set_fast_path

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
        for name in ("fp_dims", "head_dims", "fetch_idx"):  # yaml/json give lists
            value = getattr(self, name)
            if not isinstance(value, Sequence) or isinstance(value, str):
                raise ValueError(f"{type(self).__name__}.{name} must be a sequence of ints, got {value!r}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        for name in ("embed_dim", "depth", "num_heads", "group_size", "num_group", "encoder_dims", "cls_dim",
                     "num_classes", "label_dim", "npoints"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{type(self).__name__}.{name} must be >= 1, got {getattr(self, name)}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.encoder_dims != self.embed_dim:
            raise ValueError(
                f"encoder_dims ({self.encoder_dims}) must equal embed_dim ({self.embed_dim}): "
                "the official part-segmentation model has no reduce_dim"
            )
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if not self.fp_dims or min(self.fp_dims) < 1:
            raise ValueError(f"fp_dims must be a non-empty sequence of positive widths, got {self.fp_dims}")
        if len(self.head_dims) != 2 or min(self.head_dims) < 1:
            raise ValueError(f"head_dims must be two positive widths (convs1, convs2), got {self.head_dims}")
        f = self.fetch_idx
        if not f or min(f) < 0 or any(b <= a for a, b in zip(f, f[1:])):
            raise ValueError(f"fetch_idx must be non-empty, non-negative and strictly increasing, got {f}")
        if self.depth <= max(f):
            raise ValueError(
                f"depth ({self.depth}) must exceed max(fetch_idx) = {max(f)}: the output of block {max(f)} "
                "is tapped (the official model needs depth >= 12)"
            )

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
# feature propagation (official PointNetFeaturePropagation, k = 3)
# ----------------------------------------------------------------------------------------------
def square_distance(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Official ``square_distance``: ``-2 src @ dst^T``, then ``+ |src|^2``, then ``+ |dst|^2``.

    Not the direct difference: a point that is itself in ``dst`` gets 0 or ~1e-7 of either
    sign. ``src [B, N, 3]``, ``dst [B, M, 3]`` -> ``[B, N, M]``."""
    B, N, _ = src.shape
    M = dst.shape[1]
    dist = -2 * torch.matmul(src, dst.transpose(1, 2))  # B N M
    dist = dist + torch.sum(src**2, -1).view(B, N, 1)
    return dist + torch.sum(dst**2, -1).view(B, 1, M)  # B N M


class NearestCenters(NamedTuple):
    sq_dist: torch.Tensor  # B N 3, official squared distances, ascending
    idx: torch.Tensor  # B N 3, int64 indices of the centres
    weight: torch.Tensor  # B N 3, 1/(d + 1e-8) normalised to sum 1


def three_nearest_centers(xyz: torch.Tensor, centers: torch.Tensor) -> NearestCenters:
    """The 3 nearest centres of every point and their interpolation weights (official rule).

    ``xyz [B, N, 3]``, ``centers [B, G, 3]`` (G >= 3). Distances by :func:`square_distance`,
    computed in float32 at least (also under autocast); ties go to the lower centre index.
    Weights are ``1 / (d + 1e-8)`` normalised over the three."""
    if centers.shape[1] < 3:
        raise ValueError(f"feature propagation needs at least 3 centres, got {centers.shape[1]}")
    with torch.autocast(xyz.device.type, enabled=False):
        low = xyz.dtype in (torch.float16, torch.bfloat16)
        src, dst = (xyz.float(), centers.float()) if low else (xyz, centers)
        dists = square_distance(src, dst)  # B N G
        dists, idx = dists.sort(dim=-1, stable=True)
        dists, idx = dists[:, :, :3], idx[:, :, :3]  # B N 3
        recip = 1.0 / (dists + 1e-8)  # B N 3
        weight = recip / torch.sum(recip, dim=2, keepdim=True)  # B N 3
    return NearestCenters(dists, idx, weight.to(xyz.dtype) if low else weight)


def interpolate(features: torch.Tensor, nearest: NearestCenters) -> torch.Tensor:
    """Official interpolation: ``sum_j w_j * features[:, idx_j]``.

    ``features [B, G, D]`` (channels-last) -> ``[B, N, D]``."""
    B, N, _ = nearest.idx.shape
    index = nearest.idx.reshape(B, N * 3, 1).expand(-1, -1, features.shape[-1])  # B 3N D
    gathered = features.gather(1, index)  # B 3N D
    return torch.sum(gathered.view(B, N, 3, -1) * nearest.weight.view(B, N, 3, 1), dim=2)  # B N D


def _interpolate_fast(features: torch.Tensor, nearest: NearestCenters) -> torch.Tensor:
    """:func:`interpolate` with three row gathers instead of one ``[B, N, 3, D]`` product."""
    B, G, D = features.shape
    N = nearest.idx.shape[1]
    flat = features.reshape(B * G, D)  # BG D
    offset = torch.arange(B, device=nearest.idx.device).view(B, 1, 1) * G  # B 1 1
    rows = (nearest.idx + offset).reshape(B * N, 3)  # BN 3
    w = nearest.weight.reshape(B * N, 3, 1)  # BN 3 1
    if torch.is_grad_enabled():
        out = flat[rows[:, 0]] * w[:, 0]
        out = out + flat[rows[:, 1]] * w[:, 1] + flat[rows[:, 2]] * w[:, 2]  # BN D
    else:
        out = flat.index_select(0, rows[:, 0]).mul_(w[:, 0])  # BN D
        out.addcmul_(flat.index_select(0, rows[:, 1]), w[:, 1])
        out.addcmul_(flat.index_select(0, rows[:, 2]), w[:, 2])
    return out.view(B, N, D)


def _affine(conv: nn.Conv1d, bn: nn.BatchNorm1d | None) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """Linear-layout ``(weight [out, in], bias, folded)`` of a 1x1 conv; an eval-mode BN is folded."""
    w, b = conv.weight[:, :, 0], conv.bias
    if bn is not None and not bn.training:
        w, b = fold_batchnorm(w, b, bn)
        return w, b, True
    return w, b, False


def _bn_channels_last(bn: nn.BatchNorm1d, h: torch.Tensor) -> torch.Tensor:
    """Training-mode BatchNorm1d on ``[B, N, C]`` (statistics over B*N, like ``[B, C, N]``)."""
    return bn(h.reshape(-1, h.shape[-1])).view(h.shape)


class PointNetFeaturePropagation(nn.Module):
    """Official ``PointNetFeaturePropagation`` as used by the part-seg head (k = 3, ``points1``
    = the raw xyz): input ``cat([xyz, interpolated])`` (xyz first), then Conv1d/BN/ReLU layers."""

    def __init__(self, in_channel: int, mlp: Sequence[int]) -> None:
        super().__init__()
        self.mlp_convs = nn.ModuleList()
        self.mlp_bns = nn.ModuleList()
        last = in_channel
        for out in mlp:
            self.mlp_convs.append(nn.Conv1d(last, out, 1))
            self.mlp_bns.append(nn.BatchNorm1d(out))
            last = out

    def forward(self, xyz: torch.Tensor, centers: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Reference path. ``xyz [B, N, 3]``, ``centers [B, G, 3]``, ``features [B, D, G]``
        -> ``[B, mlp[-1], N]``."""
        nearest = three_nearest_centers(xyz, centers)
        interpolated = interpolate(features.transpose(1, 2), nearest)  # B N D
        x = torch.cat([xyz, interpolated], dim=-1).transpose(1, 2)  # B 3+D N
        for conv, bn in zip(self.mlp_convs, self.mlp_bns):
            x = F.relu(bn(conv(x)))  # B c N
        return x

    def forward_fast(self, xyz: torch.Tensor, centers: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Fast path (differentiable), channels-last: ``-> [B, N, mlp[-1]]``.

        The first conv's feature half is applied at the G centres, then interpolated."""
        nearest = three_nearest_centers(xyz, centers)
        inplace = not torch.is_grad_enabled()
        w, b, folded = _affine(self.mlp_convs[0], self.mlp_bns[0])
        projected = torch.matmul(features.transpose(1, 2), w[:, 3:].t())  # B G c0
        h = _interpolate_fast(projected, nearest)  # B N c0
        h = h.add_(F.linear(xyz, w[:, :3], b)) if inplace else h + F.linear(xyz, w[:, :3], b)  # B N c0
        h = _relu(h if folded else _bn_channels_last(self.mlp_bns[0], h), inplace)
        for conv, bn in zip(self.mlp_convs[1:], self.mlp_bns[1:]):
            w, b, folded = _affine(conv, bn)
            h = F.linear(h, w, b)  # B N c
            h = _relu(h if folded else _bn_channels_last(bn, h), inplace)
        return h


def _relu(x: torch.Tensor, inplace: bool) -> torch.Tensor:
    return x.relu_() if inplace else F.relu(x)


# ----------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------
@dataclass
class PartSegFeatures:
    """What :meth:`ACTPartSeg.forward_features` returns.

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

    def squeeze_batch(self) -> "PartSegFeatures":
        taps = tuple(t[0] for t in self.taps)
        return PartSegFeatures(self.feature[0], taps, self.centers[0], self.points[0], batched=False)

    def unsqueeze_batch(self) -> "PartSegFeatures":
        return PartSegFeatures(self.feature[None], tuple(t[None] for t in self.taps), self.centers[None],
                               self.points[None], batched=True)


class ACTPartSeg(PretrainedMixin, nn.Module):
    """The official part-segmentation model (``get_model``): ACT encoder taps + PointNet++-style
    feature propagation head. ``forward(points [B, N, 3], category)`` -> log-probabilities
    ``[B, N, cls_dim]``."""

    def __init__(self, config: PartSegConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else PartSegConfig()
        C = config.embed_dim
        self.encoder = MiniPointNet(config.encoder_dims)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, C))
        self.blocks = TransformerEncoder(
            C,
            config.depth,
            config.num_heads,
            drop_path_rate=drop_path_schedule(config.drop_path_rate, config.depth),
            scale_before_matmul=True,  # part-seg Attention: (q * scale) @ k^T
        )
        self.norm = nn.LayerNorm(C)
        self.label_conv_cls = nn.Sequential(
            nn.Conv1d(config.num_classes, config.label_dim, kernel_size=1, bias=False),
            nn.BatchNorm1d(config.label_dim),
            nn.LeakyReLU(0.2),
        )
        self.propagation_0_cls = PointNetFeaturePropagation(config.feature_dim + 3, config.fp_dims)
        h1, h2 = config.head_dims
        self.convs1_cls = nn.Conv1d(config.head_in_dim, h1, 1)
        self.dp1 = nn.Dropout(0.5)
        self.convs2_cls = nn.Conv1d(h1, h2, 1)
        self.convs3_cls = nn.Conv1d(h2, config.cls_dim, 1)
        self.bns1_cls = nn.BatchNorm1d(h1)
        self.bns2_cls = nn.BatchNorm1d(h2)
        self.init_weights()

    # -- construction ------------------------------------------------------------------------
    def init_weights(self) -> None:
        """The official fresh init (``_init_weights``): trunc_normal(0.02) with zero bias for
        every Linear and Conv1d (mini-PointNet included), LayerNorm 1/0, BatchNorm default."""
        self.apply(trunc_normal_init)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.reset_parameters()

    def set_fast_path(self, enabled: bool = True) -> "ACTPartSeg":
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

    def forward_features(self, points: torch.Tensor) -> PartSegFeatures:
        """``points [B, N, 3]`` (or one cloud ``[N, 3]``) -> :class:`PartSegFeatures`.

        Note the official ``forward`` takes ``[B, 3, N]``; here points are ``[B, N, 3]``."""
        points, unbatched = prepare_points(
            points, num_group=self.config.num_group, group_size=self.config.group_size, dtype=self.dtype
        )
        patches = self.patchify(points)
        tokens = self.encoder(patches.neighborhood)  # B G C
        taps = self.forward_taps(tokens, patches.center)  # T x [B G C]
        feature = torch.cat([t.transpose(1, 2) for t in taps], dim=1)  # B TC G
        feats = PartSegFeatures(feature, tuple(taps), patches.center, points)
        return feats.squeeze_batch() if unbatched else feats

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
        out = self._head_fast(feats, one_hot) if self.fast else self._head_reference(feats, one_hot)
        return out[0] if single else out

    def _head_reference(self, feats: PartSegFeatures, one_hot: torch.Tensor) -> torch.Tensor:
        """The official head, op for op (channels-first)."""
        x = feats.feature  # B TC G
        B, N = feats.points.shape[:2]
        x_max = torch.max(x, 2)[0]  # B TC
        x_avg = torch.mean(x, 2)  # B TC
        label = self.label_conv_cls(one_hot.view(B, -1, 1))  # B L 1
        x_max_feature = x_max.unsqueeze(-1).repeat(1, 1, N)  # B TC N
        x_avg_feature = x_avg.unsqueeze(-1).repeat(1, 1, N)  # B TC N
        x_global = torch.cat((x_max_feature, x_avg_feature, label.repeat(1, 1, N)), 1)  # B 2TC+L N
        f = self.propagation_0_cls(feats.points, feats.centers, x)  # B F N
        x = torch.cat((f, x_global), 1)  # B F+2TC+L N
        x = F.relu(self.bns1_cls(self.convs1_cls(x)))  # B H1 N
        x = self.dp1(x)
        x = F.relu(self.bns2_cls(self.convs2_cls(x)))  # B H2 N
        x = self.convs3_cls(x)  # B P N
        return F.log_softmax(x, dim=1).permute(0, 2, 1)  # B N P

    def _head_fast(self, feats: PartSegFeatures, one_hot: torch.Tensor) -> torch.Tensor:
        """Channels-last head: ``convs1`` split into its per-point (fp) and per-cloud
        (max, avg, label) halves, eval-mode BatchNorms folded (see module docstring)."""
        x = feats.feature  # B TC G
        B = x.shape[0]
        inplace = not torch.is_grad_enabled()
        label = self.label_conv_cls(one_hot.view(B, -1, 1))[:, :, 0]  # B L
        g = torch.cat((torch.max(x, 2)[0], torch.mean(x, 2), label), dim=1)  # B 2TC+L
        f = self.propagation_0_cls.forward_fast(feats.points, feats.centers, x)  # B N F
        Fd = f.shape[-1]
        w, b, folded = _affine(self.convs1_cls, self.bns1_cls)
        per_cloud = F.linear(g, w[:, Fd:], b).unsqueeze(1)  # B 1 H1
        h = torch.matmul(f, w[:, :Fd].t())  # B N H1
        h = h.add_(per_cloud) if inplace else h + per_cloud
        h = _relu(h if folded else _bn_channels_last(self.bns1_cls, h), inplace)  # B N H1
        h = self.dp1(h)
        w, b, folded = _affine(self.convs2_cls, self.bns2_cls)
        h = F.linear(h, w, b)  # B N H2
        h = _relu(h if folded else _bn_channels_last(self.bns2_cls, h), inplace)
        logits = F.linear(h, self.convs3_cls.weight[:, :, 0], self.convs3_cls.bias)  # B N P
        return F.log_softmax(logits, dim=-1)  # B N P

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
# loss, prediction and metrics (official main.py)
# ----------------------------------------------------------------------------------------------
def part_seg_loss(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Official training loss: ``F.nll_loss(log_probs.view(-1, P), target.view(-1))``."""
    return F.nll_loss(log_probs.reshape(-1, log_probs.shape[-1]), target.reshape(-1).long())


def _parts_table(seg_classes: Sequence[Sequence[int]] | None) -> tuple[tuple[int, ...], ...]:
    if seg_classes is None:
        table = SHAPENETPART_PARTS
    else:
        table = tuple(tuple(int(p) for p in c) for c in seg_classes)
    for c, parts in enumerate(table):
        if not parts or list(parts) != list(range(parts[0], parts[0] + len(parts))):
            raise ValueError(f"the parts of category {c} must be a non-empty contiguous range, got {parts}")
    return table


def _category_index(
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
    table = _parts_table(seg_classes)
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
    table = _parts_table(seg_classes)
    single = log_probs.dim() == 2
    lp = log_probs.unsqueeze(0) if single else log_probs
    if lp.dim() != 3:
        raise ValueError(f"log_probs must have shape [B, N, P] or [N, P], got {list(log_probs.shape)}")
    cats = _category_index(category, lp.shape[0], len(table))
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
    table = _parts_table(seg_classes)
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

    ``category`` defaults to the official rule, :func:`category_from_target`."""
    single = pred.dim() == 1
    p, t = (pred.unsqueeze(0), target.unsqueeze(0)) if single else (pred, target)
    if p.shape != t.shape or p.dim() != 2:
        raise ValueError(
            f"pred and target must both be [B, N] or [N], got {list(pred.shape)} and {list(target.shape)}"
        )
    table = _parts_table(seg_classes)
    if category is None:
        cats = category_from_target(t, seg_classes=table)
    else:
        cats = _category_index(category, p.shape[0], len(table))
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


__all__ = [
    "ACTPartSeg",
    "NearestCenters",
    "PartSegConfig",
    "PartSegFeatures",
    "PointNetFeaturePropagation",
    "SHAPENETPART",
    "SHAPENETPART_CATEGORIES",
    "SHAPENETPART_NUM_CATEGORIES",
    "SHAPENETPART_NUM_PARTS",
    "SHAPENETPART_PARTS",
    "SHAPENETPART_SEG_CLASSES",
    "category_from_target",
    "class_miou",
    "instance_miou",
    "interpolate",
    "part_iou",
    "part_seg_loss",
    "per_class_miou",
    "predict_parts",
    "shape_iou",
    "square_distance",
    "three_nearest_centers",
]
