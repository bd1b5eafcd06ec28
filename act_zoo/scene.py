"""Semantic segmentation of a whole scene of any size: ``act_zoo.segment(model, cloud)``.

The scene is covered by overlapping square blocks exactly as the official S3DIS test does it
(:mod:`act_zoo.data.blocks`: ``block_size`` windows at ``stride``, each padded by resampling to
a multiple of the model's ``npoints`` and cut into chunks, in the official block frame: x and y
centred on the block, z the height above the floor); every chunk runs through the model; each
point gets the mean of its log-probabilities over every chunk that holds it (all the
overlapping blocks), and its label is the argmax. Every input point is labelled.

Before blocking, the cloud goes through the one preparation path's reading and validation
(:mod:`act_zoo.data.prepare`: files read in float64; shape, finite values, at least one point),
then, in float64: optional axis change (``up="y"`` for y-up scans) and unit
change (``scale``, e.g. 0.001 for millimetres: the official model works in metres), the
minimum moved to the origin (so z is the height above the lowest point, like the
``collect_indoor3d_data`` rooms), and exact duplicate points merged (they get one label). The
block draws are keyed by the block's grid cell and the seed, and points are processed in
sorted order, so the labels do not depend on the order of the input points.

Memory is bounded: blocks are generated lazily and streamed through the model in batches of
``batch_size`` chunks; what grows with the scene is one ``[N, C]`` float32 accumulator.
"""

from __future__ import annotations

import colorsys
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ._inference import eval_mode, progress_bar
from ._s3dis import S3DIS_CLASSES, S3DIS_COLORS
from .data.blocks import accumulate_scene, count_chunks, model_predictor
from .models.semseg import ACTSemSeg

logger = logging.getLogger(__name__)

CloudLike = np.ndarray | torch.Tensor | str | os.PathLike


@dataclass
class SegmentationResult:
    """What :func:`segment` returns.

    Attributes:
        points: ``[N, 3]`` the input coordinates, unchanged.
        labels: int64 ``[N]`` class index of every point.
        confidence: float32 ``[N]``: ``exp`` of the winning class's mean log-probability (the
            geometric mean over the chunks that hold the point of its probability).
        class_names: one name per class.
        log_probs: float32 ``[N, C]`` mean log-probabilities (only with ``return_log_probs``).
    """

    points: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    class_names: tuple[str, ...]
    log_probs: np.ndarray | None = None

    def counts(self) -> dict[str, int]:
        """Points per class name (classes with no point are left out)."""
        bc = np.bincount(self.labels, minlength=len(self.class_names))
        return {n: int(c) for n, c in zip(self.class_names, bc) if c}

    def colors(self) -> np.ndarray:
        """uint8 ``[N, 3]`` the colour of each point's class (:func:`class_colors`)."""
        return class_colors(self.class_names)[self.labels]

    def write_ply(self, path: str | os.PathLike) -> Path:
        """Write a binary PLY: ``x y z`` (as given), ``red green blue`` (the class colour),
        ``label`` (int32) and ``confidence`` (float32) per vertex. Needs ``plyfile``."""
        return write_labelled_ply(path, self.points, self.labels, self.colors(), confidence=self.confidence)

    def save_top_view(self, path: str | os.PathLike, **kwargs: Any) -> Path:
        """A PNG seen from above; see :func:`save_top_view`."""
        return save_top_view(path, self.points, self.labels, self.class_names, **kwargs)


# ----------------------------------------------------------------------------------------------
# the one preparation step of a scene
# ----------------------------------------------------------------------------------------------
def scene_points(cloud: CloudLike) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-2 of the one preparation path (:mod:`act_zoo.data.prepare`: read, validate) for a
    scene: ``(points as given [N, 3], validated float64 copy [N, 3])``. A file is read in
    float64 (float32 data is returned as float32); an array or tensor may carry extra columns
    (colours ...), which are dropped."""
    from .data.prepare import CloudPreparer, validate_cloud

    if isinstance(cloud, (str, os.PathLike)):
        xyz64, eps, _ = CloudPreparer(num_points=1, normalize=False).read(cloud)
        given = xyz64.astype(np.float32) if eps == np.finfo(np.float32).eps else xyz64
        return given, xyz64
    if isinstance(cloud, (torch.Tensor, np.ndarray)) and cloud.ndim == 2 and cloud.shape[1] > 3:
        cloud = cloud[:, :3]
    if isinstance(cloud, torch.Tensor):
        xyz64, _ = validate_cloud(cloud, "cloud")
        return cloud.detach().cpu().numpy(), xyz64
    xyz64, _ = validate_cloud(cloud, "cloud")
    return cloud, xyz64


def prepare_scene(xyz: np.ndarray, *, up: Literal["z", "y"] = "z", scale: float = 1.0) -> np.ndarray:
    """float64 scene frame: ``up`` axis to z, times ``scale`` (to metres), minimum at the origin."""
    if up not in ("z", "y"):
        raise ValueError(f"up must be 'z' or 'y', got {up!r}")
    if not (isinstance(scale, (int, float)) and np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    pts = np.asarray(xyz, dtype=np.float64)
    if up == "y":  # y-up (x, y, z) -> z-up (x, -z, y), a rotation
        pts = np.stack([pts[:, 0], -pts[:, 2], pts[:, 1]], axis=1)
    pts = pts * float(scale)
    pts = pts - pts.min(0)
    extent = pts.max(0)
    if extent[2] > 30 or max(extent[0], extent[1]) > 1000 or max(extent) < 0.5:
        logger.warning("the scene spans %.3g x %.3g x %.3g (x, y, z after scale=%g, up=%s); the model expects "
                       "metres with z up (indoor rooms): check scale= and up=", *extent, scale, up)
    return pts


# ----------------------------------------------------------------------------------------------
# segment
# ----------------------------------------------------------------------------------------------
def _resolve_model(model: nn.Module | str | os.PathLike) -> ACTSemSeg:
    if isinstance(model, (str, os.PathLike)):
        from .hub.registry import from_pretrained

        model = from_pretrained(model)
    if not isinstance(model, ACTSemSeg):
        raise TypeError(f"segment needs a semantic-segmentation model (ACTSemSeg, e.g. 'act_base.s3dis_semseg'), "
                        f"got {type(model).__name__}")
    return model


@torch.no_grad()
def segment(
    model: ACTSemSeg | str | os.PathLike,
    cloud: CloudLike,
    *,
    block_size: float | None = None,
    stride: float | None = None,
    npoints: int | None = None,
    batch_size: int = 16,
    passes: int = 1,
    up: Literal["z", "y"] = "z",
    scale: float = 1.0,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
    return_log_probs: bool = False,
) -> SegmentationResult:
    """Label every point of a scene (see the module docstring for the protocol).

    Args:
        model: an :class:`~act_zoo.models.ACTSemSeg`, or anything :func:`act_zoo.from_pretrained`
            takes (``"act_base.s3dis_semseg"``, a run directory, ...).
        cloud: ``[N, 3+]`` array or tensor (extra columns ignored) or a point-cloud file
            (:func:`act_zoo.data.read_points` formats). Metres, z up, unless ``scale``/``up`` say otherwise.
        block_size: block side in metres (default: the model's, 1 m for S3DIS).
        stride: block step (default: half the block, the official 0.5 m).
        npoints: points per chunk (default: the model's, 2048).
        batch_size: chunks per forward pass (memory: ``batch_size x npoints`` points at a time).
        passes: coverings of the scene with fresh padding draws (official test: 3 hard-vote
            passes; here log-probabilities of all passes are averaged).
        up, scale: axis and unit change to the model's frame (``up="y"`` for y-up scans,
            ``scale=0.001`` for millimetres).
        seed: keys the padding/shuffle draws of every block.
        device: where the model runs (default: the model's device).
        progress: show a progress bar (tqdm) over the chunks.
        return_log_probs: also return the ``[N, C]`` mean log-probabilities.

    Returns:
        :class:`SegmentationResult` (``labels``, ``confidence``, ``class_names``; ``write_ply``,
        ``save_top_view``).
    """
    model = _resolve_model(model)
    points, xyz64 = scene_points(cloud)
    cfg = model.config
    block_size = float(block_size or cfg.block_size)
    stride = float(stride or block_size / 2)
    npoints = int(npoints or cfg.npoints)
    if batch_size < 1 or passes < 1:
        raise ValueError(f"batch_size and passes must be >= 1, got {batch_size} and {passes}")
    if npoints < max(cfg.num_group, cfg.group_size):
        raise ValueError(f"npoints={npoints} is fewer than the model's num_group={cfg.num_group} / "
                         f"group_size={cfg.group_size}")
    xyz = prepare_scene(xyz64, up=up, scale=scale)
    unique, inverse = np.unique(xyz, axis=0, return_inverse=True)  # sorted rows: order-free
    inverse = inverse.reshape(-1)
    if len(unique) < len(xyz):
        logger.info("%d duplicate points merged (%d unique)", len(xyz) - len(unique), len(unique))
    if device is not None:
        model = model.to(device)
    predict = model_predictor(model, next(model.parameters()).device)
    with eval_mode(model):
        # the chunks are counted (a pass over the blocks) only for a bar that is shown
        total = passes * count_chunks(unique, npoints=npoints, block_size=block_size, stride=stride) if progress else 0
        with progress_bar(total, "segment", bool(progress), unit="chunk") as bar:
            mean = accumulate_scene(unique, predict, num_classes=cfg.cls_dim, npoints=npoints, batch_size=batch_size,
                                    mode="mean", passes=passes, block_size=block_size, stride=stride, seed=seed,
                                    progress=bar.update if progress else None)
    best, labels = mean.max(dim=1)  # ties to the lower class
    labels_np = labels.numpy().astype(np.int64)[inverse]
    confidence = best.exp().numpy()[inverse]
    return SegmentationResult(points, labels_np, confidence, tuple(model.class_names),
                              mean.numpy()[inverse] if return_log_probs else None)


# ----------------------------------------------------------------------------------------------
# outputs: colours, PLY, top view
# ----------------------------------------------------------------------------------------------
def class_colors(class_names: Sequence[str]) -> np.ndarray:
    """uint8 ``[C, 3]``: the official S3DIS colours for the S3DIS classes, otherwise evenly
    spread hues (golden-ratio steps), so any class count gets distinct, stable colours."""
    names = tuple(class_names)
    if names == S3DIS_CLASSES:
        return np.array(S3DIS_COLORS, dtype=np.uint8)
    hues = [(0.1 + i * 0.618033988749895) % 1.0 for i in range(len(names))]
    rgb = [colorsys.hsv_to_rgb(h, 0.75, 0.95 if i % 2 == 0 else 0.7) for i, h in enumerate(hues)]
    return (np.array(rgb) * 255).round().astype(np.uint8)


def write_labelled_ply(path: str | os.PathLike, points: np.ndarray, labels: np.ndarray, colors: np.ndarray, *,
                       confidence: np.ndarray | None = None) -> Path:
    """Binary little-endian PLY with ``x y z red green blue label [confidence]`` vertices
    (coordinates keep their float32/float64 type), written atomically."""
    from .data._common import require
    from .hub.cache import atomic_path

    plyfile = require("plyfile", "writing .ply files")
    path = Path(path)
    pts = np.asarray(points)
    ftype = "f8" if pts.dtype == np.float64 else "f4"
    fields = [("x", ftype), ("y", ftype), ("z", ftype), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
              ("label", "i4")] + ([("confidence", "f4")] if confidence is not None else [])
    vertex = np.empty(len(pts), dtype=fields)
    for i, axis in enumerate("xyz"):
        vertex[axis] = pts[:, i]
    vertex["red"], vertex["green"], vertex["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
    vertex["label"] = labels
    if confidence is not None:
        vertex["confidence"] = confidence
    ply = plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")], text=False, byte_order="<")
    with atomic_path(path) as tmp:
        ply.write(str(tmp))
    return path


def save_top_view(
    path: str | os.PathLike,
    points: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    hide: Sequence[str] = ("ceiling",),
    max_points: int = 400_000,
    size: float = 8.0,
    dpi: int = 120,
    title: str | None = None,
) -> Path:
    """PNG of the labelled scene seen from above (z up), with a legend of the classes present.

    Points of the classes in ``hide`` (the ceiling, which would cover the room) are left out;
    the others are drawn from low to high, so tables and chairs sit on the floor. At most
    ``max_points`` points are drawn (a fixed random subset). Uses a matplotlib ``Figure`` with
    the Agg canvas: the global backend is never touched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from .hub.cache import atomic_path

    names = tuple(class_names)
    pts = np.asarray(points)[:, :3]
    keep = ~np.isin(labels, [names.index(h) for h in hide if h in names])
    idx = np.flatnonzero(keep)
    if len(idx) > max_points:
        idx = np.sort(np.random.default_rng(0).choice(idx, max_points, replace=False))
    idx = idx[np.argsort(pts[idx, 2], kind="stable")]
    colors = class_colors(names)
    fig = Figure(figsize=(size, size), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(pts[idx, 0], pts[idx, 1], c=colors[labels[idx]] / 255.0, s=0.5, marker=".", linewidths=0)
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    counts = np.bincount(labels, minlength=len(names))
    handles = [Patch(color=colors[c] / 255.0, label=f"{names[c]} ({100 * counts[c] / len(labels):.1f}%)")
               for c in range(len(names)) if counts[c]]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    hidden = [h for h in hide if h in names]
    ax.set_title(title or f"top view ({len(labels):,} points" + (f"; {', '.join(hidden)} hidden)" if hidden else ")"))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png", bbox_inches="tight")
    return path


__all__ = ["SegmentationResult", "class_colors", "prepare_scene", "save_top_view", "scene_points", "segment",
           "write_labelled_ply"]
