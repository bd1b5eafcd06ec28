import numpy as np
import pytest
import torch
from helpers import load_official
from hypothesis import given, settings
from hypothesis import strategies as st

import act_zoo.ops as ops
from act_zoo.ops import _torch as torch_ops
from act_zoo.ops import furthest_point_sample
from ops.twins import fps_twin


def _check(xyz: torch.Tensor, n: int) -> torch.Tensor:
    """Indices equal to the naive twin and to the torch backend, bit for bit."""
    got = furthest_point_sample(xyz, n)
    assert got.shape == (xyz.shape[0], n) and got.dtype == torch.int64
    for b in range(xyz.shape[0]):
        np.testing.assert_array_equal(got[b].numpy(), fps_twin(xyz[b].numpy(), n))
    assert torch.equal(got, torch_ops.furthest_point_sample(xyz, n))
    return got


def test_fps_matches_official_fixture(backend):
    _, fx = load_official("finetune_cls_tiny.safetensors")
    got = furthest_point_sample(fx["input.points"], fx["fps_idx"].shape[1])
    assert torch.equal(got, fx["fps_idx"].long())


@pytest.mark.parametrize("B,N,n", [(3, 200, 32), (2, 57, 57), (1, 10, 1), (4, 64, 2), (1, 1, 1), (2, 5, 0)])
def test_fps_matches_twin_random(backend, B, N, n):
    g = torch.Generator().manual_seed(N)
    _check(torch.randn(B, N, 3, generator=g), n)


def test_fps_ties_take_lowest_index(backend):
    # a regular grid: many equal distances at every step
    ax = torch.arange(4.0) + 1
    grid = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(1, -1, 3)
    _check(grid, 20)
    _check(grid[:, torch.randperm(64, generator=torch.Generator().manual_seed(0))], 64)  # shuffled: n == N


def test_fps_duplicates_and_more_samples_than_unique_points(backend):
    pts = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 2.0, 0], [0, 2.0, 0], [0, 0, 3.0]]).unsqueeze(0)
    got = _check(pts, 5)
    assert got[0, :3].tolist() == [0, 4, 2]
    g = torch.Generator().manual_seed(2)
    base = torch.randn(1, 40, 3, generator=g)
    _check(torch.cat([base, base, base[:, :7]], 1), 87)  # every point duplicated


def test_fps_skips_points_near_origin_like_the_kernel(backend):
    g = torch.Generator().manual_seed(1)
    pts = torch.randn(2, 50, 3, generator=g)
    pts[:, 5] = 0.0  # |p|^2 = 0 <= 1e-3: never picked
    pts[:, 7] = 0.01  # |p|^2 = 3e-4: never picked
    pts[:, 9:30] *= 0.01  # a cluster of skipped points
    got = _check(pts, 50)
    assert not (got[:, 1:] == 5).any() and not (got[:, 1:] == 7).any()


def test_fps_skip_threshold_is_the_kernels_double_comparison(backend):
    # |p|^2 computed in float32 is exactly float32(1e-3) = 0.00100000005 > 1e-3: the official kernel
    # (float mag <= double 1e-3) keeps it; one ulp less is skipped
    keep = torch.tensor([0.031622775, 7.633545e-06, 0.0])
    assert ((keep[0] * keep[0] + keep[1] * keep[1]) + keep[2] * keep[2]).item() == np.float32(1e-3)
    skip = torch.tensor([0.031622775, 0.0, 0.0])  # mag = 0.0009999999
    far = torch.tensor([5.0, 5.0, 5.0])
    pts = torch.stack([far, skip, keep]).unsqueeze(0)
    got = _check(pts, 3)
    assert got.tolist() == [[0, 2, 0]]  # the kept point is picked, then only the skipped one is left


def test_fps_all_points_skipped_returns_zeros(backend):
    pts = torch.full((1, 8, 3), 0.001)
    assert furthest_point_sample(pts, 4).tolist() == [[0, 0, 0, 0]]


def test_fps_empty_batch_and_bad_input(backend):
    assert furthest_point_sample(torch.zeros(0, 10, 3), 4).shape == (0, 4)
    assert furthest_point_sample(torch.zeros(2, 0, 3), 0).shape == (2, 0)
    with pytest.raises(ValueError, match="shape"):
        furthest_point_sample(torch.zeros(10, 3), 4)
    with pytest.raises(ValueError, match="cannot sample"):
        furthest_point_sample(torch.zeros(1, 3, 3), 4)
    with pytest.raises(ValueError, match="NaN"):
        furthest_point_sample(torch.full((1, 5, 3), float("nan")), 2)
    with pytest.raises(ValueError, match="floating"):
        furthest_point_sample(torch.zeros(1, 5, 3, dtype=torch.int32), 2)


def test_fps_half_double_and_non_contiguous_inputs_use_float32_semantics(backend):
    g = torch.Generator().manual_seed(3)
    pts = torch.randn(2, 100, 3, generator=g)
    ref = furthest_point_sample(pts, 16)
    assert torch.equal(furthest_point_sample(pts.double(), 16), ref)
    half = pts.half()
    assert torch.equal(furthest_point_sample(half, 16), torch_ops.furthest_point_sample(half, 16))
    wide = torch.randn(2, 100, 5, generator=g)
    wide[..., 1:4] = pts
    strided = wide[..., 1:4]  # non-contiguous view
    assert not strided.is_contiguous()
    assert torch.equal(furthest_point_sample(strided, 16), ref)
    assert torch.equal(furthest_point_sample(pts.transpose(1, 2).contiguous().transpose(1, 2), 16), ref)


def test_fps_extreme_coordinates(backend):
    # squared distances overflow to inf: every running minimum stays at 1e10, ties everywhere
    g = torch.Generator().manual_seed(5)
    with np.errstate(over="ignore"):  # the numpy twin overflows the same way
        _check(torch.randn(2, 60, 3, generator=g) * 1e20, 12)
    _check(torch.randn(1, 60, 3, generator=g) * 1e-3 + 1e4, 12)  # far from the origin, tiny spread


def test_fps_leaves_the_input_untouched_and_ignores_grad(backend):
    pts = torch.randn(2, 64, 3, requires_grad=True)
    before = pts.detach().clone()
    _check(pts.detach(), 10)
    assert furthest_point_sample(pts, 10).shape == (2, 10)
    assert torch.equal(pts.detach(), before)


def test_fps_larger_clouds_match_torch(backend):
    # above the compiled backend's default tree threshold, in several shapes
    g = torch.Generator().manual_seed(4)
    sphere = torch.nn.functional.normalize(torch.randn(1, 9000, 3, generator=g), dim=-1)
    blobs = torch.randn(2, 8192, 3, generator=g) * torch.rand(2, 8192, 1, generator=g) ** 4
    for pts, n in ((sphere, 300), (blobs, 200)):
        assert torch.equal(furthest_point_sample(pts, n), torch_ops.furthest_point_sample(pts, n))


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_fps_integer_clouds_match_twin_property(data):
    # small integer coordinates: ties everywhere, duplicates, points at the origin
    N = data.draw(st.integers(1, 40))
    coords = data.draw(st.lists(st.integers(-2, 2), min_size=3 * N, max_size=3 * N))
    n = data.draw(st.integers(0, N))
    pts = torch.tensor(coords, dtype=torch.float32).reshape(1, N, 3)
    want = fps_twin(pts[0].numpy(), n)
    for name in ("torch", "compiled"):
        with ops.use_backend(name):
            np.testing.assert_array_equal(furthest_point_sample(pts, n)[0].numpy(), want)
    from act_zoo.ops import _compiled

    tree = _compiled.TREE_MIN_POINTS, _compiled.LEAF_SIZE
    try:
        _compiled.TREE_MIN_POINTS, _compiled.LEAF_SIZE = 1, 2
        with ops.use_backend("compiled"):
            np.testing.assert_array_equal(furthest_point_sample(pts, n)[0].numpy(), want)
    finally:
        _compiled.TREE_MIN_POINTS, _compiled.LEAF_SIZE = tree
