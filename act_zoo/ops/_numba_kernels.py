"""numba kernels of the ``compiled`` ops backend (numpy in, numpy out; no torch here).

Every entry point releases the GIL (``nogil=True``) and works on a range of independent tasks
(clouds, or blocks of queries), so callers thread over disjoint ranges with plain Python
threads (see ``_compiled``). numba's on-disk cache (``cache=True``) keeps the machine code
between runs. All kernels live in this one file on purpose: numba keys its cache on the stamp
of the source file that defines a function, so a kernel that called into another file could
run stale code after that file changed.

Numerics follow the ``torch`` backend exactly: squared distances are ``(dx*dx + dy*dy) + dz*dz``
in float32 with ``d = point - centre``, no fused multiply-add (numba's default, no ``fastmath``),
and every selection breaks ties towards the lower index.

Furthest point sampling has two exact paths:

* ``_fps_brute_cloud``: one vectorised pass per sample (distance and running minimum), then
  the maximum and the first index reaching it.
* ``_fps_tree_cloud``: a QuickFPS-style bound (Han et al., 2023). The points are sorted along
  a Morton curve and cut into ``2**depth`` leaves of equal counts (``leaf_size`` to
  ``2*leaf_size - 1`` points), the leaves of a complete binary tree. Every node keeps its
  bounding box and the largest running minimum below it together with the lowest point index
  reaching it. A new centre only visits nodes whose box can be closer to it than their largest
  running minimum: when ``box_bound(c) >= node_max`` no point below can change (see
  ``_box_bound`` for why the bound is exact in float32), so skipping it changes nothing.
  The root then holds the next sample: the largest value and, across equal values, the lowest
  index -- the same answer as the brute pass, bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_F32_BIG = np.float32(1e10)  # initial running minimum (the official kernel's 1e10)
_F32_SKIP = np.float32(1e-3)  # a point is skipped when |p|^2 <= 1e-3 in double, i.e. |p|^2 < f32(1e-3)
_F32_NEG = np.float32(-1.0)  # running minimum of a skipped point: below every distance

_OPTS = dict(cache=True, nogil=True, error_model="numpy", boundscheck=False)
_INLINE = dict(_OPTS, inline="always")  # small helpers: inlined in numba IR (no call, no refcounts)


# ----------------------------------------------------------------------------- FPS, shared
@njit(**_INLINE)
def _init_mind(x, y, z, mind):
    for k in range(x.shape[0]):
        mag = x[k] * x[k] + y[k] * y[k] + z[k] * z[k]
        mind[k] = _F32_NEG if mag < _F32_SKIP else _F32_BIG


# Inner loops index with uint64 (``_u``): a signed index makes numba emit a negative-index
# wrap-around per access, which stops LLVM from vectorising loops that do not start at 0.
_u = np.uint64


@njit(**_INLINE)
def _update(x, y, z, mind, cx, cy, cz, s, e):
    """Running minimum of points ``[s, e)`` against centre ``c`` (vectorised)."""
    for k in range(_u(s), _u(e)):
        dx = x[k] - cx
        dy = y[k] - cy
        dz = z[k] - cz
        mind[k] = min(mind[k], dx * dx + dy * dy + dz * dz)


# numba does not vectorise float max/min reductions (not even with fastmath), but a float32
# that is >= 0 orders exactly like its int32 bit pattern, and the only negative value the
# kernels hold (-1.0, a skipped point) stays below every non-negative one. So reductions and
# equality tests run on an int32 view of the float32 buffers: the same answer, ~30x faster.
@njit(**_INLINE)
def _imax(bits, s, e):
    best = np.int32(-2147483648)
    for k in range(_u(s), _u(e)):
        v = bits[k]
        best = v if v > best else best
    return best


@njit(**_INLINE)
def _imin(bits, s, e):
    best = np.int32(2147483647)
    for k in range(_u(s), _u(e)):
        v = bits[k]
        best = v if v < best else best
    return best


@njit(**_INLINE)
def _ifirst(bits, value, s, e):
    """The first index in ``[s, e)`` holding ``value`` (vectorised: no early exit)."""
    first = np.int64(e)
    for k in range(_u(s), _u(e)):
        first = min(first, np.int64(k) if bits[k] == value else np.int64(e))
    return first


@njit(**_INLINE)
def _rescan(x, y, z, mind, bits, cx, cy, cz, s, e):
    """Update ``[s, e)`` against ``c``; return (max running minimum as bits, first index of it)."""
    _update(x, y, z, mind, cx, cy, cz, s, e)
    best = _imax(bits, s, e)
    return best, _ifirst(bits, best, s, e)


# ----------------------------------------------------------------------------- FPS, brute
@njit(**_OPTS)
def _fps_brute_cloud(pts, n, out):
    N = pts.shape[0]
    x = np.ascontiguousarray(pts[:, 0])
    y = np.ascontiguousarray(pts[:, 1])
    z = np.ascontiguousarray(pts[:, 2])
    mind = np.empty(N, np.float32)
    bits = mind.view(np.int32)
    _init_mind(x, y, z, mind)
    far = 0
    out[0] = 0
    for i in range(1, n):
        _, far = _rescan(x, y, z, mind, bits, x[far], y[far], z[far], 0, N)
        out[i] = far


# ----------------------------------------------------------------------------- FPS, tree
@njit(**_OPTS)
def _spread10(v):
    """The low 10 bits of ``v`` spread to every third bit (Morton interleave)."""
    v = (v | (v << 16)) & 0x030000FF
    v = (v | (v << 8)) & 0x0300F00F
    v = (v | (v << 4)) & 0x030C30C3
    return (v | (v << 2)) & 0x09249249


@njit(**_OPTS)
def _morton_order(pts):
    """A permutation putting the points in Morton (Z-curve) order, by a 3-pass radix sort.

    Only locality matters here: node boxes are computed from the points themselves, so any
    order gives exact results; a good one makes the boxes small."""
    N = pts.shape[0]
    lo = np.empty(3, np.float32)
    scale = np.empty(3, np.float32)
    for r in range(3):
        a0 = pts[0, r]
        a1 = pts[0, r]
        for k in range(1, N):
            v = pts[k, r]
            a0 = v if v < a0 else a0
            a1 = v if v > a1 else a1
        lo[r] = a0
        scale[r] = np.float32(1023.0) / (a1 - a0) if a1 > a0 else np.float32(0.0)
    keys = np.empty(N, np.int64)
    for k in range(N):
        code = 0
        for r in range(3):
            q = np.int64((pts[k, r] - lo[r]) * scale[r])
            q = min(max(q, 0), 1023)
            code |= _spread10(q) << r
        keys[k] = code
    perm = np.arange(N)
    keys2 = np.empty(N, np.int64)
    perm2 = np.empty(N, np.int64)
    count = np.empty(1024, np.int64)
    for shift in (0, 10, 20):  # LSD radix sort, 10 bits per pass (stable)
        count[:] = 0
        for k in range(N):
            count[(keys[k] >> shift) & 1023] += 1
        total = 0
        for j in range(1024):
            c = count[j]
            count[j] = total
            total += c
        for k in range(N):
            j = (keys[k] >> shift) & 1023
            keys2[count[j]] = keys[k]
            perm2[count[j]] = perm[k]
            count[j] += 1
        keys, keys2 = keys2, keys
        perm, perm2 = perm2, perm
    return perm


@njit(**_INLINE)
def _box_bound(lo, hi, node, cx, cy, cz):
    """A lower bound of the float32 distance from ``c`` to any point inside the node's box.

    ``q`` is the box point nearest to ``c`` per axis, so ``|q - c| <= |p - c|`` exactly for
    every ``p`` in the box; float rounding is monotone and sign-symmetric, so the rounded
    differences, squares and sums keep that order: ``bound <= dist(p, c)`` as computed."""
    qx = min(max(cx, lo[node, 0]), hi[node, 0]) - cx
    qy = min(max(cy, lo[node, 1]), hi[node, 1]) - cy
    qz = min(max(cz, lo[node, 2]), hi[node, 2]) - cz
    return qx * qx + qy * qy + qz * qz


@njit(**_INLINE)
def _leaf_rescan(x, y, z, mind, bits, orig, cx, cy, cz, s, e):
    """Update a leaf against ``c``; return its largest running minimum (as bits) and the
    lowest original index reaching it (leaves are in Morton order, not index order)."""
    _update(x, y, z, mind, cx, cy, cz, s, e)
    best = _imax(bits, s, e)
    big = np.int64(1) << 62
    first = big
    for k in range(_u(s), _u(e)):
        first = min(first, orig[k] if bits[k] == best else big)
    return best, first


@njit(**_INLINE)
def _pick(vbits, vidx, a, b):
    """The child with the larger maximum; on equal maxima the one with the lower index."""
    if vbits[a] > vbits[b] or (vbits[a] == vbits[b] and vidx[a] < vidx[b]):
        return a
    return b


@njit(**_OPTS)
def _fps_tree_cloud(pts, n, out, leaf_size):
    N = pts.shape[0]
    out[0] = 0
    if n <= 1:
        return
    depth = 0
    while (N >> (depth + 1)) >= leaf_size:
        depth += 1
    n_nodes = (1 << (depth + 1)) - 1
    first_leaf = (1 << depth) - 1
    # --- build: points in Morton order, 2^depth leaves of equal counts, a complete binary tree
    orig = _morton_order(pts)
    x = np.empty(N, np.float32)
    y = np.empty(N, np.float32)
    z = np.empty(N, np.float32)
    for k in range(N):
        p = orig[k]
        x[k] = pts[p, 0]
        y[k] = pts[p, 1]
        z[k] = pts[p, 2]
    start = np.empty(n_nodes, np.int64)
    stop = np.empty(n_nodes, np.int64)
    lo = np.empty((n_nodes, 3), np.float32)
    hi = np.empty((n_nodes, 3), np.float32)
    for leaf in range(1 << depth):
        node = first_leaf + leaf
        s, e = (leaf * N) >> depth, ((leaf + 1) * N) >> depth
        start[node], stop[node] = s, e
        for r, arr in enumerate((x, y, z)):
            a0 = arr[s]
            a1 = arr[s]
            for k in range(s + 1, e):
                v = arr[k]
                a0 = v if v < a0 else a0
                a1 = v if v > a1 else a1
            lo[node, r] = a0
            hi[node, r] = a1
    for node in range(first_leaf - 1, -1, -1):
        start[node], stop[node] = start[2 * node + 1], stop[2 * node + 2]
        for r in range(3):
            lo[node, r] = min(lo[2 * node + 1, r], lo[2 * node + 2, r])
            hi[node, r] = max(hi[2 * node + 1, r], hi[2 * node + 2, r])
    mind = np.empty(N, np.float32)
    bits = mind.view(np.int32)
    _init_mind(x, y, z, mind)
    vbits = np.empty(n_nodes, np.int32)  # largest running minimum below the node (float32 bits)
    vidx = np.empty(n_nodes, np.int64)  # the lowest original index reaching it
    bound_f = np.empty(1, np.float32)
    bound_i = bound_f.view(np.int32)
    # --- step 1 touches every point: every leaf, then every node bottom-up
    cx, cy, cz = pts[0, 0], pts[0, 1], pts[0, 2]
    for node in range(first_leaf, n_nodes):
        vbits[node], vidx[node] = _leaf_rescan(x, y, z, mind, bits, orig, cx, cy, cz, start[node], stop[node])
    for node in range(first_leaf - 1, -1, -1):
        ch = _pick(vbits, vidx, 2 * node + 1, 2 * node + 2)
        vbits[node], vidx[node] = vbits[ch], vidx[ch]
    stack = np.empty(2 * depth + 4, np.int64)
    for i in range(1, n):
        far = vidx[0]
        out[i] = far
        if i == n - 1:
            break
        cx, cy, cz = pts[far, 0], pts[far, 1], pts[far, 2]
        sp = 1
        stack[0] = 0  # entries: node * 2, or node * 2 + 1 = recombine once its children are done
        while sp > 0:
            sp -= 1
            entry = stack[sp]
            node = entry >> 1
            if entry & 1:
                ch = _pick(vbits, vidx, 2 * node + 1, 2 * node + 2)
                vbits[node], vidx[node] = vbits[ch], vidx[ch]
                continue
            bound_f[0] = _box_bound(lo, hi, node, cx, cy, cz)
            if bound_i[0] >= vbits[node]:
                continue  # no point below can get closer to c than its running minimum
            if node >= first_leaf:
                vbits[node], vidx[node] = _leaf_rescan(x, y, z, mind, bits, orig, cx, cy, cz,
                                                       start[node], stop[node])
                continue
            stack[sp] = node * 2 + 1
            stack[sp + 1] = (2 * node + 2) * 2
            stack[sp + 2] = (2 * node + 1) * 2
            sp += 3


# ----------------------------------------------------------------------------- FPS, entry points
@njit(**_OPTS)
def _fps_cloud(pts, n, out, tree_min_points, leaf_size):
    if pts.shape[0] >= tree_min_points:
        _fps_tree_cloud(pts, n, out, leaf_size)
    else:
        _fps_brute_cloud(pts, n, out)


@njit(**_OPTS)
def fps(pts, n, out, tree_min_points, leaf_size, b0, b1):
    """Clouds ``b0 .. b1-1`` of ``pts [B, N, 3]`` float32 -> ``out [B, n]`` int64.

    Clouds of at least ``tree_min_points`` points take the tree path, smaller ones the brute
    pass; both give the same indices. Callers thread over disjoint cloud ranges."""
    for b in range(b0, b1):
        _fps_cloud(pts[b], n, out[b], tree_min_points, leaf_size)


# ----------------------------------------------------------------------------- kNN
@njit(**_INLINE)
def _distances(rx, ry, rz, cx, cy, cz, d):
    """``d[j] = |c - r_j|^2`` (query minus reference, the torch backend's order)."""
    for j in range(rx.shape[0]):
        dx = cx - rx[j]
        dy = cy - ry[j]
        dz = cz - rz[j]
        d[j] = dx * dx + dy * dy + dz * dz


_KNN_BLOCK = 32  # references whose minimum is tested at once against the current k-th value


@njit(**_OPTS)
def _knn_rows(rx, ry, rz, q, k, dist, idx, d):
    """k nearest of each query row of ``q [m, 3]`` among ``r`` (planes), ties to the lower index.

    Partial selection: a sorted list of the best k so far; a block of references is skipped
    when its smallest distance does not beat the k-th (compared on the int32 bits, see _imax)."""
    N = rx.shape[0]
    bits = d.view(np.int32)
    vals = np.empty(k, np.int32)  # float32 bits of the kept distances, ascending
    ids = np.empty(k, np.int64)
    for row in range(q.shape[0]):
        _distances(rx, ry, rz, q[row, 0], q[row, 1], q[row, 2], d)
        for j in range(k):  # the first k, insertion-sorted by (value, index)
            v = bits[j]
            p = j
            while p > 0 and vals[p - 1] > v:
                vals[p] = vals[p - 1]
                ids[p] = ids[p - 1]
                p -= 1
            vals[p] = v
            ids[p] = j
        thr = vals[k - 1]
        for s in range(k, N, _KNN_BLOCK):
            e = min(N, s + _KNN_BLOCK)
            if _imin(bits, s, e) >= thr:
                continue
            for j in range(s, e):
                v = bits[j]
                if v < thr:  # j is above every kept index: only a strictly smaller value enters
                    p = k - 1
                    while p > 0 and vals[p - 1] > v:
                        vals[p] = vals[p - 1]
                        ids[p] = ids[p - 1]
                        p -= 1
                    vals[p] = v
                    ids[p] = j
                    thr = vals[k - 1]
        for j in range(k):
            dist[row, j] = np.sqrt(d[ids[j]])
            idx[row, j] = ids[j]


@njit(**_OPTS)
def _knn_task(ref_planes, query, k, dist, idx, rows_per_task, t):
    tasks_per_cloud = (query.shape[1] + rows_per_task - 1) // rows_per_task
    b = t // tasks_per_cloud
    s = (t % tasks_per_cloud) * rows_per_task
    e = min(query.shape[1], s + rows_per_task)
    d = np.empty(ref_planes.shape[2], np.float32)
    r = ref_planes[b]
    _knn_rows(r[0], r[1], r[2], query[b, s:e], k, dist[b, s:e], idx[b, s:e], d)


@njit(**_OPTS)
def knn(ref_planes, query, k, dist, idx, rows_per_task, t0, t1):
    """``ref_planes [B, 3, N]``, ``query [B, M, 3]`` -> ``dist, idx [B, M, k]`` for tasks
    ``t0 .. t1-1`` (a task: ``rows_per_task`` queries of one cloud)."""
    for t in range(t0, t1):
        _knn_task(ref_planes, query, k, dist, idx, rows_per_task, t)


# ----------------------------------------------------------------------------- Chamfer
@njit(**_OPTS)
def _nearest_rows(bx, by, bz, a, out, d):
    """For each row of ``a [m, 3]`` the first index of its nearest column point (planes ``b``)."""
    N = bx.shape[0]
    bits = d.view(np.int32)
    for row in range(a.shape[0]):
        _distances(bx, by, bz, a[row, 0], a[row, 1], a[row, 2], d)
        out[row] = _ifirst(bits, _imin(bits, 0, N), 0, N)


@njit(**_OPTS)
def _nearest_task(a, b_planes, out, rows_per_task, t):
    tasks_per_cloud = (a.shape[1] + rows_per_task - 1) // rows_per_task
    bi = t // tasks_per_cloud
    s = (t % tasks_per_cloud) * rows_per_task
    e = min(a.shape[1], s + rows_per_task)
    d = np.empty(b_planes.shape[2], np.float32)
    p = b_planes[bi]
    _nearest_rows(p[0], p[1], p[2], a[bi, s:e], out[bi, s:e], d)


@njit(**_OPTS)
def nearest(a, b_planes, out, rows_per_task, t0, t1):
    """``a [B, M, 3]``, ``b_planes [B, 3, N]`` -> ``out [B, M]``: index of the nearest ``b``,
    for tasks ``t0 .. t1-1`` (a task: ``rows_per_task`` rows of one cloud)."""
    for t in range(t0, t1):
        _nearest_task(a, b_planes, out, rows_per_task, t)
