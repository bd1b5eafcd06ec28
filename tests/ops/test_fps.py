import numpy as np
import pytest
import torch

from act_zoo.ops import furthest_point_sample
from helpers import load_official
from ops.twins import fps_twin


def _check(xyz: torch.Tensor, n: int) -> torch.Tensor:
    got = furthest_point_sample(xyz, n)
    assert got.shape == (xyz.shape[0], n) and got.dtype == torch.int64
    for b in range(xyz.shape[0]):
        np.testing.assert_array_equal(got[b].numpy(), fps_twin(xyz[b].numpy(), n))
    return got


def test_fps_matches_official_fixture():
    _, fx = load_official("finetune_cls_tiny.safetensors")
    got = furthest_point_sample(fx["input.points"], fx["fps_idx"].shape[1])
    assert torch.equal(got, fx["fps_idx"].long())


@pytest.mark.parametrize("B,N,n", [(3, 200, 32), (2, 57, 57), (1, 10, 1), (4, 64, 2)])
def test_fps_matches_twin_random(B, N, n):
    g = torch.Generator().manual_seed(N)
    _check(torch.randn(B, N, 3, generator=g), n)


def test_fps_ties_take_lowest_index():
    # a regular grid: many equal distances at every step
    ax = torch.arange(4.0) + 1
    grid = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(1, -1, 3)
    _check(grid, 20)


def test_fps_duplicates_and_more_samples_than_unique_points():
    pts = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 2.0, 0], [0, 2.0, 0], [0, 0, 3.0]]).unsqueeze(0)
    got = _check(pts, 5)
    assert got[0, :3].tolist() == [0, 4, 2]


def test_fps_skips_points_near_origin_like_the_kernel():
    g = torch.Generator().manual_seed(1)
    pts = torch.randn(2, 50, 3, generator=g)
    pts[:, 5] = 0.0  # |p|^2 = 0 <= 1e-3: never picked
    pts[:, 7] = 0.01  # |p|^2 = 3e-4: never picked
    got = _check(pts, 50)
    assert not (got[:, 1:] == 5).any() and not (got[:, 1:] == 7).any()


def test_fps_all_points_skipped_returns_zeros():
    pts = torch.full((1, 8, 3), 0.001)
    assert furthest_point_sample(pts, 4).tolist() == [[0, 0, 0, 0]]


def test_fps_empty_batch_and_bad_input():
    assert furthest_point_sample(torch.zeros(0, 10, 3), 4).shape == (0, 4)
    with pytest.raises(ValueError, match="shape"):
        furthest_point_sample(torch.zeros(10, 3), 4)
    with pytest.raises(ValueError, match="cannot sample"):
        furthest_point_sample(torch.zeros(1, 3, 3), 4)
    with pytest.raises(ValueError, match="NaN"):
        furthest_point_sample(torch.full((1, 5, 3), float("nan")), 2)
    with pytest.raises(ValueError, match="floating"):
        furthest_point_sample(torch.zeros(1, 5, 3, dtype=torch.int32), 2)


def test_fps_half_and_double_inputs_use_float32_semantics():
    g = torch.Generator().manual_seed(3)
    pts = torch.randn(2, 100, 3, generator=g)
    ref = furthest_point_sample(pts, 16)
    assert torch.equal(furthest_point_sample(pts.double(), 16), ref)
    assert furthest_point_sample(pts.half(), 16).shape == (2, 16)
