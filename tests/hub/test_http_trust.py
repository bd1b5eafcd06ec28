"""Plain-HTTP downloads that must not cache a bad body, splice a changed file or fill the disk.

Issue 12 items 3 (validate before finalising), 4 (resume only an unchanged file) and 5 (a cap)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
from helpers import FIXTURES, TINY_FINETUNE

import act_zoo
from act_zoo.hub.download import DownloadError, download_url

from .conftest import cache_files, payload, sha

REPO_ROOT = Path(__file__).resolve().parents[2]
PTH = FIXTURES / "tiny" / "tiny_ckpt_official_format.pth"


@pytest.fixture(autouse=True)
def _home(online_home: Path) -> Path:
    return online_home


# --------------------------------------------------------------------------------------------------
# item 3: a bad body never becomes the cached file
# --------------------------------------------------------------------------------------------------
def test_body_without_length_cut_short_is_not_cached(server, online_home: Path) -> None:
    data = PTH.read_bytes()
    url = server.add_file("/nolen/ckpt.pth", data, no_length=True, truncate_times=1)
    with pytest.raises(DownloadError, match="ckpt.pth"):
        download_url(url, progress=False, max_retries=0)
    assert cache_files(online_home) == []  # before: the half file was renamed into place
    assert download_url(url, progress=False, max_retries=0).read_bytes() == data  # next call fetches


@pytest.mark.parametrize("name", ["model.pth", "model.safetensors", "weights.bin"])
def test_html_sign_in_page_is_not_cached(server, online_home: Path, name: str) -> None:
    page = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Sign in</body></html>"
    url = server.add_file(f"/html/{name}", page, content_type="text/html; charset=utf-8")
    with pytest.raises(DownloadError, match="HTML"):
        download_url(url, progress=False)
    assert cache_files(online_home) == []
    # served as octet-stream, the page is still recognised by its first bytes
    url = server.add_file(f"/html2/{name}", page)
    with pytest.raises(DownloadError, match="HTML"):
        download_url(url, progress=False)
    assert cache_files(online_home) == []


@pytest.mark.parametrize(
    ("name", "body", "needle"),
    [
        ("ckpt.pth", b"not a checkpoint at all, just text" * 10, "zip nor a pickle"),
        ("model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" + bytes(100), "safetensors"),
        ("model.safetensors", b"\xff" * 64, "safetensors"),
    ],
)
def test_weights_that_are_not_weights_are_rejected(server, online_home: Path, name, body, needle) -> None:
    url = server.add_file(f"/bad/{name}", body)
    with pytest.raises(DownloadError, match=needle):
        download_url(url, progress=False)
    assert cache_files(online_home) == []


def test_truncated_safetensors_without_length_is_rejected(server, online_home: Path, tmp_path: Path) -> None:
    act_zoo.from_official(PTH, TINY_FINETUNE).save_pretrained(tmp_path / "m")
    data = (tmp_path / "m" / "model.safetensors").read_bytes()
    url = server.add_file("/st/model.safetensors", data, no_length=True, truncate_times=1)
    with pytest.raises(DownloadError, match="safetensors"):
        download_url(url, progress=False, max_retries=0)
    assert cache_files(online_home) == []


def _zip_that_torch_cannot_read() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", b"this is no pickle")
    return buf.getvalue()


def test_cached_file_that_fails_to_load_is_dropped_and_fetched_again(server, online_home: Path) -> None:
    url = server.add_file("/ok/ckpt.pth", _zip_that_torch_cannot_read())  # passes the magic check
    with pytest.raises(ValueError, match="ckpt.pth"):
        act_zoo.from_pretrained(url, config=TINY_FINETUNE)
    assert cache_files(online_home) == []  # dropped: before, it failed like this forever
    server.replace("/ok/ckpt.pth", PTH.read_bytes())
    model = act_zoo.from_pretrained(url, config=TINY_FINETUNE)
    assert model.config.cls_dim == 5
    assert server.full_gets("/ok/ckpt.pth") == 2


# --------------------------------------------------------------------------------------------------
# item 4: resume only what is provably the same file
# --------------------------------------------------------------------------------------------------
def test_retry_resumes_with_if_range(server) -> None:
    data = payload(64_001, seed=1)
    url = server.add_file("/flaky.dat", data, truncate_times=1)
    assert download_url(url, sha256=sha(data), progress=False).read_bytes() == data
    first, second = server.requests_for("/flaky.dat")
    assert first.range is None and second.range == "bytes=32000-"
    assert second.if_range == server.routes["/flaky.dat"].etag_value()


def test_retry_without_validators_restarts_from_zero(server) -> None:
    data = payload(64_001, seed=2)
    url = server.add_file("/novalid.dat", data, truncate_times=1, etag=False, last_modified=False)
    assert download_url(url, progress=False).read_bytes() == data
    assert [r.range for r in server.requests_for("/novalid.dat")] == [None, None]


def test_retry_with_only_last_modified_uses_it(server) -> None:
    data = payload(64_001, seed=3)
    url = server.add_file("/lm.dat", data, truncate_times=1, etag=False)
    assert download_url(url, progress=False).read_bytes() == data
    second = server.requests_for("/lm.dat")[1]
    assert second.range == "bytes=32000-" and second.if_range == server.routes["/lm.dat"].last_modified_value()


_KILLED_CHILD = textwrap.dedent(
    """
    import sys
    from act_zoo.hub.download import download_url
    download_url(sys.argv[1], progress=False)
    """
)


def _interrupted_download(url: str, home: Path) -> None:
    """Start a download in a child process and kill -9 it once part of the body has arrived."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, url], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            parts = [p for p in home.rglob("*.part") if p.stat().st_size > 0]
            if parts:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the child never started writing")
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("validators", [True, False])
def test_changed_server_file_is_never_spliced(server, online_home: Path, validators: bool) -> None:
    old, new = payload(400_000, seed=4), payload(400_000, seed=5)
    url = server.add_file("/v/model.dat", old, slow_s=4.0, etag=validators, last_modified=validators)
    _interrupted_download(url, online_home)
    server.routes["/v/model.dat"].slow_s = 0.0
    server.replace("/v/model.dat", new)  # same length, new bytes, new validators
    got = download_url(url, progress=False)
    assert got.read_bytes() == new  # before: old's first bytes + new's tail
    last = server.requests_for("/v/model.dat")[-1]
    if validators:
        assert last.range is not None and last.if_range is not None  # asked, and the server said "changed"
    else:
        assert last.range is None  # nothing to prove the .part is the same file: start again


def test_unchanged_server_file_is_resumed_after_kill(server, online_home: Path) -> None:
    data = payload(400_000, seed=6)
    url = server.add_file("/same/model.dat", data, slow_s=4.0)
    _interrupted_download(url, online_home)
    server.routes["/same/model.dat"].slow_s = 0.0
    assert download_url(url, sha256=sha(data), progress=False).read_bytes() == data
    last = server.requests_for("/same/model.dat")[-1]
    assert last.range is not None and last.range != "bytes=0-"
    assert last.if_range == server.routes["/same/model.dat"].etag_value()


# --------------------------------------------------------------------------------------------------
# item 5: a body without Content-Length cannot fill the disk
# --------------------------------------------------------------------------------------------------
def test_endless_body_stops_at_the_configured_ceiling(server, online_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("ACT_ZOO_MAX_DOWNLOAD_BYTES", "2MB")
    url = server.add_file("/endless/model.dat", b"", endless=True)
    start = time.monotonic()
    with pytest.raises(DownloadError, match="ACT_ZOO_MAX_DOWNLOAD_BYTES") as info:
        download_url(url, progress=False)
    assert time.monotonic() - start < 20
    assert "2000000" in str(info.value) or "2.0 MB" in str(info.value)
    assert cache_files(online_home) == []


def test_body_without_length_is_capped_by_the_expected_size(server, online_home: Path) -> None:
    url = server.add_file("/cap/model.dat", payload(50_000), no_length=True)
    with pytest.raises(DownloadError, match="40000"):
        download_url(url, expected_size=40_000, progress=False)
    assert cache_files(online_home) == []


def test_announced_length_over_the_ceiling_fails_before_reading(server, online_home: Path, monkeypatch) -> None:
    monkeypatch.setenv("ACT_ZOO_MAX_DOWNLOAD_BYTES", "1000")
    url = server.add_file("/big/model.dat", payload(5000))
    with pytest.raises(DownloadError, match="ACT_ZOO_MAX_DOWNLOAD_BYTES"):
        download_url(url, progress=False)
    assert cache_files(online_home) == []


def test_bad_ceiling_value_is_a_clear_error(server, monkeypatch) -> None:
    monkeypatch.setenv("ACT_ZOO_MAX_DOWNLOAD_BYTES", "lots")
    url = server.add_file("/c/model.dat", payload(10))
    with pytest.raises(ValueError, match="ACT_ZOO_MAX_DOWNLOAD_BYTES"):
        download_url(url, progress=False)


def test_the_default_ceiling_is_10_gb() -> None:
    from act_zoo.hub import http_fetch as http

    assert http.DEFAULT_MAX_DOWNLOAD_BYTES == 10 * 1000**3
    assert http.max_download_bytes() == 10 * 1000**3
