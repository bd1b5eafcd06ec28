import numpy as np
import pytest
import torch

from act_zoo.ops import knn
from act_zoo.ops import _torch as torch_ops
from helpers import load_official
from ops.twins import knn_twin


def _check(ref: torch.Tensor, query: torch.Tensor, k: int) -> None:
    dist, idx = knn(ref, query, k)
    assert dist.shape == idx.shape == (ref.shape[0], query.shape[1], k)
    for b in range(ref.shape[0]):
        td, ti = knn_twin(ref[b].numpy(), query[b].numpy(), k)
        np.testing.assert_array_equal(idx[b].numpy(), ti)
        np.testing.assert_allclose(dist[b].numpy(), td, rtol=1e-6, atol=1e-7)


def test_knn_matches_official_grouping_fixture():
    _, fx = load_official("finetune_cls_tiny.safetensors")
    _, idx = knn(fx["input.points"], fx["group.center"], fx["group.knn_idx"].shape[-1])
    assert torch.equal(idx, fx["group.knn_idx"])


@pytest.mark.parametrize("B,N,M,k", [(2, 300, 40, 16), (1, 33, 33, 33), (3, 20, 5, 1)])
def test_knn_matches_twin(B, N, M, k):
    g = torch.Generator().manual_seed(N)
    _check(torch.randn(B, N, 3, generator=g), torch.randn(B, M, 3, generator=g), k)


def test_knn_ties_go_to_lower_index():
    # duplicated points (as ShapeNetPart resampling with replacement produces) and a grid
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 30, 3, generator=g)
    ref = torch.cat([base, base, base[:, :10]], 1)[:, torch.randperm(70, generator=g)]
    _check(ref, ref[:, :25], 12)
    ax = torch.arange(5.0)
    grid = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(1, -1, 3)
    _check(grid, grid[:, ::7], 19)


def test_knn_chunking_gives_identical_results(monkeypatch):
    g = torch.Generator().manual_seed(5)
    ref, q = torch.randn(2, 500, 3, generator=g), torch.randn(2, 70, 3, generator=g)
    full = knn(ref, q, 8)
    monkeypatch.setattr(torch_ops, "_CHUNK_BYTES", 2 * 500 * 16 * 3)  # 3 queries per chunk
    chunked = knn(ref, q, 8)
    assert torch.equal(full[1], chunked[1]) and torch.equal(full[0], chunked[0])


def test_knn_bad_input():
    with pytest.raises(ValueError, match="k=5"):
        knn(torch.zeros(1, 4, 3), torch.zeros(1, 2, 3), 5)
    with pytest.raises(ValueError, match="batch"):
        knn(torch.zeros(2, 4, 3), torch.zeros(1, 2, 3), 1)
    with pytest.raises(ValueError, match="shape"):
        knn(torch.zeros(1, 4, 2), torch.zeros(1, 2, 3), 1)
    d, i = knn(torch.zeros(0, 4, 3), torch.zeros(0, 2, 3), 2)
    assert d.shape == i.shape == (0, 2, 2)
