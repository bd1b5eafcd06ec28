"""The Triton ops backend.

The kernel cases live in ``triton_cases.py`` and run here in a child process: under the
Triton interpreter on CPU tensors (``TRITON_INTERPRET=1`` must be set before the kernels
are decorated, which a process that already imported them cannot undo, and setting it in
this process would change other tests), and, on a machine with a GPU, once more on CUDA
with the real kernels. The loader's refusals are checked in-process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from act_zoo.ops import _triton

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).with_name("triton_cases.py")
COMPILE_CHECK = Path(__file__).with_name("triton_compile_check.py")
HAVE_TRITON = importlib.util.find_spec("triton") is not None

# triton comes with torch on Linux (and with act-zoo[gpu]): there a missing triton is a broken
# install, not a reason to skip
needs_triton = pytest.mark.skipif(not HAVE_TRITON and not sys.platform.startswith("linux"),
                                  reason="triton is not installed (pip install 'act-zoo[gpu]')")

MODES = ["interpreter"] + (["cuda"] if torch.cuda.is_available() else [])


def _run(args: list[str], *, interpret: bool, timeout: int, **extra_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | extra_env
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *args], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@needs_triton
@pytest.mark.parametrize("mode", MODES)
def test_kernels_match_the_torch_backend(mode):
    """Every case of triton_cases.py passes (none skipped): ~20 s under the interpreter."""
    proc = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(CASES)],
                interpret=mode == "interpreter", timeout=600)
    tail = proc.stdout[-6000:] + proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, f"triton cases failed ({mode}):\n{tail}"
    # nothing skipped, deselected or xfailed: only "N passed" (and perhaps warnings)
    assert re.fullmatch(r"=* ?\d+ passed(, \d+ warnings?)? in .*", summary), f"not all passed:\n{tail}"


@needs_triton
def test_kernels_compile_for_cuda_without_fused_multiply_add(tmp_path):
    """No GPU needed: every default launch compiles for sm_90 (~10 s) and no float
    multiply-add was fused into an FMA (the control shows the count would see one)."""
    proc = _run([str(COMPILE_CHECK)], interpret=False, timeout=600, TRITON_CACHE_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    kernels, control = rows[:-1], rows[-1]
    assert {r["kernel"] for r in kernels} == {"fps_register_kernel", "fps_blocked_kernel", "knn_kernel",
                                              "nearest_kernel"}
    assert all(not r["meta"]["enable_fp_fusion"] and r["fma_f32"] == 0 for r in kernels), kernels
    assert control["meta"]["enable_fp_fusion"] and control["fma_f32"] > 0, control


def test_load_without_triton_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # what an absent package looks like to import
    monkeypatch.setitem(sys.modules, "triton.language", None)
    with pytest.raises(ImportError, match=r"needs the 'triton' package.*act-zoo\[gpu\]"):
        _triton.load()


@needs_triton
def test_load_without_cuda_says_why(monkeypatch):
    monkeypatch.setattr(_triton, "_is_interpreted", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ImportError, match="CUDA"):
        _triton.load()


def test_ops_table_has_the_torch_signatures():
    import inspect

    from act_zoo.ops import _torch

    for name, fn in _triton.OPS.items():
        ref = inspect.signature(_torch.OPS[name])
        params = inspect.signature(fn).parameters.values()
        assert [p.name for p in params if p.kind != p.VAR_KEYWORD] == list(ref.parameters), name
