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

from ..models.semseg import ACTSemSeg, SemSegConfig
from ._official_partseg import segmentation_config_from_official, segmentation_loader
from .convert import (
    PRETRAIN_ONLY,
    KeyRule,
    register_official,
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
    return segmentation_config_from_official(SemSegConfig, section, aliases=_ALIASES,
                                             owner="SemanticSegmentation")


def _build_semseg(section: Mapping[str, Any]) -> ACTSemSeg:
    return ACTSemSeg(semseg_config_from_official(section))


_load_semseg = segmentation_loader(head=SEMSEG_HEAD, pretrain_only=SEMSEG_PRETRAIN_ONLY)


for _name in OFFICIAL_NAMES:
    register_official(_name, build=_build_semseg, load=_load_semseg)
