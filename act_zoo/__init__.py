"""act_zoo: ACT (Autoencoders as Cross-Modal Teachers) point-cloud Transformers.

The public API is re-exported lazily so ``import act_zoo`` stays fast and pulls in no
optional dependency::

    import act_zoo
    act_zoo.list_models()
    model = act_zoo.create_model("act_base.modelnet40", pretrained=True)
    feats = act_zoo.extract_features(model, clouds)     # .global_feature .tokens .centers
    preds = act_zoo.predict(model, ["chair.ply", "scans/"], top_k=3)
    result = act_zoo.evaluate(model, "test_folder/")      # result.report()

Subpackages load on first use too: ``act_zoo.ops.knn(...)``, ``act_zoo.data.SyntheticShapes``.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

# public name -> module that defines it
_LAZY: dict[str, str] = {
    # registry and weights
    "list_models": "act_zoo.hub.registry",
    "create_model": "act_zoo.hub.registry",
    "from_pretrained": "act_zoo.hub.registry",
    "model_info": "act_zoo.hub.registry",
    "register_weights": "act_zoo.hub.registry",
    "load_pretrained": "act_zoo.hub.io",
    "save_pretrained": "act_zoo.hub.io",
    "from_official": "act_zoo.hub.convert",
    "LoadReport": "act_zoo.hub.convert",
    "CheckpointMismatchError": "act_zoo.hub.convert",
    # features, predictions, evaluation
    "extract_features": "act_zoo.extract",
    "extract_files": "act_zoo.extract",
    "PointFeatures": "act_zoo.models.common",
    "predict": "act_zoo.prediction",
    "evaluate": "act_zoo.evaluation",
    # models and configs
    "PointTransformerConfig": "act_zoo.models.point_transformer",
    "ClassifierConfig": "act_zoo.models.point_transformer",
    "ACTEncoder": "act_zoo.models.point_transformer",
    "ACTClassifier": "act_zoo.models.point_transformer",
    "DVAEConfig": "act_zoo.models.dvae",
    "PromptedDiscreteVAE": "act_zoo.models.dvae",
    "DistillConfig": "act_zoo.models.distill",
    "ACTDistillation": "act_zoo.models.distill",
    "PartSegConfig": "act_zoo.models.partseg",
    "ACTPartSeg": "act_zoo.models.partseg",
}

# subpackages, imported on first use: ``import act_zoo; act_zoo.ops.knn(...)``
_SUBPACKAGES = ("cli", "data", "hub", "layers", "models", "ops", "train")

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"act_zoo.{name}")  # the import binds it in globals()
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'act_zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBPACKAGES))
