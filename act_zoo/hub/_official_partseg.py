"""Official part-segmentation checkpoints -> :class:`~act_zoo.models.partseg.ACTPartSeg`.

Registers the official names ``"PartSegmentation"`` and ``"get_model"`` (the class name in
``part_segmentation/models/pt.py``) with :func:`~act_zoo.hub.convert.register_official`.

Config keys: ``embed_dim`` (or the official ``trans_dim``), ``depth``, ``num_heads``,
``group_size``, ``num_group``, ``encoder_dims`` (defaults to the width), ``drop_path_rate``,
``cls_dim`` (or ``num_part``), ``num_classes``, ``fp_dims``, ``head_dims``, ``label_dim``,
``npoints`` and ``fetch_idx``. Everything left out takes the official value
(``get_model(50)`` hard-codes all of them).

Checkpoints (after :func:`~act_zoo.hub.convert.read_checkpoint` has unwrapped
``model_state_dict``/``base_model``/... and removed ``module.``):

* a part-segmentation state dict (``best_model.pth``) loads strictly. A model key the
  checkpoint lacks but holds under its name without ``_cls`` (``convs1.weight`` for
  ``convs1_cls.weight``) is read from there, like ``load_model_from_ckpt_withrename``; the
  report's layout notes list every such rename;
* a stage-II checkpoint (``ACT_encoder.*`` keys) loads like ``get_model.load_model_from_ckpt``:
  the encoder, position embedding, blocks and final norm are loaded (156 keys at full size),
  the head, label conv and feature propagation keep their fresh official initialisation, and
  the pretraining-only keys (cls token, decoder, teacher, heads) are dropped.

Anything else raises :class:`~act_zoo.hub.convert.CheckpointMismatchError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ..models.partseg import ACTPartSeg, PartSegConfig
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

logger = logging.getLogger(__name__)

OFFICIAL_NAMES = ("PartSegmentation", "get_model")

# official key -> PartSegConfig field
_ALIASES = {"trans_dim": "embed_dim", "num_part": "cls_dim"}

# Model keys a stage-II checkpoint does not have: the official loader (strict=False) leaves
# them at the fresh _init_weights values.
PARTSEG_HEAD = (
    KeyRule(r"label_conv_cls\..*", "category label conv, freshly initialised"),
    KeyRule(r"propagation_0_cls\..*", "feature propagation, freshly initialised"),
    KeyRule(r"convs[123]_cls\..*", "segmentation head conv, freshly initialised"),
    KeyRule(r"bns[12]_cls\..*", "segmentation head BatchNorm, freshly initialised"),
)

# Stage-II keys the part-seg model drops: the fine-tuning ones plus the cls token.
PARTSEG_PRETRAIN_ONLY = PRETRAIN_ONLY + (
    KeyRule(r"cls_token", "the part-segmentation model has no cls token"),
    KeyRule(r"cls_pos", "the part-segmentation model has no cls token position"),
)


def segmentation_config_from_official(cls: type, section: Mapping[str, Any], *, aliases: Mapping[str, str],
                                      owner: str) -> Any:
    """Official config section -> a segmentation config dataclass ``cls`` (part or semantic).

    ``aliases`` maps official key -> field (``trans_dim`` -> ``embed_dim`` ...); giving both names
    of one field with different values raises ``ValueError``. ``encoder_dims`` defaults to the
    width and ``fp_dims`` to the official ``[4C, 1024]``."""
    section = dict(section)
    for alias, name in aliases.items():
        if alias in section:
            value = section.pop(alias)
            if name in section and section[name] != value:
                where = section.get("NAME", owner)
                raise ValueError(f"{where}: {alias}={value!r} and {name}={section[name]!r} disagree")
            section[name] = value
    defaults: dict[str, Any] = {"encoder_dims": section.get("embed_dim", cls.embed_dim)}
    if "embed_dim" in section and "fp_dims" not in section:  # official FP mlp: [4C, 1024]
        defaults["fp_dims"] = (4 * int(section["embed_dim"]), cls.fp_dims[-1])
    return config_from_official(cls, section, defaults=defaults)


def segmentation_loader(*, head: tuple[KeyRule, ...], pretrain_only: tuple[KeyRule, ...]) -> Callable[
        [nn.Module, StateDict, LoadReport, bool], None]:
    """The ``load`` of a segmentation model (part or semantic) for :func:`register_official`.

    A stage-II checkpoint (``strip_pretrain_prefix`` found its prefix) may miss the ``head``
    keys and carry the ``pretrain_only`` ones; a fine-tuned one is loaded strictly after the
    ``'_cls'`` fallback (:func:`_cls_fallback`)."""

    def load(model: nn.Module, sd: StateDict, report: LoadReport, strict: bool) -> None:
        sd, from_pretrain = strip_pretrain_prefix(sd, report)
        if from_pretrain:
            load_with_rules(model, sd, report=report, may_be_missing=head,
                            may_be_unexpected=pretrain_only, strict=strict)
        else:
            load_with_rules(model, _cls_fallback(model, sd, report), report=report, strict=strict)

    return load


def partseg_config_from_official(section: Mapping[str, Any]) -> PartSegConfig:
    """Official config section (``NAME`` plus any sizes) -> :class:`PartSegConfig`.

    ``trans_dim`` is accepted for ``embed_dim`` and ``num_part`` for ``cls_dim``; giving both
    names of one field with different values raises ``ValueError``."""
    return segmentation_config_from_official(PartSegConfig, section, aliases=_ALIASES,
                                             owner="PartSegmentation")


def _build_partseg(section: Mapping[str, Any]) -> ACTPartSeg:
    return ACTPartSeg(partseg_config_from_official(section))


def _cls_fallback(model: nn.Module, sd: StateDict, report: LoadReport) -> StateDict:
    """``load_model_from_ckpt_withrename``: a model key missing from the checkpoint is read
    from the same key with ``_cls`` removed."""
    out = dict(sd)
    renamed = []
    for key in model.state_dict():
        if key in out:
            continue
        old = key.replace("_cls", "")
        if old != key and old in out:
            out[key] = out.pop(old)
            renamed.append((old, key))
    if renamed:
        example = f"{renamed[0][0]!r} -> {renamed[0][1]!r}"
        report.layout.append(
            f"'_cls' fallback (load_model_from_ckpt_withrename): {len(renamed)} keys read from their "
            f"name without '_cls' (e.g. {example})"
        )
        logger.info("part-seg checkpoint: %d keys renamed by the '_cls' fallback", len(renamed))
    return out


_load_partseg = segmentation_loader(head=PARTSEG_HEAD, pretrain_only=PARTSEG_PRETRAIN_ONLY)


for _name in OFFICIAL_NAMES:
    register_official(_name, build=_build_partseg, load=_load_partseg)
