"""The cache layer: keyed by the full source, every written file hashed and re-verified, umask modes.

Issue 12 items 1 (keying), 2 (re-verification) and 6 (file modes)."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

import pytest
import torch
from helpers import FIXTURES, TINY_FINETUNE

import act_zoo
from act_zoo.hub import cache
from act_zoo.hub.cache import OfflineError
from act_zoo.hub.download import ChecksumError, download_url
from act_zoo.models.common import config_to_dict

from .conftest import cache_files, payload, sha

PTH = FIXTURES / "tiny" / "tiny_ckpt_official_format.pth"


@pytest.fixture(autouse=True)
def _home(online_home: Path) -> Path:
    return online_home


def _tiny_record(name: str, url: str) -> dict:
    from act_zoo.models import ClassifierConfig

    cfg = ClassifierConfig(embed_dim=48, depth=2, num_heads=3, group_size=8, num_group=16, encoder_dims=48,
                           drop_path_rate=0.0, cls_dim=5, npoints=256)
    return dict(
        name=name, architecture=name.split(".")[0], model_class="ACTClassifier", description="tiny test model",
        task="classification", dataset="synthetic", config=config_to_dict(cfg),
        official_config=dict(TINY_FINETUNE, npoints=256), convert="finetune",
        sources=[{"type": "url", "url": url}], format="official-pth", sha256=None, sha256_note="test file",
        size_bytes=None, num_params=1, metrics={}, metrics_source="", license="MIT", citation="test",
    )


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------------------------------
# item 1: the cache is keyed by the full source
# --------------------------------------------------------------------------------------------------
def test_same_basename_from_two_urls_are_two_entries(server) -> None:
    a, b = payload(5000, seed=1), payload(5000, seed=2)
    url_a = server.add_file("/orgA/model.dat", a)
    url_b = server.add_file("/orgB/model.dat", b)
    path_a = download_url(url_a, progress=False)
    path_b = download_url(url_b, progress=False)
    assert path_a.read_bytes() == a
    assert path_b.read_bytes() == b  # before: A's bytes, and no request to B at all
    assert path_a != path_b and path_a.name == path_b.name == "model.dat"  # the readable name is kept
    assert len(server.requests_for("/orgB/model.dat")) == 1


def test_equivalent_urls_share_one_entry(server) -> None:
    data = payload(1000, seed=3)
    url = server.add_file("/w/model.dat", data)
    first = download_url(url, progress=False)
    upper_host = url.replace("http://127.0.0.1", "HTTP://127.0.0.1") + "#fragment"
    assert download_url(upper_host, progress=False) == first
    assert len(server.requests_for("/w/model.dat")) == 1
    assert cache.source_key(url) == cache.source_key(upper_host) != cache.source_key(url + "?v=2")


def test_from_pretrained_v2_after_v1_gives_v2(server, tmp_path: Path) -> None:
    v1 = act_zoo.from_official(PTH, TINY_FINETUNE)
    v1.save_pretrained(tmp_path / "v1")
    v2 = act_zoo.from_official(PTH, dict(TINY_FINETUNE, cls_dim=5))
    with torch.no_grad():
        v2.cls_head_finetune[-1].bias.add_(1.0)
    v2.save_pretrained(tmp_path / "v2")
    url1 = server.add_file("/v1/ckpt.safetensors", (tmp_path / "v1" / "model.safetensors").read_bytes())
    url2 = server.add_file("/v2/ckpt.safetensors", (tmp_path / "v2" / "model.safetensors").read_bytes())
    got1 = act_zoo.from_pretrained(url1)
    got2 = act_zoo.from_pretrained(url2)
    assert torch.equal(got1.cls_head_finetune[-1].bias, v1.cls_head_finetune[-1].bias)
    assert torch.equal(got2.cls_head_finetune[-1].bias, v2.cls_head_finetune[-1].bias)  # before: v1's


def test_a_url_named_like_metadata_never_returns_metadata(server) -> None:
    weights, other = payload(3000, seed=4), payload(3000, seed=5)
    url = server.add_file("/x/model.dat", weights)
    meta_like = server.add_file("/x/model.dat.json", other)
    assert download_url(url, progress=False).read_bytes() == weights
    got = download_url(meta_like, progress=False)
    assert got.read_bytes() == other  # before: act_zoo's own metadata of model.dat
    assert download_url(url, progress=False).read_bytes() == weights  # and model.dat's entry is intact
    assert len(server.requests_for("/x/model.dat")) == 1


def test_files_of_the_old_layout_are_never_served(server, online_home: Path) -> None:
    """Before, ``downloads/<basename>`` (+ ``.json``) held whatever URL came first with that name."""
    data = payload(2000, seed=6)
    url = server.add_file("/new/model.dat", data)
    legacy = online_home / "downloads" / "model.dat"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"bytes of some other URL")
    (online_home / "downloads" / "model.dat.json").write_text(json.dumps({"source": "http://elsewhere/model.dat"}))
    assert download_url(url, progress=False).read_bytes() == data
    assert server.full_gets("/new/model.dat") == 1


# --------------------------------------------------------------------------------------------------
# item 2: every file the cache writes is hashed, and verified when it is used
# --------------------------------------------------------------------------------------------------
def test_flipped_byte_in_unverified_download_is_fetched_again(server, monkeypatch) -> None:
    data = payload(4000, seed=7)
    url = server.add_file("/f/model.dat", data)
    path = download_url(url, progress=False)  # no expected sha256: the observed one is recorded
    _flip_byte(path, 100)
    again = download_url(url, progress=False)
    assert again.read_bytes() == data  # before: the flipped bytes, silently
    assert server.full_gets("/f/model.dat") == 2
    _flip_byte(again, 100)
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    with pytest.raises(ChecksumError) as info:
        download_url(url, progress=False)
    assert str(again) in str(info.value)


def test_unchanged_file_is_not_hashed_again(server, monkeypatch) -> None:
    data = payload(4000, seed=8)
    url = server.add_file("/g/model.dat", data)
    download_url(url, progress=False)
    calls = []
    real = cache.sha256_file
    monkeypatch.setattr(cache, "sha256_file", lambda p, **kw: calls.append(p) or real(p, **kw))
    download_url(url, progress=False)
    assert calls == []  # size and mtime unchanged: the recorded hash stands


def test_flipped_byte_in_converted_cache_is_converted_again(server, online_home: Path, monkeypatch) -> None:
    url = server.add_file("/tiny.pth", PTH.read_bytes())
    act_zoo.register_weights(_tiny_record("t_arch.tiny", url))
    first = act_zoo.create_model("t_arch.tiny", pretrained=True)
    converted = online_home / "converted" / "t_arch.tiny" / "model.safetensors"
    assert converted.is_file()
    _flip_byte(converted, converted.stat().st_size - 3)  # inside the last tensor's data
    again = act_zoo.create_model("t_arch.tiny", pretrained=True)
    for (k, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k  # before: the flipped weight loaded silently
    assert server.full_gets("/tiny.pth") == 1  # re-converted from the verified download
    _flip_byte(converted, converted.stat().st_size - 3)
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    # offline: the raw download is still cached and verified, so it is converted again
    again = act_zoo.create_model("t_arch.tiny", pretrained=True)
    assert torch.equal(again.cls_head_finetune[-1].weight, first.cls_head_finetune[-1].weight)
    raw = next(p for p in (online_home / "files").rglob("tiny.pth"))
    _flip_byte(raw, 200)
    _flip_byte(converted, converted.stat().st_size - 3)
    with pytest.raises(Exception) as info:  # both copies bad and offline: an error naming the files
        act_zoo.create_model("t_arch.tiny", pretrained=True)
    assert str(converted) in str(info.value) and str(raw) in str(info.value)


def test_converted_cache_records_the_hash_of_each_file(server, online_home: Path) -> None:
    url = server.add_file("/tiny.pth", PTH.read_bytes())
    act_zoo.register_weights(_tiny_record("t_arch.tiny", url))
    act_zoo.create_model("t_arch.tiny", pretrained=True)
    folder = online_home / "converted" / "t_arch.tiny"
    record = cache.read_metadata(folder / "model.safetensors")
    assert record is not None and record["sha256"] == sha((folder / "model.safetensors").read_bytes())
    assert cache.read_metadata(folder / "config.json")["sha256"] == sha((folder / "config.json").read_bytes())


# --------------------------------------------------------------------------------------------------
# item 6: files are created with the umask's mode (readable by another user sharing the cache)
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o002, 0o022])
def test_written_files_respect_the_umask(server, online_home: Path, tmp_path: Path, mask: int) -> None:
    url = server.add_file("/tiny.pth", PTH.read_bytes())
    act_zoo.register_weights(_tiny_record("t_arch.tiny", url))
    with _umask(mask):
        act_zoo.from_official(PTH, TINY_FINETUNE).save_pretrained(tmp_path / "saved")
        act_zoo.create_model("t_arch.tiny", pretrained=True)
    written = [*(tmp_path / "saved").iterdir(), *(p for p in online_home.rglob("*") if p.is_file())]
    assert {p.name for p in written} >= {"model.safetensors", "config.json", "README.md", "tiny.pth"}
    for p in written:
        if p.name.endswith(".lock"):
            continue  # filelock's own files
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == 0o666 & ~mask, (p, oct(mode))
        assert mode & stat.S_IROTH, p  # another user can read it


def test_offline_message_names_the_exact_path_and_placing_the_file_there_works(
    server, online_home: Path, monkeypatch
) -> None:
    data = payload(1500, seed=9)
    url = server.add_file("/p/model.dat", data)
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        download_url(url, progress=False)
    line = next(s for s in str(info.value).splitlines() if "looked for:" in s)
    target = Path(line.split("looked for:", 1)[1].strip())
    assert target.name == "model.dat" and online_home in target.parents
    assert cache_files(online_home) == []
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    assert download_url(url, sha256=sha(data), progress=False) == target
    assert server.requests == []


def test_converted_folder_of_the_old_layout_is_converted_again(server, online_home: Path) -> None:
    """A converted folder without a record (older act_zoo) is never trusted: converted again."""
    url = server.add_file("/tiny.pth", PTH.read_bytes())
    act_zoo.register_weights(_tiny_record("t_arch.tiny", url))
    folder = online_home / "converted" / "t_arch.tiny"
    other = act_zoo.from_official(PTH, TINY_FINETUNE)
    with torch.no_grad():
        other.cls_token.add_(1.0)
    other.save_pretrained(folder)  # plausible files, no record
    model = act_zoo.create_model("t_arch.tiny", pretrained=True)
    assert not torch.equal(model.cls_token, other.cls_token)
    assert cache.read_metadata(folder / "model.safetensors") is not None


def test_a_hand_placed_file_must_be_usable(server, online_home: Path, monkeypatch) -> None:
    url = server.add_file("/h/ckpt.pth", PTH.read_bytes())
    target = cache.download_entry(url).file("ckpt.pth")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"<html><body>Sign in</body></html>")  # what a browser saved
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    with pytest.raises(ChecksumError, match="not a usable ckpt.pth"):
        download_url(url, progress=False)
    monkeypatch.delenv("ACT_ZOO_OFFLINE")
    assert download_url(url, progress=False).read_bytes() == PTH.read_bytes()
