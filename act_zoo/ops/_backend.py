"""Backend selection for the point operations.

Every public op in :mod:`act_zoo.ops` dispatches through a table of implementations, chosen
per call from the device of its input tensors. The pure-torch table (``"torch"``) runs
everywhere and is the numeric reference; other backends register themselves with
:func:`register_backend` and are loaded lazily, the first time they are wanted. Every backend
is exact: the same indices as ``torch``, so the choice changes speed, never results.

The choice comes from, in order:

1. :func:`set_backend` / the :func:`use_backend` context manager,
2. the ``ACT_ZOO_OPS`` environment variable (``auto``, ``torch`` or a registered name),
3. ``auto`` (the default): per device type, the highest-priority backend registered for that
   device that loads here, else ``torch``. A backend that cannot load is skipped with one log
   line per process (INFO when it raises ``ImportError``: its package is not installed or it
   cannot run on this machine, e.g. no CUDA; WARNING for any other failure: installed but broken).

An explicitly requested backend is used on every device and raises ``RuntimeError`` with the
reason when it cannot load; a backend that cannot handle some device raises a clear error for
it (``auto`` never sends it there). While torch traces (``torch.compile``, ``torch.export``,
ONNX), every op runs the torch backend: only it is traceable.

Registering a backend (e.g. the Triton kernels, CUDA only under ``auto``)::

    register_backend("triton", loader, priority=20, devices=("cuda",))

``loader()`` imports what the backend needs and returns ``{op_name: fn}`` for a subset of
:data:`OP_NAMES` (missing ops fall back to torch, with the torch signatures); it raises
``ImportError`` (any exception counts as "cannot load") with a message saying why and what to
install. It is called at most once per process; the result or the failure is remembered.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch

from ._checks import tracing

logger = logging.getLogger(__name__)

ENV_VAR = "ACT_ZOO_OPS"
OP_NAMES = ("furthest_point_sample", "knn", "chamfer_nearest")


@dataclass(frozen=True)
class _Entry:
    loader: Callable[[], Mapping[str, Callable]]
    priority: int
    devices: tuple[str, ...] | None  # device types auto may pick it for; None: every device
    description: str


_REGISTRY: dict[str, _Entry] = {}
_LOADED: dict[str, Mapping[str, Callable]] = {}
_FAILED: dict[str, str] = {}  # backend name -> why it cannot load here
_lock = threading.RLock()
_override: str | None = None
# dispatch's choices: (op, _override, raw ACT_ZOO_OPS (None under an override: it is not read
# then), device type) -> implementation. The key holds everything the request is made of, so
# set_backend/use_backend/the environment need not clear it; only successful choices are kept
# (an error is raised again on every call). _LOADED/_FAILED only grow and a choice is stored after
# the loads it depends on, so register_backend is the only thing that clears it.
_DISPATCH: dict[tuple[str, str | None, str | None, str], Callable] = {}


def register_backend(
    name: str,
    loader: Callable[[], Mapping[str, Callable]],
    *,
    priority: int = 0,
    devices: tuple[str, ...] | None = None,
    description: str = "",
) -> None:
    """Register an ops backend (see the module docstring for the contract).

    Args:
        name: the name ``ACT_ZOO_OPS`` / :func:`use_backend` select it by.
        loader: returns ``{op_name: fn}`` or raises (``ImportError``) saying why it cannot run.
        priority: ``auto`` prefers higher priorities among the backends of a device.
        devices: device types (``"cpu"``, ``"cuda"``, ...) ``auto`` may pick it for; ``None``
            for every device.
        description: one line for ``act-zoo ops`` (what it is, e.g. "numba kernels").
    """
    if name == "auto" or not name.isidentifier():
        raise ValueError(f"invalid backend name {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"ops backend {name!r} is already registered")
    if devices is not None:
        devices = tuple(torch.device(d).type for d in devices)
    with _lock:
        _REGISTRY[name] = _Entry(loader, priority, devices, description)
        _DISPATCH.clear()


def available_backends() -> list[str]:
    """Names of every registered backend (loadable or not), ``torch`` first."""
    return sorted(_REGISTRY, key=lambda n: (n != "torch", -_REGISTRY[n].priority, n))


def _validate(name: str) -> str:
    name = name.strip().lower()
    if name != "auto" and name not in _REGISTRY:
        raise ValueError(f"unknown ops backend {name!r}; choose one of: auto, {', '.join(available_backends())}")
    return name


def set_backend(name: str | None) -> None:
    """Select the ops backend for this process (``None`` returns to ``ACT_ZOO_OPS``/auto)."""
    global _override
    _override = None if name is None else _validate(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Temporarily select an ops backend (``"auto"``, ``"torch"`` or a registered name)."""
    global _override
    previous = _override
    _override = _validate(name)
    try:
        yield
    finally:
        _override = previous


def _requested(override: str | None, env: str | None) -> str:
    """The backend name asked for by an override (if set) or else the ``ACT_ZOO_OPS`` value."""
    if override is not None:
        return override
    env = (env or "").strip()
    return _validate(env) if env else "auto"


def requested_backend() -> str:
    """The backend name asked for (``auto`` unless set)."""
    return _requested(_override, None if _override is not None else os.environ.get(ENV_VAR))


def _try_load(name: str) -> Mapping[str, Callable] | None:
    """The backend's op table, or ``None`` when it cannot load (reason in ``_FAILED``)."""
    with _lock:
        if name in _LOADED:
            return _LOADED[name]
        if name in _FAILED:
            return None
        try:
            table = dict(_REGISTRY[name].loader())
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"; reason kept
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _FAILED[name] = reason
            # ImportError: not installed, or cannot run on this machine (e.g. no CUDA) -- expected;
            # anything else: installed but broken -- worth a warning
            expected = isinstance(exc, ImportError)
            logger.log(logging.INFO if expected else logging.WARNING,
                       "ops backend %r unavailable, using another one: %s", name, reason)
            return None
        unknown = set(table) - set(OP_NAMES)
        if unknown:
            raise ValueError(f"ops backend {name!r} provides unknown ops {sorted(unknown)}")
        _LOADED[name] = table
        logger.debug("loaded ops backend %r (%s)", name, ", ".join(sorted(table)))
        return table


def _load(name: str) -> Mapping[str, Callable]:
    table = _try_load(name)
    if table is None:
        raise RuntimeError(f"ops backend {name!r} was requested (ACT_ZOO_OPS / use_backend) but cannot load "
                           f"here: {_FAILED[name]}")
    return table


def unavailable_reason(name: str) -> str | None:
    """Why a registered backend cannot load here (``None`` when it loads); loads it to find out."""
    _validate(name)
    return None if _try_load(name) is not None else _FAILED[name]


def _device_type(device: torch.device | str | None) -> str:
    return "cpu" if device is None else torch.device(device).type


def _auto_candidates(device_type: str) -> list[str]:
    """The backends ``auto`` tries for a device type, best first (``torch`` is the last resort)."""
    candidates = [n for n, e in _REGISTRY.items() if n != "torch" and (e.devices is None or device_type in e.devices)]
    return sorted(candidates, key=lambda n: (-_REGISTRY[n].priority, n))


def _auto_name(device_type: str) -> str:
    """The backend ``auto`` picks for a device type (:func:`_auto` without the why)."""
    for name in _auto_candidates(device_type):
        if _try_load(name) is not None:
            return name
    return "torch"


def _auto(device_type: str) -> tuple[str, str]:
    """The backend ``auto`` picks for a device type, and why."""
    skipped = []
    for name in _auto_candidates(device_type):
        if _try_load(name) is not None:
            return name, f"auto: fastest exact backend available for {device_type}"
        skipped.append(f"{name}: {_FAILED[name]}")
    if skipped:
        return "torch", "auto: " + "; ".join(skipped)
    return "torch", f"auto: no other backend is registered for {device_type}"


def resolve(device: torch.device | str | None = None) -> tuple[str, str]:
    """``(backend, why)`` for ops on ``device`` (default: CPU) under the current request."""
    name = requested_backend()
    if name == "auto":
        return _auto(_device_type(device))
    _load(name)
    source = "use_backend/set_backend" if _override is not None else f"{ENV_VAR}={name}"
    return name, f"requested ({source})"


def get_backend(device: torch.device | str | None = None) -> str:
    """The backend that runs ops on ``device`` now (default: CPU; ``auto`` resolved)."""
    return resolve(device)[0]


def _choose(op: str, override: str | None, env: str | None, device_type: str) -> Callable:
    """``dispatch``'s choice for that request, without the ``why`` text of :func:`resolve`."""
    name = _requested(override, env)
    if name == "auto":
        name = _auto_name(device_type)
    fn = _load(name).get(op)
    return fn if fn is not None else _load("torch")[op]


def dispatch(op: str, device: torch.device) -> Callable:
    """The implementation of ``op`` for tensors on ``device`` (falls back to torch per op)."""
    if tracing() or device.type == "meta":
        return _load("torch")[op]
    override = _override  # read once: the key and the choice must describe the same request
    # the environment only when no override hides it (os.environ.get of an unset name is slow)
    key = (op, override, None if override is not None else os.environ.get(ENV_VAR), device.type)
    fn = _DISPATCH.get(key)
    if fn is None:
        with _lock:  # register_backend clears under the lock: no stale choice is stored after it
            fn = _DISPATCH[key] = _choose(*key)
    return fn


@dataclass(frozen=True)
class BackendInfo:
    name: str
    priority: int
    devices: tuple[str, ...] | None  # where auto may pick it (None: every device)
    description: str
    unavailable: str | None  # why it cannot load here; None when it loads


def backend_info() -> list[BackendInfo]:
    """Every registered backend and whether it loads here (loading it if needed)."""
    return [BackendInfo(n, _REGISTRY[n].priority, _REGISTRY[n].devices, _REGISTRY[n].description,
                        unavailable_reason(n)) for n in available_backends()]


def op_table(device: torch.device | str | None = None) -> list[tuple[str, str, str]]:
    """``(op, backend, why)`` for every op on ``device`` under the current request."""
    name, why = resolve(device)
    table = _load(name)
    return [(op, name, why) if op in table else (op, "torch", f"{name} has no {op}: torch fallback")
            for op in OP_NAMES]
