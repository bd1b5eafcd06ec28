"""``import act_zoo`` is light; subpackages and the public functions load on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
import act_zoo
assert "torch" not in sys.modules, "import act_zoo must stay light"
import torch
dist, idx = act_zoo.ops.knn(torch.randn(1, 20, 3), torch.randn(1, 4, 3), 3)   # as the README writes it
assert tuple(idx.shape) == (1, 4, 3), idx.shape
assert act_zoo.data.SyntheticShapes(2, num_points=16)[0][0].shape == (16, 3)
import act_zoo.prediction, act_zoo.evaluation   # importing the modules must not shadow the functions
assert callable(act_zoo.predict) and act_zoo.predict.__module__ == "act_zoo.prediction"
assert callable(act_zoo.evaluate) and act_zoo.evaluate.__module__ == "act_zoo.evaluation"
assert {"ops", "data", "predict", "evaluate", "extract_files"} <= set(dir(act_zoo))
try:
    act_zoo.nope
except AttributeError as exc:
    assert "nope" in str(exc)
print("ok")
"""


def test_lazy_subpackages_and_functions():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT, check=False,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
