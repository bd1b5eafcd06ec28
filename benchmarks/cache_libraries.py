"""Why act_zoo keeps its own download layer: pooch / gdown / act_zoo side by side on the cases that matter.

Runs every case against the local test server (``tests/hub/http_server.py``, no network) and prints
one line per (library, case). pooch and gdown are not act_zoo dependencies: install them in a
throwaway environment to run this (``pip install pooch gdown``); a missing library is skipped.

    python benchmarks/cache_libraries.py

Cases: two processes fetching one file (how many full downloads?), a body cut short once (retried
and resumed?), an HTML sign-in page served as ``model.pth`` (cached?), a flipped byte in a cached
file fetched without a known hash (served again?), a ``.part`` left by a killed process while the
server file changed (spliced?), an endless body without ``Content-Length`` (capped?).
"""

from __future__ import annotations

import os
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

from tests.hub.http_server import LocalServer


class _Endless(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        start = time.monotonic()
        try:
            while time.monotonic() - start < 3:
                self.wfile.write(bytes(1 << 16))
        except OSError:
            pass


def _endless_url() -> tuple[str, socketserver.ThreadingTCPServer]:
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Endless)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{srv.server_address[1]}/endless.pth", srv


def _run(label: str, fn) -> None:
    try:
        print(f"{label}: {fn()}")
    except Exception as exc:  # noqa: BLE001 - a library failing a case is a result, not a crash
        print(f"{label}: {type(exc).__name__}: {str(exc)[:100]}")


def pooch_cases(srv: LocalServer, tmp: str) -> None:
    import logging

    import pooch

    logging.getLogger("pooch").setLevel(logging.ERROR)
    data = os.urandom(2_000_000)
    url = srv.add_file("/a/model.pth", data, slow_s=1.0)
    code = (f"import logging,pooch;logging.getLogger('pooch').setLevel(40);"
            f"pooch.retrieve({url!r}, known_hash=None, path={tmp!r}, progressbar=False)")
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    for p in procs:
        p.wait()
    print(f"pooch   2 processes, one file: {srv.full_gets('/a/model.pth')} full downloads")
    url = srv.add_file("/b/model.pth", data, truncate_times=1)
    _run("pooch   body cut short once", lambda: (pooch.retrieve(url, None, path=tmp, progressbar=False),
                                                  [r.range for r in srv.requests_for("/b/model.pth")])[1])
    url = srv.add_file("/c/model.pth", b"<html><title>Sign in</title></html>", content_type="text/html")
    _run("pooch   HTML page as model.pth cached", lambda: Path(pooch.retrieve(url, None, path=tmp,
                                                                              progressbar=False)).exists())
    url = srv.add_file("/d/w.pth", b"A" * 100)
    path = Path(pooch.retrieve(url, None, path=tmp, progressbar=False))
    path.write_bytes(b"X" + b"A" * 99)
    _run("pooch   flipped byte served again (no known_hash)",
         lambda: Path(pooch.retrieve(url, None, path=tmp, progressbar=False)).read_bytes()[:1] == b"X")
    endless, e = _endless_url()
    _run("pooch   endless body: bytes accepted in 3 s", lambda: Path(pooch.retrieve(endless, None, path=tmp,
                                                                                   progressbar=False)).stat().st_size)
    e.shutdown()


def gdown_cases(srv: LocalServer, tmp: str) -> None:
    import gdown

    old, new = os.urandom(200_000), os.urandom(200_000)
    url = srv.add_file("/g/file.bin", new, headers={})
    out = os.path.join(tmp, "file.bin")
    Path(tmp, "file.binABCDEFGH.part").write_bytes(old[:100_000])  # what a killed earlier run leaves
    gdown.download(url, out, quiet=True, resume=True)
    spliced = Path(out).read_bytes()[:100_000] == old[:100_000]
    print(f"gdown   .part of a changed file spliced on resume: {spliced} "
          f"(requests: {[r.range for r in srv.requests_for('/g/file.bin')]}, If-Range: "
          f"{[r.if_range for r in srv.requests_for('/g/file.bin')]})")


def act_zoo_cases(srv: LocalServer, tmp: str) -> None:
    os.environ["ACT_ZOO_HOME"] = tmp
    from act_zoo.hub import http_fetch
    from act_zoo.hub.download import download_url

    http_fetch.RETRY_BACKOFF_S = 0.0
    data = os.urandom(2_000_000)
    url = srv.add_file("/z/a.dat", data, slow_s=1.0)
    code = f"from act_zoo.hub.download import download_url; download_url({url!r}, progress=False)"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(2)]
    for p in procs:
        p.wait()
    print(f"act_zoo 2 processes, one file: {srv.full_gets('/z/a.dat')} full downloads")
    url = srv.add_file("/z/b.dat", data, truncate_times=1)
    _run("act_zoo body cut short once", lambda: (download_url(url, progress=False),
                                                  [r.range for r in srv.requests_for("/z/b.dat")])[1])
    url = srv.add_file("/z/model.pth", b"<html><title>Sign in</title></html>", content_type="text/html")
    _run("act_zoo HTML page as model.pth cached", lambda: download_url(url, progress=False).exists())
    os.environ["ACT_ZOO_MAX_DOWNLOAD_BYTES"] = "100MB"
    endless, e = _endless_url()
    _run("act_zoo endless body (ceiling 100MB)", lambda: download_url(endless, progress=False))
    e.shutdown()


def main() -> None:
    srv = LocalServer().start()
    try:
        for name, cases in (("pooch", pooch_cases), ("gdown", gdown_cases), ("act_zoo", act_zoo_cases)):
            try:
                __import__(name)
            except ImportError:
                print(f"{name}: not installed, skipped")
                continue
            with tempfile.TemporaryDirectory() as tmp:
                cases(srv, tmp)
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
