"""ACT model families, one per file. ``MODEL_CLASSES`` maps a class name to (class, config class)."""

from __future__ import annotations

from .common import PointFeatures, config_from_dict, config_to_dict, prepare_points, set_fast_path
from .distill import ACTDistillation, DistillConfig
from .dvae import DVAEConfig, PromptedDiscreteVAE
from .partseg import ACTPartSeg, PartSegConfig
from .semseg import ACTSemSeg, SemSegConfig
from .point_transformer import (
    MODELNET40,
    SCANOBJECTNN,
    ACTClassifier,
    ACTEncoder,
    ClassifierConfig,
    PointTransformerConfig,
)

MODEL_CLASSES: dict[str, tuple[type, type]] = {
    "ACTEncoder": (ACTEncoder, PointTransformerConfig),
    "ACTClassifier": (ACTClassifier, ClassifierConfig),
    "PromptedDiscreteVAE": (PromptedDiscreteVAE, DVAEConfig),
    "ACTDistillation": (ACTDistillation, DistillConfig),
    "ACTPartSeg": (ACTPartSeg, PartSegConfig),
    "ACTSemSeg": (ACTSemSeg, SemSegConfig),
}

__all__ = [
    "MODELNET40",
    "MODEL_CLASSES",
    "SCANOBJECTNN",
    "ACTClassifier",
    "ACTDistillation",
    "ACTEncoder",
    "ACTPartSeg",
    "ACTSemSeg",
    "ClassifierConfig",
    "DVAEConfig",
    "DistillConfig",
    "PartSegConfig",
    "PointFeatures",
    "PointTransformerConfig",
    "PromptedDiscreteVAE",
    "SemSegConfig",
    "config_from_dict",
    "config_to_dict",
    "prepare_points",
    "set_fast_path",
]
