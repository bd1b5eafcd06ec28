import pytest
import torch

import act_zoo.ops as ops
from helpers import assert_close, load_official


def test_group_points_matches_official_group_module():
    _, fx = load_official("finetune_cls_tiny.safetensors")
    G, M = fx["group.knn_idx"].shape[1:]
    p = ops.group_points(fx["input.points"], G, M)
    assert torch.equal(p.center_idx, fx["fps_idx"].long())
    assert torch.equal(p.knn_idx, fx["group.knn_idx"])
    assert torch.equal(p.center, fx["group.center"])
    assert_close(p.neighborhood, fx["group.neighborhood"], atol=0, rtol=0, name="neighborhood")
    assert (p.neighborhood[:, :, 0] == 0).all()  # the centre is its own first neighbour


def test_group_points_too_few_points():
    with pytest.raises(ValueError, match="too small"):
        ops.group_points(torch.randn(1, 10, 3), 4, 16)


def test_backend_switch_and_errors(monkeypatch):
    assert "torch" in ops.available_backends()
    monkeypatch.setenv("ACT_ZOO_OPS", "torch")
    assert ops.get_backend() == "torch"
    monkeypatch.setenv("ACT_ZOO_OPS", "nonexistent")
    with pytest.raises(ValueError, match="unknown ops backend 'nonexistent'"):
        ops.get_backend()
    monkeypatch.delenv("ACT_ZOO_OPS")
    with pytest.raises(ValueError, match="unknown ops backend"):
        ops.set_backend("cuda_magic")


def test_registered_backend_is_used_and_falls_back_per_op(monkeypatch):
    calls = []

    def fake_fps(xyz, n):
        calls.append(n)
        return torch.zeros(xyz.shape[0], n, dtype=torch.long)

    monkeypatch.setattr(ops._backend, "_REGISTRY", dict(ops._backend._REGISTRY))
    monkeypatch.setattr(ops._backend, "_LOADED", dict(ops._backend._LOADED))
    ops.register_backend("fake", lambda: {"furthest_point_sample": fake_fps}, priority=10)
    with pytest.raises(ValueError, match="already registered"):
        ops.register_backend("fake", lambda: {})
    x = torch.randn(1, 20, 3)
    with ops.use_backend("fake"):
        assert ops.get_backend() == "fake"
        assert ops.furthest_point_sample(x, 3).tolist() == [[0, 0, 0]]
        assert ops.knn(x, x, 2)[1].shape == (1, 20, 2)  # knn falls back to torch
    assert calls == [3]
    assert ops.get_backend() == "fake"  # auto picks the highest-priority loadable backend

    def broken():
        raise ImportError("no compiled extension here")

    ops.register_backend("broken", broken, priority=20)
    assert ops.get_backend() == "fake"  # auto skips a backend that cannot load
