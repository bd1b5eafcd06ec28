"""A real HTTP server on 127.0.0.1 for the download tests.

:class:`LocalServer` runs a :class:`http.server.ThreadingHTTPServer` in a daemon thread and serves
byte payloads registered by the tests:

* :meth:`LocalServer.add_file`: a file with ``Content-Length``, ``Range``/``If-Range`` support and
  validators (a strong ``ETag`` and a ``Last-Modified`` date unless switched off), optionally
  truncated (``Content-Length`` larger than what is sent, then the connection is closed), ignoring
  ``Range`` (answers 200), slow (sent in small pieces with pauses), without ``Content-Length``
  (the body ends when the connection closes) or endless;
* :meth:`LocalServer.replace`: the file at a path changes (new bytes, new validators);
* :meth:`LocalServer.add_gdrive`: a Google-Drive-like ``/uc`` endpoint that answers with an HTML
  confirm page first (``"cookie"``/``"link"``: old flow, ``"form"``: current ``download-form`` flow
  served through ``/download``), or with an error page (``"quota"``, ``"permission"``), or directly.

Every request is recorded (:attr:`LocalServer.requests`) so tests can count downloads.
"""

from __future__ import annotations

import email.utils
import hashlib
import html
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["GDriveFile", "LocalServer", "Request", "Route"]


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, str]
    range: str | None
    cookie: str | None
    if_range: str | None = None


@dataclass
class Route:
    """A served payload and how to misbehave while serving it."""

    data: bytes
    truncate_times: int = 0  # this many responses send only half of their body, then close
    ignore_range: bool = False  # answer 200 with the whole body even to a Range request
    slow_s: float = 0.0  # spread the body over about this many seconds
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200  # any other status is sent as-is with the body and headers (no Range logic)
    etag: bool = True  # send a strong ETag derived from the bytes
    last_modified: bool = True  # send a Last-Modified date (changes with the version)
    no_length: bool = False  # no Content-Length: the body ends when the connection closes
    endless: bool = False  # no Content-Length and a body that never ends (zeros, until the client hangs up)
    version: int = 0  # bumped by LocalServer.replace
    served: int = 0

    def etag_value(self) -> str:
        return '"' + hashlib.sha256(self.data).hexdigest()[:20] + '"'

    def last_modified_value(self) -> str:
        return email.utils.formatdate(1_700_000_000 + 3600 * self.version, usegmt=True)


@dataclass
class GDriveFile:
    """A file behind the fake Google Drive endpoint."""

    data: bytes
    name: str
    flow: str  # "direct" | "cookie" | "link" | "form" | "quota" | "permission"
    token: str = "Xy9_confirm-token"
    uuid: str = "0f3c2a9e-uuid-1234"


_GDRIVE_FLOWS = frozenset({"direct", "cookie", "link", "form", "quota", "permission"})

QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>
<body><div class="uc-main"><p class="uc-error-caption">Sorry, you can't view or download this file at
this time.</p><p class="uc-error-subcaption">Too many users have viewed or downloaded this file
recently. Please try accessing the file again later. If the file you are trying to access is
particularly large or is shared with many people, it may take up to 24 hours to be able to view or
download the file.</p></div></body></html>"""

PERMISSION_PAGE = """<!DOCTYPE html><html><head><title>Google Drive: Sign-in</title></head>
<body><h1>You need access</h1><p>Request access, or switch to an account with access.</p>
</body></html>"""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence stderr
        pass

    # -- dispatch ---------------------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802 - http.server API
        self._dispatch("HEAD")

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self._dispatch("GET")

    def _write(self, body: bytes) -> None:
        if self.command != "HEAD":
            self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(
                Request(
                    method,
                    parsed.path,
                    query,
                    self.headers.get("Range"),
                    self.headers.get("Cookie"),
                    self.headers.get("If-Range"),
                )
            )
        try:
            if parsed.path == "/uc":
                self._gdrive_uc(query)
            elif parsed.path == "/download":
                self._gdrive_download(query)
            elif parsed.path in owner.routes:
                self._serve(owner.routes[parsed.path])
            else:
                self._send_text(404, "text/plain", "not found\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- helpers ----------------------------------------------------------------------------------
    def _send_text(
        self, status: int, content_type: str, text: str, headers: dict[str, str] | None = None
    ) -> None:
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self._write(body)

    def _serve(self, route: Route) -> None:
        data = route.data
        if route.status != 200:
            self.send_response(route.status)
            self.send_header("Content-Length", str(len(data)))
            for key, value in route.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self._write(data)
            return
        if route.endless or route.no_length:
            self._serve_unsized(route)
            return
        start = 0
        header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if header and if_range is not None:  # RFC 9110 13.1.5: a stale validator means "send it all"
            current = {route.etag_value() if route.etag else None}
            current.add(route.last_modified_value() if route.last_modified else None)
            if if_range not in current:
                header = None
        if header and not route.ignore_range:
            spec = header.strip().removeprefix("bytes=")
            start = int(spec.split("-", 1)[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        with self.server.owner.lock:
            route.served += 1
            truncate = route.served <= route.truncate_times
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if route.etag:
            self.send_header("ETag", route.etag_value())
        if route.last_modified:
            self.send_header("Last-Modified", route.last_modified_value())
        for key, value in route.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if truncate:
            body = body[: len(body) // 2]
            self.close_connection = True
        if route.slow_s > 0:
            pieces = 10
            step = max(1, len(body) // pieces)
            for i in range(0, len(body), step):
                self._write(body[i : i + step])
                self.wfile.flush()
                time.sleep(route.slow_s / pieces)
        else:
            self._write(body)

    def _serve_unsized(self, route: Route) -> None:
        """A 200 without Content-Length; the connection closes after the body (or never ends)."""
        with self.server.owner.lock:
            route.served += 1
            truncate = route.served <= route.truncate_times
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Connection", "close")
        for key, value in route.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if route.endless:
            chunk = bytes(1 << 16)  # safety net: at most 64 MiB / 10 s; the client is expected to hang up
            deadline = time.monotonic() + 10.0
            for _ in range(1024):
                if time.monotonic() > deadline:
                    break
                self._write(chunk)
        else:
            self._write(route.data[: len(route.data) // 2] if truncate else route.data)

    def _file_route(self, f: GDriveFile) -> Route:
        return Route(f.data, headers={"Content-Disposition": f'attachment; filename="{f.name}"'})

    # -- fake Google Drive --------------------------------------------------------------------------
    def _gdrive_uc(self, query: dict[str, str]) -> None:
        f = self.server.owner.gdrive.get(query.get("id", ""))
        if f is None:
            self._send_text(404, "text/html", "<html><title>Not Found</title><p>Not Found</p></html>")
            return
        if f.flow == "quota":
            self._send_text(200, "text/html", QUOTA_PAGE)
        elif f.flow == "permission":
            self._send_text(200, "text/html", PERMISSION_PAGE)
        elif f.flow == "direct":
            self._serve(self._file_route(f))
        elif f.flow == "cookie":
            cookie = f"download_warning_13058876669334088843_{f.token[:4]}={f.token}"
            if query.get("confirm") == f.token and cookie in (self.headers.get("Cookie") or ""):
                self._serve(self._file_route(f))
            else:  # the page itself carries no confirm link: only the cookie has the token
                page = (
                    "<html><head><title>Google Drive - Virus scan warning</title></head><body>"
                    "<p>Google Drive can't scan this file for viruses.</p></body></html>"
                )
                self._send_text(200, "text/html", page, {"Set-Cookie": f"{cookie}; Path=/; HttpOnly"})
        elif f.flow == "link":
            if query.get("confirm") == f.token:
                self._serve(self._file_route(f))
            else:
                href = html.escape(f"/uc?export=download&confirm={f.token}&id={query['id']}")
                page = (
                    "<html><head><title>Google Drive - Virus scan warning</title></head><body>"
                    f'<p>Can\'t scan for viruses.</p><a id="uc-download-link" href="{href}">'
                    "Download anyway</a></body></html>"
                )
                self._send_text(200, "text/html", page)
        elif f.flow == "form":
            action = f"http://127.0.0.1:{self.server.server_address[1]}/download"
            page = f"""<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>
<body><div class="uc-main"><p class="uc-warning-caption">Google Drive can't scan this file for
viruses.</p><p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id={f.name}">
{html.escape(f.name)}</a> (1.2G)</span> is too large for Google to scan for viruses. Would you still
like to download this file?</p>
<form id="download-form" action="{action}" method="get">
<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button" value="Download anyway"/>
<input type="hidden" name="id" value="{html.escape(query['id'])}">
<input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t">
<input type="hidden" name="uuid" value="{f.uuid}">
</form></div></body></html>"""
            self._send_text(200, "text/html", page)

    def _gdrive_download(self, query: dict[str, str]) -> None:
        f = self.server.owner.gdrive.get(query.get("id", ""))
        ok = (
            f is not None
            and f.flow == "form"
            and query.get("confirm") == "t"
            and query.get("uuid") == f.uuid
            and query.get("export") == "download"
        )
        if not ok:
            self._send_text(400, "text/html", "<html><title>Bad Request</title></html>")
            return
        assert f is not None
        self._serve(self._file_route(f))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalServer


class LocalServer:
    """A ThreadingHTTPServer on 127.0.0.1 (random free port) running in a background thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.routes: dict[str, Route] = {}
        self.gdrive: dict[str, GDriveFile] = {}
        self.requests: list[Request] = []
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="local-http", daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- registration -------------------------------------------------------------------------------
    def add_file(self, path: str, data: bytes, **options: object) -> str:
        """Serve ``data`` at ``path`` (see :class:`Route` for options); return its URL."""
        self.routes[path] = Route(data, **options)  # type: ignore[arg-type]
        return self.url(path)

    def add_gdrive(self, file_id: str, data: bytes, *, name: str, flow: str) -> None:
        """Put a file behind the fake Drive endpoint ``/uc?id=<file_id>``."""
        if flow not in _GDRIVE_FLOWS:
            raise ValueError(f"unknown flow {flow!r}")
        self.gdrive[file_id] = GDriveFile(data, name, flow)

    def replace(self, path: str, data: bytes) -> None:
        """The file at ``path`` changes: new bytes, new ETag and Last-Modified."""
        with self.lock:
            route = self.routes[path]
            route.data = data
            route.version += 1

    # -- inspection ---------------------------------------------------------------------------------
    def requests_for(self, path: str) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def full_gets(self, path: str) -> int:
        """Number of GET requests for ``path`` that asked for the whole body (no ``Range``)."""
        return sum(1 for r in self.requests_for(path) if r.method == "GET" and r.range is None)
