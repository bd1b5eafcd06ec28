"""What a run records about how it was made (summary.json ``provenance``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from act_zoo.train import provenance
from act_zoo.train.provenance import code_commit, command_line, run_provenance

ROOT = Path(__file__).resolve().parents[2]


def test_command_line_is_what_the_user_typed():
    assert command_line(["examples/pretrain_pipeline.py", "--out", "runs/a b"]) == \
        "python examples/pretrain_pipeline.py --out 'runs/a b'"
    assert command_line(["/opt/venv/bin/act-zoo", "train", "stage1", "--set", "run.seed=1"]) == \
        "act-zoo train stage1 --set run.seed=1"
    assert command_line([]) == ""


def test_code_commit_of_this_checkout():
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    commit, tree = code_commit()
    if top.returncode == 0 and Path(top.stdout.strip()) == ROOT:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        assert commit == head.stdout.strip() and tree in ("clean", "modified")
    else:  # an sdist or a copy: no commit is claimed
        assert (commit, tree) == (None, None)


def test_a_package_that_is_not_its_repository_root_claims_no_commit(tmp_path, monkeypatch):
    """An installed act_zoo inside some repository (a venv in a clone) is not that repository's code."""
    repo = tmp_path / "repo"
    (repo / ".venv" / "site-packages" / "act_zoo").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    monkeypatch.setattr(provenance, "_PACKAGE_DIR", repo / ".venv" / "site-packages" / "act_zoo")
    assert code_commit() == (None, None)


def test_run_provenance_values_are_strings_or_none():
    rec = run_provenance(started=0.0, finished=90.0)
    assert rec["started"] == "1970-01-01T00:00:00+00:00" and rec["finished"] == "1970-01-01T00:01:30+00:00"
    assert set(rec) >= {"command", "commit", "worktree", "act_zoo_version", "torch_version"}
    assert all(v is None or isinstance(v, str) for v in rec.values())  # never mistaken for a metric
