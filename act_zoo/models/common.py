"""Pieces shared by every model family: input checks, the feature record, fast-path switches."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..layers import DGCNN, FoldingDecoder, MiniPointNet, TransformerEncoder, set_fused_attention


def prepare_points(
    points: torch.Tensor, *, num_group: int, group_size: int, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, bool]:
    """Check a cloud batch and return ``(points [B, N, 3], was_unbatched)``.

    Accepts ``[B, N, 3]`` or a single cloud ``[N, 3]``. Raises ``ValueError`` naming the
    problem for any other shape, an empty batch or cloud, a non-float dtype, NaN/inf, or
    fewer points than ``num_group``/``group_size``. ``dtype`` (the model's) is applied."""
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"points must be a torch.Tensor, got {type(points).__name__}")
    unbatched = points.dim() == 2
    if unbatched:
        points = points.unsqueeze(0)
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must have shape [B, N, 3] or [N, 3], got {list(points.shape if not unbatched else points.shape[1:])}")
    if not points.is_floating_point():
        raise ValueError(f"points must be a floating-point tensor, got dtype {points.dtype}")
    B, N, _ = points.shape
    if B == 0:
        raise ValueError("points is an empty batch (B = 0)")
    if N == 0:
        raise ValueError("points holds empty clouds (N = 0)")
    if N < num_group or N < group_size:
        raise ValueError(
            f"clouds have {N} points, fewer than the model needs "
            f"(num_group={num_group}, group_size={group_size})"
        )
    if points.device.type != "meta" and not bool(torch.isfinite(points).all()):
        raise ValueError("points contains NaN or inf values")
    if dtype is not None and points.dtype != dtype:
        points = points.to(dtype)
    return points, unbatched


@dataclass
class PointFeatures:
    """What ``forward_features`` returns.

    Attributes:
        global_feature: ``[B, 2C]`` the official pooled feature ``cat(cls, max over tokens)``.
        tokens: ``[B, G, C]`` patch tokens after the final norm (cls excluded).
        centers: ``[B, G, 3]`` patch centres (FPS points), in the input's coordinates.
        cls: ``[B, C]`` the normed cls token.
    """

    global_feature: torch.Tensor
    tokens: torch.Tensor
    centers: torch.Tensor
    cls: torch.Tensor

    def squeeze_batch(self) -> "PointFeatures":
        return PointFeatures(self.global_feature[0], self.tokens[0], self.centers[0], self.cls[0])


try:  # make PointFeatures a pytree node so torch.export / torch.compile can return it
    torch.export.register_dataclass(PointFeatures, serialized_type_name="act_zoo.PointFeatures")
except Exception:  # pragma: no cover - older torch or registered twice
    pass


def set_fast_path(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every fast path (fused attention, the fast mini-PointNet, DGCNN and decoder, the
    in-place inference stack) on (default) or to the official reference computation."""
    set_fused_attention(module, enabled)
    for m in module.modules():
        if isinstance(m, (MiniPointNet, TransformerEncoder, DGCNN, FoldingDecoder)):
            m.fast = bool(enabled)
    return module
