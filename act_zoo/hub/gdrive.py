"""Google Drive transport: a file id or share link -> the file, through Drive's confirm pages.

Drive answers a large file with an HTML "can't scan for viruses" page; :func:`download_gdrive`
confirms it (the current ``download-form`` flow and the older cookie / ``confirm=`` link flows),
recognises the error pages (quota exceeded, permission denied, not found) and hands the confirmed
response to the plain-HTTP transport (:func:`act_zoo.hub.http_fetch.fetch_into`), which caches it under
a digest of ``gdrive:<id>`` like any other download. gdown does the same confirm dance but splices
a changed file on resume (see :mod:`act_zoo.hub.cache`), so this small parser stays.
"""

from __future__ import annotations

import html.parser
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

from . import http_fetch
from .cache import DownloadError, download_entry
from .http_fetch import (
    RETRY_HTTP_STATUS,
    TRANSIENT_ERRORS,
    cached_file,
    check_http_url,
    fetch_into,
    is_html,
    normalize_sha256,
    open_url,
    safe_filename,
)

__all__ = ["GDRIVE_URL", "download_gdrive", "parse_gdrive_id"]

logger = logging.getLogger(__name__)

#: Google Drive download endpoint; tests point it (or ``$ACT_ZOO_GDRIVE_URL``) at a local server.
GDRIVE_URL = "https://drive.google.com/uc"
_MAX_HTML_BYTES = 4 << 20
_GDRIVE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{25,128}$")
_GDRIVE_HOSTS = frozenset({"drive.google.com", "docs.google.com", "drive.usercontent.google.com"})


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
            return open_url(opener, url, timeout=timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code not in RETRY_HTTP_STATUS or attempt == max_retries:
                raise DownloadError(f"HTTP {exc.code} {exc.reason} for {what} ({url})") from exc
            error: BaseException = exc
        except TRANSIENT_ERRORS as exc:
            if attempt == max_retries:
                raise DownloadError(f"could not reach {url} for {what}: {exc}") from exc
            error = exc
        delay = min(http_fetch.RETRY_BACKOFF_S * 2**attempt, 8.0)
        logger.info("Request for %s failed (%s); retrying in %.1fs", url, error, delay)
        time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _gdrive_resolve(
    file_id: str, *, opener: urllib.request.OpenerDirector, timeout: float, max_retries: int, folder: Path
) -> tuple[str, Any]:
    """Follow Drive's confirm pages; return the URL serving the file and its open response."""
    base = os.environ.get("ACT_ZOO_GDRIVE_URL") or GDRIVE_URL
    check_http_url(base)
    url = _with_query(base, {"id": file_id, "export": "download"})
    visited: set[str] = set()
    while True:
        visited.add(url)
        resp = _open_with_retries(
            opener, url, timeout=timeout, max_retries=max_retries, what=f"Google Drive file {file_id}"
        )
        if not is_html(resp):
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


def download_gdrive(
    id_or_url: str,
    *,
    sha256: str | None = None,
    filename: str | None = None,
    subdir: str = "files",
    expected_size: int | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    max_retries: int = 3,
) -> Path:
    """Download a Google Drive file into ``cache_dir()/subdir/<key>/<name>`` and return the path
    (``<key>`` a digest of ``gdrive:<id>``).

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
    sha256 = normalize_sha256(sha256)
    source = f"gdrive:{file_id}"
    entry = download_entry(source, subdir=subdir)
    known = safe_filename(filename) if filename else None
    hit = cached_file(entry, known, source=source, sha256=sha256)  # no network; raises when offline
    if hit is not None:
        return hit
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    url, resp = _gdrive_resolve(
        file_id, opener=opener, timeout=timeout, max_retries=max_retries, folder=entry.folder
    )
    name = known or _content_disposition_filename(resp.headers.get("Content-Disposition")) or file_id
    try:
        name = safe_filename(name)
    except ValueError:
        name = file_id
    return fetch_into(
        entry,
        name,
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
