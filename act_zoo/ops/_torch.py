"""Pure-torch implementations of the point ops (the ``torch`` backend).

They run unchanged on CPU and CUDA, batched, with no per-step allocation in the
sequential FPS loop. Squared distances are always formed as ``dx*dx + dy*dy + dz*dz``
in float32 (left to right), exactly as the official CUDA kernels, so indices match them
bit for bit, ties included.
"""

from __future__ import annotations

import torch

from ._checks import tracing

# Budget for one chunk of a [B, M, N] distance matrix (bytes); keeps 1M-point clouds in a few GB.
_CHUNK_BYTES = 256 * 1024 * 1024
# pointnet2_ops skips points with ``mag <= 1e-3`` (never updated/selected), comparing the float
# mag against a double literal: in float32 that is ``mag < float32(1e-3)`` (a float32 compare
# with ``<=`` would also skip mag == float32(1e-3) = 0.00100000005, which the kernel keeps).
_FPS_SKIP_MAG2 = 1e-3


def furthest_point_sample(xyz: torch.Tensor, n: int) -> torch.Tensor:
    """Official ``pointnet2_ops.furthest_point_sample`` semantics; returns int64 ``[B, n]``."""
    B, N, _ = xyz.shape
    idx = torch.zeros(B, n, dtype=torch.long, device=xyz.device)  # B n
    if B == 0 or n <= 1:
        return idx
    pts = xyz.detach().to(torch.float32)
    planes = pts.transpose(1, 2).contiguous()  # B 3 N
    mag2 = planes[:, 0] * planes[:, 0] + planes[:, 1] * planes[:, 1] + planes[:, 2] * planes[:, 2]  # B N
    # running minimum of squared distance; skipped points sit at -1 so they never win
    mind = torch.full((B, N), 1e10, dtype=torch.float32, device=xyz.device)  # B N
    mind.masked_fill_(mag2 < _FPS_SKIP_MAG2, -1.0)
    flat = pts.reshape(B * N, 3)  # BN 3
    offset = torch.arange(B, device=xyz.device) * N  # B
    diff = torch.empty_like(planes)  # B 3 N
    dist = torch.empty_like(mind)  # B N
    far = torch.zeros(B, dtype=torch.long, device=xyz.device)  # B
    for i in range(1, n):
        centre = flat.index_select(0, offset + far).unsqueeze(2)  # B 3 1
        torch.sub(planes, centre, out=diff)
        diff.mul_(diff)
        torch.add(diff[:, 0], diff[:, 1], out=dist)
        dist.add_(diff[:, 2])
        torch.minimum(mind, dist, out=mind)
        far = mind.argmax(dim=1)  # first index on ties
        idx[:, i] = far
    return idx


def _square_dist_chunk(q: torch.Tensor, r: torch.Tensor, out: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """``out[b, m, n] = |q[b, m] - r[b, n]|^2`` as ``(dx*dx + dy*dy) + dz*dz``; q [B,m,3], r [B,3,N]."""
    torch.sub(q[:, :, 0:1], r[:, 0:1, :], out=out)
    out.mul_(out)
    for c in (1, 2):
        torch.sub(q[:, :, c : c + 1], r[:, c : c + 1, :], out=tmp)
        tmp.mul_(tmp)
        out.add_(tmp)
    return out


def _rows_per_chunk(B: int, N: int, bytes_per_entry: int, M: int) -> int:
    return max(1, min(M, _CHUNK_BYTES // max(1, B * N * bytes_per_entry)))


def _exact_smallest(d2: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k smallest entries per row, ascending, ties to the lower index.

    Non-negative float32 values order like their int32 bit patterns, so packing
    ``(bits << 32) | column`` into int64 gives unique keys in (value, index) order."""
    cols = torch.arange(d2.shape[-1], device=d2.device, dtype=torch.int64)
    key = d2.contiguous().view(torch.int32).to(torch.int64).bitwise_left_shift_(32).bitwise_or_(cols)
    smallest = key.topk(k, dim=-1, largest=False, sorted=True).values
    return smallest.bitwise_and_(0xFFFFFFFF)


def knn(ref: torch.Tensor, query: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """KNN_CUDA semantics: ``(dist [B,M,k], idx [B,M,k])``, nearest first, Euclidean
    distance, ties to the lower reference index. Chunked over queries so memory stays
    bounded (about 256 MB of scratch) whatever the cloud size."""
    B, N, _ = ref.shape
    M = query.shape[1]
    dev = ref.device
    dist = torch.empty(B, M, k, dtype=torch.float32, device=dev)  # B M k
    idx = torch.empty(B, M, k, dtype=torch.long, device=dev)  # B M k
    if B == 0 or M == 0:
        return dist, idx
    r = ref.detach().to(torch.float32).transpose(1, 2).contiguous()  # B 3 N
    q = query.detach().to(torch.float32)  # B M 3
    step = _rows_per_chunk(B, N, 16, M)
    d2 = torch.empty(B, step, N, dtype=torch.float32, device=dev)
    tmp = torch.empty_like(d2)
    for s in range(0, M, step):
        e = min(M, s + step)
        d = _square_dist_chunk(q[:, s:e], r, d2[:, : e - s], tmp[:, : e - s])  # B m N
        if torch.onnx.is_in_onnx_export():  # ONNX TopK itself orders ties by the lower index
            vals, ids = d.topk(k, dim=-1, largest=False, sorted=True)
        elif tracing():  # no data-dependent branch: exact ordering for every row
            ids = _exact_smallest(d, k)
            vals = d.gather(-1, ids)
        else:
            vals, ids = d.topk(k, dim=-1, largest=False, sorted=True)  # B m k
            # topk's order among equal values is unspecified: repair rows whose k-th value is tied
            kth = vals[..., -1:]  # B m 1
            ties = (d <= kth).sum(-1) != k
            ties |= (vals[..., 1:] == vals[..., :-1]).any(-1)
            if bool(ties.any()):
                rows = ties.nonzero(as_tuple=True)
                ids[rows] = _exact_smallest(d[rows], k)
                vals[rows] = d[rows].gather(-1, ids[rows])
        idx[:, s:e] = ids
        dist[:, s:e] = vals.double().sqrt_()  # correctly rounded, like CUDA's sqrtf (torch's float32 CPU sqrt is not)
    return dist, idx


def chamfer_nearest(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest ``y`` point for every ``x`` point, and vice versa (first on ties)."""
    B, N, _ = x.shape
    M = y.shape[1]
    dev = x.device
    idx1 = torch.empty(B, N, dtype=torch.long, device=dev)  # B N
    idx2 = torch.empty(B, M, dtype=torch.long, device=dev)  # B M
    if B == 0 or N == 0 or M == 0:
        return idx1, idx2
    xf = x.detach().to(torch.float32)
    yf = y.detach().to(torch.float32)
    for a, b, out in ((xf, yf, idx1), (yf, xf, idx2)):
        rows, cols = a.shape[1], b.shape[1]
        bt = b.transpose(1, 2).contiguous()  # B 3 cols
        step = _rows_per_chunk(B, cols, 8, rows)
        d2 = torch.empty(B, step, cols, dtype=torch.float32, device=dev)
        tmp = torch.empty_like(d2)
        for s in range(0, rows, step):
            e = min(rows, s + step)
            out[:, s:e] = _square_dist_chunk(a[:, s:e], bt, d2[:, : e - s], tmp[:, : e - s]).argmin(-1)
    return idx1, idx2


OPS = {
    "furthest_point_sample": furthest_point_sample,
    "knn": knn,
    "chamfer_nearest": chamfer_nearest,
}
