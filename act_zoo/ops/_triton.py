"""The ``triton`` ops backend: Triton GPU kernels for FPS, kNN and Chamfer nearest.

Same signatures and results as :mod:`._torch` (indices bit for bit, ties included), on
CUDA tensors. Nothing here imports ``triton`` until :func:`load` (or an op) runs, so
``import act_zoo`` stays light. Under ``TRITON_INTERPRET=1`` (set before the kernels are
imported) the kernels run on CPU tensors through Triton's interpreter, which is how CI
tests them.

Kernels (in :mod:`._triton_kernels`):

* FPS: one program per cloud, the loop over samples inside the kernel; clouds of up to
  ``register_points`` points stay in registers, larger ones stream through a global
  scratch of running minima in blocks.
* kNN (``k <= 64``): tiles of references; every query keeps its best (distance, index)
  keys in registers and swaps in a tile's minimum while it beats the worst kept one;
  ``k > 64`` runs the torch implementation (exact, same device) because the in-register
  selection is sized for small k.
* Chamfer nearest: tiled running argmin (the backward is the torch gather in
  :func:`act_zoo.ops.chamfer_distance`, so gradients are the torch backend's).
"""

from __future__ import annotations

import contextlib
import functools
from types import ModuleType

import torch

from . import _torch

MAX_KNN_K = 64  # largest k the kNN kernel selects in registers


@functools.cache
def _kernels() -> ModuleType:  # the module decorates the kernels: TRITON_INTERPRET counts then
    from . import _triton_kernels

    return _triton_kernels


@functools.cache
def _is_interpreted() -> bool:
    """True when the kernels were decorated under ``TRITON_INTERPRET=1`` (CPU tensors)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_kernels().fps_register_kernel, InterpretedFunction)


def _check_device(t: torch.Tensor, name: str) -> None:
    """Refuse tensors the kernels cannot run on, instead of falling back silently."""
    if _is_interpreted():
        if t.device.type != "cpu":
            raise ValueError(
                f"{name} is on {t.device}, but the triton kernels run under the Triton interpreter "
                "(TRITON_INTERPRET=1), which takes CPU tensors; unset TRITON_INTERPRET to run on CUDA"
            )
    elif t.device.type != "cuda":
        raise ValueError(
            f"{name} is on {t.device}, but the triton ops backend runs on CUDA tensors only; move the "
            "tensors to a GPU or select another backend (act_zoo.ops.use_backend('torch'))"
        )


def _device_guard(t: torch.Tensor) -> contextlib.AbstractContextManager:
    """Triton launches on the current CUDA device: make it the tensors' device."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def _planes(x: torch.Tensor) -> torch.Tensor:
    """``[B, N, 3]`` any float -> ``[B, 3, N]`` float32 contiguous (coalesced coordinate rows)."""
    return x.detach().to(torch.float32).transpose(1, 2).contiguous()


def _next_pow2(v: int) -> int:
    return 1 << max(0, v - 1).bit_length()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# never contract a*b + c into one FMA (rounded once): distances must round like the torch backend's
_NO_FMA = {"enable_fp_fusion": False}


def fps_config(N: int, *, register_points: int = 8192, block: int = 4096) -> tuple[str, dict]:
    """(kernel name, meta-parameters and launch options) for FPS over clouds of ``N`` points."""
    if N <= register_points:
        width = max(16, _next_pow2(N))
        return "fps_register_kernel", {"BLOCK": width, "num_warps": min(32, max(4, width // 256)), **_NO_FMA}
    return "fps_blocked_kernel", {"BLOCK": block, "num_warps": min(32, max(4, block // 256)), **_NO_FMA}


def knn_config(k: int, *, block_m: int = 32, block_n: int = 64) -> tuple[str, dict]:
    k_pad = _next_pow2(k)
    # the k best of BLOCK_M queries and a tile of keys live in registers; ptxas (sm_90) gives ~160
    # registers per thread with 4 warps at k <= 16, 80 / 128 with 8 warps at k = 32 / 64 (speed unmeasured)
    warps = 4 if k_pad <= 16 else 8
    return "knn_kernel", {"BLOCK_M": block_m, "BLOCK_N": block_n, "K_PAD": k_pad, "num_warps": warps, **_NO_FMA}


def nearest_config(*, block_r: int = 64, block_c: int = 64) -> tuple[str, dict]:
    # 8 warps: ~100 registers per thread on sm_90 (4 warps: ~200); speed unmeasured
    return "nearest_kernel", {"BLOCK_R": block_r, "BLOCK_C": block_c, "num_warps": 8, **_NO_FMA}


def furthest_point_sample(xyz: torch.Tensor, n: int, **tuning: int) -> torch.Tensor:
    """Official ``pointnet2_ops`` FPS (see :func:`act_zoo.ops.furthest_point_sample`);
    int64 ``[B, n]``. ``tuning``: :func:`fps_config` options (speed only)."""
    _check_device(xyz, "xyz")
    B, N, _ = xyz.shape
    idx = torch.zeros(B, n, dtype=torch.long, device=xyz.device)  # B n
    if B == 0 or n <= 1:
        return idx
    K = _kernels()
    name, meta = fps_config(N, **tuning)
    planes = _planes(xyz)  # B 3 N
    with _device_guard(xyz):
        if name == "fps_register_kernel":
            K.fps_register_kernel[(B,)](planes, idx, N, n, SKIP=_torch._FPS_SKIP_MAG2, **meta)
        else:
            mind = torch.empty(B, N, dtype=torch.float32, device=xyz.device)  # B N running minima
            K.fps_blocked_kernel[(B,)](planes, mind, idx, N, n, SKIP=_torch._FPS_SKIP_MAG2, **meta)
    return idx


def knn(ref: torch.Tensor, query: torch.Tensor, k: int, **tuning: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``KNN_CUDA`` semantics like :func:`._torch.knn`: ``(dist [B,M,k], idx [B,M,k])``,
    nearest first, Euclidean distance, ties to the lower reference index.
    ``tuning``: :func:`knn_config` options (speed only)."""
    _check_device(ref, "ref")
    _check_device(query, "query")
    if k > MAX_KNN_K:  # exact either way; the kernel's selection is sized for small k
        return _torch.knn(ref, query, k)
    B, N, _ = ref.shape
    M = query.shape[1]
    d2 = torch.empty(B, M, k, dtype=torch.float32, device=ref.device)  # B M k
    idx = torch.empty(B, M, k, dtype=torch.long, device=ref.device)  # B M k
    if B == 0 or M == 0:
        return d2, idx
    K = _kernels()
    _, meta = knn_config(k, **tuning)
    with _device_guard(ref):
        K.knn_kernel[(_cdiv(M, meta["BLOCK_M"]), B)](_planes(ref), _planes(query), d2, idx, N, M, k, **meta)
    # correctly rounded square root, as the torch backend (a float64 sqrt rounded once to float32 is exact)
    return d2.double().sqrt_().to(torch.float32), idx


def chamfer_nearest(x: torch.Tensor, y: torch.Tensor, **tuning: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest ``y`` point for every ``x`` point and vice versa (first on ties).
    ``tuning``: :func:`nearest_config` options (speed only)."""
    _check_device(x, "x")
    _check_device(y, "y")
    B, N, _ = x.shape
    M = y.shape[1]
    idx1 = torch.empty(B, N, dtype=torch.long, device=x.device)  # B N
    idx2 = torch.empty(B, M, dtype=torch.long, device=x.device)  # B M
    if B == 0 or N == 0 or M == 0:
        return idx1, idx2
    K = _kernels()
    _, meta = nearest_config(**tuning)
    xp, yp = _planes(x), _planes(y)  # B 3 N, B 3 M
    with _device_guard(x):
        for a, b, out, rows, cols in ((xp, yp, idx1, N, M), (yp, xp, idx2, M, N)):
            K.nearest_kernel[(_cdiv(rows, meta["BLOCK_R"]), B)](a, b, out, rows, cols, **meta)
    return idx1, idx2


OPS = {
    "furthest_point_sample": furthest_point_sample,
    "knn": knn,
    "chamfer_nearest": chamfer_nearest,
}


def load() -> dict:
    """The backend's op table; ``ImportError`` (with the reason) when it cannot run here."""
    try:
        import triton
    except Exception as exc:  # a broken install raises more than ImportError
        kind = ImportError if isinstance(exc, ImportError) else RuntimeError
        raise kind(
            f"the triton ops backend needs the 'triton' package ({type(exc).__name__}: {exc}); "
            "install it with pip install 'act-zoo[gpu]' (it comes with CUDA builds of torch on Linux)"
        ) from exc
    try:
        _kernels()
    except Exception as exc:  # e.g. a triton too old or too new for the kernels' language
        raise RuntimeError(
            f"triton {triton.__version__} cannot define the act_zoo kernels ({type(exc).__name__}: {exc})"
        ) from exc
    if not _is_interpreted() and not torch.cuda.is_available():
        raise ImportError(
            "the triton ops backend runs on CUDA tensors, but torch.cuda.is_available() is False here"
        )
    return dict(OPS)
