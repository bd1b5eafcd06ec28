"""Deliberately naive reference twins of the point ops (numpy, loops, full sorts). Tests only."""

from __future__ import annotations

import numpy as np


def sq_dist_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[n,3] x [m,3] -> [n,m] as (dx*dx + dy*dy) + dz*dz in float32."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    d = [(a[:, None, c] - b[None, :, c]) for c in range(3)]
    return (d[0] * d[0] + d[1] * d[1]) + d[2] * d[2]


def fps_twin(xyz: np.ndarray, n: int) -> np.ndarray:
    """One cloud [N,3] -> [n] int64, official pointnet2 semantics (kernel loop, serial)."""
    pts = xyz.astype(np.float32)
    N = len(pts)
    temp = np.full(N, 1e10, dtype=np.float32)
    mag = (pts[:, 0] * pts[:, 0] + pts[:, 1] * pts[:, 1]) + pts[:, 2] * pts[:, 2]
    out = np.zeros(n, dtype=np.int64)
    old = 0
    for j in range(1, n):
        best, besti = np.float32(-1.0), 0
        c = pts[old]
        for k in range(N):
            if float(mag[k]) <= 1e-3:  # the kernel compares the float against a double literal
                continue
            d = pts[k] - c
            dist = (d[0] * d[0] + d[1] * d[1]) + d[2] * d[2]
            d2 = min(dist, temp[k])
            temp[k] = d2
            if d2 > best:
                best, besti = d2, k
        old = besti
        out[j] = besti
    return out


def knn_twin(ref: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """One cloud: full stable sort by (squared distance, index)."""
    d2 = sq_dist_np(query, ref)  # M N
    idx = np.stack([np.lexsort((np.arange(d2.shape[1]), row))[:k] for row in d2])
    return np.sqrt(np.take_along_axis(d2, idx, 1)), idx.astype(np.int64)


def chamfer_twin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d2 = sq_dist_np(x, y)
    return d2.min(1), d2.min(0)
