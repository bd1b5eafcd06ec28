"""``act-zoo ops``: the backend of every op per device, and why."""

import json
import subprocess
import sys

import act_zoo.ops as ops
from act_zoo.cli import main


def test_ops_command_shows_backend_per_device_and_why(capsys, monkeypatch):
    monkeypatch.delenv("ACT_ZOO_OPS", raising=False)
    assert main(["ops"]) == 0  # as the README types it
    out = capsys.readouterr().out
    assert "cpu     furthest_point_sample  compiled  auto: fastest exact backend available for cpu" in out
    assert main(["ops", "--device", "cpu", "--device", "cuda"]) == 0
    out = capsys.readouterr().out
    assert "requested: auto" in out
    assert "compiled   auto on cpu" in out and "available" in out
    lines = [line.split(None, 3) for line in out.splitlines() if line.startswith(("cpu ", "cuda "))]
    assert {(d, op) for d, op, *_ in lines} == {(d, op) for d in ("cpu", "cuda")
                                               for op in ("furthest_point_sample", "knn", "chamfer_nearest")}
    for device, _, backend, why in lines:
        assert backend == ops.get_backend(device) and why.startswith("auto:"), (device, backend)
        assert device == "cuda" or backend == "compiled"


def test_ops_command_json_and_explicit_request(capsys, monkeypatch):
    monkeypatch.setenv("ACT_ZOO_OPS", "torch")
    assert main(["ops", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["requested"] == "torch"
    available = {b["name"]: b["available"] for b in data["backends"]}
    assert available["torch"] and available["compiled"]
    assert {r["backend"] for r in data["ops"] if r["device"] == "cpu"} == {"torch"}
    assert all(r["why"] == "requested (ACT_ZOO_OPS=torch)" for r in data["ops"])


def test_ops_command_reports_an_unknown_request_as_one_line():
    out = subprocess.run([sys.executable, "-m", "act_zoo.cli", "ops"], capture_output=True, text=True,
                         env={**__import__("os").environ, "ACT_ZOO_OPS": "cuda_magic"})
    assert out.returncode == 1
    assert out.stderr.startswith("act-zoo ops: error: unknown ops backend 'cuda_magic'")


def test_ops_help(capsys):
    try:
        main(["ops", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "usage: act-zoo ops" in capsys.readouterr().out
