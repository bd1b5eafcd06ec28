"""Tests of act_zoo.hub.cache / act_zoo.hub.download against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from act_zoo.hub import cache, http_fetch
from act_zoo.hub import gdrive as gdrive_module
from act_zoo.hub.cache import OfflineError
from act_zoo.hub.download import (
    ChecksumError,
    DownloadError,
    download_gdrive,
    download_url,
    hf_hub_file,
    parse_gdrive_id,
    parse_hf_spec,
)

from .http_server import LocalServer

REPO_ROOT = Path(__file__).resolve().parents[2]
GDRIVE_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz_-0123"


def payload(n: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (so halves differ and hashes are meaningful)."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(root: Path) -> list[str]:
    """Files in the cache that are neither lock files nor directories."""
    return sorted(p.name for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


@pytest.fixture
def server():
    srv = LocalServer().start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache per test, online, with no retry delay and no proxy for 127.0.0.1."""
    root = tmp_path / "act_zoo_home"
    monkeypatch.setenv("ACT_ZOO_HOME", str(root))
    for var in ("ACT_ZOO_OFFLINE", "HF_HUB_OFFLINE", "ACT_ZOO_GDRIVE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(http_fetch, "RETRY_BACKOFF_S", 0.0)
    return root


# --------------------------------------------------------------------------------------------------
# cache.py
# --------------------------------------------------------------------------------------------------
def test_cache_dir_env_and_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACT_ZOO_HOME", str(tmp_path / "a" / "b"))
    assert cache.cache_dir() == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # created by the first write, never by a lookup
    monkeypatch.delenv("ACT_ZOO_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "act_zoo"


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("ACT_ZOO_OFFLINE", "1", True),
        ("ACT_ZOO_OFFLINE", "TRUE", True),
        ("HF_HUB_OFFLINE", "yes", True),
        ("HF_HUB_OFFLINE", "On", True),
        ("ACT_ZOO_OFFLINE", "0", False),
        ("ACT_ZOO_OFFLINE", "false", False),
        ("ACT_ZOO_OFFLINE", "", False),
    ],
)
def test_is_offline(monkeypatch: pytest.MonkeyPatch, var: str, value: str, expected: bool) -> None:
    assert not cache.is_offline()
    monkeypatch.setenv(var, value)
    assert cache.is_offline() is expected


def test_atomic_path_success_and_failure(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with cache.atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp != target
            tmp.write_bytes(b"half-written")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # temp file removed
    cache.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_metadata_roundtrip(tmp_path: Path) -> None:
    entry = cache.Entry(tmp_path / "files" / "k")
    entry.folder.mkdir(parents=True)
    f = entry.file("w.pth")
    f.write_bytes(b"x")
    assert cache.read_metadata(f) is None
    cache.write_entry(entry, files=["w.pth"], source="http://h/w.pth", url="http://h/w.pth", expected_sha256=None)
    assert entry.record == tmp_path / "files" / "k.json" and entry.record.is_file()
    record = cache.read_metadata(f)
    assert record is not None
    assert record["source"] == record["url"] == "http://h/w.pth"
    assert record["sha256"] == sha(b"x") and record["expected_sha256"] is None
    assert record["size"] == 1 and "time" in record and "mtime_ns" in record
    assert cache.verify_entry(entry) == []
    f.write_bytes(b"y")
    assert "sha256" in cache.verify_entry(entry)[0]


# --------------------------------------------------------------------------------------------------
# download_url
# --------------------------------------------------------------------------------------------------
def test_download_verified_and_metadata(server: LocalServer, home: Path) -> None:
    data = payload(300_000)
    url = server.add_file("/files/model.dat", data)
    path = download_url(url, sha256=sha(data).upper(), progress=False)
    entry = cache.download_entry(url)
    assert path == entry.file("model.dat") and path.parent.parent == home / "files"
    assert path.read_bytes() == data
    meta = json.loads(entry.record.read_text())
    assert meta["url"] == url and meta["source"] == url and meta["name"] == "model.dat"
    assert meta["files"]["model.dat"]["sha256"] == meta["expected_sha256"] == sha(data)
    assert meta["files"]["model.dat"]["size"] == len(data) and meta["verified"] is True
    assert leftovers(home) == sorted(["model.dat", entry.record.name])


def test_second_call_uses_cache_without_request(server: LocalServer) -> None:
    data = payload(10_000)
    url = server.add_file("/w.bin", data)
    first = download_url(url, sha256=sha(data), progress=False, filename="renamed.dat", subdir="x/y")
    assert first.name == "renamed.dat" and first.parent.parent.name == "y"
    assert len(server.requests_for("/w.bin")) == 1
    again = download_url(url, sha256=sha(data), progress=False, filename="renamed.dat", subdir="x/y")
    again_unhashed = download_url(url, progress=False, filename="renamed.dat", subdir="x/y")
    assert again == again_unhashed == first
    assert len(server.requests_for("/w.bin")) == 1


def test_cached_file_with_wrong_hash_is_downloaded_again(server: LocalServer, home: Path) -> None:
    data = payload(5_000)
    url = server.add_file("/c.dat", data)
    stale = cache.download_entry(url).file("c.dat")
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    path = download_url(url, sha256=sha(data), progress=False)
    assert path == stale and path.read_bytes() == data
    assert server.full_gets("/c.dat") == 1


def test_wrong_hash_raises_and_leaves_nothing(server: LocalServer, home: Path) -> None:
    data = payload(50_000)
    url = server.add_file("/bad.bin", data)
    wanted = sha(b"the bytes we expected")
    with pytest.raises(ChecksumError) as info:
        download_url(url, sha256=wanted, progress=False)
    msg = str(info.value)
    assert wanted in msg and sha(data) in msg and url in msg
    assert leftovers(home) == []  # no .part, no final file, no metadata


def test_truncated_response_fails_after_retries(server: LocalServer, home: Path) -> None:
    data = payload(64_000)
    url = server.add_file("/trunc.dat", data, truncate_times=100)
    with pytest.raises(DownloadError, match="failed after 3 attempt"):
        download_url(url, progress=False, max_retries=2)
    reqs = server.requests_for("/trunc.dat")
    assert len(reqs) == 3
    # retries resumed from what had arrived instead of starting again
    assert reqs[0].range is None and reqs[1].range == "bytes=32000-" and reqs[2].range == "bytes=48000-"
    assert not cache.download_entry(url).folder.exists()
    assert leftovers(home) == []


def test_truncated_once_then_resumed_by_retry(server: LocalServer) -> None:
    data = payload(64_001)
    url = server.add_file("/flaky.dat", data, truncate_times=1)
    path = download_url(url, sha256=sha(data), progress=False)
    assert path.read_bytes() == data
    assert [r.range for r in server.requests_for("/flaky.dat")] == [None, "bytes=32000-"]


def test_truncated_body_without_retries_is_never_accepted(server: LocalServer, home: Path) -> None:
    data = payload(1000)
    url = server.add_file("/t0.dat", data, truncate_times=1)
    with pytest.raises(DownloadError, match="closed after 500 of 1000 bytes"):
        download_url(url, progress=False, max_retries=0)  # no sha256: only the length can catch it
    assert leftovers(home) == []


def _leftover_part(url: str, data: bytes, validator: str | None, total: int | None = None) -> Path:
    """A ``.part`` as an interrupted process leaves it: the bytes and the first response's validator."""
    entry = cache.download_entry(url)
    entry.part.parent.mkdir(parents=True, exist_ok=True)
    entry.part.write_bytes(data)
    if validator is not None:
        entry.part_record.write_text(json.dumps({"url": url, "validator": validator, "total": total}))
    return entry.part


def test_resume_from_leftover_part(server: LocalServer, home: Path) -> None:
    data = payload(100_000, seed=3)
    url = server.add_file("/resume.dat", data)
    etag = server.routes["/resume.dat"].etag_value()
    part = _leftover_part(url, data[:50_000], etag, len(data))
    path = download_url(url, sha256=sha(data), progress=False)
    assert path.read_bytes() == data
    (req,) = server.requests_for("/resume.dat")
    assert req.range == "bytes=50000-" and req.if_range == etag
    assert not part.exists()


def test_leftover_part_without_validator_is_discarded(server: LocalServer, home: Path) -> None:
    """A ``.part`` of unknown origin (an older act_zoo, nothing recorded) is never resumed, even
    when it is as long as the file (before: accepted with 0 bytes fetched)."""
    data = payload(4096, seed=13)
    url = server.add_file("/stale.dat", data)
    _leftover_part(url, payload(4096, seed=14), None)
    assert download_url(url, progress=False).read_bytes() == data
    assert [r.range for r in server.requests_for("/stale.dat")] == [None]


def test_resume_restarts_when_server_ignores_range(server: LocalServer, home: Path) -> None:
    data = payload(20_000, seed=4)
    url = server.add_file("/norange.dat", data, ignore_range=True)
    _leftover_part(url, b"garbage that must not be kept", server.routes["/norange.dat"].etag_value())
    path = download_url(url, sha256=sha(data), progress=False)
    assert path.read_bytes() == data
    assert [r.range for r in server.requests_for("/norange.dat")] == ["bytes=29-"]


def test_complete_part_is_confirmed_by_its_last_byte(server: LocalServer, home: Path) -> None:
    data = payload(4096, seed=5)
    url = server.add_file("/done.dat", data)
    _leftover_part(url, data, server.routes["/done.dat"].etag_value(), len(data))
    assert download_url(url, sha256=sha(data), progress=False).read_bytes() == data
    assert [r.range for r in server.requests_for("/done.dat")] == ["bytes=4095-"]


def test_expected_size_mismatch(server: LocalServer, home: Path) -> None:
    url = server.add_file("/size.dat", payload(1000))
    with pytest.raises(DownloadError, match="expected_size=999"):
        download_url(url, expected_size=999, progress=False)
    assert leftovers(home) == []


def test_http_404_is_a_download_error(server: LocalServer, home: Path) -> None:
    url = server.url("/missing.dat")
    with pytest.raises(DownloadError, match=r"HTTP 404 .*missing\.dat"):
        download_url(url, progress=False)
    assert leftovers(home) == []


def test_unknown_hash_warns_and_records_observed(
    server: LocalServer, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = payload(7777)
    url = server.add_file("/unverified.dat", data)
    with caplog.at_level(logging.WARNING, logger="act_zoo.hub.download"):
        path = download_url(url, progress=False)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("unverified" in r.getMessage() and sha(data) in r.getMessage() for r in warnings)
    meta = cache.read_metadata(path)
    assert meta is not None
    assert meta["sha256"] == sha(data) and meta["expected_sha256"] is None and meta["verified"] is False


@pytest.mark.parametrize("url", ["ftp://example.com/x.bin", "file:///etc/passwd", "/local/path", "x"])
def test_only_http_urls(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        download_url(url, progress=False)


def test_bad_sha256_argument(server: LocalServer) -> None:
    with pytest.raises(ValueError, match="64 hexadecimal"):
        download_url(server.url("/a.dat"), sha256="abc", progress=False)
    assert server.requests == []


_CHILD = textwrap.dedent(
    """
    import sys
    from act_zoo.hub.download import download_url
    print(download_url(sys.argv[1], sha256=sys.argv[2], progress=False))
    """
)


def test_two_processes_download_once(server: LocalServer, home: Path) -> None:
    data = payload(200_000, seed=7)
    url = server.add_file("/slow.dat", data, slow_s=1.0)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, url, sha(data)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    paths = {out.strip() for out, _ in outs}
    assert paths == {str(cache.download_entry(url).file("slow.dat"))}
    assert Path(paths.pop()).read_bytes() == data
    assert server.full_gets("/slow.dat") == 1
    assert len(server.requests_for("/slow.dat")) == 1


# --------------------------------------------------------------------------------------------------
# offline mode
# --------------------------------------------------------------------------------------------------
def test_offline_uses_cached_file(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    data = payload(3000)
    url = server.add_file("/off.dat", data)
    path = download_url(url, sha256=sha(data), progress=False)
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    assert download_url(url, sha256=sha(data), progress=False) == path
    assert len(server.requests) == 1


def test_offline_without_cache_raises(
    server: LocalServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "true")
    url = server.add_file("/weights/act_base.dat", b"abc")
    with pytest.raises(OfflineError) as info:
        download_url(url, progress=False)
    msg = str(info.value)
    assert "act_base.dat" in msg and url in msg
    assert str(cache.download_entry(url).file("act_base.dat")) in msg
    assert "HF_HUB_OFFLINE" in msg and "unset" in msg
    assert server.requests == []


def test_offline_cached_file_with_wrong_hash(
    server: LocalServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = cache.download_entry(server.url("/w.dat")).file("w.dat")
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"corrupted")
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    with pytest.raises(ChecksumError, match="offline") as info:
        download_url(server.url("/w.dat"), sha256=sha(b"good"), progress=False)
    assert str(bad) in str(info.value)
    assert server.requests == []


# --------------------------------------------------------------------------------------------------
# Google Drive
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def gdrive(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    monkeypatch.setattr(gdrive_module, "GDRIVE_URL", server.url("/uc"))
    return server


@pytest.mark.parametrize("flow", ["direct", "cookie", "link", "form"])
def test_gdrive_flows(gdrive: LocalServer, home: Path, flow: str) -> None:
    data = payload(40_000, seed=11)
    gdrive.add_gdrive(GDRIVE_ID, data, name="act_pretrain.dat", flow=flow)
    share_link = f"https://drive.google.com/file/d/{GDRIVE_ID}/view?usp=sharing"
    path = download_gdrive(share_link, sha256=sha(data), progress=False)
    assert path == cache.download_entry(f"gdrive:{GDRIVE_ID}").file("act_pretrain.dat")  # Content-Disposition
    assert path.read_bytes() == data
    meta = cache.read_metadata(path)
    assert meta is not None and meta["source"] == f"gdrive:{GDRIVE_ID}" and meta["sha256"] == sha(data)
    uc = gdrive.requests_for("/uc")
    if flow == "direct":
        assert len(uc) == 1
    elif flow in ("cookie", "link"):
        assert [r.query.get("confirm") for r in uc] == [None, "Xy9_confirm-token"]
        if flow == "cookie":
            assert "download_warning" in (uc[1].cookie or "")
    else:
        assert len(uc) == 1
        (dl,) = gdrive.requests_for("/download")
        assert dl.query == {
            "id": GDRIVE_ID, "export": "download", "confirm": "t", "uuid": "0f3c2a9e-uuid-1234"
        }  # fmt: skip
    # the file name is remembered: no request at all the second time, also offline
    n = len(gdrive.requests)
    assert download_gdrive(GDRIVE_ID, sha256=sha(data), progress=False) == path
    assert len(gdrive.requests) == n


def test_gdrive_filename_argument_and_env_override(
    server: LocalServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACT_ZOO_GDRIVE_URL", server.url("/uc"))
    data = payload(1234, seed=12)
    server.add_gdrive(GDRIVE_ID, data, name="ignored.dat", flow="form")
    link = f"https://drive.google.com/open?id={GDRIVE_ID}"
    path = download_gdrive(link, filename="mine.dat", progress=False)
    assert path == cache.download_entry(f"gdrive:{GDRIVE_ID}").file("mine.dat") and path.read_bytes() == data


@pytest.mark.parametrize(("flow", "needle"), [("quota", "quota"), ("permission", "permission denied")])
def test_gdrive_error_pages_are_not_saved(gdrive: LocalServer, home: Path, flow: str, needle: str) -> None:
    gdrive.add_gdrive(GDRIVE_ID, payload(100), name="x.dat", flow=flow)
    with pytest.raises(DownloadError) as info:
        download_gdrive(GDRIVE_ID, progress=False)
    msg = str(info.value)
    assert needle in msg and GDRIVE_ID in msg and "HTML" in msg
    assert leftovers(home) == []


def test_gdrive_unknown_file_is_http_error(gdrive: LocalServer, home: Path) -> None:
    with pytest.raises(DownloadError, match="404"):
        download_gdrive(GDRIVE_ID, progress=False)
    assert leftovers(home) == []


def test_gdrive_wrong_hash(gdrive: LocalServer, home: Path) -> None:
    gdrive.add_gdrive(GDRIVE_ID, payload(3000), name="w.dat", flow="form")
    with pytest.raises(ChecksumError):
        download_gdrive(GDRIVE_ID, sha256=sha(b"other"), progress=False)
    assert leftovers(home) == []


def test_gdrive_offline(gdrive: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "yes")
    with pytest.raises(OfflineError, match=GDRIVE_ID):
        download_gdrive(GDRIVE_ID, progress=False)
    with pytest.raises(OfflineError, match="named.dat"):
        download_gdrive(GDRIVE_ID, filename="named.dat", progress=False)
    assert gdrive.requests == []


@pytest.mark.parametrize(
    "text",
    [
        GDRIVE_ID,
        f"  {GDRIVE_ID}\n",
        f"https://drive.google.com/file/d/{GDRIVE_ID}/view?usp=sharing",
        f"https://drive.google.com/file/d/{GDRIVE_ID}",
        f"https://drive.google.com/open?id={GDRIVE_ID}",
        f"https://drive.google.com/uc?id={GDRIVE_ID}&export=download",
        f"https://drive.google.com/uc?export=download&id={GDRIVE_ID}",
        f"https://drive.usercontent.google.com/download?id={GDRIVE_ID}&export=download&confirm=t&uuid=abc",
        f"https://docs.google.com/uc?export=download&id={GDRIVE_ID}",
    ],
)
def test_parse_gdrive_id(text: str) -> None:
    assert parse_gdrive_id(text) == GDRIVE_ID


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "not a drive id at all, spaces!",
        f"https://example.com/file/d/{GDRIVE_ID}/view",
        f"https://example.com/uc?id={GDRIVE_ID}",
        "https://drive.google.com/drive/folders",
        "https://drive.google.com/open?id=short",
        "https://drive.google.com/uc?export=download",
        f"ftp://drive.google.com/uc?id={GDRIVE_ID}",
    ],
)
def test_parse_gdrive_id_garbage(text: str) -> None:
    assert parse_gdrive_id(text) is None


def test_download_gdrive_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="Google Drive"):
        download_gdrive("https://example.com/x.pth")


# --------------------------------------------------------------------------------------------------
# Hugging Face hub
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("hf-hub:org/repo", ("org/repo", None)),
        ("hf-hub:org/repo@v1.0", ("org/repo", "v1.0")),
        ("hf-hub:RunpeiDong/ACT-base_pt.v2@main", ("RunpeiDong/ACT-base_pt.v2", "main")),
        ("hf-hub:org/repo@refs/pr/3", ("org/repo", "refs/pr/3")),
        ("hf-hub:org/repo@" + "a" * 40, ("org/repo", "a" * 40)),
        ("hf-hub:gpt2", ("gpt2", None)),
    ],
)
def test_parse_hf_spec(spec: str, expected: tuple[str, str | None]) -> None:
    assert parse_hf_spec(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "org/repo",
        "hf-hub:",
        "hf-hub:org/repo@",
        "hf-hub:a/b/c",
        "hf-hub:org/re po",
        "hf-hub:org/..x",
        "hf-hub:-org/r",
    ],
)
def test_parse_hf_spec_invalid(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_hf_spec(spec)


def test_hf_hub_file_offline_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    # an endpoint nothing listens on: the test fails loudly rather than reaching the internet
    with pytest.raises(OfflineError) as info:
        hf_hub_file(
            "act-zoo-test/no-such-repo",
            "model.safetensors",
            revision="v0",
            cache_dir=tmp_path / "hf",
            endpoint="http://127.0.0.1:9",
        )
    msg = str(info.value)
    assert "act-zoo-test/no-such-repo/model.safetensors@v0" in msg
    assert str(tmp_path / "hf") in msg and "ACT_ZOO_OFFLINE" in msg


def test_hf_hub_file_offline_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "models--org--repo"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = hf_hub_file(
        "org/repo", "model.safetensors", cache_dir=tmp_path / "hf", endpoint="http://127.0.0.1:9"
    )
    assert path.read_bytes() == b"weights"


@pytest.fixture
def hf_online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub library read HF_HUB_OFFLINE at import; make sure it is online for these tests."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.mark.parametrize(
    ("repo", "error_code", "needle"),
    [
        ("org/missing", "RepoNotFound", "repository 'org/missing' not found"),
        ("org/repo", "EntryNotFound", "file 'model.safetensors' not found in Hugging Face repository"),
    ],
)
def test_hf_hub_file_not_found_errors(
    server: LocalServer, tmp_path: Path, hf_online: None, repo: str, error_code: str, needle: str
) -> None:
    server.add_file(
        f"/{repo}/resolve/main/model.safetensors",
        b"not found",
        status=404,
        headers={"X-Error-Code": error_code, "X-Error-Message": "not found"},
    )
    with pytest.raises(DownloadError, match=re.escape(needle)):
        hf_hub_file(repo, "model.safetensors", cache_dir=tmp_path / "hf", endpoint=server.base_url)


def test_hf_hub_file_download_then_offline(
    server: LocalServer, tmp_path: Path, hf_online: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(2048, seed=21)
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    server.add_file(
        "/org/repo/resolve/v1/model.safetensors",
        data,
        headers={"X-Repo-Commit": commit, "ETag": f'"{sha(data)}"'},
    )
    kwargs = dict(revision="v1", cache_dir=tmp_path / "hf", endpoint=server.base_url)
    path = hf_hub_file("org/repo", "model.safetensors", **kwargs)  # type: ignore[arg-type]
    assert path.read_bytes() == data
    assert path.parent.name == commit and str(tmp_path / "hf") in str(path)  # the hub's own cache layout
    n = len(server.requests)
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    assert hf_hub_file("org/repo", "model.safetensors", **kwargs) == path  # type: ignore[arg-type]
    assert len(server.requests) == n
