"""k nearest neighbours."""

from __future__ import annotations

import torch

from ._backend import dispatch
from ._checks import check_cloud_batch, check_same_batch


def knn(ref: torch.Tensor, query: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest ``ref`` points of every ``query`` point (official ``KNN_CUDA``).

    Args:
        ref: ``[B, N, 3]`` reference points.
        query: ``[B, M, 3]`` query points.
        k: neighbours per query, ``1 <= k <= N``.

    Returns:
        ``(dist, idx)``, both ``[B, M, k]``: Euclidean (square-rooted) float32 distances
        sorted ascending and int64 indices into ``ref``; equal distances go to the lower
        index. Memory is bounded (the distance matrix is built in chunks of queries), so a
        reference cloud of a million points fits in a few GB.
    """
    check_cloud_batch(ref, "ref")
    check_cloud_batch(query, "query")
    check_same_batch(ref, query, "knn(ref, query)")
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1 or k > ref.shape[1]:
        raise ValueError(f"cannot take k={k} neighbours from a reference cloud of {ref.shape[1]} points")
    return dispatch("knn", ref.device)(ref, query, k)
