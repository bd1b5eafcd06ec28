"""Input checks shared by the point ops: every problem is a ``ValueError`` naming it."""

from __future__ import annotations

import torch


def tracing() -> bool:
    """True while torch.export / torch.compile / ONNX export trace the code: value-dependent
    checks and branches must be skipped then (shapes are still checked)."""
    return bool(torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()
                or torch.onnx.is_in_onnx_export())


def check_cloud_batch(x: torch.Tensor, name: str, *, allow_empty: bool = True) -> None:
    """``x`` must be a floating ``[B, N, 3]`` tensor of finite values."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3 or x.shape[-1] != 3:
        raise ValueError(f"{name} must have shape [B, N, 3], got {list(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if not allow_empty and x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {list(x.shape)})")
    if x.numel() and x.device.type != "meta" and not tracing() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf values")


def check_same_batch(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{names}: batch sizes differ ({a.shape[0]} vs {b.shape[0]})")
    if a.device != b.device:
        raise ValueError(f"{names}: tensors are on different devices ({a.device} vs {b.device})")
