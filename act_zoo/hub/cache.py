"""The act_zoo cache layer: where files live, how they are keyed, hashed, verified and written.

Why a layer of our own (measured 2026-12 on a loaded 2-core box against the local test server
``tests/hub/http_server.py``; the script is ``benchmarks/cache_libraries.py``):

* pooch 1.9 keys its cache like we now do (a hash of the URL plus the readable name) and verifies a
  known hash, but two processes fetching one file made 2 full downloads (no lock); a body cut short
  once raised with no retry and no resume; an HTML "sign in" page served as ``model.pth`` was cached;
  a flipped byte in a file fetched without ``known_hash`` was served again unverified; and an endless
  body without ``Content-Length`` wrote 310 MB in 3 s with no ceiling.
* gdown 6.5 handles Drive's confirm pages and resumes, but a ``.part`` left by an earlier process
  was spliced onto a changed server file (it sends ``Range`` without the validator of the first
  request), and it pulls in requests + beautifulsoup4.
* huggingface_hub keeps its own content-addressed cache keyed by repo id + revision, with locks and
  resume: hub files stay there (:mod:`act_zoo.hub.hf`), nothing of ours is layered on top.

So the plain-HTTP and Drive transports keep a small hand-written core for what the libraries lack and
we need: an inter-process lock (filelock), resume only with ``If-Range`` on the validator recorded at
the first request, a size ceiling, body validation before the rename, and a sha256 recorded for every
file we write and checked when it is used. Keying follows pooch (a digest of the normalised source).

Layout (under :func:`cache_dir`); every entry is a folder plus a sidecar named after it::

    files/<key>/<name>          a download: <key> = digest of the normalised source (URL, Drive id),
                                <name> the human-readable file name; the folder holds payload only
    files/<key>.json            its record: source, url, name, and sha256/size/mtime of each file
    files/<key>.lock            inter-process lock while downloading
    files/<key>.part[.json]     bytes received so far + the validators of the first response
    converted/<model>/...       an official checkpoint converted once (config.json, model.safetensors)
    converted/<model>.json      its record: what it was converted from, sha256 of each file

Payload and bookkeeping can never collide: payload lives inside ``<key>/`` (or ``<model>/``), the
bookkeeping beside it under fixed suffixes of a hex digest (or of a registry name, which has exactly
one dot, so ``<model>.json`` is never a model name). Files of the older layout keyed by basename
(``downloads/<name>``, ``gdrive/<id>/<name>``, converted folders without a record) are never read:
they are simply not found under the new keys, so nothing is ever served under the wrong key.

Verification: a record keeps each file's sha256, size and mtime; using a file re-hashes it only when
its size or mtime changed (the fast check); a mismatch means "not cached" (fetched or converted
again when online, :class:`ChecksumError` naming the file when offline).

Environment variables:

* ``ACT_ZOO_HOME``: the cache root (default ``$XDG_CACHE_HOME/act_zoo`` or ``~/.cache/act_zoo``).
* ``ACT_ZOO_OFFLINE`` / ``HF_HUB_OFFLINE``: when truthy, nothing is downloaded; a file that is not
  already cached raises :class:`OfflineError`.
* ``ACT_ZOO_MAX_DOWNLOAD_BYTES``: the ceiling for a body whose size is not known in advance
  (see :mod:`act_zoo.hub.http_fetch`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "OFFLINE_ENV_VARS",
    "ChecksumError",
    "DownloadError",
    "Entry",
    "OfflineError",
    "atomic_path",
    "atomic_write_bytes",
    "cache_dir",
    "current_umask",
    "download_entry",
    "drop_entry",
    "is_offline",
    "normalise_url",
    "offline_reason",
    "read_entry",
    "read_metadata",
    "remove_empty_dirs",
    "sha256_file",
    "source_key",
    "verify_entry",
    "write_entry",
]

logger = logging.getLogger(__name__)

#: Environment variables that switch act_zoo to offline mode (checked in this order).
OFFLINE_ENV_VARS: tuple[str, ...] = ("ACT_ZOO_OFFLINE", "HF_HUB_OFFLINE")
_TRUTHY = frozenset({"1", "true", "yes", "on"})
CHUNK_SIZE = 1 << 20


def cache_dir() -> Path:
    """Return the act_zoo cache root (not created here: whatever first writes into it creates
    it, so a failed or offline lookup leaves no empty folder behind).

    ``$ACT_ZOO_HOME`` when set, else ``$XDG_CACHE_HOME/act_zoo``, else ``~/.cache/act_zoo``.
    """
    home = os.environ.get("ACT_ZOO_HOME")
    if home:
        root = Path(home).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
        root = base / "act_zoo"
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


class DownloadError(RuntimeError):
    """A file could not be downloaded (HTTP error, truncated body, unexpected page, ...)."""


class ChecksumError(DownloadError):
    """The downloaded (or cached) bytes do not have the expected (or recorded) sha256."""


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
# keys
# --------------------------------------------------------------------------------------------------
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_url(url: str) -> str:
    """The form of ``url`` that keys the cache: lower-case scheme and host, no default port, no
    fragment, an empty path as ``/``; path and query are kept byte for byte (they name the file)."""
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    if parts.username or parts.password:
        netloc = f"{parts.username or ''}{':' + parts.password if parts.password else ''}@{netloc}"
    return urllib.parse.urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def source_key(source: str) -> str:
    """32 hex digits naming a source in the cache: a digest of the normalised URL, or of
    ``gdrive:<id>`` (any other string is digested as given)."""
    if source.lower().startswith(("http://", "https://")):
        source = normalise_url(source)
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Entry:
    """One cache entry: a folder of payload files and the bookkeeping files beside it."""

    folder: Path

    @property
    def record(self) -> Path:
        return _sidecar(self.folder, ".json")

    @property
    def lock(self) -> Path:
        return _sidecar(self.folder, ".lock")

    @property
    def part(self) -> Path:
        return _sidecar(self.folder, ".part")

    @property
    def part_record(self) -> Path:
        return _sidecar(self.folder, ".part.json")

    def file(self, name: str) -> Path:
        return self.folder / name


def _sidecar(folder: Path, suffix: str) -> Path:
    return folder.with_name(folder.name + suffix)


def download_entry(source: str, *, subdir: str = "files") -> Entry:
    """The entry of a download from ``source`` (a URL or ``gdrive:<id>``) under ``subdir``."""
    rel = Path(subdir)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"subdir must be a relative path inside the cache, got {subdir!r}")
    return Entry(cache_dir() / rel / source_key(source))


# --------------------------------------------------------------------------------------------------
# records: the sha256 of every file the cache writes, checked when it is used
# --------------------------------------------------------------------------------------------------
def sha256_file(path: Path | str, *, chunk_size: int = CHUNK_SIZE) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _file_record(path: Path, sha256: str | None = None) -> dict[str, Any]:
    st = path.stat()
    return {
        "sha256": sha256 or sha256_file(path),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }


def write_entry(
    entry: Entry | Path,
    *,
    files: Iterable[str],
    known: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Record ``files`` (names inside the entry folder) with their sha256, size and mtime, plus
    ``fields``; ``known`` maps a name to a sha256 already computed on exactly those bytes."""
    folder = entry.folder if isinstance(entry, Entry) else Path(entry)
    known = known or {}
    record: dict[str, Any] = dict(fields)
    record["files"] = {name: _file_record(folder / name, known.get(name)) for name in files}
    record["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write_bytes(_sidecar(folder, ".json"), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return record


def read_entry(entry: Entry | Path) -> dict[str, Any] | None:
    """The record of an entry folder; ``None`` when absent or unreadable (a warning then)."""
    folder = entry.folder if isinstance(entry, Entry) else Path(entry)
    path = _sidecar(folder, ".json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        logger.warning("Ignoring unreadable cache record %s: %s", path, exc)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        logger.warning("Ignoring cache record %s: not an act_zoo cache record", path)
        return None
    return data


def read_metadata(path: Path | str) -> dict[str, Any] | None:
    """What the cache recorded about one cached file: its entry's fields plus its own
    ``sha256``/``size``/``mtime_ns``; ``None`` when the file is not recorded."""
    path = Path(path)
    record = read_entry(path.parent)
    if record is None or not isinstance(record["files"].get(path.name), dict):
        return None
    out = {k: v for k, v in record.items() if k != "files"}
    out.update(record["files"][path.name])
    return out


def verify_entry(entry: Entry | Path, names: Iterable[str] | None = None) -> list[str]:
    """Problems with an entry's recorded files (empty: all present and unchanged).

    A file whose size and mtime are those recorded is taken as unchanged (the fast check); any
    other is re-hashed, and its new mtime recorded when the hash still matches."""
    folder = entry.folder if isinstance(entry, Entry) else Path(entry)
    record = read_entry(folder)
    if record is None:
        return [f"{folder} has no cache record"]
    files = record["files"]
    problems: list[str] = []
    touched = False
    for name in files if names is None else names:
        want = files.get(name)
        path = folder / name
        if not isinstance(want, dict):
            problems.append(f"{path} is not recorded")
            continue
        try:
            st = path.stat()
        except OSError:
            problems.append(f"{path} is missing")
            continue
        if st.st_size != want.get("size"):
            problems.append(f"{path} has {st.st_size} bytes, {want.get('size')} were recorded")
            continue
        if st.st_mtime_ns == want.get("mtime_ns"):
            continue
        observed = sha256_file(path)
        if observed != want.get("sha256"):
            problems.append(f"{path} has sha256 {observed}, {want.get('sha256')} was recorded")
            continue
        want["mtime_ns"] = st.st_mtime_ns  # same bytes, touched: skip the hash next time
        touched = True
    if touched and not problems:
        with contextlib.suppress(OSError):
            atomic_write_bytes(_sidecar(folder, ".json"), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return problems


def drop_entry(entry: Entry | Path) -> None:
    """Remove an entry's folder, record and partial download (not its lock, which others may hold)."""
    folder = entry.folder if isinstance(entry, Entry) else Path(entry)
    for path in (_sidecar(folder, ".json"), _sidecar(folder, ".part"), _sidecar(folder, ".part.json")):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    shutil.rmtree(folder, ignore_errors=True)


def remove_empty_dirs(path: Path, *, stop: Path) -> None:
    """Remove ``path`` and its parents up to (not including) ``stop`` while they are empty."""
    path, stop = Path(path), Path(stop)
    while path != stop and stop in path.parents:
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent


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
