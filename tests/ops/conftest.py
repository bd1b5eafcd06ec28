from __future__ import annotations

import pytest

import act_zoo.ops as ops

# Every exact CPU backend the op tests run under. "compiled-tree" is the compiled backend with
# the FPS tree bound forced on every cloud (tiny leaves), so small test clouds exercise it.
CPU_BACKENDS = ("torch", "compiled", "compiled-tree")


@pytest.fixture(params=CPU_BACKENDS)
def backend(request, monkeypatch) -> str:
    """Select a backend for the test; the compiled one must load (CI installs it via [dev])."""
    name = request.param.split("-")[0]
    reason = ops.unavailable_reason(name)
    if reason is not None:
        pytest.fail(f"ops backend {name!r} cannot load: {reason} (pip install -e '.[dev]' installs it)")
    if request.param == "compiled-tree":
        from act_zoo.ops import _compiled

        monkeypatch.setattr(_compiled, "TREE_MIN_POINTS", 1)
        monkeypatch.setattr(_compiled, "LEAF_SIZE", 2)
    with ops.use_backend(name):
        yield request.param
