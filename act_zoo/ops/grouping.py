"""Patchify a cloud: FPS centres, their k nearest neighbours, neighbourhoods relative to the centre."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._checks import check_cloud_batch
from .knn import knn
from .sampling import furthest_point_sample, gather_points


class Patches(NamedTuple):
    neighborhood: torch.Tensor  # B G M 3, relative to the centre
    center: torch.Tensor  # B G 3
    center_idx: torch.Tensor  # B G  (FPS indices into the cloud)
    knn_idx: torch.Tensor  # B G M (indices into the cloud, nearest first)


def group_points(xyz: torch.Tensor, num_group: int, group_size: int) -> Patches:
    """The official ``Group`` module: ``num_group`` FPS centres and the ``group_size``
    nearest points of each (the centre itself first), minus the centre."""
    check_cloud_batch(xyz, "points")
    n = xyz.shape[1]
    if num_group > n or group_size > n:
        raise ValueError(
            f"a cloud of {n} points is too small for num_group={num_group} and group_size={group_size}"
        )
    center_idx = furthest_point_sample(xyz, num_group)  # B G
    center = gather_points(xyz, center_idx)  # B G 3
    _, knn_idx = knn(xyz, center, group_size)  # B G M
    neighborhood = gather_points(xyz, knn_idx) - center.unsqueeze(2)  # B G M 3
    return Patches(neighborhood, center, center_idx, knn_idx)
