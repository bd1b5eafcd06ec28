"""Download weight files into the act_zoo cache.

Three sources are supported:

* :func:`download_url`: any ``http://`` / ``https://`` URL (GitHub releases, mirrors, ...);
* :func:`download_gdrive`: a Google Drive file id or share link, including the large-file
  "can't scan for viruses" confirm page;
* :func:`hf_hub_file`: a file of a Hugging Face hub repository (kept in the hub's own cache).

The first two share one machinery (:func:`_download_to_cache`): a cached file is returned without
touching the network; otherwise, under an inter-process :class:`filelock.FileLock`, the body is
streamed to ``<final>.part`` (resuming it with an HTTP ``Range`` request when the server allows),
retried on connection errors and truncation, checked against the announced length and the expected
sha256, and only then renamed to its final name. A failed download leaves neither a final file nor
a ``.part`` behind; only an interrupted process (Ctrl-C, kill) keeps its ``.part``, which the next
call resumes. Plain ``urllib`` is used, so this module needs no HTTP library.
"""

from __future__ import annotations

import hashlib
import html.parser
import http.client
import http.cookiejar
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from filelock import FileLock

from .._version import __version__
from .cache import OfflineError, cache_dir, is_offline, read_metadata, write_metadata

__all__ = [
    "GDRIVE_URL",
    "ChecksumError",
    "DownloadError",
    "download_gdrive",
    "download_url",
    "hf_hub_file",
    "parse_gdrive_id",
    "parse_hf_spec",
    "sha256_file",
]

logger = logging.getLogger(__name__)

#: Google Drive download endpoint; tests point it (or ``$ACT_ZOO_GDRIVE_URL``) at a local server.
GDRIVE_URL = "https://drive.google.com/uc"
#: First retry delay in seconds; doubled after each further failed attempt (capped at 8 s).
RETRY_BACKOFF_S = 0.5
CHUNK_SIZE = 1 << 20
USER_AGENT = f"act_zoo/{__version__} (+https://github.com/RunpeiDong/ACT)"
_MAX_HTML_BYTES = 4 << 20
_RETRY_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_GDRIVE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{25,128}$")
_GDRIVE_HOSTS = frozenset({"drive.google.com", "docs.google.com", "drive.usercontent.google.com"})
_AUX_SUFFIXES = (".json", ".lock", ".part", ".tmp")
# connection problems worth retrying (HTTPError, a URLError subclass, is handled before these)
_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


class DownloadError(RuntimeError):
    """A file could not be downloaded (HTTP error, truncated body, unexpected page, ...)."""


class ChecksumError(DownloadError):
    """The downloaded (or cached) bytes do not have the expected sha256."""


class _Truncated(Exception):
    """The connection ended before the announced number of bytes arrived (retryable)."""


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------
def sha256_file(path: Path | str, *, chunk_size: int = CHUNK_SIZE) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _normalize_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not _SHA256_RE.match(value):
        raise ValueError(f"sha256 must be 64 hexadecimal characters, got {sha256!r}")
    return value


def _check_http_url(url: str) -> None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"only http:// and https:// URLs can be downloaded, got {url!r}")


def _safe_filename(name: str) -> str:
    """Reduce ``name`` to a plain file name (no directories, no control characters)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = re.sub(r"[\x00-\x1f\x7f]", "_", base)
    if base in ("", ".", ".."):
        raise ValueError(f"not a usable file name: {name!r}")
    return base


def _filename_from_url(url: str) -> str:
    path = urllib.parse.unquote(urllib.parse.urlparse(url).path)
    try:
        return _safe_filename(path)
    except ValueError:
        return "download-" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


def _cache_subdir(subdir: str) -> Path:
    rel = Path(subdir)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"subdir must be a relative path inside the cache, got {subdir!r}")
    return cache_dir() / rel


def _part_path(final: Path) -> Path:
    return final.with_name(final.name + ".part")


def _lock_path(final: Path) -> Path:
    return final.with_name(final.name + ".lock")


def _open(opener: urllib.request.OpenerDirector, url: str, *, offset: int, timeout: float) -> Any:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)


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
# streaming with resume and retries
# --------------------------------------------------------------------------------------------------
def _receive(
    resp: Any, part: Path, *, offset: int, url: str, expected_size: int | None, progress: bool
) -> None:
    """Write one HTTP response body to ``part`` (appending when the server resumed at ``offset``)."""
    status = resp.status
    if status == 206:
        start, total = _parse_content_range(resp.headers.get("Content-Range"))
        if start != offset:
            part.unlink(missing_ok=True)
            raise _Truncated(f"server resumed at byte {start}, asked for byte {offset}; restarting")
        mode = "ab"
    elif status == 200:
        if offset:
            logger.info("%s does not support resuming (HTTP 200 to a Range request); restarting", url)
        offset, mode = 0, "wb"
        total = _int_header(resp.headers.get("Content-Length"))
    else:
        raise DownloadError(f"unexpected HTTP status {status} for {url}")
    if expected_size is not None and total is not None and total != expected_size:
        raise DownloadError(f"{url} announces {total} bytes but expected_size={expected_size}")
    target = total if total is not None else expected_size
    received = offset
    with open(part, mode) as fh, _progress_bar(
        total=target, initial=offset, desc=part.name[: -len(".part")], enabled=progress
    ) as bar:
        while chunk := resp.read(CHUNK_SIZE):
            fh.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
            if target is not None and received > target:
                raise DownloadError(f"{url} sent more than the announced {target} bytes")
    if target is not None and received < target:
        raise _Truncated(f"connection closed after {received} of {target} bytes")


def _stream_to_part(
    url: str,
    part: Path,
    *,
    opener: urllib.request.OpenerDirector,
    timeout: float,
    max_retries: int,
    expected_size: int | None,
    progress: bool,
    first_response: Any = None,
) -> None:
    """Fill ``part`` with the full body of ``url``, resuming and retrying up to ``max_retries`` times.

    ``first_response`` is an already-open response for offset 0 (used by the Google Drive flow so the
    confirmed request is not sent twice); it is closed if it cannot be used.
    """
    attempt = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        try:
            if first_response is not None and offset == 0:
                resp, first_response = first_response, None
            else:
                if first_response is not None:
                    first_response.close()
                    first_response = None
                resp = _open(opener, url, offset=offset, timeout=timeout)
            with resp:
                _receive(resp, part, offset=offset, url=url, expected_size=expected_size, progress=progress)
            return
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset:
                _, total = _parse_content_range(exc.headers.get("Content-Range"))
                if total == offset and expected_size in (None, total):
                    return  # the .part already holds the whole file
                part.unlink(missing_ok=True)
                error: BaseException = exc
            elif exc.code in _RETRY_HTTP_STATUS:
                error = exc
            else:
                raise DownloadError(f"HTTP {exc.code} {exc.reason} for {url}") from exc
        except (_Truncated, *_TRANSIENT_ERRORS) as exc:
            error = exc
        attempt += 1
        if attempt > max_retries:
            raise DownloadError(
                f"downloading {url} failed after {attempt} attempt(s): {type(error).__name__}: {error}"
            ) from error
        delay = min(RETRY_BACKOFF_S * 2 ** (attempt - 1), 8.0)
        have = part.stat().st_size if part.exists() else 0
        logger.warning(
            "Download of %s interrupted (%s: %s); retry %d/%d in %.1fs from byte %d",
            url, type(error).__name__, error, attempt, max_retries, delay, have,
        )  # fmt: skip
        time.sleep(delay)


def _matches(path: Path, sha256: str | None) -> tuple[bool, str | None]:
    """(ok, observed hash) for a cached file; no hashing when nothing is expected."""
    if sha256 is None:
        return True, None
    observed = sha256_file(path)
    return observed == sha256, observed


def _cache_hit(final: Path, *, source: str, sha256: str | None) -> Path | None:
    """``final`` if it is cached and valid; ``None`` if it must be downloaded; raises when offline."""
    if final.is_file():
        ok, observed = _matches(final, sha256)
        if ok:
            logger.debug("Using cached %s", final)
            return final
        if is_offline():
            raise ChecksumError(
                f"cached file {final} has sha256 {observed} but {sha256} is expected for {source}, "
                "and offline mode forbids downloading it again; delete the file and download it "
                "while online, or place the correct file there"
            )
        logger.warning("Cached %s has sha256 %s, expected %s; downloading it again", final, observed, sha256)
    elif is_offline():
        raise OfflineError.missing(f"{source} (file {final.name!r})", final)
    return None


def _download_to_cache(
    final: Path,
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
    """Return ``final``, downloading ``url`` into it first unless a valid copy is cached."""
    try:
        hit = _cache_hit(final, source=source, sha256=sha256)
        if hit is not None:
            return hit
        final.parent.mkdir(parents=True, exist_ok=True)
        part = _part_path(final)
        with FileLock(str(_lock_path(final))):
            if final.is_file():  # another process may have finished it while we waited
                ok, observed = _matches(final, sha256)
                if ok:
                    logger.info("Using %s (downloaded by another process)", final)
                    return final
                logger.warning(
                    "Cached %s has sha256 %s, expected %s; downloading it again", final, observed, sha256
                )
                final.unlink()
            if part.exists():
                logger.info("Resuming %s from byte %d", url, part.stat().st_size)
            logger.info("Downloading %s to %s", url, final)
            try:
                _stream_to_part(
                    url,
                    part,
                    opener=opener or urllib.request.build_opener(),
                    timeout=timeout,
                    max_retries=max_retries,
                    expected_size=expected_size,
                    progress=progress,
                    first_response=first_response,
                )
                size = part.stat().st_size
                if expected_size is not None and size != expected_size:
                    raise DownloadError(f"{url} gave {size} bytes but expected_size={expected_size}")
                observed = sha256_file(part)
                if sha256 is not None and observed != sha256:
                    raise ChecksumError(
                        f"sha256 mismatch for {url}: expected {sha256}, observed {observed} "
                        f"({size} bytes); the download was discarded"
                    )
                os.replace(part, final)
            except Exception:
                part.unlink(missing_ok=True)
                raise
            write_metadata(final, source=source, url=url, sha256=observed, expected_sha256=sha256, size=size)
        if sha256 is None:
            logger.warning(
                "%s was downloaded without an expected sha256, so it is unverified; observed sha256=%s "
                "(recorded in %s.json)",
                source, observed, final,
            )  # fmt: skip
        return final
    finally:
        if first_response is not None:
            first_response.close()


# --------------------------------------------------------------------------------------------------
# plain URLs
# --------------------------------------------------------------------------------------------------
def download_url(
    url: str,
    *,
    sha256: str | None = None,
    filename: str | None = None,
    subdir: str = "downloads",
    expected_size: int | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    max_retries: int = 3,
) -> Path:
    """Download ``url`` into ``cache_dir()/subdir/<filename>`` and return the path.

    A cached file (with the right sha256 when one is given) is returned without any network access.
    Otherwise the file is downloaded once even by concurrent processes (file lock), resumed and
    retried on interruptions, checked against ``Content-Length``/``expected_size`` and ``sha256``,
    and renamed into place atomically; a ``<file>.json`` metadata file is written beside it.

    Args:
        url: an ``http://`` or ``https://`` URL.
        sha256: expected hex digest; without it the file is accepted but logged as unverified.
        filename: name in the cache (default: the last component of the URL path).
        subdir: folder below :func:`~act_zoo.hub.cache.cache_dir`.
        expected_size: expected size in bytes, if known.
        progress: show a tqdm progress bar (only on a terminal).
        timeout: socket timeout in seconds for each request.
        max_retries: extra attempts after a connection error or truncated body.

    Raises:
        OfflineError: offline mode is on and the file is not cached.
        ChecksumError: the bytes do not have the expected sha256.
        DownloadError: HTTP error, repeated truncation, size mismatch.
    """
    _check_http_url(url)
    sha256 = _normalize_sha256(sha256)
    name = _safe_filename(filename) if filename else _filename_from_url(url)
    final = _cache_subdir(subdir) / name
    return _download_to_cache(
        final,
        url=url,
        source=url,
        sha256=sha256,
        expected_size=expected_size,
        progress=progress,
        timeout=timeout,
        max_retries=max_retries,
    )


# --------------------------------------------------------------------------------------------------
# Google Drive
# --------------------------------------------------------------------------------------------------
def parse_gdrive_id(s: str) -> str | None:
    """Extract a Google Drive file id from a bare id or a Drive URL; ``None`` if there is none.

    Accepted: ``<ID>``, ``https://drive.google.com/file/d/<ID>/view?usp=sharing``,
    ``https://drive.google.com/open?id=<ID>``, ``https://drive.google.com/uc?id=<ID>&export=download``,
    ``https://drive.usercontent.google.com/download?id=<ID>&...`` (and ``docs.google.com`` variants).
    """
    if not isinstance(s, str):
        return None
    s = s.strip()
    if _GDRIVE_ID_RE.match(s):
        return s
    parsed = urllib.parse.urlparse(s)
    if parsed.scheme not in ("http", "https") or (parsed.hostname or "") not in _GDRIVE_HOSTS:
        return None
    m = re.search(r"/d/([^/?#]+)", parsed.path)
    candidate = m.group(1) if m else (urllib.parse.parse_qs(parsed.query).get("id") or [None])[0]
    return candidate if candidate and _GDRIVE_ID_RE.match(candidate) else None


class _FormParser(html.parser.HTMLParser):
    """Collect the forms of a page: id, action and named (non-button) inputs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "form":
            self._current = {"id": a.get("id", ""), "action": a.get("action", ""), "inputs": {}}
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and a.get("name"):
            if a.get("type", "text").lower() not in ("submit", "button", "image", "reset", "file"):
                self._current["inputs"][a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    query.update(params)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _gdrive_confirm_url(
    page: str, *, page_url: str, set_cookies: list[str], file_id: str, base: str
) -> str | None:
    """The URL that confirms a "can't scan for viruses" page, or ``None`` if it is not one."""
    parser = _FormParser()
    parser.feed(page)
    for form in parser.forms:  # current flow: <form id="download-form" action=...> + hidden inputs
        if form["id"] == "download-form" or "confirm" in form["inputs"]:
            action = urllib.parse.urljoin(page_url, form["action"] or page_url)
            if urllib.parse.urlparse(action).scheme in ("http", "https"):
                return _with_query(action, form["inputs"])
    for cookie in set_cookies:  # old flow: download_warning_<...>=<token> cookie
        m = re.match(r"\s*download_warning[^=]*=([^;\s]+)", cookie)
        if m:
            return _with_query(base, {"id": file_id, "export": "download", "confirm": m.group(1)})
    m = re.search(r"confirm=([0-9A-Za-z_-]+)", page)  # old flow: token in a link of the page
    if m:
        return _with_query(base, {"id": file_id, "export": "download", "confirm": m.group(1)})
    return None


def _gdrive_page_error(page: str, *, file_id: str, url: str, folder: Path) -> DownloadError:
    m = re.search(r"<title[^>]*>(.*?)</title>", page, re.I | re.S)
    title = re.sub(r"\s+", " ", m.group(1)).strip() if m else ""
    text = re.sub(r"<[^>]+>", " ", page).lower()
    if "quota" in text or "too many users" in text:
        reason = (
            "the file's download quota is exceeded (too many users have viewed or downloaded it "
            "recently); try again later"
        )
    elif any(k in text for k in ("you need access", "request access", "permission", "sign in")):
        reason = "permission denied: the file is not shared with 'Anyone with the link'"
    elif "not found" in text or "does not exist" in text:
        reason = "the file does not exist or was deleted"
    else:
        reason = "the page is not a recognised download-confirmation page"
    return DownloadError(
        f"Google Drive returned an HTML page instead of file {file_id} (title {title!r}): {reason}. "
        f"Nothing was saved. Requested URL: {url}. To fix: download it in a browser from "
        f"https://drive.google.com/uc?id={file_id}&export=download and place it in {folder}/"
    )


def _is_html(resp: Any) -> bool:
    disposition = (resp.headers.get("Content-Disposition") or "").lower()
    if "attachment" in disposition or "filename" in disposition:
        return False
    return resp.headers.get_content_type() in ("text/html", "application/xhtml+xml")


def _content_disposition_filename(value: str | None) -> str | None:
    """The file name of a ``Content-Disposition`` header (``filename*=`` preferred)."""
    if not value:
        return None
    m = re.search(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", value, re.I)
    if m:
        encoded = m.group(2).strip().strip('"')
        return urllib.parse.unquote(encoded, encoding=m.group(1) or "utf-8", errors="replace")
    m = re.search(r'filename\s*=\s*"((?:[^"\\]|\\.)*)"', value, re.I)
    if m:
        return re.sub(r"\\(.)", r"\1", m.group(1))
    m = re.search(r"filename\s*=\s*([^;]+)", value, re.I)
    return m.group(1).strip() if m else None


def _open_with_retries(
    opener: urllib.request.OpenerDirector, url: str, *, timeout: float, max_retries: int, what: str
) -> Any:
    for attempt in range(max_retries + 1):
        try:
            return _open(opener, url, offset=0, timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code not in _RETRY_HTTP_STATUS or attempt == max_retries:
                raise DownloadError(f"HTTP {exc.code} {exc.reason} for {what} ({url})") from exc
            error: BaseException = exc
        except _TRANSIENT_ERRORS as exc:
            if attempt == max_retries:
                raise DownloadError(f"could not reach {url} for {what}: {exc}") from exc
            error = exc
        delay = min(RETRY_BACKOFF_S * 2**attempt, 8.0)
        logger.warning("Request for %s failed (%s); retrying in %.1fs", url, error, delay)
        time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _gdrive_resolve(
    file_id: str, *, opener: urllib.request.OpenerDirector, timeout: float, max_retries: int, folder: Path
) -> tuple[str, Any]:
    """Follow Drive's confirm pages; return the URL serving the file and its open response."""
    base = os.environ.get("ACT_ZOO_GDRIVE_URL") or GDRIVE_URL
    _check_http_url(base)
    url = _with_query(base, {"id": file_id, "export": "download"})
    visited: set[str] = set()
    while True:
        visited.add(url)
        resp = _open_with_retries(
            opener, url, timeout=timeout, max_retries=max_retries, what=f"Google Drive file {file_id}"
        )
        if not _is_html(resp):
            return url, resp
        with resp:
            charset = resp.headers.get_content_charset() or "utf-8"
            page = resp.read(_MAX_HTML_BYTES).decode(charset, errors="replace")
            set_cookies = resp.headers.get_all("Set-Cookie") or []
            page_url = resp.geturl() or url
        next_url = _gdrive_confirm_url(
            page, page_url=page_url, set_cookies=set_cookies, file_id=file_id, base=base
        )
        if next_url is None or next_url in visited:
            raise _gdrive_page_error(page, file_id=file_id, url=url, folder=folder)
        logger.info("Google Drive asked to confirm the download of %s; confirming", file_id)
        url = next_url


def _previous_gdrive_download(folder: Path, source: str) -> Path | None:
    """A file already cached for this Drive id (its name is not known before downloading)."""
    if not folder.is_dir():
        return None
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(_AUX_SUFFIXES)
    ]
    recorded = [p for p in files if (read_metadata(p) or {}).get("source") == source]
    if len(recorded) == 1:
        return recorded[0]
    return files[0] if len(files) == 1 else None


def download_gdrive(
    id_or_url: str,
    *,
    sha256: str | None = None,
    filename: str | None = None,
    subdir: str = "gdrive",
    expected_size: int | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    max_retries: int = 3,
) -> Path:
    """Download a Google Drive file into ``cache_dir()/subdir/<id>/<name>`` and return the path.

    ``id_or_url`` is anything :func:`parse_gdrive_id` accepts. The large-file virus-scan warning is
    confirmed automatically (old cookie/``confirm=`` flow and the current ``download-form`` flow).
    An HTML page that is not a confirm page (quota exceeded, permission denied) raises
    :class:`DownloadError` and nothing is saved. ``<name>`` is ``filename``, else the
    ``Content-Disposition`` file name, else the id. The endpoint is :data:`GDRIVE_URL`, overridable
    with ``$ACT_ZOO_GDRIVE_URL``. Other options and errors as in :func:`download_url`.
    """
    file_id = parse_gdrive_id(id_or_url)
    if file_id is None:
        raise ValueError(f"not a Google Drive file id or URL: {id_or_url!r}")
    sha256 = _normalize_sha256(sha256)
    folder = _cache_subdir(subdir) / file_id
    source = f"gdrive:{file_id}"
    known = folder / _safe_filename(filename) if filename else _previous_gdrive_download(folder, source)
    if known is not None:
        hit = _cache_hit(known, source=source, sha256=sha256)  # no network; raises when offline
        if hit is not None:
            return hit
    elif is_offline():
        raise OfflineError.missing(f"Google Drive file {file_id}", folder / "<file name>")
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    url, resp = _gdrive_resolve(
        file_id, opener=opener, timeout=timeout, max_retries=max_retries, folder=folder
    )
    name = filename or _content_disposition_filename(resp.headers.get("Content-Disposition")) or file_id
    try:
        final = folder / _safe_filename(name)
    except ValueError:
        final = folder / file_id
    return _download_to_cache(
        final,
        url=url,
        source=source,
        sha256=sha256,
        expected_size=expected_size,
        progress=progress,
        timeout=timeout,
        max_retries=max_retries,
        opener=opener,
        first_response=resp,
    )


# --------------------------------------------------------------------------------------------------
# Hugging Face hub
# --------------------------------------------------------------------------------------------------
_HF_PREFIX = "hf-hub:"
_HF_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


def parse_hf_spec(spec: str) -> tuple[str, str | None]:
    """``"hf-hub:org/repo@rev"`` -> ``("org/repo", "rev")``; without ``@rev`` the revision is ``None``.

    Raises:
        ValueError: the prefix is missing or the repo id / revision is malformed.
    """
    if not isinstance(spec, str) or not spec[: len(_HF_PREFIX)].lower() == _HF_PREFIX:
        raise ValueError(f"expected 'hf-hub:<org>/<repo>[@<revision>]', got {spec!r}")
    body = spec[len(_HF_PREFIX) :].strip()
    repo_id, at, revision = body.partition("@")
    parts = repo_id.split("/")
    if (
        not repo_id
        or len(parts) > 2
        or len(repo_id) > 96
        or not all(_HF_NAME_RE.match(p) for p in parts)
        or any(".." in p or "--" in p for p in parts)
    ):
        raise ValueError(f"invalid Hugging Face repo id {repo_id!r} in {spec!r}")
    if at and (not revision or any(c.isspace() for c in revision)):
        raise ValueError(f"invalid revision {revision!r} in {spec!r}")
    return repo_id, (revision or None)


def hf_hub_file(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    endpoint: str | None = None,
) -> Path:
    """Path of ``filename`` from hub repo ``repo_id``, downloaded into the hub's own cache if needed.

    In offline mode (:func:`~act_zoo.hub.cache.is_offline`) only the local hub cache is used.

    Args:
        repo_id: ``"org/repo"``.
        filename: file path inside the repository.
        revision: branch, tag or commit (default: the hub's default branch).
        cache_dir: hub cache folder (default: the hub's, ``$HF_HUB_CACHE``).
        endpoint: hub endpoint or mirror (default: ``$HF_ENDPOINT`` / huggingface.co).

    Raises:
        OfflineError: offline and the file is not in the hub cache.
        DownloadError: repository, revision or file not found, gated repo, HTTP or network failure.
    """
    from huggingface_hub import constants, errors, hf_hub_download

    offline = is_offline()
    where = f"{repo_id}/{filename}" + (f"@{revision}" if revision else "")
    try:
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=cache_dir,
            endpoint=endpoint,
            local_files_only=offline,
            library_name="act_zoo",
            library_version=__version__,
        )
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as exc:
        root = Path(cache_dir or constants.HF_HUB_CACHE)
        repo_folder = root / f"models--{repo_id.replace('/', '--')}"
        looked = repo_folder / "snapshots" / (revision or "<main>") / filename
        if offline or isinstance(exc, errors.OfflineModeIsEnabled):
            raise OfflineError.missing(
                f"Hugging Face hub file {where!r}",
                looked,
                reason=None if offline else "HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE",
                fix=(
                    "unset ACT_ZOO_OFFLINE/HF_HUB_OFFLINE to allow downloading, or fetch it once while "
                    f"online, e.g. `hf download {repo_id} {filename}`"
                    + (f" --revision {revision}" if revision else "")
                ),
            ) from exc
        raise DownloadError(
            f"could not download {where!r} from the Hugging Face hub and it is not cached in {root} "
            f"(network unreachable?): {exc}"
        ) from exc
    except errors.GatedRepoError as exc:
        raise DownloadError(
            f"{repo_id!r} is a gated repository: accept its terms on the hub and log in (`hf auth login`)"
        ) from exc
    except errors.RepositoryNotFoundError as exc:
        raise DownloadError(
            f"Hugging Face repository {repo_id!r} not found (or private: log in with `hf auth login`)"
        ) from exc
    except errors.RevisionNotFoundError as exc:
        raise DownloadError(
            f"revision {revision!r} not found in Hugging Face repository {repo_id!r}"
        ) from exc
    except errors.EntryNotFoundError as exc:
        raise DownloadError(f"file {filename!r} not found in Hugging Face repository {repo_id!r}") from exc
    except errors.HfHubHTTPError as exc:
        raise DownloadError(f"Hugging Face hub request for {where!r} failed: {exc}") from exc
    return Path(path)
