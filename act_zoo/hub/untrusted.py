"""Configs and checkpoints read from files are untrusted: check them before building anything.

* :func:`config_from_untrusted`: a config dict (``config.json``, safetensors metadata, an official
  yaml section) must be a mapping whose values have the dataclass fields' types (``depth`` an
  ``int``, never ``"2"``, ``2.5`` or ``true``); any problem is a ``ValueError`` naming the file.
* :func:`bounded_meta_build`: the model is built on the ``meta`` device first, counting the
  elements of every parameter and buffer as it is registered; a model larger than its checkpoint
  can hold (plus a small allowance for fresh heads) stops at once with a ``ValueError``, so a
  ``depth`` of 1,000,000 or an ``mlp_ratio`` of 1e9 never allocates. Only then is the model
  materialised (built again on the real device) and loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["EXTRA_ELEMENTS", "bounded_meta_build", "check_config_types", "check_depths", "config_from_untrusted",
           "numel"]

#: Elements a model may have beyond its checkpoint (freshly initialised heads): 4M (16 MB in fp32).
EXTRA_ELEMENTS = 1 << 22


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _fits(value: Any, tp: Any) -> bool:
    """Does a JSON/YAML value fit the annotation ``tp``? (Unknown annotations accept anything.)"""
    if tp is Any or tp is object:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(tp)
        if not args:
            return True
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(args) == len(value) and all(_fits(v, a) for v, a in zip(value, args))
    if dataclasses.is_dataclass(tp):
        return isinstance(value, (Mapping, tp))
    return True


def check_config_types(cls: type, data: Any, *, where: str) -> None:
    """Raise ``ValueError`` (naming ``where`` and the field) unless ``data`` is a mapping of
    ``cls``'s init fields with values of their annotated types; nested configs are checked too."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: the config must be a JSON object, got {type(data).__name__}")  # noqa: TRY004
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) for k in data if k not in fields)
    if unknown:
        raise ValueError(f"{where}: unknown {cls.__name__} fields {unknown}; valid: {sorted(fields)}")
    for name, value in data.items():
        tp = hints.get(name, Any)
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            check_config_types(tp, value, where=f"{where} ({name})")
        elif not _fits(value, tp):
            raise ValueError(
                f"{where}: config field {name!r} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})"
            )


def config_from_untrusted(cls: type, data: Any, *, where: str) -> Any:
    """``cls`` built from an untrusted dict: types checked first, the config's own checks
    (``__post_init__``) reported as a ``ValueError`` naming ``where``."""
    from ..models import config_from_dict

    check_config_types(cls, data, where=where)
    try:
        return config_from_dict(cls, data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ValueError(f"{where}: invalid {cls.__name__}: {exc}") from None


def check_depths(config: Any, *, tensors: int, where: str) -> None:
    """A ``depth`` (or ``*_depth``) field counts blocks, and every block holds tensors: a depth
    larger than the number of tensors in the checkpoint cannot match it. Checked before the
    (meta) build, because even a meta build of a million blocks takes minutes."""
    items = config.items() if isinstance(config, Mapping) else (
        ((f.name, getattr(config, f.name)) for f in dataclasses.fields(config)) if dataclasses.is_dataclass(config)
        else ())
    for name, value in items:
        if isinstance(value, Mapping) or dataclasses.is_dataclass(value):
            check_depths(value, tensors=tensors, where=where)
        elif (name == "depth" or str(name).endswith("_depth")) and isinstance(value, int) and value > tensors:
            raise ValueError(f"{where}: {name}={value} blocks, but the checkpoint holds only {tensors} tensors: "
                             "the config cannot match these weights")


def numel(state: Mapping[str, torch.Tensor]) -> int:
    return sum(int(v.numel()) for v in state.values() if isinstance(v, torch.Tensor))


def _too_large(where: str, holds: int, what: str) -> ValueError:
    return ValueError(
        f"{where}: the config describes a model of {what}, but the checkpoint holds {holds:,} elements: "
        "the config cannot match these weights (check depth, widths, mlp_ratio)"
    )


@contextlib.contextmanager
def _counting(*, max_elements: int, max_tensors: int, where: str, holds: int) -> Iterator[None]:
    """Stop a build as soon as it has registered absurdly many elements or tensors. Loose on
    purpose (a builder may create parts it then discards, e.g. a transformers model's embeddings):
    it only keeps a hopeless build from running for minutes; the exact check follows the build."""
    owner = threading.get_ident()
    elements = tensors = 0

    def count(module: nn.Module, name: str, tensor: torch.Tensor | None) -> None:
        nonlocal elements, tensors
        if tensor is None or threading.get_ident() != owner:
            return
        elements += int(tensor.numel())
        tensors += 1
        if elements > max_elements or tensors > max_tensors:
            raise _too_large(where, holds, f"more than {elements:,} elements in {tensors:,} tensors (stopped at "
                                           f"{type(module).__name__}.{name} of shape {list(tensor.shape)})")

    from torch.nn.modules import module as _module

    handles = [
        _module.register_module_parameter_registration_hook(count),
        _module.register_module_buffer_registration_hook(count),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def bounded_meta_build(
    build: Callable[[], nn.Module], *, holds: int, tensors: int | None = None, where: str,
    extra: int = EXTRA_ELEMENTS,
) -> nn.Module:
    """``build()`` on the meta device; a ``ValueError`` when the model has more than
    ``holds + extra`` elements (``holds``: what the checkpoint holds). A build that registers
    more than 4x that, or 8x the checkpoint's ``tensors`` (+1000), is stopped while it runs."""
    limit = holds + extra
    max_tensors = 8 * tensors + 1000 if tensors is not None else 1 << 62
    with _counting(max_elements=4 * limit, max_tensors=max_tensors, where=where, holds=holds), torch.device("meta"):
        model = build()
    total = sum(int(t.numel()) for t in model.state_dict().values())
    if total > limit:
        raise _too_large(where, holds, f"{total:,} elements (at most {extra:,} more are allowed for fresh heads)")
    return model
