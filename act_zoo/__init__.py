"""act_zoo: ACT (Autoencoders as Cross-Modal Teachers) point-cloud Transformers.

The public API is re-exported lazily so ``import act_zoo`` stays fast and pulls in no
optional dependency::

    import act_zoo
    model = act_zoo.create_model("act_base.modelnet40", pretrained=True)
    feats = act_zoo.extract_features(model, clouds)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name -> module that defines it
_LAZY: dict[str, str] = {
    # models
    "PointTransformerConfig": "act_zoo.models.point_transformer",
    "ACTEncoder": "act_zoo.models.point_transformer",
    "ACTClassifier": "act_zoo.models.point_transformer",
    "PointFeatures": "act_zoo.models.point_transformer",
    # conversion
    "from_official": "act_zoo.hub.convert",
    "LoadReport": "act_zoo.hub.convert",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'act_zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover
    from .hub.convert import LoadReport, from_official
    from .models.point_transformer import ACTClassifier, ACTEncoder, PointFeatures, PointTransformerConfig
