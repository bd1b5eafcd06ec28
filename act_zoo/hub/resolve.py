"""A registry record's weights, as act_zoo safetensors: cache -> download -> convert once.

* :func:`resolve_weights`: the verified path of a record's weights; official ``.pth`` files are
  downloaded (any source of the record, in order), converted once with the official rules and
  cached in ``converted/<name>/`` with the sha256 of every file (re-converted when a file no
  longer matches or the record changed; offline too, from a verified download).
* :func:`availability`: what can be used right now without the network (``act-zoo list``).
* When nothing works, :class:`WeightsUnavailableError` says in one message what was tried and how
  to fix it (the exact cache path to place the file at, ``ACT_ZOO_OFFLINE``, a mirror).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from filelock import FileLock
from torch import nn

from .cache import (
    ChecksumError,
    DownloadError,
    OfflineError,
    atomic_write_bytes,
    cache_dir,
    download_entry,
    drop_entry,
    offline_reason,
    read_entry,
    read_metadata,
    remove_empty_dirs,
    sha256_file,
    verify_entry,
    write_entry,
)
from .download import download_gdrive, download_url, hf_hub_file
from .io import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, read_safetensors, save_pretrained
from .manifest import WeightsRecord

__all__ = ["WeightsUnavailableError", "availability", "converted_dir", "read_weights", "resolve_weights",
           "store_converted"]

logger = logging.getLogger(__name__)

REPORT_NAME = "conversion_report.txt"
_CONVERTED_FILES = (WEIGHTS_NAME, CONFIG_NAME)


class WeightsUnavailableError(DownloadError):
    """No source of a record could provide its weights (the message says what to do)."""


def converted_dir(record: WeightsRecord) -> Path:
    return cache_dir() / "converted" / record.name


def _fingerprint(record: WeightsRecord) -> str:
    """What a conversion depends on: a changed record (new sources, hash, config) converts again."""
    data = {k: record.to_dict()[k] for k in ("model_class", "config", "official_config", "convert", "format",
                                             "sources", "sha256")}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _converted_problems(record: WeightsRecord) -> list[str]:
    folder = converted_dir(record)
    entry = read_entry(folder)
    if entry is None:
        return [f"{folder / WEIGHTS_NAME} is not converted yet"] if not folder.exists() else [
            f"{folder} has no cache record (written by an older act_zoo?)"]
    if entry.get("fingerprint") != _fingerprint(record):
        return [f"{folder} was converted from another version of the record {record.name}"]
    return verify_entry(folder, _CONVERTED_FILES)


def store_converted(record: WeightsRecord, model: nn.Module, *, raw: Path) -> Path:
    """Write ``model`` as the converted cache of ``record`` and record every file's sha256."""
    folder = converted_dir(record)
    meta = read_metadata(raw) or {}
    raw_sha = meta.get("sha256") or sha256_file(raw)
    save_pretrained(model, folder, name=record.name, metrics=record.metrics or None,
                    source=f"{record.sources[0]} (sha256 {raw_sha})", description=record.description)
    files = [*_CONVERTED_FILES, CARD_NAME]
    report = getattr(model, "load_report", None)
    if report is not None:  # keep what the conversion loaded, initialised and dropped
        atomic_write_bytes(folder / REPORT_NAME, (report.format(max_keys=10_000) + "\n").encode())
        files.append(REPORT_NAME)
    write_entry(folder, files=files, fingerprint=_fingerprint(record), name=record.name,
                converted_from=str(raw), raw_sha256=raw_sha)
    return folder / WEIGHTS_NAME


def resolve_weights(record: WeightsRecord, *, progress: bool = True) -> Path:
    """Path of ``record``'s weights as act_zoo safetensors (downloaded/converted if needed)."""
    if record.format == "safetensors" and record.convert == "none":
        return _fetch(record, progress=progress)
    out = converted_dir(record) / WEIGHTS_NAME
    problems = _converted_problems(record)
    if not problems:
        return out
    if out.exists():
        logger.warning("converting %s again: %s", record.name, "; ".join(problems))
    try:
        raw = _fetch(record, progress=progress)
    except WeightsUnavailableError as exc:
        if out.exists():
            raise WeightsUnavailableError(f"the converted cache does not match its record ({problems[0]}) and "
                                          f"{exc}") from None
        raise
    lock = converted_dir(record).with_name(record.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        if not _converted_problems(record):
            return out
        from .registry import convert_official_file

        try:
            model = convert_official_file(record, raw)
        except ValueError as exc:
            _drop_unreadable(raw, exc)
            raise
        store_converted(record, model, raw=raw)
        logger.info("converted %s once; cached at %s", record.name, out)
    return out


def read_weights(record: WeightsRecord, *, progress: bool = True) -> dict[str, Any]:
    """The state dict of ``record``'s weights; a downloaded file that cannot be read is dropped
    from the cache (the next call fetches it again)."""
    path = resolve_weights(record, progress=progress)
    try:
        state, _ = read_safetensors(path)
    except ValueError as exc:
        _drop_unreadable(path, exc)
        raise
    return state


def _drop_unreadable(path: Path, exc: Exception) -> None:
    root = cache_dir()
    if root in path.parents and path.parent.parent.name in ("files", "converted"):
        drop_entry(path.parent)
        note = f"(the cached copy {path} was removed; the next call downloads or converts it again)"
        exc.args = (f"{exc.args[0] if exc.args else exc}\n{note}",)
        logger.warning("dropped unreadable cached file %s", path)


# ----------------------------------------------------------------------------------------------
# sources, tried in order
# ----------------------------------------------------------------------------------------------
def _describe(src: dict[str, Any]) -> str:
    kind = src.get("type")
    if kind == "gdrive":
        return f"Google Drive file {src['id']}"
    if kind == "url":
        return f"URL {src['url']}"
    if kind == "hf":
        return f"Hugging Face hub {src['repo']}/{src.get('filename', WEIGHTS_NAME)}" + (
            f"@{src['revision']}" if src.get("revision") else "")
    return f"packaged file {src.get('path')}"


def _cache_path(src: dict[str, Any]) -> str | None:
    """Where a file of this source is looked for in act_zoo's cache (placing it there works offline)."""
    if src.get("type") == "gdrive":
        entry = download_entry(f"gdrive:{src['id']}")
        return str(entry.file(src["filename"]) if src.get("filename") else entry.folder / "<file name>")
    if src.get("type") == "url":
        from .http_fetch import filename_from_url, safe_filename

        name = safe_filename(src["filename"]) if src.get("filename") else filename_from_url(src["url"])
        return str(download_entry(src["url"]).file(name))
    return None


def _fetch_one(record: WeightsRecord, src: dict[str, Any], *, progress: bool) -> Path:
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
    raise ValueError(f"{record.name}: unknown source type {kind!r}")


def _fetch(record: WeightsRecord, *, progress: bool) -> Path:
    """The raw file of ``record`` from the first source that works; else one message saying
    what was tried and how to fix it. No empty folder is left in the cache by a failure."""
    tried: list[str] = []
    for src in record.sources:
        before = _dirs_under_cache()
        try:
            return _fetch_one(record, dict(src), progress=progress)
        except OfflineError:
            tried.append(f"{_describe(src)}: not in the cache, and offline mode forbids downloading it")
        except (DownloadError, OSError) as exc:
            tried.append(f"{_describe(src)}: {str(exc).splitlines()[0]}")
        finally:
            for d in _dirs_under_cache() - before:
                remove_empty_dirs(d, stop=cache_dir())
        logger.info("source %s of %s failed: %s", src, record.name, tried[-1])
    raise WeightsUnavailableError(_unavailable_message(record, tried))


def _dirs_under_cache() -> set[Path]:
    root = cache_dir()
    return {p for sub in ("files", "converted") if (root / sub).is_dir() for p in [root / sub, *(root / sub).iterdir()]
            if p.is_dir()}


def _unavailable_message(record: WeightsRecord, tried: list[str]) -> str:
    reason = offline_reason()
    head = f"could not obtain the weights of {record.name}" + (f" (offline mode: {reason})" if reason else "")
    lines = [head + "; tried:"] + [f"  {i}. {t}" for i, t in enumerate(tried, 1)]
    lines.append("to fix, one of:")
    sha = f" (sha256 {record.sha256})" if record.sha256 else ""
    for src in record.sources:
        path = _cache_path(dict(src))
        if path:
            lines.append(f"  - place the file{sha} at {path} (then it loads offline too)")
            break
    if reason:
        var = reason.split("=", 1)[0]
        lines.append(f"  - unset {var} (offline mode) so act_zoo can download it")
    else:
        lines.append("  - check the network or proxy; or set ACT_ZOO_OFFLINE=1 once the file is placed as above")
    lines.append("  - download it from a mirror and load it directly: act_zoo.from_pretrained('<mirror URL or "
                 "local path>')" + (" (official .pth: its config is inferred or given with config=...)"
                                     if record.format == "official-pth" else ""))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# what works offline now
# ----------------------------------------------------------------------------------------------
def availability(record: WeightsRecord) -> str:
    """``"embedded"`` (shipped in the package), ``"cached"`` (in the cache and verified) or ``""``."""
    for src in record.sources:
        if src.get("type") == "package":
            path = Path(__file__).resolve().parent.parent / src["path"]
            if path.is_file() and (record.sha256 is None or sha256_file(path) == record.sha256):
                return "embedded"
    converts = record.format != "safetensors" or record.convert != "none"
    if converts and not _converted_problems(record):
        return "cached"
    for src in record.sources:  # the raw file, verified (an official one converts offline too)
        if src.get("type") in ("url", "gdrive"):
            source = src["url"] if src["type"] == "url" else f"gdrive:{src['id']}"
            entry = download_entry(source)
            rec = read_entry(entry)
            if rec and not verify_entry(entry) and (record.sha256 is None or all(
                    f.get("sha256") == record.sha256 for f in rec["files"].values())):
                return "cached"
        elif src.get("type") == "hf":
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(src["repo"], src.get("filename", WEIGHTS_NAME), revision=src.get("revision"))
            if isinstance(hit, str):
                return "cached"
    return ""
