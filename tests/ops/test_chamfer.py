import numpy as np
import pytest
import torch

from act_zoo.ops import _torch as torch_ops
from act_zoo.ops import chamfer_distance, chamfer_l1, chamfer_l2
from ops.twins import chamfer_twin, sq_dist_np


def test_chamfer_matches_twin_and_official_definitions(backend):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 40, 3, generator=g), torch.randn(3, 25, 3, generator=g)
    d1, d2 = chamfer_distance(x, y)
    for b in range(3):
        t1, t2 = chamfer_twin(x[b].numpy(), y[b].numpy())
        np.testing.assert_array_equal(d1[b].numpy(), t1)
        np.testing.assert_array_equal(d2[b].numpy(), t2)
    t = [chamfer_twin(x[b].numpy(), y[b].numpy()) for b in range(3)]
    l2 = np.mean([a for a, _ in t]) + np.mean([b for _, b in t])
    l1 = (np.mean(np.sqrt([a for a, _ in t])) + np.mean(np.sqrt([b for _, b in t]))) / 2
    assert chamfer_l2(x, y).item() == pytest.approx(l2, rel=1e-6)
    assert chamfer_l1(x, y).item() == pytest.approx(l1, rel=1e-6)  # note the /2 for L1 only


def test_chamfer_gradients_match_the_official_backward(backend):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 30, 3, generator=g, dtype=torch.float64).requires_grad_()
    y = torch.randn(2, 20, 3, generator=g, dtype=torch.float64).requires_grad_()
    torch.autograd.gradcheck(lambda a, b: chamfer_l2(a, b), (x, y))
    torch.autograd.gradcheck(lambda a, b: chamfer_l1(a, b), (x, y))
    # official backward: d dist1_i / d x_i = 2 (x_i - y_j*)
    d1, _ = chamfer_distance(x, y)
    (gx,) = torch.autograd.grad(d1.sum(), x)
    j = np.argmin(sq_dist_np(x[0].detach().numpy(), y[0].detach().numpy()), 1)
    np.testing.assert_allclose(gx[0].numpy(), 2 * (x[0].detach().numpy() - y[0].detach().numpy()[j]), rtol=1e-6)


def test_chamfer_l1_gradient_is_finite_at_zero_distance():
    x = torch.randn(1, 10, 3)
    y = x.clone().requires_grad_()
    chamfer_l1(x, y).backward()
    assert torch.isfinite(y.grad).all()


def test_chamfer_bad_input(backend):
    with pytest.raises(ValueError, match="non-empty"):
        chamfer_l1(torch.zeros(1, 0, 3), torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="batch"):
        chamfer_l2(torch.zeros(2, 3, 3), torch.zeros(1, 3, 3))


def test_chamfer_nearest_indices_match_torch_with_ties(backend):
    from act_zoo.ops._backend import dispatch

    g = torch.Generator().manual_seed(2)
    y = torch.randn(2, 30, 3, generator=g)
    y = torch.cat([y, y[:, :12]], 1)  # duplicates: equal distances, the lower index wins
    ax = torch.arange(3.0)
    grid = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(1, -1, 3).expand(2, -1, -1)
    for x, yy in ((torch.randn(2, 50, 3, generator=g), y), (grid + 0.5, grid), (y[:, ::2], y.double())):
        got = dispatch("chamfer_nearest", x.device)(x, yy)
        want = torch_ops.chamfer_nearest(x, yy)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        for b in range(2):
            d = sq_dist_np(x[b].numpy(), yy[b].numpy())
            np.testing.assert_array_equal(got[0][b].numpy(), d.argmin(1))  # numpy: first minimum
            np.testing.assert_array_equal(got[1][b].numpy(), d.argmin(0))
