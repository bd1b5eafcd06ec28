"""Furthest point sampling."""

from __future__ import annotations

import torch

from ._backend import dispatch
from ._checks import check_cloud_batch


def furthest_point_sample(xyz: torch.Tensor, n: int) -> torch.Tensor:
    """Furthest point sampling with the official ``pointnet2_ops`` semantics.

    Args:
        xyz: ``[B, N, 3]`` floating points (computed in float32, like the CUDA kernel).
        n: number of points to pick, ``0 <= n <= N``.

    Returns:
        ``[B, n]`` int64 indices. The first index is always 0; each next one is the point
        whose running minimum squared distance to the picked set is largest (the lowest
        index on ties). Points with ``|p|^2 <= 1e-3`` are never updated or picked after
        index 0, exactly like the official kernel.
    """
    check_cloud_batch(xyz, "xyz")
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 0 or n > xyz.shape[1]:
        raise ValueError(f"cannot sample {n} points from a cloud of {xyz.shape[1]} points")
    return dispatch("furthest_point_sample", xyz.device)(xyz, n)


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``out[b, i...] = points[b, idx[b, i...]]`` for ``points [B, N, C]`` and int ``idx [B, ...]``."""
    if idx.shape[0] != points.shape[0]:
        raise ValueError(f"batch sizes differ: points {points.shape[0]} vs idx {idx.shape[0]}")
    B, N, C = points.shape
    flat = idx.reshape(B, -1).long()  # B K
    out = points.gather(1, flat.unsqueeze(-1).expand(-1, -1, C))  # B K C
    return out.reshape(*idx.shape, C)
