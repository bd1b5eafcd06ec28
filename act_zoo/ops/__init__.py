"""Point operations: FPS, kNN, grouping and Chamfer distance.

Backends (all exact, identical indices): ``torch`` (pure torch, CPU and CUDA, the reference)
``compiled`` (numba CPU kernels, ``pip install 'act-zoo[fast]'``) and ``triton`` (GPU kernels for
CUDA tensors, tested on CPU under the Triton interpreter); others plug in through
:func:`register_backend`. ``auto`` (default) picks per device; :func:`use_backend`,
:func:`set_backend` or ``ACT_ZOO_OPS`` choose explicitly (see :mod:`._backend`).
"""

from . import _torch
from ._backend import (
    available_backends,
    get_backend,
    register_backend,
    requested_backend,
    resolve,
    set_backend,
    unavailable_reason,
    use_backend,
)
from ._checks import tracing
from .chamfer import chamfer_distance, chamfer_l1, chamfer_l2
from .grouping import Patches, group_points
from .knn import knn
from .sampling import furthest_point_sample, gather_points


def _load_compiled():
    from ._compiled import load

    return load()


def _load_triton():
    from ._triton import load

    return load()


register_backend("torch", lambda: _torch.OPS, priority=-1, description="pure torch (reference; every device)")
register_backend("compiled", _load_compiled, priority=10, devices=("cpu",),
                 description="numba CPU kernels (pip install 'act-zoo[fast]')")

register_backend("triton", _load_triton, priority=20, devices=("cuda",),
                 description="Triton GPU kernels (CUDA tensors; pip install 'act-zoo[gpu]')")

__all__ = [
    "Patches",
    "available_backends",
    "chamfer_distance",
    "chamfer_l1",
    "chamfer_l2",
    "furthest_point_sample",
    "gather_points",
    "get_backend",
    "group_points",
    "knn",
    "register_backend",
    "requested_backend",
    "resolve",
    "set_backend",
    "tracing",
    "unavailable_reason",
    "use_backend",
]
