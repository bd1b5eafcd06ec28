"""Model registry (timm conventions): ``list_models``, ``create_model``, ``from_pretrained``.

Names are ``arch.tag`` (``act_base.modelnet40``); a bare ``arch`` means its first tag.
Every name comes from a weights-manifest record (data), which carries the full config, the
weight sources, hash, metrics and licence. :func:`register_weights` adds records at run time.

Weights resolve through one path: the cache (``$ACT_ZOO_HOME``) first; else a download from
the record's sources (sha256-verified, atomic, locked, resumable); official ``.pth`` files are
converted once with the official-checkpoint rules and cached as safetensors.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models import MODEL_CLASSES, config_from_dict
from .convert import (
    PRETRAIN_ONLY,
    KeyRule,
    LoadReport,
    from_official,
    infer_official_config,
    load_with_rules,
    read_checkpoint,
    strip_pretrain_prefix,
)
from .download import (
    DownloadError,
    download_gdrive,
    download_url,
    hf_hub_file,
    parse_gdrive_id,
    parse_hf_spec,
)
from .io import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    build_pretrained,
    load_pretrained,
    read_pretrained,
    read_safetensors_metadata,
)
from .manifest import ManifestError, WeightsRecord, load_records, validate_record
from .resolve import (  # noqa: F401
    _drop_unreadable,
    availability,
    converted_dir,
    read_weights,
    resolve_weights,
    store_converted,
)
from .untrusted import bounded_meta_build, numel

logger = logging.getLogger(__name__)

_records: dict[str, WeightsRecord] | None = None
_lock = threading.Lock()


def _all_records() -> dict[str, WeightsRecord]:
    global _records
    with _lock:
        if _records is None:
            _records = load_records()
        return _records


def register_weights(record: Mapping[str, Any] | WeightsRecord) -> WeightsRecord:
    """Add a manifest record at run time; a name that already exists raises ``ValueError``."""
    rec = record if isinstance(record, WeightsRecord) else validate_record(record, where="register_weights")
    records = _all_records()
    with _lock:
        if rec.name in records:
            raise ValueError(f"model name {rec.name!r} is already registered ({records[rec.name].origin})")
        records[rec.name] = rec
    return rec


def unregister_weights(name: str) -> None:
    records = _all_records()  # takes _lock itself: calling it under _lock deadlocked (Lock is not reentrant)
    with _lock:
        records.pop(name, None)


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """Registered names matching ``pattern`` (a glob, or a plain substring when it has no glob
    characters, both case-insensitive); ``pretrained=True`` keeps those with weights."""
    pattern = pattern.lower()
    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    return sorted(n for n, r in _all_records().items()
                  if fnmatch.fnmatchcase(n.lower(), pattern) and (r.has_weights or not pretrained))


def get_record(name: str) -> WeightsRecord:
    """The manifest record of ``name`` (``arch.tag`` or a bare ``arch``); unknown names suggest
    close matches."""
    records = _all_records()
    if name in records:
        return records[name]
    tagged = [n for n in records if n.split(".")[0] == name]
    if tagged:
        return records[tagged[0]]
    close = difflib.get_close_matches(name, list(records) + sorted({n.split(".")[0] for n in records}), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "; see act_zoo.list_models()"
    raise ValueError(f"unknown model {name!r}{hint}")


def model_info(name: str) -> dict[str, Any]:
    return get_record(name).to_dict()


def _build(record: WeightsRecord, overrides: Mapping[str, Any], *, holds: int | None = None) -> nn.Module:
    """Build ``record``'s model; with ``holds`` (the elements of its weights), first on the meta
    device, bounded by them (see :func:`~act_zoo.hub.untrusted.bounded_meta_build`)."""
    if record.model_class not in MODEL_CLASSES:
        raise ManifestError(f"{record.origin}: unknown model_class {record.model_class!r}")
    cls, cfg_cls = MODEL_CLASSES[record.model_class]
    config = config_from_dict(cfg_cls, record.config)
    if overrides:
        names = {f.name for f in dataclasses.fields(config) if f.init}
        bad = set(overrides) - names
        if bad:
            raise ValueError(f"{record.name}: unknown config overrides {sorted(bad)}; valid: {sorted(names)}")
        config = dataclasses.replace(config, **overrides)
    if holds is not None:
        bounded_meta_build(lambda: cls(config), holds=holds, where=record.origin or record.name)
    return cls(config)


def create_model(name: str, pretrained: bool = False, **overrides: Any) -> nn.Module:
    """Build a registered model; ``pretrained=True`` loads its weights (downloading and
    converting them once). ``overrides`` change config fields; with pretrained weights, a
    changed head (e.g. ``cls_dim``) is freshly initialised and reported, like timm."""
    record = get_record(name)
    if pretrained and not record.has_weights:
        raise ValueError(f"{record.name} has no published weights (pretrained=False builds it)")
    state = read_weights(record) if pretrained else None
    model = _build(record, overrides, holds=numel(state) if state is not None else None)
    if state is not None:
        rules: tuple[KeyRule, ...] = ()
        own = model.state_dict()
        changed = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
        if changed and overrides:
            for k in changed:
                state.pop(k)
            rules = tuple(KeyRule(k.replace(".", r"\."), f"re-initialised for overrides {overrides}") for k in changed)
        report = LoadReport(model_name=record.name, source=f"registry:{record.name}")
        load_with_rules(model, state, report=report, may_be_missing=rules)
        model.load_report = report  # type: ignore[attr-defined]
    model.pretrained_record = record  # type: ignore[attr-defined]
    return model.eval() if pretrained else model


def convert_official_file(record: WeightsRecord, path: Path) -> nn.Module:
    """Official ``.pth`` -> act_zoo model, by the record's ``convert`` rule."""
    if record.convert in ("finetune", "official"):
        return from_official(path, record.official_config)
    if record.convert == "encoder_from_pretrain":
        sd, layout, source = read_checkpoint(path)
        report = LoadReport(model_name=record.name, source=source, layout=layout)
        sd, _ = strip_pretrain_prefix(sd, report)
        model = _build(record, {}, holds=numel(sd))
        load_with_rules(model, sd, report=report, may_be_unexpected=PRETRAIN_ONLY)
        model.load_report = report  # type: ignore[attr-defined]
        return model.eval()
    raise ManifestError(f"{record.name}: cannot convert format {record.format!r} with rule {record.convert!r}")


# ----------------------------------------------------------------------------------------------
# from_pretrained: one entry point for every source
# ----------------------------------------------------------------------------------------------
def from_pretrained(
    source: str | os.PathLike,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    strict: bool = True,
    config: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Load a model from any source, in eval mode.

    ``source``: a registry name (``act_base.modelnet40``); ``hf-hub:org/repo[@revision]``; an
    ``https://`` URL; a Google Drive file id or URL; a local directory written by
    ``save_pretrained``; a local ``.safetensors``; or an official ``.pth`` (its official
    ``model:`` section can be given as ``config``; otherwise it is inferred from the keys).
    """
    model = _from_source(str(source) if isinstance(source, os.PathLike) else source, strict=strict, config=config)
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return model.eval()


def _from_source(source: str, *, strict: bool, config: Mapping[str, Any] | None) -> nn.Module:
    if not isinstance(source, str) or not source:
        raise TypeError(f"source must be a non-empty string or path, got {source!r}")
    if source.startswith("hf-hub:"):
        repo, revision = parse_hf_spec(source)
        cfg = hf_hub_file(repo, CONFIG_NAME, revision=revision)
        weights = hf_hub_file(repo, WEIGHTS_NAME, revision=revision)
        if cfg.parent != weights.parent:
            raise DownloadError(f"{source}: config and weights resolved to different snapshots")
        return load_pretrained(weights.parent, strict=strict)
    path = Path(source).expanduser()
    if path.exists():
        return _from_local(path, strict=strict, config=config)
    if source.startswith(("https://", "http://")):
        gid = parse_gdrive_id(source)
        return _from_download(download_gdrive(gid) if gid else download_url(source), strict=strict, config=config)
    records = _all_records()
    if source in records or any(n.split(".")[0] == source for n in records):
        return create_model(source, pretrained=True)
    gid = parse_gdrive_id(source)
    if gid:
        return _from_download(download_gdrive(gid), strict=strict, config=config)
    if _looks_like_path(source):
        raise FileNotFoundError(f"{source}: no such file or directory (and not a registered model name; "
                                "see act_zoo.list_models() or `act-zoo list`)")
    get_record(source)  # raises with close-match suggestions
    raise AssertionError("unreachable")


def _looks_like_path(source: str) -> bool:
    """A folder or file name rather than a registry name (``arch.tag``): a path separator, a
    leading ``.``/``~``, or a weights file extension."""
    return ("/" in source or os.sep in source or source.startswith((".", "~"))
            or source.lower().endswith((".pth", ".pt", ".ckpt", ".safetensors", ".bin")))


def _from_download(file: Path, *, strict: bool, config: Mapping[str, Any] | None) -> nn.Module:
    """A downloaded file: one that cannot even be read is dropped from the cache, so the next
    call fetches it again instead of failing the same way forever."""
    try:
        read = _read_local(file)
    except ValueError as exc:
        _drop_unreadable(file, exc)
        raise
    return _build_local(read, strict=strict, config=config)


def _from_local(path: Path, *, strict: bool, config: Mapping[str, Any] | None) -> nn.Module:
    if path.is_dir():
        return load_pretrained(path, strict=strict)
    return _build_local(_read_local(path), strict=strict, config=config)


def _read_local(path: Path) -> tuple[str, Any]:
    """Read a local file, nothing built: ``("act_zoo", (spec, state, where, checked))`` for act_zoo
    safetensors, ``("official", (state dict, source))`` for anything else."""
    if path.suffix == ".safetensors" and "act_zoo_config" in read_safetensors_metadata(path):
        return "act_zoo", read_pretrained(path)
    sd, _, source = read_checkpoint(path)
    return "official", (sd, source)


def _build_local(read: tuple[str, Any], *, strict: bool, config: Mapping[str, Any] | None) -> nn.Module:
    kind, data = read
    if kind == "act_zoo":
        spec, state, where, checked = data
        return build_pretrained(spec, state, where=where, source=where.split(" (")[0], strict=strict,
                                checked=checked)
    sd, source = data
    if config is None:
        config = infer_official_config(sd, source=source)
        # patch grouping and point counts leave no trace in the weights: say what was assumed
        assumed = {k: config[k] for k in ("group_size", "num_group", "npoints") if k in config}
        logger.warning("%s: config inferred from the weights (%s); group_size/num_group/npoints cannot be read from "
                       "a checkpoint, so the official values %s were assumed: pass config= (act-zoo convert "
                       "--config) if the run used others", source, config.get("NAME"), json.dumps(assumed))
        logger.info("%s: inferred official config %s", source, json.dumps(config))
    return from_official(sd, config, strict=strict, source=source)


def reset_registry() -> None:
    """Forget run-time registrations and re-read the manifests (for tests)."""
    global _records
    with _lock:
        _records = None
