import pytest
import torch
from helpers import assert_close, load_official

import act_zoo.ops as ops


def test_group_points_matches_official_group_module(backend):
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
