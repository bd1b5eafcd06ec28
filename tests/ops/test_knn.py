import numpy as np
import pytest
import torch
from helpers import load_official

from act_zoo.ops import _torch as torch_ops
from act_zoo.ops import knn
from ops.twins import knn_twin


def _check(ref: torch.Tensor, query: torch.Tensor, k: int) -> None:
    """Indices equal to the naive twin; indices and distances equal to the torch backend."""
    dist, idx = knn(ref, query, k)
    assert dist.shape == idx.shape == (ref.shape[0], query.shape[1], k)
    assert dist.dtype == torch.float32 and idx.dtype == torch.int64
    for b in range(ref.shape[0]):
        td, ti = knn_twin(ref[b].numpy(), query[b].numpy(), k)
        np.testing.assert_array_equal(idx[b].numpy(), ti)
        np.testing.assert_array_equal(dist[b].numpy(), td)  # correctly rounded sqrt, like CUDA's sqrtf
    want = torch_ops.knn(ref, query, k)
    assert torch.equal(idx, want[1]) and torch.equal(dist, want[0])


def test_knn_matches_official_grouping_fixture(backend):
    _, fx = load_official("finetune_cls_tiny.safetensors")
    _, idx = knn(fx["input.points"], fx["group.center"], fx["group.knn_idx"].shape[-1])
    assert torch.equal(idx, fx["group.knn_idx"])


@pytest.mark.parametrize("B,N,M,k", [(2, 300, 40, 16), (1, 33, 33, 33), (3, 20, 5, 1), (1, 700, 90, 64)])
def test_knn_matches_twin(backend, B, N, M, k):
    g = torch.Generator().manual_seed(N)
    _check(torch.randn(B, N, 3, generator=g), torch.randn(B, M, 3, generator=g), k)


def test_knn_ties_go_to_lower_index(backend):
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
    full = torch_ops.knn(ref, q, 8)
    monkeypatch.setattr(torch_ops, "_CHUNK_BYTES", 2 * 500 * 16 * 3)  # 3 queries per chunk
    chunked = torch_ops.knn(ref, q, 8)
    assert torch.equal(full[1], chunked[1]) and torch.equal(full[0], chunked[0])


def test_knn_dtypes_non_contiguous_and_large_k(backend, monkeypatch):
    g = torch.Generator().manual_seed(6)
    ref, q = torch.randn(2, 120, 3, generator=g), torch.randn(2, 30, 3, generator=g)
    want = torch_ops.knn(ref, q, 10)
    for r, qq in ((ref.double(), q.double()), (ref.transpose(1, 2).contiguous().transpose(1, 2), q[:, ::1])):
        got = knn(r, qq, 10)
        assert torch.equal(got[1], want[1]) and torch.equal(got[0], want[0])
    got = knn(ref.half(), q.half(), 10)
    half = torch_ops.knn(ref.half(), q.half(), 10)
    assert torch.equal(got[1], half[1]) and torch.equal(got[0], half[0])
    strided = torch.randn(2, 30, 6, generator=g)[..., ::2]  # non-contiguous queries
    _check(ref, strided, 5)
    from act_zoo.ops import _compiled

    monkeypatch.setattr(_compiled, "KNN_MAX_K", 4)  # larger k go to the torch code
    _check(ref, q, 7)


def test_knn_empty_queries(backend):
    d, i = knn(torch.randn(2, 10, 3), torch.zeros(2, 0, 3), 3)
    assert d.shape == i.shape == (2, 0, 3)


def test_knn_bad_input(backend):
    with pytest.raises(ValueError, match="k=5"):
        knn(torch.zeros(1, 4, 3), torch.zeros(1, 2, 3), 5)
    with pytest.raises(ValueError, match="batch"):
        knn(torch.zeros(2, 4, 3), torch.zeros(1, 2, 3), 1)
    with pytest.raises(ValueError, match="shape"):
        knn(torch.zeros(1, 4, 2), torch.zeros(1, 2, 3), 1)
    d, i = knn(torch.zeros(0, 4, 3), torch.zeros(0, 2, 3), 2)
    assert d.shape == i.shape == (0, 2, 2)
