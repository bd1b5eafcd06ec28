"""Triton kernels behind the ``triton`` ops backend (imported lazily by :mod:`._triton` only).

Every kernel forms squared distances exactly as the torch backend does, in float32 and
left to right: ``(dx*dx + dy*dy) + dz*dz``. The launcher passes ``enable_fp_fusion=False``
so the compiler never contracts a multiply-add into an FMA (which rounds once instead of
twice and would change indices on ties). Points arrive as coordinate planes ``[B, 3, N]``
(float32, contiguous) so every load is coalesced.

Under ``TRITON_INTERPRET=1`` (set before this module is imported) the same kernels run on
CPU tensors through Triton's numpy interpreter; the tests use that.
"""

from __future__ import annotations

import triton
import triton.language as tl

INT64_MAX = tl.constexpr(9223372036854775807)  # padding key: never among the k best


@triton.jit
def _sq_dist(ax, ay, az, bx, by, bz):
    dx = ax - bx
    dy = ay - by
    dz = az - bz
    return (dx * dx + dy * dy) + dz * dz


@triton.jit
def _load_planes(p, stride, offs, mask):
    """x, y, z at ``offs`` of a cloud stored as three planes ``stride`` apart (0 where masked)."""
    x = tl.load(p + offs, mask=mask, other=0.0)
    y = tl.load(p + stride + offs, mask=mask, other=0.0)
    z = tl.load(p + 2 * stride + offs, mask=mask, other=0.0)
    return x, y, z


@triton.jit
def fps_register_kernel(planes_ptr, out_ptr, N, n, SKIP: tl.constexpr, BLOCK: tl.constexpr):
    """One program per cloud; the whole cloud and its running minima live in registers.

    ``out`` is ``[B, n]`` int64, pre-filled with 0 (the official start index)."""
    b = tl.program_id(0).to(tl.int64)
    px = planes_ptr + b * 3 * N
    py = px + N
    pz = py + N
    offs = tl.arange(0, BLOCK)
    valid = offs < N
    x = tl.load(px + offs, mask=valid, other=0.0)
    y = tl.load(py + offs, mask=valid, other=0.0)
    z = tl.load(pz + offs, mask=valid, other=0.0)
    mag2 = (x * x + y * y) + z * z
    # skipped points (|p|^2 < float32(SKIP), i.e. <= the double 1e-3 as the official kernel; as in torch) sit at -1 and are never
    # picked; padding lanes sit at -inf
    mind = tl.where(mag2 < SKIP, -1.0, 1e10)
    mind = tl.where(valid, mind, float("-inf"))
    far = 0
    for i in range(1, n):
        cx = tl.load(px + far)
        cy = tl.load(py + far)
        cz = tl.load(pz + far)
        mind = tl.minimum(mind, _sq_dist(x, y, z, cx, cy, cz))
        far = tl.argmax(mind, axis=0, tie_break_left=True)  # lowest index on ties
        tl.store(out_ptr + b * n + i, far.to(tl.int64))


@triton.jit
def fps_blocked_kernel(planes_ptr, mind_ptr, out_ptr, N, n, SKIP: tl.constexpr, BLOCK: tl.constexpr):
    """One program per cloud for clouds too large for registers: each step streams the
    cloud in blocks, keeping the running minima in global scratch ``mind [B, N]``.

    Each lane keeps its best (value, lowest index) over the blocks with elementwise ops;
    one max and one min reduction per step then give the global lowest-index argmax."""
    b = tl.program_id(0).to(tl.int64)
    px = planes_ptr + b * 3 * N
    py = px + N
    pz = py + N
    pm = mind_ptr + b * N
    lanes = tl.arange(0, BLOCK)
    for s in range(0, N, BLOCK):
        offs = s + lanes
        valid = offs < N
        x = tl.load(px + offs, mask=valid, other=0.0)
        y = tl.load(py + offs, mask=valid, other=0.0)
        z = tl.load(pz + offs, mask=valid, other=0.0)
        mag2 = (x * x + y * y) + z * z
        tl.store(pm + offs, tl.where(mag2 < SKIP, -1.0, 1e10), mask=valid)
    tl.debug_barrier()  # the scratch written above is read below, possibly by other threads
    far = 0
    for i in range(1, n):
        cx = tl.load(px + far)
        cy = tl.load(py + far)
        cz = tl.load(pz + far)
        lane_best = tl.full([BLOCK], float("-inf"), tl.float32)
        lane_idx = tl.zeros([BLOCK], tl.int32)
        for s in range(0, N, BLOCK):
            offs = s + lanes
            valid = offs < N
            x = tl.load(px + offs, mask=valid, other=0.0)
            y = tl.load(py + offs, mask=valid, other=0.0)
            z = tl.load(pz + offs, mask=valid, other=0.0)
            m = tl.load(pm + offs, mask=valid, other=float("-inf"))
            m = tl.minimum(m, _sq_dist(x, y, z, cx, cy, cz))
            tl.store(pm + offs, m, mask=valid)
            take = m > lane_best  # strict: an earlier block keeps the lane on ties
            lane_best = tl.where(take, m, lane_best)
            lane_idx = tl.where(take, offs, lane_idx)
        top = tl.max(lane_best, axis=0)
        far = tl.min(tl.where(lane_best == top, lane_idx, N), axis=0)
        tl.store(out_ptr + b * n + i, far.to(tl.int64))


@triton.jit
def knn_kernel(ref_ptr, query_ptr, d2_ptr, idx_ptr, N, M, k,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, K_PAD: tl.constexpr):
    """Grid ``(cdiv(M, BLOCK_M), B)``: the ``k`` nearest refs of ``BLOCK_M`` queries.

    Candidates are int64 keys ``(float32 bits of d2) << 32 | ref index``: non-negative
    floats order like their bit patterns, so keys are unique and order by (distance,
    index), exactly the torch backend's tie rule. Each query keeps the set of its
    ``K_PAD >= k`` smallest keys so far (unordered, in registers); a tile of ``BLOCK_N``
    refs is merged by extracting the tile's minimum while it beats the set's maximum,
    which is few extractions once the set is good. Memory is O(tile), whatever N."""
    b = tl.program_id(1).to(tl.int64)  # the batch on the short grid axis (65535 at most)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < M
    pq = query_ptr + b * 3 * M
    qx, qy, qz = _load_planes(pq, M, rows, row_ok)
    qx, qy, qz = qx[:, None], qy[:, None], qz[:, None]
    pr = ref_ptr + b * 3 * N
    lanes = tl.arange(0, BLOCK_N)
    kcols = tl.arange(0, K_PAD)
    best = tl.full([BLOCK_M, K_PAD], INT64_MAX, tl.int64)  # the K_PAD smallest keys, unordered
    worst = tl.max(best, axis=1)  # BLOCK_M
    for s in range(0, N, BLOCK_N):
        cols = s + lanes
        col_ok = cols < N
        rx, ry, rz = _load_planes(pr, N, cols, col_ok)
        d2 = _sq_dist(qx, qy, qz, rx[None, :], ry[None, :], rz[None, :])  # BLOCK_M BLOCK_N
        key = (d2.to(tl.int32, bitcast=True).to(tl.int64) << 32) | cols.to(tl.int64)[None, :]
        key = tl.where(col_ok[None, :], key, INT64_MAX)
        low = tl.min(key, axis=1)  # BLOCK_M
        while tl.max((low < worst).to(tl.int32), axis=0) > 0:
            # rows whose tile minimum beats their worst kept key swap the two; the tile
            # minimum then leaves the tile (harmless for the other rows: nothing of theirs
            # in this tile can enter)
            slot = tl.argmax(best, axis=1, tie_break_left=True)  # BLOCK_M
            swap = (low < worst)[:, None] & (kcols[None, :] == slot[:, None])
            best = tl.where(swap, low[:, None], best)
            key = tl.where(key == low[:, None], INT64_MAX, key)
            worst = tl.max(best, axis=1)
            low = tl.min(key, axis=1)
    # write the first k in ascending key order: (distance, index)
    out = (b * M + rows).to(tl.int64) * k  # BLOCK_M
    for j in range(k):
        first = tl.min(best, axis=1)  # BLOCK_M
        tl.store(d2_ptr + out + j, (first >> 32).to(tl.int32).to(tl.float32, bitcast=True), mask=row_ok)
        tl.store(idx_ptr + out + j, first.to(tl.int32).to(tl.int64), mask=row_ok)  # low 32 bits
        best = tl.where(best == first[:, None], INT64_MAX, best)


@triton.jit
def nearest_kernel(a_ptr, b_ptr, out_ptr, R, C, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """Grid ``(cdiv(R, BLOCK_R), B)``: index of the nearest ``b`` point of every ``a`` point
    (``a`` planes ``[B,3,R]``, ``b`` planes ``[B,3,C]``), the lowest index on ties."""
    bb = tl.program_id(1).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < R
    pa = a_ptr + bb * 3 * R
    ax, ay, az = _load_planes(pa, R, rows, row_ok)
    ax, ay, az = ax[:, None], ay[:, None], az[:, None]
    pb = b_ptr + bb * 3 * C
    lanes = tl.arange(0, BLOCK_C)
    best = tl.full([BLOCK_R], float("inf"), tl.float32)
    best_idx = tl.zeros([BLOCK_R], tl.int32)
    for s in range(0, C, BLOCK_C):
        cols = s + lanes
        col_ok = cols < C
        bx, by, bz = _load_planes(pb, C, cols, col_ok)
        d2 = _sq_dist(ax, ay, az, bx[None, :], by[None, :], bz[None, :])  # BLOCK_R BLOCK_C
        d2 = tl.where(col_ok[None, :], d2, float("inf"))
        low, arg = tl.min(d2, axis=1, return_indices=True, return_indices_tie_break_left=True)
        take = low < best  # strict: an earlier tile keeps ties
        best = tl.where(take, low, best)
        best_idx = tl.where(take, s + arg, best_idx)
    tl.store(out_ptr + bb * R + rows, best_idx.to(tl.int64), mask=row_ok)
