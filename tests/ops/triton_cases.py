"""Cases for the Triton ops backend, compared bit for bit with the torch backend.

Not collected by a plain ``pytest`` run (the file name has no ``test_`` prefix): it must
run in a process where ``TRITON_INTERPRET=1`` was set before the kernels were imported
(CPU tensors through Triton's interpreter), or on a CUDA machine without it (real
kernels). ``tests/ops/test_triton.py`` runs it both ways in a subprocess:

    TRITON_INTERPRET=1 python -m pytest -q tests/ops/triton_cases.py   # CPU, interpreter
    python -m pytest -q tests/ops/triton_cases.py                      # CUDA GPU

Sizes are small because the interpreter is slow; every case still crosses block borders
(sizes not a multiple of the block), ties, duplicates and the FPS skip rule.
"""

from __future__ import annotations

import sys

import pytest
import torch

import act_zoo.ops

KERNELS_IMPORTED_BY_ACT_ZOO_OPS = "act_zoo.ops._triton_kernels" in sys.modules  # before load() below

from helpers import load_official

from act_zoo.ops import (
    _torch,
    _triton,
    available_backends,
    chamfer_l1,
    chamfer_l2,
    furthest_point_sample,
    knn,
    register_backend,
    use_backend,
)

_triton.load()  # ImportError here = the backend cannot run in this process
INTERPRETED = _triton._is_interpreted()
if not INTERPRETED and not torch.cuda.is_available():
    raise RuntimeError("run these cases with TRITON_INTERPRET=1 (CPU) or on a CUDA machine")
DEV = torch.device("cpu" if INTERPRETED else "cuda")
OTHER = torch.device("meta" if INTERPRETED else "cpu")  # a device the kernels must refuse

# the public ops through the registry; a private name keeps this independent of whether
# and how act_zoo.ops registers "triton" itself
BACKEND = "triton_under_test"
if BACKEND not in available_backends():
    register_backend(BACKEND, _triton.load, priority=-100)


def _rand(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(DEV)


def _grid(side: int) -> torch.Tensor:
    ax = torch.arange(float(side)) + 1
    return torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(1, -1, 3).to(DEV)


# the register path (whole cloud in registers) and the blocked path (global scratch),
# with a block that does not divide the clouds below
FPS_PATHS = {"register": {}, "blocked": {"register_points": 16, "block": 64}}


def _fps_both(xyz: torch.Tensor, n: int) -> torch.Tensor:
    want = _torch.furthest_point_sample(xyz, n)
    for name, opts in FPS_PATHS.items():
        got = _triton.furthest_point_sample(xyz, n, **opts)
        assert got.dtype == torch.int64 and got.device == xyz.device, name
        assert torch.equal(got, want), f"{name} path differs from torch:\n{got}\n{want}"
    return want


def test_import_act_zoo_ops_leaves_the_kernels_alone():
    assert act_zoo.ops is not None and not KERNELS_IMPORTED_BY_ACT_ZOO_OPS


@pytest.mark.parametrize("B,N,n", [(3, 150, 24), (2, 57, 57), (1, 130, 2)])
def test_fps_random(B, N, n):
    _fps_both(_rand(B, N, 3, seed=N), n)


def test_fps_grid_ties_take_the_lowest_index():
    _fps_both(_grid(4), 30)  # 64 points, equal distances at every step


def test_fps_duplicates_and_more_samples_than_unique_points():
    pts = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 2.0, 0], [0, 2.0, 0], [0, 0, 3.0]], device=DEV)
    got = _fps_both(pts.unsqueeze(0), 5)
    assert got[0, :3].tolist() == [0, 4, 2]


def test_fps_skip_rule_as_the_official_double_compare():
    pts = _rand(2, 40, 3, seed=1)
    pts[:, 5] = 0.0  # |p|^2 = 0: skipped
    pts[:, 7] = 0.01  # |p|^2 = 3e-4: skipped
    # |p|^2 == float32(1e-3) exactly: kept, as by the official kernel (float |p|^2 <= the double 1e-3)
    pts[:, 9] = torch.tensor([0.03162277489900589, 1.08e-5, 0.0])
    pts[:, 11] = torch.tensor([0.03162278234958649, 0.0, 0.0])  # |p|^2 just above: kept
    mag2 = (pts[0, 9, 0] * pts[0, 9, 0] + pts[0, 9, 1] * pts[0, 9, 1]) + pts[0, 9, 2] * pts[0, 9, 2]
    assert mag2.item() == torch.tensor(1e-3).item()
    got = _fps_both(pts, 40)
    for skipped in (5, 7):
        assert not (got[:, 1:] == skipped).any()
    assert (got == 9).any(dim=1).all() and (got == 11).any(dim=1).all()


def test_fps_all_skipped_and_degenerate_sizes():
    assert _fps_both(torch.full((2, 8, 3), 0.001, device=DEV), 4).tolist() == [[0] * 4] * 2
    assert _fps_both(_rand(2, 9, 3, seed=2), 1).tolist() == [[0], [0]]
    assert _fps_both(_rand(2, 9, 3, seed=2), 0).shape == (2, 0)
    assert _fps_both(torch.zeros(0, 9, 3, device=DEV), 4).shape == (0, 4)


def test_fps_half_and_double_inputs_use_float32():
    pts = _rand(2, 100, 3, seed=3)
    for dtype in (torch.float64, torch.float16):
        assert torch.equal(_triton.furthest_point_sample(pts.to(dtype), 16),
                           _torch.furthest_point_sample(pts.to(dtype), 16))


def test_fps_official_fixture_through_the_public_op():
    _, fx = load_official("finetune_cls_tiny.safetensors")
    with use_backend(BACKEND):
        got = furthest_point_sample(fx["input.points"].to(DEV), fx["fps_idx"].shape[1])
    assert torch.equal(got.cpu(), fx["fps_idx"].long())


def _knn_same(ref: torch.Tensor, query: torch.Tensor, k: int, **opts) -> None:
    d, i = _triton.knn(ref, query, k, **opts)
    dw, iw = _torch.knn(ref, query, k)
    assert d.dtype == torch.float32 and i.dtype == torch.int64 and d.shape == i.shape == (*query.shape[:2], k)
    assert torch.equal(i, iw), f"k={k}: indices differ from torch"
    assert torch.equal(d, dw), f"k={k}: distances differ from torch"


@pytest.mark.parametrize("k", [1, 5, 32])
def test_knn_random(k):
    _knn_same(_rand(2, 150, 3, seed=k), _rand(2, 37, 3, seed=k + 1), k)


def test_knn_k64_the_largest_in_kernel_k():
    _knn_same(_rand(2, 100, 3, seed=64), _rand(2, 9, 3, seed=65), 64)


def test_knn_grid_ties_go_to_the_lower_index():
    ref = _grid(4)  # 64 points
    query = torch.cat([ref[:, ::5], ref[:, ::7] + 0.5], dim=1)  # on grid points and cell centres
    for k in (1, 8, 27):
        _knn_same(ref, query, k, block_n=16)  # ties across tiles too


def test_knn_duplicates_and_k_equal_to_n():
    ref = _rand(1, 10, 3, seed=4).repeat_interleave(3, dim=1)  # 30 points, each three times
    _knn_same(ref, _rand(1, 6, 3, seed=5), 7)
    _knn_same(ref, ref[:, :4], 30)  # k = N, padded selection width 32 > N


def test_knn_large_k_and_empty_shapes():
    _knn_same(_rand(1, 80, 3, seed=6), _rand(1, 3, 3, seed=7), 65)  # beyond the kernel's k: torch, exact
    d, i = _triton.knn(_rand(2, 10, 3, seed=8), torch.zeros(2, 0, 3, device=DEV), 3)
    assert d.shape == i.shape == (2, 0, 3)
    d, i = _triton.knn(torch.zeros(0, 10, 3, device=DEV), torch.zeros(0, 4, 3, device=DEV), 3)
    assert d.shape == i.shape == (0, 4, 3)


def test_knn_public_op():
    ref, query = _rand(2, 90, 3, seed=9), _rand(2, 20, 3, seed=10)
    with use_backend(BACKEND):
        d, i = knn(ref, query, 16)
    with use_backend("torch"):
        dw, iw = knn(ref, query, 16)
    assert torch.equal(i, iw) and torch.equal(d, dw)


def _nearest_same(x: torch.Tensor, y: torch.Tensor, **opts) -> None:
    got = _triton.chamfer_nearest(x, y, **opts)
    want = _torch.chamfer_nearest(x, y)
    for g, w in zip(got, want):
        assert g.dtype == torch.int64 and torch.equal(g, w)


def test_chamfer_nearest_random_and_ties():
    _nearest_same(_rand(2, 150, 3, seed=11), _rand(2, 90, 3, seed=12))
    grid = _grid(3)  # 27 points
    _nearest_same(grid, torch.cat([grid + 0.5, grid[:, ::2]], dim=1), block_r=16, block_c=16)
    _nearest_same(grid.repeat(1, 2, 1), grid[:, 3:9])  # every point twice: first copy wins


def test_chamfer_losses_and_gradients_match_torch():
    x0, y0 = _rand(2, 60, 3, seed=13), _rand(2, 45, 3, seed=14)
    for loss in (chamfer_l1, chamfer_l2):
        results = []
        for name in (BACKEND, "torch"):
            x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
            with use_backend(name):
                value = loss(x, y)
            value.backward()
            results.append((value.detach(), x.grad, y.grad))
        for got, want in zip(*results):
            assert torch.equal(got, want), loss.__name__


def test_wrong_device_is_an_error_not_a_fallback():
    pts = torch.zeros(1, 8, 3, device=OTHER)
    with pytest.raises(ValueError, match=f"xyz is on {OTHER.type}"):
        _triton.furthest_point_sample(pts, 4)
    with pytest.raises(ValueError, match=f"ref is on {OTHER.type}"):
        _triton.knn(pts, pts, 2)
    with pytest.raises(ValueError, match=f"x is on {OTHER.type}"):
        _triton.chamfer_nearest(pts, pts)
