"""The ``compiled`` backend: numba kernels for CPU tensors (``pip install 'act-zoo[fast]'``).

Importing this module raises ``ModuleNotFoundError`` when numba is missing; :func:`load`
compiles the kernels of :mod:`._numba_kernels` for the argument types the wrappers pass (the
first time on a machine, a few seconds; afterwards numba loads them from its on-disk cache,
keyed on the kernel file's stamp, the numba version and the CPU). The wrappers convert to
contiguous float32 exactly like the ``torch`` backend, share memory with the tensors and run
the kernels without the GIL, so callers may run ops from several threads at once.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import torch

try:
    from numba import types
except ImportError as exc:  # exercised where numba is absent
    raise ModuleNotFoundError(f"numba is not installed ({exc}); pip install 'act-zoo[fast]'") from exc

from . import _torch

logger = logging.getLogger(__name__)

# FPS takes the tree path for clouds of at least this many points, the brute pass below
# (crossover measured with benchmarks/ops.py; tests lower it to run the tree on tiny clouds).
TREE_MIN_POINTS = 8192
LEAF_SIZE = 128  # tree leaves hold LEAF_SIZE .. 2*LEAF_SIZE - 1 points
_ROWS_PER_TASK = 16  # kNN / nearest-neighbour queries per parallel task
# below this many distance evaluations a call stays in the calling thread: handing work to
# the thread pool costs more than it saves
_PARALLEL_MIN_WORK = 1 << 18
KNN_MAX_K = 128  # larger k (insertion into the kept list grows as k^2) go to the torch backend

_F32_3 = types.Array(types.float32, 3, "C")
_I64_2 = types.Array(types.int64, 2, "C")
_I64_3 = types.Array(types.int64, 3, "C")
_I = types.int64
_SIGNATURES = {  # the only argument types the wrappers pass: compiled once, then cached
    "fps": (_F32_3, _I, _I64_2, _I, _I, _I, _I),
    "knn": (_F32_3, _F32_3, _I, _F32_3, _I64_3, _I, _I, _I),
    "nearest": (_F32_3, _F32_3, _I64_2, _I, _I, _I),
}
_K = None  # the kernels module, once compiled


def load() -> dict:
    """Compile (first use on a machine, then numba's cache) and return the op table."""
    global _K
    if _K is None:
        t0 = time.perf_counter()
        from . import _numba_kernels as K

        misses = 0
        for name, sig in _SIGNATURES.items():
            kernel = getattr(K, name)
            kernel.compile(sig)
            misses += sum(kernel.stats.cache_misses.values())
        seconds = time.perf_counter() - t0
        if misses:
            logger.info("compiled the numba point-op kernels in %.1f s (first use; numba caches them for "
                        "later runs)", seconds)
        _K = K
    return OPS


def _cpu_f32(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.device.type != "cpu":
        raise ValueError(
            f"the 'compiled' ops backend runs on CPU tensors; {name} is on {x.device} "
            "(use ACT_ZOO_OPS=auto to pick a backend per device)"
        )
    return x.detach().to(torch.float32).contiguous()


# Threads: the kernels release the GIL and take a range of independent tasks, so a call is
# split into contiguous task ranges run by a small pool of plain Python threads (plus the
# calling thread), as many as torch's intra-op threads. Measured: numba's own ``parallel=True``
# (an OpenMP pool) left its threads spinning after every call, which slowed the torch ops that
# followed ~7x in a CPU training loop; it also aborts forked children (GNU OpenMP) and, under
# its workqueue layer, concurrent callers. Idle Python threads sleep; the pool is per process.
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():  # a forked child has none of the parent's threads
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="act_zoo_ops")
            _pool_pid = os.getpid()
        return _pool


def _run(kernel, tasks: int, work: int, *args) -> None:
    """``kernel(*args, t0, t1)`` over tasks ``0 .. tasks-1``, shared by torch's intra-op thread
    count (the calling thread included) when there is enough work (``work``: distance
    evaluations) to pay for it. The range is cut into a few chunks per thread that the
    threads take in turn, so one slow thread (a busy machine) does not hold up the rest."""
    threads = min(torch.get_num_threads(), tasks)
    if threads <= 1 or work < _PARALLEL_MIN_WORK:
        kernel(*args, 0, tasks)
        return
    chunks = min(tasks, 4 * threads)
    bounds = [tasks * i // chunks for i in range(chunks + 1)]
    taken = itertools.count()  # next() on it is atomic under the GIL

    def worker() -> None:
        while (i := next(taken)) < chunks:
            kernel(*args, bounds[i], bounds[i + 1])

    futures = [_executor().submit(worker) for _ in range(threads - 1)]
    worker()
    for f in futures:
        f.result()


def furthest_point_sample(xyz: torch.Tensor, n: int) -> torch.Tensor:
    B, N, _ = xyz.shape
    pts = _cpu_f32(xyz, "xyz")
    idx = torch.zeros(B, n, dtype=torch.long)  # B n
    if B == 0 or n <= 1:
        return idx
    _run(_K.fps, B, B * N * n, pts.numpy(), n, idx.numpy(), TREE_MIN_POINTS, LEAF_SIZE)
    return idx


def knn(ref: torch.Tensor, query: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    B, N, _ = ref.shape
    M = query.shape[1]
    dist = torch.empty(B, M, k, dtype=torch.float32)  # B M k
    idx = torch.empty(B, M, k, dtype=torch.long)  # B M k
    if B == 0 or M == 0:
        return dist, idx
    if k > KNN_MAX_K:
        return _torch.knn(ref, query, k)
    planes = _cpu_f32(ref, "ref").transpose(1, 2).contiguous()  # B 3 N
    q = _cpu_f32(query, "query")  # B M 3
    _run(_K.knn, B * -(-M // _ROWS_PER_TASK), B * M * N, planes.numpy(), q.numpy(), k, dist.numpy(), idx.numpy(),
         _ROWS_PER_TASK)
    return dist, idx


def chamfer_nearest(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    B, N, _ = x.shape
    M = y.shape[1]
    idx1 = torch.empty(B, N, dtype=torch.long)  # B N
    idx2 = torch.empty(B, M, dtype=torch.long)  # B M
    if B == 0 or N == 0 or M == 0:
        return idx1, idx2
    xf, yf = _cpu_f32(x, "x"), _cpu_f32(y, "y")
    for a, b, out in ((xf, yf, idx1), (yf, xf, idx2)):
        rows = a.shape[1]
        _run(_K.nearest, B * -(-rows // _ROWS_PER_TASK), B * N * M, a.numpy(),
             b.transpose(1, 2).contiguous().numpy(), out.numpy(), _ROWS_PER_TASK)
    return idx1, idx2


OPS = {
    "furthest_point_sample": furthest_point_sample,
    "knn": knn,
    "chamfer_nearest": chamfer_nearest,
}
