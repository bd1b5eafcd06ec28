"""The feature-propagation layer shared by part and semantic segmentation: the 3-nearest
selection of the fast path against the official stable sort."""

import pytest
import torch

from act_zoo.layers.propagation import PointNetFeaturePropagation, smallest3, three_nearest_centers


@pytest.mark.parametrize("G", [3, 4, 17, 128])
def test_smallest3_is_the_stable_sort_prefix(G):
    torch.manual_seed(G)
    d = torch.rand(3, 200, G)
    d[:, :50] = torch.round(d[:, :50] * 4) / 4  # many ties
    d[0, 0] = 0.5  # a row of equal values
    want = d.sort(dim=-1, stable=True).indices[..., :3]
    assert torch.equal(smallest3(d), want)


def test_three_nearest_centers_both_ways_with_duplicates_and_grad():
    torch.manual_seed(0)
    centers = torch.rand(2, 16, 3)
    centers[:, 5] = centers[:, 2]  # duplicate centres: equal distances
    xyz = torch.cat([centers, torch.rand(2, 100, 3)], 1).requires_grad_(True)
    a = three_nearest_centers(xyz, centers)
    b = three_nearest_centers(xyz, centers, full_sort=False)
    assert torch.equal(a.idx, b.idx) and torch.equal(a.sq_dist, b.sq_dist) and torch.equal(a.weight, b.weight)
    (ga,) = torch.autograd.grad(a.weight.sum() + a.sq_dist.sum(), xyz)
    (gb,) = torch.autograd.grad(b.weight.sum() + b.sq_dist.sum(), xyz)
    assert torch.equal(ga, gb)


def test_fast_and_reference_propagation_agree():
    torch.manual_seed(1)
    fp = PointNetFeaturePropagation(3 + 24, [32, 16]).eval()
    xyz, centers, feats = torch.rand(2, 300, 3), torch.rand(2, 20, 3), torch.randn(2, 24, 20)
    with torch.no_grad():
        ref = fp(xyz, centers, feats).transpose(1, 2)
        fast = fp.forward_fast(xyz, centers, feats)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
