"""Plain HTTP(S) transport: fetch a URL into its cache entry, once, completely, and only if sane.

:func:`download_url` returns a cached, verified file without touching the network. Otherwise,
under an inter-process :class:`filelock.FileLock`, :func:`fetch_into` streams the body to the
entry's ``.part`` file and:

* **resumes** only a provably unchanged file: the ``ETag`` (strong) or ``Last-Modified`` of the
  first response is recorded beside the ``.part``; a retry or a later process asks
  ``Range`` + ``If-Range`` with it, and a server that answers 200 (the file changed) restarts the
  body from zero. Without a validator there is no resume: the download starts again;
* **caps** the body: at ``Content-Length`` when announced, else at the caller's ``expected_size``
  (the manifest's ``size_bytes``), else at :func:`max_download_bytes` (``$ACT_ZOO_MAX_DOWNLOAD_BYTES``,
  default 10 GB);
* **validates** it before the rename: announced/expected length, expected sha256, not an HTML page,
  and the structure its name promises (:func:`act_zoo.hub.payload.check_payload`);
* records the sha256 of what it stored (:func:`act_zoo.hub.cache.write_entry`).

A failed download leaves neither a final file nor a ``.part`` behind; only an interrupted process
(Ctrl-C, kill) keeps its ``.part``, which the next call resumes if the server file is unchanged.
Plain ``urllib`` is used (see :mod:`act_zoo.hub.cache` for why no download library).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from filelock import FileLock

from .._version import __version__
from .cache import (
    ChecksumError,
    DownloadError,
    Entry,
    OfflineError,
    atomic_write_bytes,
    download_entry,
    is_offline,
    read_entry,
    sha256_file,
    verify_entry,
    write_entry,
)
from .payload import PayloadError, check_payload

__all__ = [
    "DEFAULT_MAX_DOWNLOAD_BYTES",
    "MAX_DOWNLOAD_ENV",
    "cached_file",
    "download_url",
    "fetch_into",
    "max_download_bytes",
]

logger = logging.getLogger(__name__)

#: First retry delay in seconds; doubled after each further failed attempt (capped at 8 s).
RETRY_BACKOFF_S = 0.5
CHUNK_SIZE = 1 << 20
USER_AGENT = f"act_zoo/{__version__} (+https://github.com/RunpeiDong/ACT)"
#: The ceiling for a body of unknown size (10 GB), overridable with ``$ACT_ZOO_MAX_DOWNLOAD_BYTES``.
DEFAULT_MAX_DOWNLOAD_BYTES = 10 * 1000**3
MAX_DOWNLOAD_ENV = "ACT_ZOO_MAX_DOWNLOAD_BYTES"
RETRY_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
# connection problems worth retrying (HTTPError, a URLError subclass, is handled before these)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


class _Truncated(Exception):
    """The connection ended before the announced number of bytes arrived (retryable)."""


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------
def max_download_bytes() -> int:
    """The ceiling for a body whose size nobody announced: ``$ACT_ZOO_MAX_DOWNLOAD_BYTES``
    (bytes, or with a unit: ``500MB``, ``20GB``, ``2GiB``), default 10 GB."""
    value = os.environ.get(MAX_DOWNLOAD_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_DOWNLOAD_BYTES
    m = _SIZE_RE.match(value)
    if not m:
        raise ValueError(f"{MAX_DOWNLOAD_ENV}={value!r}: expected a size such as 20000000000, 500MB or 20GB")
    unit = (m.group(2) or "").lower()
    base = 1024 if unit.endswith("ib") or unit in ("ki", "mi", "gi", "ti") else 1000
    factor = 1 if unit in ("", "b") else base ** ("kmgt".index(unit[0]) + 1)
    limit = int(float(m.group(1)) * factor)
    if limit <= 0:
        raise ValueError(f"{MAX_DOWNLOAD_ENV}={value!r} must be positive")
    return limit


def normalize_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not _SHA256_RE.match(value):
        raise ValueError(f"sha256 must be 64 hexadecimal characters, got {sha256!r}")
    return value


def check_http_url(url: str) -> None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"only http:// and https:// URLs can be downloaded, got {url!r}")


def safe_filename(name: str) -> str:
    """Reduce ``name`` to a plain file name (no directories, no control characters)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = re.sub(r"[\x00-\x1f\x7f]", "_", base)
    if base in ("", ".", ".."):
        raise ValueError(f"not a usable file name: {name!r}")
    return base


def filename_from_url(url: str) -> str:
    path = urllib.parse.unquote(urllib.parse.urlparse(url).path)
    try:
        return safe_filename(path)
    except ValueError:
        return "download"


def open_url(
    opener: urllib.request.OpenerDirector, url: str, *, offset: int = 0, validator: str | None = None,
    timeout: float,
) -> Any:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)


def is_html(resp: Any) -> bool:
    disposition = (resp.headers.get("Content-Disposition") or "").lower()
    if "attachment" in disposition or "filename" in disposition:
        return False
    return resp.headers.get_content_type() in ("text/html", "application/xhtml+xml")


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """``"bytes 10-99/100"`` -> ``(10, 100)``; ``"bytes */100"`` -> ``(None, 100)``."""
    if not value:
        return None, None
    m = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value)
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _validator(headers: Any) -> str | None:
    """The ``If-Range`` validator of a response: a strong ETag, else its Last-Modified date."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified") or None


def _progress_bar(*, total: int | None, initial: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        leave=False,
        disable=None if enabled else True,  # None: tqdm disables itself on a non-TTY
    )


# --------------------------------------------------------------------------------------------------
# streaming with resume (If-Range), a ceiling and retries
# --------------------------------------------------------------------------------------------------
def _read_part_record(entry: Entry) -> dict[str, Any]:
    try:
        data = json.loads(entry.part_record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _resume_point(entry: Entry) -> tuple[int, str | None]:
    """Where to resume the ``.part`` and the validator that proves the server file unchanged.

    No validator recorded: the ``.part`` is discarded (offset 0). A ``.part`` already as long as
    the recorded total is asked for its last byte again, so the server still confirms it."""
    size = entry.part.stat().st_size if entry.part.exists() else 0
    if not size:
        return 0, None
    record = _read_part_record(entry)
    validator, total = record.get("validator"), record.get("total")
    if not isinstance(validator, str) or not validator:
        logger.info("Discarding %s: nothing proves the server file is unchanged", entry.part)
        entry.part.unlink(missing_ok=True)
        entry.part_record.unlink(missing_ok=True)
        return 0, None
    if isinstance(total, int) and size >= total:
        return max(total - 1, 0), validator
    return size, validator


def _receive(
    resp: Any, entry: Entry, *, offset: int, url: str, name: str, expected_size: int | None, progress: bool
) -> None:
    """Write one HTTP response body into ``entry.part`` (from ``offset`` when the server resumed)."""
    status = resp.status
    if status == 206:
        start, total = _parse_content_range(resp.headers.get("Content-Range"))
        recorded = _read_part_record(entry).get("total")
        if start != offset or (recorded is not None and total != recorded):
            entry.part.unlink(missing_ok=True)
            raise _Truncated(f"server resumed at byte {start} of {total}, asked for {offset} of {recorded}")
    elif status == 200:
        if offset:
            logger.info("%s answered the resume with the whole file (changed, or no ranges); restarting", url)
        offset = 0
        if is_html(resp):
            raise DownloadError(f"{url} returned an HTML page instead of {name}; nothing was saved")
        total = _int_header(resp.headers.get("Content-Length"))
        record = {"url": url, "validator": _validator(resp.headers), "total": total}
        atomic_write_bytes(entry.part_record, json.dumps(record).encode())
    else:
        raise DownloadError(f"unexpected HTTP status {status} for {url}")
    if expected_size is not None and total is not None and total != expected_size:
        raise DownloadError(f"{url} announces {total} bytes but expected_size={expected_size}")
    ceiling = max_download_bytes() if expected_size is None else None  # the env var, read once
    if total is not None:
        limit, why = total, "the announced Content-Length"
    elif expected_size is not None:
        limit, why = expected_size, f"expected_size={expected_size}"
    else:
        limit = ceiling
        why = (f"the ceiling for a body of unannounced size, {MAX_DOWNLOAD_ENV}={limit} (default "
               f"{DEFAULT_MAX_DOWNLOAD_BYTES // 1000**3} GB; raise it if the file really is larger)")
    if total is not None and ceiling is not None and total > ceiling:
        raise DownloadError(
            f"{url} announces {total} bytes, more than {MAX_DOWNLOAD_ENV}={ceiling}; "
            "raise the ceiling if the file really is that large"
        )
    received = offset
    entry.part.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.part, "r+b" if offset else "wb") as fh, _progress_bar(
        total=total, initial=offset, desc=name, enabled=progress
    ) as bar:
        fh.truncate(offset)
        fh.seek(offset)
        read = getattr(resp, "read1", resp.read)  # what has arrived, so a kill keeps what was received
        while chunk := read(CHUNK_SIZE):
            received += len(chunk)
            if received > limit:
                raise DownloadError(f"{url} sent more than {limit} bytes, {why}; nothing was saved")
            fh.write(chunk)
            bar.update(len(chunk))
    if total is not None and received < total:
        raise _Truncated(f"connection closed after {received} of {total} bytes")


def _stream_to_part(
    url: str,
    entry: Entry,
    *,
    name: str,
    opener: urllib.request.OpenerDirector,
    timeout: float,
    max_retries: int,
    expected_size: int | None,
    progress: bool,
    first_response: Any = None,
) -> None:
    """Fill ``entry.part`` with the whole body of ``url``, resuming (If-Range) and retrying.

    ``first_response`` is an already-open response for offset 0 (the Google Drive flow, so the
    confirmed request is not sent twice); it is closed if a resumable ``.part`` makes it unneeded.
    """
    attempt = 0
    while True:
        offset, validator = _resume_point(entry)
        try:
            if first_response is not None and offset == 0:
                resp, first_response = first_response, None
            else:
                if first_response is not None:
                    first_response.close()
                    first_response = None
                resp = open_url(opener, url, offset=offset, validator=validator, timeout=timeout)
            with resp:
                _receive(resp, entry, offset=offset, url=url, name=name, expected_size=expected_size,
                         progress=progress)
            return
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416:
                entry.part.unlink(missing_ok=True)  # never trusted: start again
                error: BaseException = exc
            elif exc.code in RETRY_HTTP_STATUS:
                error = exc
            else:
                raise DownloadError(f"HTTP {exc.code} {exc.reason} for {url}") from exc
        except (_Truncated, *TRANSIENT_ERRORS) as exc:
            error = exc
        attempt += 1
        if attempt > max_retries:
            raise DownloadError(
                f"downloading {url} failed after {attempt} attempt(s): {type(error).__name__}: {error}"
            ) from error
        delay = min(RETRY_BACKOFF_S * 2 ** (attempt - 1), 8.0)
        logger.info(
            "Download of %s interrupted (%s: %s); retry %d/%d in %.1fs",
            url, type(error).__name__, error, attempt, max_retries, delay,
        )  # fmt: skip
        time.sleep(delay)


# --------------------------------------------------------------------------------------------------
# the cache side of a download
# --------------------------------------------------------------------------------------------------
def cached_file(entry: Entry, name: str | None, *, source: str, sha256: str | None) -> Path | None:
    """The verified cached file of ``entry`` (no network), or ``None`` when it must be fetched.

    A file placed by hand at the entry's path (no record yet) is accepted when it matches
    ``sha256`` (or when none is expected) and recorded. Offline, a missing file raises
    :class:`OfflineError` naming the exact path, a bad one :class:`ChecksumError` naming it."""
    record = read_entry(entry)
    if name is None:  # Google Drive: the name comes from the first download
        recorded = record.get("name") if record else None
        if isinstance(recorded, str):
            name = recorded
        elif entry.folder.is_dir():
            files = [p.name for p in entry.folder.iterdir() if p.is_file()]
            name = files[0] if len(files) == 1 else None
    path = entry.file(name) if name else entry.folder / "<file name>"
    reason: str | None = None
    if name and record is not None and name in record["files"]:
        problems = verify_entry(entry, [name])
        want = record["files"][name].get("sha256")
        if not problems and (sha256 is None or want == sha256):
            logger.debug("Using cached %s", path)
            return path
        reason = problems[0] if problems else f"{path} has sha256 {want}, {sha256} is expected"
    elif name and path.is_file():
        observed = sha256_file(path)
        try:
            check_payload(path, name=name)
        except PayloadError as exc:
            reason = f"{path} was placed there by hand but is not a usable {name}: {exc}"
        else:
            if sha256 is not None and observed != sha256:
                reason = f"{path} has sha256 {observed}, {sha256} is expected"
        if reason is None:
            write_entry(entry, files=[name], known={name: observed}, source=source, url=None, name=name,
                        expected_sha256=sha256, verified=sha256 is not None, placed_by_hand=True)
            logger.info("Using %s, placed in the cache by hand (sha256 %s recorded)", path, observed)
            return path
    if is_offline():
        if reason is not None:
            raise ChecksumError(
                f"cached file {path} does not match ({reason}) for {source}, and offline mode forbids "
                "downloading it again; download it while online, or place the correct file there"
            )
        raise OfflineError.missing(f"{source} (file {name or '<unknown name>'!r})", path)
    if reason is not None:
        logger.warning("Cached file no longer matches (%s); downloading it again", reason)
    return None


def fetch_into(
    entry: Entry,
    name: str,
    *,
    url: str,
    source: str,
    sha256: str | None,
    expected_size: int | None,
    progress: bool,
    timeout: float,
    max_retries: int,
    opener: urllib.request.OpenerDirector | None = None,
    first_response: Any = None,
) -> Path:
    """Return the verified ``entry/name``, downloading ``url`` into it first unless cached."""
    final = entry.file(name)
    try:
        hit = cached_file(entry, name, source=source, sha256=sha256)
        if hit is not None:
            return hit
        entry.lock.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(entry.lock)):
            record = read_entry(entry)
            done = record is not None and name in record["files"] and not verify_entry(entry, [name])
            if done and (sha256 is None or record["files"][name].get("sha256") == sha256):
                logger.info("Using %s (downloaded by another process)", final)
                return final
            if entry.part.exists():
                logger.info("Resuming %s from byte %d if unchanged", url, entry.part.stat().st_size)
            logger.info("Downloading %s to %s", url, final)
            try:
                _stream_to_part(url, entry, name=name, opener=opener or urllib.request.build_opener(),
                                timeout=timeout, max_retries=max_retries, expected_size=expected_size,
                                progress=progress, first_response=first_response)
                first_response = None
                size = entry.part.stat().st_size
                if expected_size is not None and size != expected_size:
                    raise DownloadError(f"{url} gave {size} bytes but expected_size={expected_size}")
                observed = sha256_file(entry.part)
                if sha256 is not None and observed != sha256:
                    raise ChecksumError(
                        f"sha256 mismatch for {url}: expected {sha256}, observed {observed} "
                        f"({size} bytes); the download was discarded"
                    )
                try:
                    check_payload(entry.part, name=name)
                except PayloadError as exc:
                    raise DownloadError(f"{url} did not give a usable {name}: {exc}; nothing was saved") from None
                drop_entry_files(entry)
                entry.folder.mkdir(parents=True, exist_ok=True)
                os.replace(entry.part, final)
            except Exception:
                entry.part.unlink(missing_ok=True)
                entry.part_record.unlink(missing_ok=True)
                raise
            entry.part_record.unlink(missing_ok=True)
            write_entry(entry, files=[name], known={name: observed}, source=source, url=url, name=name,
                        expected_sha256=sha256, verified=sha256 is not None)
        if sha256 is None:
            logger.warning(
                "%s was downloaded without an expected sha256, so it is unverified; observed sha256=%s "
                "(recorded in %s)",
                source, observed, entry.record,
            )  # fmt: skip
        return final
    finally:
        if first_response is not None:
            first_response.close()


def drop_entry_files(entry: Entry) -> None:
    """Remove an entry's payload folder and record (not its ``.part``: the new file) before a new
    version takes their place."""
    entry.record.unlink(missing_ok=True)
    shutil.rmtree(entry.folder, ignore_errors=True)


def download_url(
    url: str,
    *,
    sha256: str | None = None,
    filename: str | None = None,
    subdir: str = "files",
    expected_size: int | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    max_retries: int = 3,
) -> Path:
    """Download ``url`` into ``cache_dir()/subdir/<key>/<filename>`` and return the path.

    ``<key>`` is a digest of the normalised URL, so two URLs never share a file. A cached file
    whose recorded sha256 still matches (and ``sha256``, when given) is returned without network
    access. Otherwise it is downloaded once even by concurrent processes, resumed only when the
    server proves the file unchanged, capped, validated and renamed into place atomically.

    Args:
        url: an ``http://`` or ``https://`` URL.
        sha256: expected hex digest; without it the file is accepted but logged as unverified.
        filename: name in the cache (default: the last component of the URL path).
        subdir: folder below :func:`~act_zoo.hub.cache.cache_dir`.
        expected_size: expected size in bytes (also caps a body of unannounced size).
        progress: show a tqdm progress bar (only on a terminal).
        timeout: socket timeout in seconds for each request.
        max_retries: extra attempts after a connection error or truncated body.

    Raises:
        OfflineError: offline mode is on and the file is not cached (the message names the path).
        ChecksumError: the bytes do not have the expected sha256.
        DownloadError: HTTP error, repeated truncation, size mismatch, a body that is not weights.
    """
    check_http_url(url)
    sha256 = normalize_sha256(sha256)
    name = safe_filename(filename) if filename else filename_from_url(url)
    entry = download_entry(url, subdir=subdir)
    return fetch_into(entry, name, url=url, source=url, sha256=sha256, expected_size=expected_size,
                      progress=progress, timeout=timeout, max_retries=max_retries)
