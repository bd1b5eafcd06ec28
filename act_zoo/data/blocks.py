"""Whole-scene blocking for semantic segmentation: the official S3DIS test-time protocol
(``semantic_segmentation/dataset.py`` ``ScannetDatasetWholeScene`` + ``main_test.py``), used by
the S3DIS evaluation and by :func:`act_zoo.segment` for a user's own scan.

1. :func:`scene_blocks` -- square ``block_size`` windows (full height) on a grid of ``stride``
   over the scene's x/y extent, rows (y) outer, columns (x) inner; the last row/column is
   moved back to end on the scene's max; each takes the points within ``padding`` of it;
   empty windows are skipped.
2. :func:`block_chunks` -- a block of n points is padded by random resampling of its own
   points to ``k * npoints`` (``k = ceil(n / npoints)``; without replacement when the padding
   is no larger than the block), shuffled and cut into ``k`` chunks, so every point of the
   block appears in at least one chunk.
3. :func:`block_frame` -- the official block normalisation: x and y minus the block centre,
   z unchanged (the height above the scene's lowest point, for S3DIS rooms as
   ``collect_indoor3d_data`` wrote them).

Randomness is one generator per block, keyed by ``(seed, pass, column, row)``, so a block's
chunks never depend on the other blocks, the batch size or the order blocks are consumed in.
Blocks are generated lazily, :func:`iter_chunk_batches` streams fixed-size batches and
:func:`accumulate_scene` gathers a model's predictions per point (the official hard votes, or
mean log-probabilities), so memory stays bounded by the per-point accumulator, one x-column
of the scene and one batch.

Two deliberate differences from the official code, neither of which changes S3DIS results:
the grid has at least one row and one column (the official formula gives none for a scene
narrower than ``block_size - stride``), and the official per-point vote weight (the test
rooms' class frequency weight of the point's *true* label, used only to skip weight-0/inf
points, which cannot occur for a labelled point) is not needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch


@dataclass(frozen=True)
class Block:
    """One window of a scene.

    Attributes:
        index: int64 ``[n]`` indices of the points inside (ascending).
        center: ``(x, y)`` of the window centre.
        cell: ``(column, row)`` of the window in the grid.
    """

    index: np.ndarray
    center: tuple[float, float]
    cell: tuple[int, int]


def grid_shape(xyz: np.ndarray, *, block_size: float = 1.0, stride: float = 0.5) -> tuple[int, int]:
    """``(columns, rows)`` of the official block grid: ``ceil((extent - block) / stride) + 1``
    per axis, at least 1."""
    lo, hi = xyz[:, :2].min(0), xyz[:, :2].max(0)
    return tuple(max(1, int(math.ceil(float(hi[a] - lo[a] - block_size) / stride) + 1)) for a in (0, 1))  # type: ignore[return-value]


def scene_blocks(
    xyz: np.ndarray, *, block_size: float = 1.0, stride: float = 0.5, padding: float = 0.001
) -> Iterator[Block]:
    """The non-empty windows of the official test-time grid, generated lazily (see module docstring).

    ``xyz [N, 3]`` (float64 for the official comparisons). Within a column the points are
    found by binary search on sorted coordinates, so a scene of N points costs
    ``O(N log N)`` plus the block sizes, not ``N`` per block."""
    _check_xyz(xyz)
    if not (block_size > 0 and stride > 0 and padding >= 0):
        raise ValueError(f"need block_size > 0, stride > 0, padding >= 0; got {block_size}, {stride}, {padding}")
    x, y = xyz[:, 0], xyz[:, 1]
    lo, hi = xyz[:, :2].min(0), xyz[:, :2].max(0)
    nx, ny = grid_shape(xyz, block_size=block_size, stride=stride)
    by_x = np.argsort(x, kind="stable")
    xs = x[by_x]
    for ix in range(nx):  # the official loops run rows outside, columns inside; a column-major
        # walk visits the same windows and lets one x-slab serve a whole column
        e_x = min(lo[0] + ix * stride + block_size, hi[0])
        s_x = e_x - block_size
        a = np.searchsorted(xs, s_x - padding, side="left")  # official: x >= s_x - padding
        b = np.searchsorted(xs, e_x + padding, side="right")  # and x <= e_x + padding
        slab = by_x[a:b]  # points of this column
        order = np.argsort(y[slab], kind="stable")
        slab_y = y[slab][order]
        for iy in range(ny):
            e_y = min(lo[1] + iy * stride + block_size, hi[1])
            s_y = e_y - block_size
            c = np.searchsorted(slab_y, s_y - padding, side="left")
            d = np.searchsorted(slab_y, e_y + padding, side="right")
            if d <= c:
                continue
            yield Block(np.sort(slab[order[c:d]]), (s_x + block_size / 2.0, s_y + block_size / 2.0), (ix, iy))


def block_rng(seed: int, vote: int, block: Block) -> np.random.Generator:
    """The generator of one block's padding and shuffle (see module docstring)."""
    return np.random.default_rng([seed, vote, *block.cell])


def block_chunks(index: np.ndarray, npoints: int, rng: np.random.Generator) -> np.ndarray:
    """Official padding and chunking of one block: int64 ``[k, npoints]`` point indices.

    The block's ``n`` indices plus ``k * npoints - n`` resampled ones (without replacement
    when that many are available), shuffled, cut into ``k = ceil(n / npoints)`` rows."""
    n = len(index)
    if n == 0:
        raise ValueError("cannot chunk an empty block")
    k = -(-n // npoints)
    extra = k * npoints - n
    picked = rng.choice(index, extra, replace=extra > n) if extra else index[:0]
    out = np.concatenate([index, picked])
    rng.shuffle(out)
    return out.reshape(k, npoints)


def block_frame(xyz: np.ndarray, index: np.ndarray, center: tuple[float, float]) -> np.ndarray:
    """Official block normalisation of ``xyz[index]``: x, y minus the centre, z unchanged;
    computed in float64, returned as float32 (the model's input)."""
    pts = np.asarray(xyz[index], dtype=np.float64)
    pts[..., 0] -= center[0]
    pts[..., 1] -= center[1]
    return pts.astype(np.float32)


def iter_chunk_batches(
    xyz: np.ndarray,
    *,
    npoints: int,
    batch_size: int,
    block_size: float = 1.0,
    stride: float = 0.5,
    padding: float = 0.001,
    seed: int = 0,
    vote: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream the chunks of every block of a scene in batches: ``(points float32 [b, npoints, 3],
    index int64 [b, npoints])`` with ``b <= batch_size`` (the last batch may be smaller)."""
    if npoints < 1 or batch_size < 1:
        raise ValueError(f"npoints and batch_size must be >= 1, got {npoints} and {batch_size}")
    pts: list[np.ndarray] = []
    idx: list[np.ndarray] = []
    for block in scene_blocks(xyz, block_size=block_size, stride=stride, padding=padding):
        chunks = block_chunks(block.index, npoints, block_rng(seed, vote, block))  # k npoints
        frame = block_frame(xyz, chunks, block.center)  # k npoints 3
        for row in range(len(chunks)):
            pts.append(frame[row])
            idx.append(chunks[row])
            if len(pts) == batch_size:
                yield np.stack(pts), np.stack(idx)
                pts, idx = [], []
    if pts:
        yield np.stack(pts), np.stack(idx)


Predict = Callable[[np.ndarray], "np.ndarray | torch.Tensor"]


def model_predictor(model: Callable[[torch.Tensor], torch.Tensor], device: torch.device) -> Predict:
    """The :data:`Predict` of a network: a chunk batch ``float32 [b, npoints, 3]`` as a tensor
    on ``device`` -> ``model``'s output (``[b, npoints, C]`` log-probabilities)."""
    def predict(points: np.ndarray) -> torch.Tensor:
        return model(torch.from_numpy(points).to(device))  # b n C

    return predict


def accumulate_scene(
    xyz: np.ndarray,
    predict: Predict,
    *,
    num_classes: int,
    npoints: int,
    batch_size: int,
    mode: Literal["votes", "mean"] = "votes",
    passes: int = 1,
    block_size: float = 1.0,
    stride: float = 0.5,
    padding: float = 0.001,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Run ``predict`` over every chunk of every block of a scene and gather per point.

    Args:
        xyz: ``[N, 3]`` scene points (float64 recommended; see :func:`block_frame`).
        predict: ``points float32 [b, npoints, 3] -> log-probabilities [b, npoints, C]``
            (a tensor or an array).
        mode: ``"votes"``: the official hard votes, int32 ``[N, C]`` counts of each chunk's
            argmax (``main_test.py``; the label is then the argmax of the counts, ties to the
            lower class); ``"mean"``: float32 ``[N, C]`` log-probabilities averaged over every
            chunk occurrence of the point (each block that contains it, padding repeats included).
        passes: how many times the scene is covered (official ``num_votes`` = 3), each pass with
            its own padding and shuffles.
        progress: called with the number of chunks just processed (for a progress bar; the total
            is ``passes * count_chunks(...)``).

    Returns:
        ``[N, C]`` counts (``votes``) or mean log-probabilities (``mean``), on the CPU. Every
        point is in at least one block, so no row is left empty. Memory: the ``[N, C]``
        accumulator plus one batch.
    """
    if mode not in ("votes", "mean"):
        raise ValueError(f"mode must be 'votes' or 'mean', got {mode!r}")
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    N, C = len(xyz), int(num_classes)
    # float32 sums: a point sits in a handful of chunks, far from float32's reach; N x C x 4 bytes
    acc = torch.zeros(N * C if mode == "votes" else (N, C), dtype=torch.int32 if mode == "votes" else torch.float32)
    count = torch.zeros(N if mode == "mean" else 0, dtype=torch.int32)
    for vote in range(passes):
        for pts, idx in iter_chunk_batches(xyz, npoints=npoints, batch_size=batch_size, block_size=block_size,
                                           stride=stride, padding=padding, seed=seed, vote=vote):
            out = torch.as_tensor(predict(pts)).detach().cpu()  # b npoints C
            if out.shape != (len(pts), npoints, C):
                raise ValueError(f"predict returned shape {list(out.shape)}, expected {[len(pts), npoints, C]}")
            flat = torch.from_numpy(idx.reshape(-1))  # b*npoints
            if mode == "votes":
                pred = out.reshape(-1, C).argmax(-1)  # b*npoints, ties to the lower class
                acc.index_add_(0, flat * C + pred, torch.ones(len(flat), dtype=torch.int32))
            else:
                acc.index_add_(0, flat, out.reshape(-1, C).to(torch.float32))
                count.index_add_(0, flat, torch.ones(len(flat), dtype=torch.int32))
            if progress is not None:
                progress(len(pts))
    if mode == "votes":
        return acc.view(N, C)
    return acc.div_(count.clamp(min=1).unsqueeze(1))


def count_chunks(xyz: np.ndarray, *, npoints: int, block_size: float = 1.0, stride: float = 0.5,
                 padding: float = 0.001) -> int:
    """How many chunks :func:`iter_chunk_batches` yields for a scene (for progress bars)."""
    return sum(-(-len(b.index) // npoints) for b in scene_blocks(xyz, block_size=block_size, stride=stride,
                                                                 padding=padding))


def _check_xyz(xyz: np.ndarray) -> None:
    if not isinstance(xyz, np.ndarray) or xyz.ndim != 2 or xyz.shape[1] < 3:
        shape = list(xyz.shape) if hasattr(xyz, "shape") else type(xyz).__name__
        raise ValueError(f"scene points must be a numpy array [N, 3], got {shape}")
    if xyz.shape[0] == 0:
        raise ValueError("the scene holds no points")


__all__ = ["Block", "accumulate_scene", "block_chunks", "block_frame", "block_rng", "count_chunks", "grid_shape", "iter_chunk_batches",
           "model_predictor", "scene_blocks"]
