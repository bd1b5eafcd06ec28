"""The act-zoo command line: every subcommand, --help, errors and exit codes."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import act_zoo
from act_zoo.cli import main
from act_zoo.hub import registry
from helpers import FIXTURES, TINY_FINETUNE

PTH = FIXTURES / "tiny" / "tiny_ckpt_official_format.pth"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ACT_ZOO_HOME", str(tmp_path / "home"))
    registry.reset_registry()
    yield
    registry.reset_registry()


def test_help_for_every_command():
    for cmd in ([], ["list"], ["info"], ["download"], ["convert"], ["extract"]):
        out = subprocess.run([sys.executable, "-m", "act_zoo.cli", *cmd, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage: act-zoo" in out.stdout, cmd


def test_list_and_info(capsys):
    assert main(["list", "act_base.*", "--pretrained"]) == 0
    out = capsys.readouterr().out
    assert "act_base.modelnet40" in out and "overall_accuracy 93.7" in out
    assert main(["list", "nothing*"]) == 1
    assert main(["info", "act_base.scanobjectnn_hardest"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["metrics"]["overall_accuracy"] == 88.21 and info["sources"][0]["type"] == "gdrive"


def test_unknown_model_is_one_clear_line_and_exit_1(capsys):
    assert main(["info", "act_base.modelnet4"]) == 1
    err = capsys.readouterr().err
    assert "error: unknown model 'act_base.modelnet4'; did you mean 'act_base.modelnet40'" in err


def test_bad_usage_exits_2():
    with pytest.raises(SystemExit) as exc:
        main(["extract", "act_base.modelnet40"])
    assert exc.value.code == 2


def test_download_offline_reports_what_is_missing(monkeypatch, capsys):
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    assert main(["download", "act_base.modelnet40", "-q"]) == 1
    err = capsys.readouterr().err
    assert "act_base.modelnet40" in err and "offline" in err.lower()


def test_convert_then_extract(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump({"model": TINY_FINETUNE, "npoints": 256}))
    out = tmp_path / "converted"
    assert main(["convert", str(PTH), "--config", str(cfg), "--out", str(out)]) == 0
    assert "loaded: 64 keys" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file()

    files = []
    for i, ext in enumerate([".npy", ".xyz", ".ply"]):
        pts = np.random.default_rng(i).normal(size=(400, 3)).astype(np.float32)
        p = tmp_path / f"cloud{i}{ext}"
        if ext == ".npy":
            np.save(p, pts)
        elif ext == ".xyz":
            np.savetxt(p, pts)
        else:
            trimesh = pytest.importorskip("trimesh")
            trimesh.PointCloud(pts).export(p)
        files.append(str(p))
    npz = tmp_path / "feats.npz"
    assert main(["extract", str(out), *files, "--out", str(npz), "-q", "--batch-size", "2"]) == 0
    data = np.load(npz)
    assert data["global_feature"].shape == (3, 96) and data["tokens"].shape == (3, 16, 48)
    assert list(data["files"]) == files
    model = act_zoo.from_pretrained(out)
    ref = act_zoo.extract_features(model, files[0])
    np.testing.assert_allclose(data["global_feature"][0], ref.global_feature.numpy(), atol=1e-5)


def test_extract_errors(tmp_path, capsys):
    assert main(["extract", "act_base.modelnet40", str(tmp_path / "nope.ply"), "--out", str(tmp_path / "f.npz")]) == 1
    assert "nope.ply: no such file or directory" in capsys.readouterr().err
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\ngarbage")
    model = act_zoo.from_official(PTH, TINY_FINETUNE)
    model.save_pretrained(tmp_path / "m")
    assert main(["extract", str(tmp_path / "m"), str(bad), "--out", str(tmp_path / "f.npz"), "-q"]) == 1
    assert "bad.ply" in capsys.readouterr().err
    assert not (tmp_path / "f.npz").exists()


def test_console_script_is_declared():
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["act-zoo"] == "act_zoo.cli:main"
    torch.manual_seed(0)


def test_readme_main_job_extract_with_the_embedded_model_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")  # the embedded weights need no network
    trimesh = pytest.importorskip("trimesh")
    chair = tmp_path / "chair.obj"
    trimesh.creation.box(extents=(1.0, 0.4, 1.0)).export(chair)
    cloud = tmp_path / "scan.npy"
    np.save(cloud, np.random.default_rng(0).normal(size=(3000, 3)).astype(np.float32))
    out = tmp_path / "feats.npz"
    assert main(["extract", "act_tiny.synthetic10", str(chair), str(cloud), "--out", str(out), "-q"]) == 0
    data = np.load(out)
    assert data["global_feature"].shape[0] == 2 and np.isfinite(data["global_feature"]).all()


def test_embedded_classifier_recognises_held_out_procedural_shapes():
    from act_zoo.data import SyntheticShapes

    model = act_zoo.create_model("act_tiny.synthetic10", pretrained=True)
    rec = registry.get_record("act_tiny.synthetic10")
    assert rec.sha256 and rec.metrics["overall_accuracy"] > 80
    ds = SyntheticShapes(100, num_points=1024, classes=10, seed=123457)
    clouds = torch.stack([ds[i][0] for i in range(len(ds))])
    labels = torch.tensor([ds[i][1] for i in range(len(ds))])
    feats = act_zoo.extract_features(model, clouds)
    with torch.no_grad():
        acc = (model.forward_head(feats).argmax(-1) == labels).float().mean().item()
    assert acc > 0.6, acc  # 10 classes: chance is 0.1


# ---------------------------------------------------------------------------------------- issue 11 §4
def _row(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.split()[:1] == [name])


def test_list_matches_substrings_and_globs(capsys):
    assert main(["list", "tiny"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["act_tiny.pretrain", "act_tiny.synthetic10"]  # before: "no model matches 'tiny'"
    assert main(["list", "act_base.scan*"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == ["act_base.scanobjectnn_hardest", "act_base.scanobjectnn_objbg", "act_base.scanobjectnn_objonly"]
    assert main(["list", "MODELNET"]) == 0  # case-insensitive, like the names are
    assert "act_base.modelnet40" in capsys.readouterr().out


def test_list_marks_what_is_available_offline(tmp_path, capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "offline" in out.splitlines()[0]
    assert "embedded" in _row(out, "act_tiny.synthetic10") and "embedded" in _row(out, "act_tiny.pretrain")
    assert "embedded" not in _row(out, "act_base.modelnet40") and "cached" not in _row(out, "act_base.modelnet40")
    # a converted, verified cache entry counts; a tampered one does not
    rec = registry.get_record("act_tiny.synthetic10").to_dict()
    rec.update(name="act_tiny.copy", sources=[{"type": "url", "url": "http://127.0.0.1:9/copy.pth"}],
               format="official-pth", convert="finetune", sha256=None, sha256_note="test",
               official_config=dict(TINY_FINETUNE, npoints=256))
    from act_zoo.models.common import config_to_dict

    model = act_zoo.from_official(PTH, TINY_FINETUNE)
    rec["config"] = config_to_dict(model.config)
    act_zoo.register_weights(rec)
    assert "cached" not in _row(_list_out(capsys), "act_tiny.copy")
    registry.store_converted(registry.get_record("act_tiny.copy"), model, raw=PTH)
    assert "cached" in _row(_list_out(capsys), "act_tiny.copy")
    weights = registry.converted_dir(registry.get_record("act_tiny.copy")) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-2] ^= 1
    weights.write_bytes(bytes(data))
    assert "cached" not in _row(_list_out(capsys), "act_tiny.copy")


def _list_out(capsys) -> str:
    assert main(["list"]) == 0
    return capsys.readouterr().out


def test_info_on_an_unknown_name_points_to_list(capsys):
    assert main(["info", "act_base.modelnet4"]) == 1
    err = capsys.readouterr().err
    assert "did you mean 'act_base.modelnet40'" in err and "act-zoo list" in err
    assert main(["info", "zzzz"]) == 1
    assert "act-zoo list" in capsys.readouterr().err


def _empty_dirs(root):
    return sorted(str(p) for p in root.rglob("*") if p.is_dir() and not any(p.iterdir()))


def test_unfetchable_model_ends_in_one_message_offline(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    assert main(["download", "act_base.modelnet40", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.count("act-zoo download: error:") == 1 and "Traceback" not in err
    assert "tried" in err and "Google Drive" in err and "1SaQI9npzTHf5Ty61vLOORKXjDo1c_yhR" in err
    assert "ACT_ZOO_OFFLINE" in err and "from_pretrained" in err
    placed = [line for line in err.splitlines() if "ckpt-modelnet40.pth" in line and str(home) in line]
    assert placed, err  # the exact place to put the file
    assert _empty_dirs(home) == []  # before: an empty converted/act_base.modelnet40/ was left


def test_unreachable_source_ends_in_one_message_online(tmp_path, capsys):
    home = tmp_path / "home"
    rec = registry.get_record("act_base.modelnet40").to_dict()
    rec.update(name="act_base.mirror", sources=[{"type": "url", "url": "http://127.0.0.1:9/w/ckpt.pth"}])
    act_zoo.register_weights(rec)
    from act_zoo.hub import http_fetch as http

    http.RETRY_BACKOFF_S, old = 0.0, http.RETRY_BACKOFF_S
    try:
        with pytest.raises(Exception) as info:
            act_zoo.create_model("act_base.mirror", pretrained=True)
    finally:
        http.RETRY_BACKOFF_S = old
    msg = str(info.value)
    assert "could not obtain" in msg and "http://127.0.0.1:9/w/ckpt.pth" in msg and "from_pretrained" in msg
    assert "ACT_ZOO_OFFLINE" in msg and str(home) in msg
    assert _empty_dirs(home) == []




@pytest.mark.parametrize("buffered", [True, False], ids=["block-buffered", "unbuffered"])
def test_output_piped_into_a_reader_that_stops_early_is_no_error(buffered):
    """``act-zoo info NAME | head -1``: the reader closing the pipe ends the command quietly,
    as for any Unix tool (exit 141 = 128 + SIGPIPE), not with 'error: [Errno 32] Broken pipe'
    nor with 'Exception ignored ... BrokenPipeError' from the interpreter's final flush (stdout
    into a pipe is block-buffered unless PYTHONUNBUFFERED is set, as it is on some machines)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first write: deterministic
    try:
        out = subprocess.run([sys.executable, "-m", "act_zoo.cli", "info", "act_tiny.synthetic10"], stdout=write_end,
                             stderr=subprocess.PIPE, text=True, timeout=120, env=env)
    finally:
        os.close(write_end)
    assert out.returncode == 141 and out.stderr == "", out.stderr


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error(monkeypatch, capsys):
    def broken(name):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(registry, "get_record", broken)
    assert main(["info", "act_tiny.synthetic10"]) == 1
    assert "error: [Errno 32] Broken pipe" in capsys.readouterr().err
