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
from filelock import FileLock
from torch import nn

from ..models import MODEL_CLASSES, config_from_dict
from .cache import OfflineError, cache_dir, is_offline, read_metadata
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
    ChecksumError,
    DownloadError,
    download_gdrive,
    download_url,
    hf_hub_file,
    parse_gdrive_id,
    parse_hf_spec,
    sha256_file,
)
from .io import CONFIG_NAME, WEIGHTS_NAME, load_pretrained, read_safetensors, save_pretrained
from .manifest import ManifestError, WeightsRecord, load_records, validate_record

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
    """Registered names matching the glob ``pattern``; ``pretrained=True`` keeps those with weights."""
    return sorted(n for n, r in _all_records().items() if fnmatch.fnmatch(n, pattern) and (r.has_weights or not pretrained))


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


def _build(record: WeightsRecord, overrides: Mapping[str, Any]) -> nn.Module:
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
    return cls(config)


def create_model(name: str, pretrained: bool = False, **overrides: Any) -> nn.Module:
    """Build a registered model; ``pretrained=True`` loads its weights (downloading and
    converting them once). ``overrides`` change config fields; with pretrained weights, a
    changed head (e.g. ``cls_dim``) is freshly initialised and reported, like timm."""
    record = get_record(name)
    model = _build(record, overrides)
    if pretrained:
        if not record.has_weights:
            raise ValueError(f"{record.name} has no published weights (pretrained=False builds it)")
        state, _ = read_safetensors(resolve_weights(record))
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


# ----------------------------------------------------------------------------------------------
# weights resolution: cache -> download -> convert once -> safetensors
# ----------------------------------------------------------------------------------------------
def converted_dir(record: WeightsRecord) -> Path:
    return cache_dir() / "converted" / record.name


def resolve_weights(record: WeightsRecord, *, progress: bool = True) -> Path:
    """Path of ``record``'s weights as act_zoo safetensors (downloaded/converted if needed)."""
    if record.format == "safetensors" and record.convert == "none":
        return _fetch(record, progress=progress)
    out = converted_dir(record) / WEIGHTS_NAME
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if out.is_file():
            return out
        raw = _fetch(record, progress=progress)
        model = convert_official_file(record, raw)
        meta = read_metadata(raw) or {}
        save_pretrained(model, out.parent, name=record.name, metrics=record.metrics or None,
                        source=f"{record.sources[0]} (sha256 {meta.get('sha256', 'unknown')})",
                        description=record.description)
        report = getattr(model, "load_report", None)
        if report is not None:  # keep what the conversion loaded, initialised and dropped
            (out.parent / "conversion_report.txt").write_text(report.format(max_keys=10_000) + "\n", encoding="utf-8")
        logger.info("converted %s once; cached at %s", record.name, out)
    return out


def _fetch(record: WeightsRecord, *, progress: bool) -> Path:
    """Download (or find cached) the raw file of ``record``, trying its sources in order."""
    errors: list[str] = []
    for src in record.sources:
        try:
            kind = src["type"]
            if kind == "package":
                path = Path(__file__).resolve().parent.parent / src["path"]
                if not path.is_file():
                    raise FileNotFoundError(f"packaged weights missing: {path}")
                if record.sha256 is not None and sha256_file(path) != record.sha256:
                    raise ChecksumError(f"packaged weights {path} do not match the manifest sha256 {record.sha256}")
                return path
            if kind == "gdrive":
                return download_gdrive(src["id"], sha256=record.sha256, filename=src.get("filename"),
                                       expected_size=record.size_bytes, progress=progress)
            if kind == "url":
                return download_url(src["url"], sha256=record.sha256, filename=src.get("filename"),
                                    expected_size=record.size_bytes, progress=progress)
            if kind == "hf":
                return hf_hub_file(src["repo"], src.get("filename", WEIGHTS_NAME), revision=src.get("revision"))
        except (DownloadError, OfflineError, OSError) as exc:
            errors.append(f"{src.get('type')}: {exc}")
            logger.warning("source %s of %s failed: %s", src, record.name, exc)
    offline = " (offline mode: only the cache is used)" if is_offline() else ""
    raise DownloadError(f"could not obtain weights for {record.name}{offline}:\n  " + "\n  ".join(errors))


def convert_official_file(record: WeightsRecord, path: Path) -> nn.Module:
    """Official ``.pth`` -> act_zoo model, by the record's ``convert`` rule."""
    if record.convert in ("finetune", "official"):
        return from_official(path, record.official_config)
    if record.convert == "encoder_from_pretrain":
        sd, layout, source = read_checkpoint(path)
        report = LoadReport(model_name=record.name, source=source, layout=layout)
        sd, _ = strip_pretrain_prefix(sd, report)
        model = _build(record, {})
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
        file = download_gdrive(gid) if gid else download_url(source)
        return _from_local(file, strict=strict, config=config)
    records = _all_records()
    if source in records or any(n.split(".")[0] == source for n in records):
        return create_model(source, pretrained=True)
    gid = parse_gdrive_id(source)
    if gid:
        return _from_local(download_gdrive(gid), strict=strict, config=config)
    get_record(source)  # raises with close-match suggestions
    raise AssertionError("unreachable")


def _from_local(path: Path, *, strict: bool, config: Mapping[str, Any] | None) -> nn.Module:
    if path.is_dir():
        return load_pretrained(path, strict=strict)
    if path.suffix == ".safetensors":
        state, meta = read_safetensors(path)
        if "act_zoo_config" in meta:
            return load_pretrained(path, strict=strict)
        return _official(state, config, strict=strict, source=str(path))
    sd, layout, source = read_checkpoint(path)
    return _official(sd, config, strict=strict, source=source)


def _official(state: Mapping[str, torch.Tensor], config: Mapping[str, Any] | None, *, strict: bool,
              source: str) -> nn.Module:
    sd = {k.replace("module.", ""): v for k, v in state.items()}
    if config is None:
        config = infer_official_config(sd)
        logger.info("%s: inferred official config %s", source, json.dumps(config))
    model = from_official(sd, config, strict=strict)
    model.load_report.source = source  # type: ignore[attr-defined]
    return model


def reset_registry() -> None:
    """Forget run-time registrations and re-read the manifests (for tests)."""
    global _records
    with _lock:
        _records = None
