"""What the encoder separates, as a picture: a cloud coloured by a 3-component PCA of its patch tokens.

``patch_pca_figure(model, cloud)`` runs the one path for a cloud (:func:`act_zoo.extract_features`),
projects the patch tokens ``[G, C]`` on their first three principal components, maps each
component to a colour channel, and colours every point by the patch whose centre is nearest
(the patch it belongs to). Patches whose tokens the encoder finds alike get alike colours.

The figure is a :class:`matplotlib.figure.Figure` on its own Agg canvas: no display is needed
and the user's matplotlib backend (and pyplot state) is never touched. matplotlib is imported
only here (``pip install "act-zoo[train]"``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["nearest_patch", "patch_pca_colors", "patch_pca_figure"]


def patch_pca_colors(tokens: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB in ``[0, 1]`` per patch from a PCA of the tokens.

    Args:
        tokens: ``[G, C]`` patch tokens of one cloud.

    Returns:
        ``(colors [G, 3], explained [3])``: component ``k`` scaled to ``[0, 1]`` over the
        patches is channel ``k``; ``explained`` is each component's share of the variance
        (0, and grey, for components that do not exist: fewer than 4 patches, or tokens
        with fewer than 3 directions of variance). Each component's
        sign is fixed (its largest loading is positive), so the colours are deterministic.
    """
    t = torch.as_tensor(tokens, dtype=torch.float64)
    if t.dim() != 2 or t.shape[0] < 1:
        raise ValueError(f"tokens must have shape [G, C] with G >= 1, got {list(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("tokens contain NaN or inf values")
    centred = t - t.mean(0, keepdim=True)  # G C
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)  # s: min(G, C); vh: min(G, C) x C
    k = int((s[:3] > 1e-9 * s[0]).sum())  # components with variance (s is sorted, never empty)
    comps = vh[:k]  # k C
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))  # k 1
    comps = comps * torch.where(signs == 0, torch.ones_like(signs), signs)
    proj = centred @ comps.T  # G k
    colors = np.full((t.shape[0], 3), 0.5)
    var = s**2
    explained = np.zeros(3)
    total = float(var.sum())
    for j in range(k):
        col = proj[:, j]
        span = float(col.max() - col.min())
        if span > 1e-12 * max(1.0, float(col.abs().max())):
            colors[:, j] = ((col - col.min()) / span).numpy()
        if total > 0:
            explained[j] = float(var[j]) / total
    return colors, explained


def nearest_patch(points: torch.Tensor | np.ndarray, centers: torch.Tensor | np.ndarray) -> np.ndarray:
    """Index ``[N]`` of the nearest patch centre of each point (``points [N, 3]``, ``centers [G, 3]``)."""
    p = torch.as_tensor(points, dtype=torch.float64)
    c = torch.as_tensor(centers, dtype=torch.float64)
    if p.dim() != 2 or p.shape[-1] != 3 or c.dim() != 2 or c.shape[-1] != 3 or len(c) == 0:
        raise ValueError(f"points must be [N, 3] and centers [G, 3] (G >= 1), got {list(p.shape)} and {list(c.shape)}")
    return torch.cdist(p, c).argmin(1).numpy()  # N


def _y_up(xyz: np.ndarray) -> np.ndarray:
    """Point-cloud convention (y up) to matplotlib's (z up), a rotation: (x, y, z) -> (x, -z, y)."""
    return np.stack([xyz[:, 0], -xyz[:, 2], xyz[:, 1]], axis=1)


def _points_of(cloud: Any, *, seed: int, mesh_samples: int) -> tuple[np.ndarray, str]:
    """Steps 1-2 of the one preparation path (read, validate): float64 ``[N, 3]`` and a name."""
    from .data.prepare import CloudPreparer

    if isinstance(cloud, (str, os.PathLike)):
        arr, _, _ = CloudPreparer(1, seed=seed, mesh_samples=mesh_samples).read(cloud)
        return arr, Path(cloud).name
    arr, _, name = CloudPreparer(1, seed=seed).read(cloud, "cloud")
    return arr, name


def patch_pca_figure(
    model: nn.Module | str,
    cloud: Any,
    *,
    title: str | None = None,
    max_points: int = 8192,
    seed: int = 0,
    mesh_samples: int = 8192,
    views: tuple[tuple[float, float], ...] = ((20.0, -60.0), (20.0, 30.0)),
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Any:
    """A figure of ``cloud`` coloured by a 3-component PCA of the model's patch tokens.

    Args:
        model: an ACT encoder/classifier, a stage-II model, or a name/source for
            :func:`act_zoo.from_pretrained`.
        cloud: a ``[N, 3]`` tensor/array or a file (any format :func:`act_zoo.data.io.read_points`
            reads; meshes are sampled with ``mesh_samples`` points).
        title: the figure title (default: the model and the file).
        max_points: at most this many points are drawn (a seeded random subset); all are
            used for the features.
        views: ``(elevation, azimuth)`` of each panel, in degrees.

    Returns:
        a :class:`matplotlib.figure.Figure` with an Agg canvas: ``fig.savefig("pic.png")``.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is in the train extra
        raise ImportError('act-zoo show needs matplotlib: pip install "act-zoo[train]" (or pip install matplotlib)') from exc
    from .extract import extract_features

    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    if not views:
        raise ValueError("views must name at least one (elevation, azimuth)")
    points, source = _points_of(cloud, seed=seed, mesh_samples=mesh_samples)
    feats = extract_features(model, points, seed=seed)  # normalise, resample, group, encode (one path)
    colors, explained = patch_pca_colors(feats.tokens)  # G 3
    owner = nearest_patch(points, feats.centers)  # N
    shown = np.arange(len(points))
    if len(points) > max_points:
        shown = np.sort(np.random.default_rng(seed).choice(len(points), size=max_points, replace=False))
    xyz, rgb = points[shown], colors[owner[shown]]

    n_views = len(views)
    fig = Figure(figsize=figsize or (4.2 * n_views, 4.6), dpi=dpi)
    FigureCanvasAgg(fig)
    lo, hi = xyz.min(0), xyz.max(0)
    mid, half = (lo + hi) / 2, float((hi - lo).max()) / 2 or 1.0
    for i, (elev, azim) in enumerate(views):
        ax = fig.add_subplot(1, n_views, i + 1, projection="3d")
        ax.scatter(*_y_up(xyz).T, c=rgb, s=4, depthshade=False, linewidths=0)
        ax.scatter(*_y_up(feats.centers.numpy()).T, c=colors, s=30, marker="o", edgecolors="k", linewidths=0.5,
                   depthshade=False)
        for setter, m in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), _y_up(mid[None])[0]):
            setter(m - half, m + half)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=elev, azim=azim)
        ax.set_axis_off()
    name = model if isinstance(model, (str, os.PathLike)) else type(model).__name__
    G = feats.tokens.shape[0]
    fig.suptitle(title if title is not None else f"{name}  |  {source}", fontsize=10)
    fig.text(0.5, 0.02, f"{G} patch tokens -> PCA -> RGB (components explain "
             f"{', '.join(f'{100 * e:.0f}' for e in explained)} % of the variance); dots: patch centres",
             ha="center", fontsize=7)
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.06, top=0.9, wspace=0.0)
    return fig
