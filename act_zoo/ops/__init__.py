"""Point operations: FPS, kNN, grouping and Chamfer distance.

Pure torch by default (CPU and CUDA alike); compiled backends plug in through
:func:`register_backend` and are selected with :func:`set_backend` or ``ACT_ZOO_OPS``.
"""

import inspect

from . import _torch
from ._backend import (
    available_backends,
    get_backend,
    register_backend,
    requested_backend,
    set_backend,
    use_backend,
)
from ._checks import tracing
from .chamfer import chamfer_distance, chamfer_l1, chamfer_l2
from .grouping import Patches, group_points
from .knn import knn
from .sampling import furthest_point_sample, gather_points

register_backend("torch", lambda: _torch.OPS, priority=-1)

# Triton GPU kernels for CUDA tensors; registered only once the registry selects per device (`devices=`)
if "devices" in inspect.signature(register_backend).parameters:
    from . import _triton

    register_backend("triton", _triton.load, priority=10, devices=("cuda",))

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
    "set_backend",
    "tracing",
    "use_backend",
]
