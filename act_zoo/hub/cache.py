"""The local act_zoo cache: where files live, offline mode, metadata and atomic writes.

Layout (under :func:`cache_dir`)::

    <subdir>/<name>          the cached file (only ever created by an atomic rename)
    <subdir>/<name>.json     metadata written beside it (source, sha256, size, time)
    <subdir>/<name>.lock     inter-process lock used while downloading
    <subdir>/<name>.part     bytes received so far (only while a download is running)

Environment variables:

* ``ACT_ZOO_HOME``: the cache root (default ``$XDG_CACHE_HOME/act_zoo`` or ``~/.cache/act_zoo``).
* ``ACT_ZOO_OFFLINE`` / ``HF_HUB_OFFLINE``: when truthy, nothing is downloaded; a file that is not
  already cached raises :class:`OfflineError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "OFFLINE_ENV_VARS",
    "OfflineError",
    "atomic_path",
    "atomic_write_bytes",
    "cache_dir",
    "current_umask",
    "is_offline",
    "metadata_path",
    "offline_reason",
    "read_metadata",
    "write_metadata",
]

logger = logging.getLogger(__name__)

#: Environment variables that switch act_zoo to offline mode (checked in this order).
OFFLINE_ENV_VARS: tuple[str, ...] = ("ACT_ZOO_OFFLINE", "HF_HUB_OFFLINE")
_TRUTHY = frozenset({"1", "true", "yes", "on"})


def cache_dir() -> Path:
    """Return the act_zoo cache root, creating it if needed.

    ``$ACT_ZOO_HOME`` when set, else ``$XDG_CACHE_HOME/act_zoo``, else ``~/.cache/act_zoo``.
    """
    home = os.environ.get("ACT_ZOO_HOME")
    if home:
        root = Path(home).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        root = base / "act_zoo"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUTHY


def offline_reason() -> str | None:
    """Return ``"VAR=value"`` for the variable that enables offline mode, or ``None`` when online."""
    for var in OFFLINE_ENV_VARS:
        value = os.environ.get(var)
        if _truthy(value):
            return f"{var}={value}"
    return None


def is_offline() -> bool:
    """True when ``ACT_ZOO_OFFLINE`` or ``HF_HUB_OFFLINE`` is 1/true/yes/on (case-insensitive)."""
    return offline_reason() is not None


class OfflineError(RuntimeError):
    """Something that is not in the cache is needed while offline mode is enabled."""

    @classmethod
    def missing(
        cls,
        what: str,
        path: Path | str,
        *,
        reason: str | None = None,
        fix: str | None = None,
    ) -> OfflineError:
        """Build the standard message: what is missing, where it was looked for, how to fix it.

        Args:
            what: human description of the missing thing (file name, URL, ...).
            path: where it was looked for.
            reason: what enabled offline mode (default: the variable found by :func:`offline_reason`).
            fix: replaces the default "to fix" advice (unset the variable or place the file at ``path``).
        """
        reason = reason or offline_reason() or "offline mode"
        var = reason.split("=", 1)[0] if "=" in reason else "ACT_ZOO_OFFLINE"
        if fix is None:
            fix = f"unset {var} to allow downloading, or place the file at {path}"
        return cls(
            f"{what} is not in the local cache and offline mode is enabled ({reason}).\n"
            f"  looked for: {path}\n"
            f"  to fix: {fix}"
        )


# --------------------------------------------------------------------------------------------------
# metadata
# --------------------------------------------------------------------------------------------------
def metadata_path(path: Path | str) -> Path:
    """The metadata file that belongs to a cached file: ``<file>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_metadata(
    path: Path | str,
    *,
    source: str,
    sha256: str,
    expected_sha256: str | None,
    size: int,
    url: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Atomically write ``<path>.json`` describing a cached file; return the metadata path.

    Args:
        path: the cached file the metadata describes.
        source: where it came from as the user asked for it (a URL, ``gdrive:<id>``, ...).
        sha256: the hash observed on the bytes actually stored.
        expected_sha256: the hash the caller asked to verify against, or ``None`` (unverified).
        size: file size in bytes.
        url: the URL the bytes were finally read from (defaults to ``source``).
        extra: further JSON-serialisable fields.
    """
    record: dict[str, Any] = {
        "source": source,
        "url": url if url is not None else source,
        "sha256": sha256,
        "expected_sha256": expected_sha256,
        "verified": expected_sha256 is not None and expected_sha256.lower() == sha256.lower(),
        "size": int(size),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "timestamp": time.time(),
    }
    if extra:
        record.update(extra)
    meta = metadata_path(path)
    atomic_write_bytes(meta, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return meta


def read_metadata(path: Path | str) -> dict[str, Any] | None:
    """Read ``<path>.json``; ``None`` when it is absent or unreadable (a warning is logged then)."""
    meta = metadata_path(path)
    try:
        text = meta.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        logger.warning("Ignoring unreadable cache metadata %s: %s", meta, exc)
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; rename it over ``path`` only on success.

    On any exception (including ``KeyboardInterrupt``) the temporary file is deleted and the
    exception propagates, so ``path`` is either untouched or fully written, never partial.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp (and safetensors' writer, which replaces the file) create 0600: give the file
        # the mode any other new file gets, so a cache or run shared through the umask is readable
        if tmp.is_file():
            os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` can only be read by setting
    it, which would race with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022  # the near-universal default where /proc is unavailable (macOS, Windows)


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same directory, fsync, rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return path
