"""Extraction at scale: threads + batched FPS give each file's own features, rows streamed in
bounded parts to every output format, resume, and one shard per rank under torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import act_zoo
from act_zoo import _feature_store
from act_zoo.extract import extract_to, load_features, shard_of, shard_path
from act_zoo.models import ACTEncoder, PointTransformerConfig

CFG = PointTransformerConfig(embed_dim=32, depth=2, num_heads=2, group_size=8, num_group=16, encoder_dims=32,
                             drop_path_rate=0.0, npoints=128)
ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ACTEncoder(CFG).eval()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """17 files: .npy / binary .ply / .xyz, moved and scaled; several of one size (batched FPS),
    others of other sizes, one with exactly npoints and two with fewer (padded)."""
    from shape_files import write_file

    from act_zoo.data import SyntheticShapes

    root = tmp_path_factory.mktemp("clouds") / "scans"
    sizes = [300] * 8 + [128, 90, 500, 260, 300, 1000, 60, 300, 129]
    shapes = SyntheticShapes(len(sizes), num_points=1000, seed=5)
    rng = np.random.default_rng(1)
    for i, n in enumerate(sizes):
        pts = shapes[i][0].numpy()[:n].astype(np.float64) * rng.uniform(0.5, 9) + rng.normal(size=3) * 30
        write_file(root / f"sub{i % 2}" / f"{i:02d}{('.npy', '.ply', '.xyz')[i % 3]}", pts)
    return root


class Interrupted(BaseException):
    """Stands for KeyboardInterrupt / SystemExit (which pytest itself reacts to)."""


def _files(root: Path) -> list[str]:
    from act_zoo.data.io import collect_files

    return [str(f) for f in collect_files(root)]


def test_threads_and_batched_fps_give_each_files_own_features(model, folder, tmp_path, monkeypatch):
    monkeypatch.setattr(_feature_store, "PART_ROWS", 4)  # several parts
    files = _files(folder)
    alone = [act_zoo.extract_features(model, f, workers=0) for f in files]  # the single-cloud path
    results = {}
    for workers, bs in ((0, 1), (3, 5), (2, 32)):
        out = tmp_path / f"w{workers}.npz"
        summary = extract_to(model, folder, out, batch_size=bs, workers=workers, progress=False)
        assert summary.files == files and summary.computed == len(files) and summary.resumed == 0
        results[workers] = got = load_features(out)
        assert got.files == files  # the same order, whatever the threads
        for i, ref in enumerate(alone):
            for key in ("global_feature", "tokens", "centers", "cls"):
                torch.testing.assert_close(getattr(got.features, key)[i], getattr(ref, key), atol=1e-5, rtol=0,
                                           msg=f"{files[i]} {key} workers={workers} batch={bs}")
        assert not (tmp_path / f"w{workers}.npz.partial").exists()  # parts are gone once assembled
    assert results[0].meta["inputs"] == results[3].meta["inputs"]


def test_rows_are_streamed_in_bounded_parts_to_every_format(model, folder, tmp_path, monkeypatch):
    monkeypatch.setattr(_feature_store, "PART_ROWS", 4)
    flushed: list[int] = []
    real_flush = _feature_store.FeatureStore.flush

    def spy(self):
        flushed.append(len(self._positions))
        real_flush(self)

    monkeypatch.setattr(_feature_store.FeatureStore, "flush", spy)
    files = _files(folder)
    extract_to(model, folder, tmp_path / "f.npz", batch_size=3, workers=2)
    assert max(flushed) <= 4 + 3 - 1 and sum(flushed) == len(files)  # never more than one part in memory
    ref = load_features(tmp_path / "f.npz")
    for out in ("f.safetensors", "d/", "nt.npz"):
        extract_to(model, folder, tmp_path / out, batch_size=3, tokens=out != "nt.npz")
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(tmp_path / "f.safetensors"), "np") as fh:  # the library reads the streamed layout
        meta = fh.metadata()
        assert json.loads(meta["files"]) == files and json.loads(meta["meta"])["inputs"]["count"] == len(files)
        assert sorted(fh.keys()) == ["centers", "cls", "global_feature", "tokens"]
    flat = load_file(str(tmp_path / "f.safetensors"))
    data = np.load(tmp_path / "f.npz")
    assert sorted(data.files) == ["centers", "cls", "files", "global_feature", "meta", "skipped", "skipped_reasons",
                                  "tokens"]
    for key in ("global_feature", "tokens", "centers", "cls"):
        np.testing.assert_array_equal(flat[key], data[key])
        np.testing.assert_array_equal(np.load(tmp_path / "d" / f"{key}.npy"), data[key])
    assert json.loads((tmp_path / "d" / "files.json").read_text()) == files
    no_tokens = load_features(tmp_path / "nt.npz")
    assert "tokens" not in np.load(tmp_path / "nt.npz").files and no_tokens.features.tokens.shape == (len(files), 0, 32)
    torch.testing.assert_close(no_tokens.features.global_feature, ref.features.global_feature, atol=1e-5, rtol=0)


def test_resume_continues_an_interrupted_run_and_checks_what_it_continues(model, folder, tmp_path, monkeypatch,
                                                                            caplog):
    monkeypatch.setattr(_feature_store, "PART_ROWS", 2)
    files = _files(folder)
    out = tmp_path / "feats.npz"
    clean = load_features(extract_to(model, folder, tmp_path / "clean.npz", batch_size=3, workers=2).path)
    real = model.forward_features
    calls = {"n": 0, "clouds": 0, "fail_at": 3}

    def failing(points):
        calls["n"] += 1
        calls["clouds"] += points.shape[0]
        if calls["n"] == calls["fail_at"]:
            raise Interrupted  # e.g. Ctrl-C during the third batch
        return real(points)

    monkeypatch.setattr(model, "forward_features", failing)
    with pytest.raises(Interrupted):
        extract_to(model, folder, out, batch_size=3, workers=2)
    partial = tmp_path / "feats.npz.partial"
    assert not out.exists() and len(list(partial.glob("part-*.npz"))) >= 1
    (partial / ".part-000009.npz.abc.tmp").write_bytes(b"half a part")  # what a SIGKILL mid-write leaves
    calls.update(n=0, clouds=0, fail_at=0)
    summary = extract_to(model, folder, out, batch_size=3, workers=2, resume=True)
    assert summary.resumed == 6 and summary.computed == len(files) - 6 == calls["clouds"]  # done files not redone
    got = load_features(out)
    assert got.files == clean.files == files and not partial.exists()
    torch.testing.assert_close(got.features.tokens, clean.features.tokens, atol=1e-5, rtol=0)
    calls.update(n=0, clouds=0)
    again = extract_to(model, folder, out, batch_size=3, resume=True)  # complete: nothing to do
    assert (again.resumed, again.computed, calls["clouds"]) == (len(files), 0, 0) and again.files == files
    # what a resume refuses, before any work: another model, other settings, another file list
    other = ACTEncoder(CFG).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.norm.bias[0] += 1e-3  # one weight differs
    with pytest.raises(ValueError, match=r"other settings \(the model \(weights fingerprint\)"):
        extract_to(other, folder, out, resume=True)
    with pytest.raises(ValueError, match="the preparation settings"):
        extract_to(model, folder, out, resume=True, num_points=64)
    with pytest.raises(ValueError, match="the fields written"):
        extract_to(model, folder, out, resume=True, tokens=False)
    with pytest.raises(ValueError, match=r"another file list \(17 files, now 16: 1 gone"):
        extract_to(model, files[1:], out, resume=True)
    # an interrupted run into another file list is refused too, naming the first difference
    calls.update(n=0, fail_at=3)
    with pytest.raises(Interrupted):
        extract_to(model, folder, tmp_path / "g.npz", batch_size=3)
    with pytest.raises(ValueError, match=r"started for another file list \(17 files, now 16; first difference at #0"):
        extract_to(model, files[1:], tmp_path / "g.npz", resume=True)
    # without resume, the earlier parts are discarded loudly and the run starts over
    monkeypatch.setattr(model, "forward_features", real)
    with caplog.at_level("WARNING", logger="act_zoo"):
        fresh = extract_to(model, folder, tmp_path / "g.npz", batch_size=3)
    assert "discarding the" in caplog.text and fresh.computed == len(files)


def test_cli_resume_and_workers(folder, tmp_path, capsys, monkeypatch):
    from act_zoo.cli import main

    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    monkeypatch.chdir(folder.parent)
    command = "act-zoo extract act_tiny.synthetic10 scans/ --out feats.npz --skip-bad --resume"
    assert command in README.read_text()  # the README's line, as a user types it
    assert main(command.split()[1:]) == 0  # nothing to resume yet: a full run
    assert "resumed: 0 file(s) done by an earlier run, 17 computed now" in capsys.readouterr().out
    assert main(command.split()[1:]) == 0
    assert "resumed: 17 file(s) done by an earlier run, 0 computed now" in capsys.readouterr().out
    out = folder.parent / "feats.npz"
    assert main(["extract", "act_tiny.synthetic10", str(folder / "sub0"), "--out", str(out), "--resume", "-q"]) == 1
    assert "another file list" in capsys.readouterr().err
    assert main(["extract", "act_tiny.synthetic10", str(folder), "--out", str(out), "--workers", "-1"]) == 1
    assert "workers must be an int >= 0" in capsys.readouterr().err


def test_shards_cover_the_list_in_order_and_name_their_rank(tmp_path):
    for n in (0, 1, 7, 16):
        for world in (1, 2, 3, 11):
            blocks = [list(shard_of(n, r, world)) for r in range(world)]
            assert [i for b in blocks for i in b] == list(range(n))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    assert shard_path("f.npz", 0, 2) == Path("f.rank0-of-2.npz")
    assert shard_path("out/feats.safetensors", 3, 12) == Path("out/feats.rank03-of-12.safetensors")
    assert shard_path(tmp_path / "feats", 1, 2) == tmp_path / "feats.rank1-of-2"


def test_a_safetensors_file_list_too_long_for_its_header_fails_before_any_work(model, folder, tmp_path, monkeypatch):
    monkeypatch.setattr(_feature_store, "SAFETENSORS_MAX_HEADER", 1000)
    monkeypatch.setattr(model, "forward_features", None)  # would fail if any batch ran
    with pytest.raises(ValueError, match="do not fit in a safetensors header"):
        extract_to(model, folder, tmp_path / "f.safetensors")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_writes_one_shard_per_rank_equal_to_one_process(folder, tmp_path):
    """Two CPU processes under torchrun, as the README shows it (~15 s on 2 busy cores)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ACT_ZOO_OFFLINE": "1"}
    command = "torchrun --nproc-per-node 2 -m act_zoo.cli extract act_tiny.synthetic10 scans/ --out feats.npz"
    assert command in README.read_text()  # the README's line, as a user types it (plus a free port)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--master-addr", "127.0.0.1",
                          "--master-port", str(_free_port()), *command.split()[1:]],
                         cwd=folder.parent, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    shards = sorted(folder.parent.glob("feats.rank*-of-2.npz"))
    assert [p.name for p in shards] == ["feats.rank0-of-2.npz", "feats.rank1-of-2.npz"]
    assert not list(folder.parent.glob("*.partial"))
    assert "(rank 0 of 2): 8 files" in run.stdout and "(rank 1 of 2): 9 files" in run.stdout
    merged = load_features(shards[::-1])  # any order: put in rank order
    single = load_features(extract_to("act_tiny.synthetic10", folder, tmp_path / "one.npz", device="cpu").path)
    assert [str(folder.parent / f) for f in merged.files] == single.files == _files(folder)  # scans/... as typed
    for key in ("global_feature", "tokens", "centers", "cls"):
        torch.testing.assert_close(getattr(merged.features, key), getattr(single.features, key), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"rank 0 given twice; rank\(s\) \[1\] missing"):
        load_features([shards[0], shards[0]])
    with pytest.raises(ValueError, match="a shard of another run"):
        load_features([shards[0], tmp_path / "one.npz"])


def test_one_run_at_a_time_writes_an_output(model, folder, tmp_path):
    out = tmp_path / "feats.npz"
    lock = out.with_name("feats.npz.lock")
    store = _feature_store.FeatureStore(out, "npz", ["a"], {}, {"global_feature": (4,)}, resume=False)
    try:
        assert lock.exists()
        with pytest.raises(ValueError, match="another extraction is writing"):
            extract_to(model, folder, out=out, progress=False, workers=0)
    finally:
        store.close()
    assert not lock.exists()
    summary = extract_to(model, folder, out=out, progress=False, workers=0)
    assert out.is_file() and len(summary.files) == 17 and not lock.exists()


def test_a_run_that_stopped_before_its_first_row_is_replaced_without_a_warning(folder, tmp_path, caplog):
    """An unreadable first file ends a run with an empty OUT.partial; the next run replaces it
    quietly instead of warning that it discards "0 part(s)"."""
    from act_zoo.data import DatasetError

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "half.xyz").write_text("1 2 3\n4 5\n")
    out = tmp_path / "b.npz"
    with pytest.raises(DatasetError, match="half.xyz"):
        extract_to("act_tiny.pretrain", bad, out)
    assert (tmp_path / "b.npz.partial").is_dir()  # kept: an interrupted run can be resumed
    with caplog.at_level("INFO", logger="act_zoo"):
        with pytest.raises(DatasetError, match="half.xyz"):
            extract_to("act_tiny.pretrain", bad, out)
    assert "discarding" not in caplog.text and "left without any rows" in caplog.text
