import logging
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import act_zoo.ops as ops
from act_zoo.ops import _backend
from act_zoo.ops import _torch as torch_ops


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the backend registry (registrations and load results), restored after."""
    # only the two CPU backends of this file: other backends (e.g. Triton) have their own tests
    monkeypatch.setattr(_backend, "_REGISTRY", {k: _backend._REGISTRY[k] for k in ("torch", "compiled")})
    monkeypatch.setattr(_backend, "_LOADED", dict(_backend._LOADED))
    monkeypatch.setattr(_backend, "_FAILED", dict(_backend._FAILED))
    monkeypatch.setattr(_backend, "_override", None)
    monkeypatch.setattr(_backend, "_DISPATCH", {})
    monkeypatch.delenv("ACT_ZOO_OPS", raising=False)
    return _backend


def _zeros_fps(calls):
    def fps(xyz, n):
        calls.append(n)
        return torch.zeros(xyz.shape[0], n, dtype=torch.long)

    return fps


def test_auto_is_the_default_and_picks_compiled_on_cpu(registry):
    assert ops.requested_backend() == "auto"
    assert ops.available_backends()[:2] == ["torch", "compiled"]
    backend, why = ops.resolve("cpu")
    assert backend == "compiled" and why.startswith("auto")
    # no backend other than torch is registered for CUDA here (no device needed to resolve)
    assert ops.resolve("cuda") == ("torch", "auto: no other backend is registered for cuda")


def test_env_var_and_context_manager_select(registry, monkeypatch):
    monkeypatch.setenv("ACT_ZOO_OPS", "torch")
    assert ops.get_backend() == "torch" and ops.resolve()[1] == "requested (ACT_ZOO_OPS=torch)"
    with ops.use_backend("compiled"):
        assert ops.get_backend() == "compiled" and ops.get_backend("cuda") == "compiled"
        with ops.use_backend("auto"):
            assert ops.get_backend("cpu") == "compiled"
        assert ops.resolve()[1] == "requested (use_backend/set_backend)"
    assert ops.get_backend() == "torch"
    monkeypatch.setenv("ACT_ZOO_OPS", " Auto ")
    assert ops.get_backend() == "compiled"
    monkeypatch.setenv("ACT_ZOO_OPS", "nonexistent")
    with pytest.raises(ValueError, match="unknown ops backend 'nonexistent'"):
        ops.get_backend()
    with pytest.raises(ValueError, match="unknown ops backend"):
        ops.set_backend("cuda_magic")


def test_registered_backend_is_used_and_falls_back_per_op(registry):
    calls = []
    ops.register_backend("fake", lambda: {"furthest_point_sample": _zeros_fps(calls)}, priority=100)
    with pytest.raises(ValueError, match="already registered"):
        ops.register_backend("fake", lambda: {})
    with pytest.raises(ValueError, match="invalid backend name"):
        ops.register_backend("auto", lambda: {})
    x = torch.randn(1, 20, 3)
    with ops.use_backend("fake"):
        assert ops.furthest_point_sample(x, 3).tolist() == [[0, 0, 0]]
        assert torch.equal(ops.knn(x, x, 2)[1], torch_ops.knn(x, x, 2)[1])  # knn falls back to torch
    assert calls == [3]
    assert ops.get_backend() == "fake"  # auto: the highest priority that loads
    ops.register_backend("bad_table", lambda: {"fps": None}, priority=200)
    with pytest.raises(ValueError, match="unknown ops"):
        ops.get_backend()


def test_dispatch_follows_every_change_of_the_choice(registry, monkeypatch):
    # dispatch remembers its choices: a new backend, ACT_ZOO_OPS and use_backend still change them
    cpu = torch.device("cpu")
    compiled = registry._load("compiled")["furthest_point_sample"]
    torch_fps = registry._load("torch")["furthest_point_sample"]
    assert registry.dispatch("furthest_point_sample", cpu) is compiled
    fake = _zeros_fps([])
    ops.register_backend("fake", lambda: {"furthest_point_sample": fake}, priority=100)
    assert registry.dispatch("furthest_point_sample", cpu) is fake
    assert registry.dispatch("knn", cpu) is registry._load("torch")["knn"]  # fake has no knn
    monkeypatch.setenv("ACT_ZOO_OPS", "torch")
    assert registry.dispatch("furthest_point_sample", cpu) is torch_fps
    with ops.use_backend("compiled"):
        assert registry.dispatch("furthest_point_sample", cpu) is compiled
    assert registry.dispatch("furthest_point_sample", cpu) is torch_fps
    monkeypatch.setenv("ACT_ZOO_OPS", "nonexistent")
    for _ in range(2):
        with pytest.raises(ValueError, match="unknown ops backend 'nonexistent'"):
            registry.dispatch("furthest_point_sample", cpu)
    monkeypatch.delenv("ACT_ZOO_OPS")
    assert registry.dispatch("furthest_point_sample", cpu) is fake


def test_auto_picks_per_device(registry):
    calls = []
    ops.register_backend("gpu_only", lambda: {"furthest_point_sample": _zeros_fps(calls)}, priority=100,
                         devices=("cuda",))
    assert ops.get_backend("cpu") == "compiled"
    assert ops.get_backend(torch.device("cuda", 0)) == "gpu_only"
    assert ops.get_backend("meta") == "torch"
    x = torch.randn(1, 30, 3)
    assert torch.equal(ops.furthest_point_sample(x, 5), torch_ops.furthest_point_sample(x, 5))
    assert calls == []  # CPU tensors never reach the CUDA-only backend under auto
    meta = torch.empty(1, 30, 3, device="meta")
    assert ops.furthest_point_sample(meta, 5).device.type == "meta"  # meta tensors: torch


@pytest.mark.parametrize("exc,level", [(ModuleNotFoundError("No module named 'magic'"), logging.INFO),
                                       (ImportError("runs on CUDA tensors, no CUDA here"), logging.INFO),
                                       (RuntimeError("kernel build failed"), logging.WARNING)])
def test_unloadable_backend_falls_back_with_one_log_line(registry, caplog, exc, level):
    def broken():
        raise exc

    ops.register_backend("broken", broken, priority=100)
    with caplog.at_level(logging.DEBUG, logger="act_zoo.ops"):
        for _ in range(3):
            assert ops.get_backend() == "compiled"
            ops.furthest_point_sample(torch.randn(1, 10, 3), 2)
    lines = [r for r in caplog.records if "broken" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == level and str(exc) in lines[0].getMessage()
    assert ops.unavailable_reason("broken") == str(exc)
    assert ops.unavailable_reason("compiled") is None
    for _ in range(2):  # on every call
        with ops.use_backend("broken"), pytest.raises(RuntimeError, match=f"'broken' was requested.*{exc}"):
            ops.furthest_point_sample(torch.randn(1, 10, 3), 2)


def test_missing_numba_falls_back_to_torch_and_explicit_request_says_why(registry, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba -> ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "act_zoo.ops._compiled", raising=False)
    monkeypatch.setattr(_backend, "_LOADED", {k: v for k, v in _backend._LOADED.items() if k != "compiled"})
    with caplog.at_level(logging.INFO, logger="act_zoo.ops"):
        backend, why = ops.resolve("cpu")
        assert ops.get_backend() == "torch" == backend
    assert len([r for r in caplog.records if "'compiled' unavailable" in r.getMessage()]) == 1
    assert "pip install 'act-zoo[fast]'" in why
    with ops.use_backend("compiled"), pytest.raises(RuntimeError, match=r"act-zoo\[fast\]"):
        ops.knn(torch.randn(1, 5, 3), torch.randn(1, 2, 3), 1)


def test_tracing_always_runs_the_torch_backend(registry, monkeypatch):
    calls = []
    ops.register_backend("fake", lambda: {"furthest_point_sample": _zeros_fps(calls)}, priority=100)
    monkeypatch.setattr(_backend, "tracing", lambda: True)
    x = torch.randn(1, 20, 3)
    assert torch.equal(ops.furthest_point_sample(x, 4), torch_ops.furthest_point_sample(x, 4))
    assert calls == []


def test_compiled_backend_refuses_non_cpu_tensors():
    from act_zoo.ops import _compiled

    with pytest.raises(ValueError, match="runs on CPU tensors; xyz is on meta"):
        _compiled.furthest_point_sample(torch.empty(1, 8, 3, device="meta"), 2)


def test_compiled_ops_run_concurrently_from_threads():
    # the kernels release the GIL: several threads may call the ops at once (parallel extraction)
    g = torch.Generator().manual_seed(0)
    clouds = [torch.randn(1, 3000, 3, generator=g) for _ in range(6)]
    want = [torch_ops.furthest_point_sample(c, 64) for c in clouds]
    with ops.use_backend("compiled"), ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda c: ops.furthest_point_sample(c, 64), clouds))
        knn = list(pool.map(lambda c: ops.knn(c, c[:, :50], 8)[1], clouds))
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert all(torch.equal(a, torch_ops.knn(c, c[:, :50], 8)[1]) for a, c in zip(knn, clouds))


@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_threaded_and_serial_kernels_match_torch(monkeypatch, threads):
    from act_zoo.ops import _compiled

    monkeypatch.setattr(_compiled, "_PARALLEL_MIN_WORK", 0)  # threaded kernels even for tiny inputs
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(7)
        x, y = torch.randn(5, 300, 3, generator=g), torch.randn(5, 70, 3, generator=g)
        with ops.use_backend("compiled"):
            for tree_min in (1, 10**9):
                monkeypatch.setattr(_compiled, "TREE_MIN_POINTS", tree_min)
                assert torch.equal(ops.furthest_point_sample(x, 40), torch_ops.furthest_point_sample(x, 40))
            got, want = ops.knn(x, y, 9), torch_ops.knn(x, y, 9)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
            got, want = _backend.dispatch("chamfer_nearest", x.device)(x, y), torch_ops.chamfer_nearest(x, y)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    finally:
        torch.set_num_threads(previous)


def _child_fps(queue):
    torch.set_num_threads(2)
    x = torch.randn(4, 500, 3, generator=torch.Generator().manual_seed(0))
    with ops.use_backend("compiled"):
        queue.put(ops.furthest_point_sample(x, 20).tolist())


def test_compiled_ops_work_in_a_forked_child_after_the_parent_used_threads(monkeypatch):
    import multiprocessing as mp

    from act_zoo.ops import _compiled

    monkeypatch.setattr(_compiled, "_PARALLEL_MIN_WORK", 0)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(4, 500, 3, generator=torch.Generator().manual_seed(0))
        with ops.use_backend("compiled"):
            want = ops.furthest_point_sample(x, 20).tolist()  # the parent's thread pool starts
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_fps, args=(queue,))
        child.start()
        got = queue.get(timeout=120)
        child.join(timeout=60)
        assert child.exitcode == 0 and got == want
    finally:
        torch.set_num_threads(previous)
