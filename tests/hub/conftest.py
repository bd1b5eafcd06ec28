"""Fixtures shared by the hub tests: a fresh online cache and the local HTTP server."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from .http_server import LocalServer


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


def cache_files(root: Path) -> list[str]:
    """Paths (relative to ``root``) of the files in the cache, lock files excluded."""
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock")
    )


def empty_dirs(root: Path) -> list[str]:
    """Folders under ``root`` (``root`` itself excluded) that hold nothing at all."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir() and not any(p.iterdir()))


@pytest.fixture
def server():
    srv = LocalServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def online_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache, online, no retry delay, no proxy for 127.0.0.1, a fresh registry."""
    from act_zoo.hub import http_fetch, registry

    root = tmp_path / "act_zoo_home"
    monkeypatch.setenv("ACT_ZOO_HOME", str(root))
    for var in ("ACT_ZOO_OFFLINE", "HF_HUB_OFFLINE", "ACT_ZOO_GDRIVE_URL", "ACT_ZOO_MAX_DOWNLOAD_BYTES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(http_fetch, "RETRY_BACKOFF_S", 0.0)
    registry.reset_registry()
    yield root
    registry.reset_registry()
