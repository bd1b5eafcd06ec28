"""Inference GEMMs: oneDNN pre-packed weights where the CPU build offers them.

On CPU builds of PyTorch with oneDNN (``torch.ops.mkldnn._linear_pointwise``, the kernel
Inductor uses for frozen CPU graphs), a Linear whose weight is re-laid-out once
(``_reorder_linear_weight``) runs faster than ``addmm`` on the plain weight, and can fuse the
GELU that follows it. The packed copy is derived from the canonical weight, cached on the
module outside the state dict, and rebuilt whenever the weight changes. The copy is keyed on
the weight's identity, never on its address (a freed weight's address is soon reused by the
next one of the same size): weak references to the weight tensor and to its storage that must
still point to the live ones (a replaced Parameter, ``load_state_dict(assign=True)``,
``torch.func.functional_call``, and ``Module._apply`` casts such as ``.double().float()``, which
keep the Parameter but swap its ``.data``), plus its version counter (in-place updates:
optimizer steps, ``load_state_dict``), offset, shape and strides. Edits through ``.data``
bypass the version counter and cannot be seen; after such an edit call :func:`clear_packed`.
It is used only on the eval / no-grad inference paths, for float32 CPU tensors; everywhere
else, and when ``ACT_ZOO_PACKED=0`` or the op is missing or fails, the plain ``addmm`` path
runs (it is the one the tests compare against).
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

_available: bool | None = None


def packed_available() -> bool:
    """Whether oneDNN packed linears can run here (checked once; ``ACT_ZOO_PACKED=0`` disables)."""
    global _available
    if os.environ.get("ACT_ZOO_PACKED", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if _available is None:
        try:
            ops = torch.ops.mkldnn
            w = torch.ops.mkldnn._reorder_linear_weight(torch.ones(4, 8), 2)
            y = ops._linear_pointwise(torch.ones(2, 8), w, torch.zeros(4), "none", [], None)
            _available = bool(torch.backends.mkldnn.is_available()) and bool(torch.allclose(y, torch.full((2, 4), 8.0)))
        except (AttributeError, RuntimeError) as exc:
            logger.debug("oneDNN packed linear unavailable: %s", exc)
            _available = False
    return _available


def _usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32 and x.dim() == 2
            and not torch.is_grad_enabled() and not weight.is_inference()  # inference tensors have no version
            and packed_available())


class _Packed(NamedTuple):
    tensor: weakref.ref  # the weight tensor the copy was made from
    storage: weakref.ref  # its storage (``.data`` swaps keep the tensor, change the storage)
    layout: tuple  # (version, storage offset, shape, strides)
    packed: torch.Tensor

    def serves(self, weight: torch.Tensor) -> bool:
        return (self.tensor() is weight and self.storage() is weight.untyped_storage()
                and self.layout == _layout(weight))


def _layout(weight: torch.Tensor) -> tuple:
    return weight._version, weight.storage_offset(), tuple(weight.shape), weight.stride()


def _packed(owner: nn.Module, name: str, weight: torch.Tensor, rows: int) -> torch.Tensor:
    cache = owner.__dict__.setdefault("_act_zoo_packed", {})
    hit = cache.get(name)
    if hit is None or not hit.serves(weight):
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), rows)
        hit = _Packed(weakref.ref(weight), weakref.ref(weight.untyped_storage()), _layout(weight), packed)
        cache[name] = hit
    return hit.packed


def clear_packed(module: nn.Module) -> None:
    """Drop every packed copy under ``module`` (needed only after editing weights through
    ``.data``, which the version counter does not see)."""
    for m in module.modules():
        m.__dict__.pop("_act_zoo_packed", None)


def linear(x: torch.Tensor, layer: nn.Linear, *, gelu: bool = False, out: torch.Tensor | None = None) -> torch.Tensor:
    """``layer(x)`` (then exact GELU when ``gelu``) for a 2-D ``x`` on an inference path.

    Returns a new tensor on the packed path, else writes into ``out`` (when given) and returns it."""
    w = layer.weight
    if _usable(x, w):
        try:
            packed = _packed(layer, "weight", w, x.shape[0])
            return torch.ops.mkldnn._linear_pointwise(x.contiguous(), packed, layer.bias, "gelu" if gelu else "none",
                                                      [], "none" if gelu else None)
        except RuntimeError as exc:  # an unexpected oneDNN limitation: never again in this process
            global _available
            _available = False
            logger.warning("oneDNN packed linear failed (%s); using addmm", exc)
    if out is None:
        y = F.linear(x, w, layer.bias)
    elif layer.bias is None:
        y = torch.mm(x, w.t(), out=out)
    else:
        y = torch.addmm(layer.bias, x, w.t(), out=out)
    return torch.ops.aten.gelu_(y) if gelu else y


def residual_linear_(stream: torch.Tensor, x: torch.Tensor, layer: nn.Linear) -> None:
    """``stream += layer(x)``: the add fused into the GEMM (``addmm_``) or into the packed output."""
    if _usable(x, layer.weight):
        stream.add_(linear(x, layer))
        return
    if layer.bias is not None:
        stream.add_(layer.bias)
    stream.addmm_(x, layer.weight.t())

