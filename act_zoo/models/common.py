"""Pieces shared by every model family: input checks, the feature record, fast-path switches."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..layers import set_fused_attention
from ..ops import tracing


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
    if points.device.type != "meta" and not tracing() and not bool(torch.isfinite(points).all()):
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
    """Switch every fast path (fused attention, and every layer with a ``fast`` switch: the
    mini-PointNet, DGCNN, decoder, the in-place inference stack) on (default) or to the
    official reference computation."""
    set_fused_attention(module, enabled)
    for m in module.modules():
        if isinstance(m.__dict__.get("fast"), bool):  # instance switches (not derived properties)
            m.fast = bool(enabled)
    return module


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a (possibly nested) config dataclass; ``init=False`` fields skipped."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            value = config_to_dict(value)
        elif hasattr(config, "teacher_value") and f.name == "teacher":
            value = config.teacher_value()
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def config_from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Inverse of :func:`config_to_dict`; unknown keys raise ``ValueError`` naming them."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        ftype = fields[name].type
        default = fields[name].default
        if dataclasses.is_dataclass(default) and isinstance(value, Mapping):
            value = config_from_dict(type(default), value)
        elif isinstance(value, list) and isinstance(default, tuple):
            value = tuple(value)
        del ftype
        kwargs[name] = value
    return cls(**kwargs)


class PretrainedMixin:
    """``save_pretrained`` / ``push_to_hub`` on every act_zoo model.

    The work is done by :mod:`act_zoo.hub.io`, imported only when called, so the model
    modules themselves import nothing from ``hub`` (a network knows no files)."""

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> Any:
        """Write ``config.json`` + ``model.safetensors`` + a ``README.md`` model card."""
        from ..hub.io import save_pretrained

        return save_pretrained(self, save_directory, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Upload :meth:`save_pretrained`'s files to a Hugging Face hub repository."""
        from ..hub.io import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)
