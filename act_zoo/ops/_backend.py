"""Backend selection for the point operations.

Every public op in :mod:`act_zoo.ops` dispatches through a table of implementations.
The pure-torch table (``"torch"``) is always available and is the numeric reference;
compiled backends register themselves with :func:`register_backend` and are loaded
lazily, the first time an op runs. The choice comes from, in order:

1. :func:`set_backend` / the :func:`use_backend` context manager,
2. the ``ACT_ZOO_OPS`` environment variable (``auto``, ``torch`` or a registered name),
3. ``auto``: the highest-priority registered backend that loads, else ``torch``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

ENV_VAR = "ACT_ZOO_OPS"
OP_NAMES = ("furthest_point_sample", "knn", "chamfer_nearest")


@dataclass(frozen=True)
class _Entry:
    loader: Callable[[], Mapping[str, Callable]]
    priority: int


_REGISTRY: dict[str, _Entry] = {}
_LOADED: dict[str, Mapping[str, Callable]] = {}
_lock = threading.Lock()
_override: str | None = None


def register_backend(name: str, loader: Callable[[], Mapping[str, Callable]], *, priority: int = 0) -> None:
    """Register a backend. ``loader()`` returns ``{op_name: fn}`` for a subset of
    :data:`OP_NAMES` (missing ops fall back to torch) or raises ``ImportError`` when the
    backend cannot run here. ``auto`` tries backends by decreasing ``priority``."""
    if name in ("auto",) or not name.isidentifier():
        raise ValueError(f"invalid backend name {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"ops backend {name!r} is already registered")
    _REGISTRY[name] = _Entry(loader, priority)


def available_backends() -> list[str]:
    """Names of every registered backend (loadable or not), ``torch`` first."""
    return sorted(_REGISTRY, key=lambda n: (n != "torch", -_REGISTRY[n].priority, n))


def _validate(name: str) -> str:
    name = name.strip().lower()
    if name != "auto" and name not in _REGISTRY:
        raise ValueError(
            f"unknown ops backend {name!r}; choose one of: auto, {', '.join(available_backends())}"
        )
    return name


def set_backend(name: str | None) -> None:
    """Select the ops backend for this process (``None`` returns to ``ACT_ZOO_OPS``/auto)."""
    global _override
    _override = None if name is None else _validate(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Temporarily select an ops backend."""
    global _override
    previous = _override
    _override = _validate(name)
    try:
        yield
    finally:
        _override = previous


def requested_backend() -> str:
    """The backend name asked for (``auto`` unless set)."""
    if _override is not None:
        return _override
    env = os.environ.get(ENV_VAR, "").strip()
    return _validate(env) if env else "auto"


def _load(name: str) -> Mapping[str, Callable]:
    with _lock:
        if name not in _LOADED:
            table = dict(_REGISTRY[name].loader())
            unknown = set(table) - set(OP_NAMES)
            if unknown:
                raise ValueError(f"ops backend {name!r} provides unknown ops {sorted(unknown)}")
            _LOADED[name] = table
            logger.debug("loaded ops backend %r (%s)", name, ", ".join(sorted(table)))
        return _LOADED[name]


def get_backend() -> str:
    """The backend that runs ops now (``auto`` resolved)."""
    name = requested_backend()
    if name != "auto":
        _load(name)
        return name
    for candidate in sorted(_REGISTRY, key=lambda n: -_REGISTRY[n].priority):
        if candidate == "torch":
            continue
        try:
            _load(candidate)
        except ImportError as exc:  # optional backend absent: fall through to torch
            logger.debug("ops backend %r unavailable: %s", candidate, exc)
            continue
        return candidate
    return "torch"


def dispatch(op: str) -> Callable:
    """The implementation of ``op`` in the active backend (falls back to torch)."""
    table = _load(get_backend())
    fn = table.get(op)
    if fn is None:
        fn = _load("torch")[op]
    return fn
