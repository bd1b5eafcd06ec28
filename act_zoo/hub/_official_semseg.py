"""Official semantic-segmentation checkpoints -> :class:`~act_zoo.models.semseg.ACTSemSeg`.

Registers the official name ``"SemanticSegmentation"`` with
:func:`~act_zoo.hub.convert.register_official` (the official class is ``get_model`` in
``semantic_segmentation/models/pt.py``; that name already means part segmentation here).

Config keys: ``embed_dim`` (or the official ``trans_dim``), ``depth``, ``num_heads``,
``group_size``, ``num_group``, ``encoder_dims`` (defaults to the width), ``drop_path_rate``,
``cls_dim`` (or ``num_classes``, the argument ``main.py`` passes), ``fp_dims``, ``head_dims``,
``npoints``, ``block_size``, ``fetch_idx`` and ``class_names``. Everything left out takes the
official value (``get_model(13)`` hard-codes all of them).

Checkpoints (after :func:`~act_zoo.hub.convert.read_checkpoint` has unwrapped
``model_state_dict``/``base_model``/... and removed ``module.``):

* a semantic-segmentation state dict (``best_model.pth`` of ``main.py``: ``{'epoch',
  'class_avg_iou', 'model_state_dict', 'optimizer_state_dict'}``) loads strictly, with the
  ``_cls`` fallback of ``load_model_from_ckpt_withrename`` (what ``main_test.py`` uses);
* a stage-II checkpoint (``ACT_encoder.*`` keys) loads like ``get_model.load_model_from_ckpt``:
  the encoder, position embedding, blocks and final norm are loaded (156 keys at full size),
  feature propagation and head keep their fresh official initialisation (26 keys, plus the 4
  ``num_batches_tracked`` buffers PyTorch does not report), and the 272 pretraining-only keys
  (cls token and position, decoder, teacher, heads) are dropped.

Anything else raises :class:`~act_zoo.hub.convert.CheckpointMismatchError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..models.semseg import ACTSemSeg, SemSegConfig
from ._official_partseg import _cls_fallback
from .convert import (
    PRETRAIN_ONLY,
    KeyRule,
    LoadReport,
    StateDict,
    config_from_official,
    load_with_rules,
    register_official,
    strip_pretrain_prefix,
)

OFFICIAL_NAMES = ("SemanticSegmentation",)

# official key -> SemSegConfig field
_ALIASES = {"trans_dim": "embed_dim", "num_classes": "cls_dim"}

# Model keys a stage-II checkpoint does not have: the official loader (strict=False) leaves
# them at the fresh _init_weights values.
SEMSEG_HEAD = (
    KeyRule(r"propagation_0_cls\..*", "feature propagation, freshly initialised"),
    KeyRule(r"convs[123]_cls\..*", "segmentation head conv, freshly initialised"),
    KeyRule(r"bns[12]_cls\..*", "segmentation head BatchNorm, freshly initialised"),
)

# Stage-II keys the semseg model drops: the fine-tuning ones plus the cls token (the same list
# as for part segmentation).
SEMSEG_PRETRAIN_ONLY = PRETRAIN_ONLY + (
    KeyRule(r"cls_token", "the semantic-segmentation model has no cls token"),
    KeyRule(r"cls_pos", "the semantic-segmentation model has no cls token position"),
)


def semseg_config_from_official(section: Mapping[str, Any]) -> SemSegConfig:
    """Official config section (``NAME`` plus any sizes) -> :class:`SemSegConfig`.

    ``trans_dim`` is accepted for ``embed_dim`` and ``num_classes`` for ``cls_dim``; giving both
    names of one field with different values raises ``ValueError``."""
    section = dict(section)
    for alias, name in _ALIASES.items():
        if alias in section:
            value = section.pop(alias)
            if name in section and section[name] != value:
                raise ValueError(f"{section.get('NAME', 'SemanticSegmentation')}: {alias}={value!r} and "
                                 f"{name}={section[name]!r} disagree")
            section[name] = value
    defaults: dict[str, Any] = {"encoder_dims": section.get("embed_dim", SemSegConfig.embed_dim)}
    if "embed_dim" in section and "fp_dims" not in section:  # official FP mlp: [4C, 1024]
        defaults["fp_dims"] = (4 * int(section["embed_dim"]), SemSegConfig.fp_dims[-1])
    return config_from_official(SemSegConfig, section, defaults=defaults)


def _build_semseg(section: Mapping[str, Any]) -> ACTSemSeg:
    return ACTSemSeg(semseg_config_from_official(section))


def _load_semseg(model: nn.Module, sd: StateDict, report: LoadReport, strict: bool) -> None:
    sd, from_pretrain = strip_pretrain_prefix(sd, report)
    if from_pretrain:
        load_with_rules(model, sd, report=report, may_be_missing=SEMSEG_HEAD,
                        may_be_unexpected=SEMSEG_PRETRAIN_ONLY, strict=strict)
    else:
        load_with_rules(model, _cls_fallback(model, sd, report), report=report, strict=strict)


for _name in OFFICIAL_NAMES:
    register_official(_name, build=_build_semseg, load=_load_semseg)
