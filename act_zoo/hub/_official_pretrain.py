"""Official stage-I (``ACTPromptedDiscreteVAEwithVIT`` / ``...withBERT``) and stage-II
(``ACT_PointDistillation``) configs and checkpoints -> act_zoo models."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from ..models.distill import ACTDistillation, DistillConfig
from ..models.dvae import DVAEConfig, PromptedDiscreteVAE
from .convert import (
    KeyRule,
    LoadReport,
    StateDict,
    config_from_official,
    load_with_rules,
    read_checkpoint,
    register_official,
)

logger = logging.getLogger(__name__)

# official dvae yaml key -> DVAEConfig field
DVAE_RENAMES = {
    "visual_embed_type": "teacher",
    "visual_embed_dim": "teacher_dim",
    "freeze_visual_embed": "freeze_teacher",
}
DVAE_IGNORED = ("NAME", "visual_embed_pos", "ckpt")  # visual_embed_pos is never read by the official code
# transformer_config keys the official ACT_PointDistillation accepts but never reads
DISTILL_IGNORED = ("encoder_dims", "replace_pob", "return_all_tokens")


def dvae_config_from_official(section: Mapping[str, Any], *, teacher: str | None = None) -> DVAEConfig:
    section = dict(section)
    if teacher is not None:
        section["visual_embed_type"] = teacher
    return config_from_official(DVAEConfig, section, renames=DVAE_RENAMES, ignore=DVAE_IGNORED)


def _bert_renames(sd: StateDict, report: LoadReport) -> StateDict:
    """The official BERT variant holds the whole ``BertEncoder`` as ``visual_embed.0``
    (keys ``visual_embed.0.layer.<i>.*``); act_zoo holds its layer list (``visual_embed.0.<i>.*``)."""
    out, n = {}, 0
    for k, v in sd.items():
        if k.startswith("visual_embed.0.layer."):
            k = "visual_embed.0." + k[len("visual_embed.0.layer."):]
            n += 1
        out[k] = v
    if n:
        report.layout.append(f"BERT teacher: 'visual_embed.0.layer.' -> 'visual_embed.0.' for {n} keys")
    return out


def _build_dvae(section: Mapping[str, Any]) -> PromptedDiscreteVAE:
    return PromptedDiscreteVAE(dvae_config_from_official(section))


def _build_dvae_bert(section: Mapping[str, Any]) -> PromptedDiscreteVAE:
    # the official BERT class always uses bert-base-uncased, whatever visual_embed_type says
    return PromptedDiscreteVAE(dvae_config_from_official(section, teacher="bert-base-uncased"))


def _load_dvae(model: nn.Module, sd: StateDict, report: LoadReport, strict: bool) -> None:
    load_with_rules(model, _bert_renames(sd, report), report=report, strict=strict)


register_official("ACTPromptedDiscreteVAEwithVIT", build=_build_dvae, load=_load_dvae)
register_official("ACTPromptedDiscreteVAEwithBERT", build=_build_dvae_bert, load=_load_dvae)


# ----------------------------------------------------------------------------------------------
# stage II
# ----------------------------------------------------------------------------------------------
def distill_config_from_official(section: Mapping[str, Any]) -> DistillConfig:
    tcfg = dict(section.get("transformer_config") or {})
    dcfg = dict(section.get("dvae_config") or {})
    if not tcfg or not dcfg:
        raise ValueError("ACT_PointDistillation config needs 'transformer_config' and 'dvae_config'")
    if "npoints" in section and "npoints" not in dcfg:
        dcfg["npoints"] = section["npoints"]
    unknown_top = set(section) - {"NAME", "loss", "transformer_config", "dvae_config", "npoints"}
    if unknown_top:
        raise ValueError(f"ACT_PointDistillation: unknown config keys {sorted(unknown_top)}")
    ignored = [k for k in DISTILL_IGNORED if k in tcfg]
    if ignored:
        logger.debug("ACT_PointDistillation ignores transformer_config keys %s (unused officially)", ignored)
    fields = {k: v for k, v in tcfg.items() if k not in DISTILL_IGNORED}
    fields["dvae"] = dvae_config_from_official(dcfg)
    if "loss" in section:
        fields["loss"] = section["loss"]
    return config_from_official(DistillConfig, fields, ignore=())


def _teacher_from_yaml_ckpt(section: Mapping[str, Any]) -> str | None:
    path = (section.get("dvae_config") or {}).get("ckpt")
    return str(path) if path else None


def _build_distill(section: Mapping[str, Any]) -> ACTDistillation:
    model = ACTDistillation(distill_config_from_official(section))
    model._official_teacher_ckpt = _teacher_from_yaml_ckpt(section)  # read by _load_distill / fresh builds
    return model


def _load_teacher_file(model: ACTDistillation, path: str, report: LoadReport, strict: bool) -> None:
    """Official ``build_tokenizer``: ``ckpt['base_model']``, strip ``module.``, strict load."""
    sd, layout, source = read_checkpoint(path)
    sub = LoadReport(model_name="dvae_tokenizer", source=source, layout=layout)
    load_with_rules(model.dvae_tokenizer, _bert_renames(sd, sub), report=sub, strict=strict)
    report.layout.append(f"teacher loaded from dvae_config.ckpt {source} ({len(sub.loaded)} keys)")


def _load_distill(model: nn.Module, sd: StateDict, report: LoadReport, strict: bool) -> None:
    assert isinstance(model, ACTDistillation)
    has_teacher = any(k.startswith("dvae_tokenizer.") for k in sd)
    sd = {("dvae_tokenizer." + k[len("dvae_tokenizer."):].replace("visual_embed.0.layer.", "visual_embed.0.")
           if k.startswith("dvae_tokenizer.") else k): v for k, v in sd.items()}
    may_be_missing: tuple[KeyRule, ...] = ()
    if not has_teacher:
        path = getattr(model, "_official_teacher_ckpt", None)
        if path and os.path.isfile(path):
            _load_teacher_file(model, path, report, strict)
            may_be_missing = (KeyRule(r"dvae_tokenizer\..*", f"teacher loaded from dvae_config.ckpt {path}"),)
        elif path:
            raise FileNotFoundError(
                f"the checkpoint holds no teacher (dvae_tokenizer.*) and dvae_config.ckpt {path!r} does not exist")
    else:
        report.layout.append("teacher taken from the checkpoint's dvae_tokenizer.* keys (dvae_config.ckpt not read)")
    load_with_rules(model, sd, report=report, may_be_missing=may_be_missing, strict=strict)


def load_fresh_teacher(model: ACTDistillation, report: LoadReport) -> None:
    """For a fresh stage-II build: load the teacher from ``dvae_config.ckpt`` when it exists."""
    path = getattr(model, "_official_teacher_ckpt", None)
    if path and os.path.isfile(path):
        _load_teacher_file(model, path, report, strict=True)
    elif path:
        logger.warning("dvae_config.ckpt %r not found: the stage-II teacher is randomly initialised", path)


register_official("ACT_PointDistillation", build=_build_distill, load=_load_distill, fresh=load_fresh_teacher)
