"""Classification evaluation shared by the fine-tuning task and :func:`act_zoo.evaluate`.

* :func:`classify_logits` -- the logits of a batch of clouds: plain (FPS to ``npoints``, the
  official ``misc.fps``) or with the official voting (``validate_vote``): an FPS pool of
  ``pool_ratio x npoints`` points computed once, then per vote a random ``npoints`` subset of
  the pool and a random scale-and-translate, logits averaged over the votes.
* :func:`classification_metrics` -- overall, per-class and mean per-class accuracy and the
  confusion matrix; :func:`save_confusion_png` draws it (matplotlib ``Figure`` on the Agg
  canvas: the user's backend is never touched).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.transforms import ScaleAndTranslate
from ..ops import furthest_point_sample, gather_points

__all__ = ["ClassificationMetrics", "classification_metrics", "classify_logits", "save_confusion_png", "vote_pool_size"]


def vote_pool_size(num_points: int, npoints: int, pool_ratio: float = 1.2) -> int:
    """Points of the voting FPS pool: ``round(pool_ratio x npoints)``, at most the cloud's ``num_points``."""
    return min(num_points, round(pool_ratio * npoints))


def _cloud_generator(cloud: torch.Tensor, seed: int) -> torch.Generator:
    """A generator seeded by ``seed`` and the cloud's own values (not its batch position)."""
    data = cloud.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    digest = hashlib.blake2b(data, digest_size=8, person=b"act_zoo.vote").digest()
    mixed = np.random.SeedSequence([int(seed), int.from_bytes(digest, "little")]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed) % 2**63)


@torch.no_grad()
def classify_logits(
    model: nn.Module,
    points: torch.Tensor,
    *,
    npoints: int,
    votes: int = 0,
    pool_ratio: float = 1.2,
    seed: int | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits ``[B, K]`` of ``points [B, N, 3]`` (``N >= npoints``, on the model's device).

    Args:
        model: a classifier, in the mode the caller wants (evaluation: ``eval()``).
        npoints: points the model takes.
        votes: 0: FPS to ``npoints`` (identity when ``N == npoints``). ``> 0``: the official
            voting, ``votes`` passes averaged (see the module docstring).
        pool_ratio: the voting FPS pool, relative to ``npoints`` (official 1.2).
        seed: None: the official draws from torch's global generator (one subset for the whole
            batch, one scale-and-translate per cloud). An int: each cloud draws its own subsets
            and scale-and-translate from a generator seeded by ``seed`` and its own values, so
            its logits do not depend on the batch it is in.
        augment: the voting transform for ``seed=None`` (default: a fresh
            :class:`~act_zoo.data.transforms.ScaleAndTranslate` on the global generator).
    """
    N = points.shape[1]
    if N < npoints:
        raise ValueError(f"clouds have {N} points, fewer than the model's npoints={npoints}")
    if votes < 0:
        raise ValueError(f"votes must be >= 0, got {votes}")
    if not votes:
        if N == npoints:
            return model(points)
        return model(gather_points(points, furthest_point_sample(points, npoints)))  # B npoints 3
    pool = vote_pool_size(N, npoints, pool_ratio)
    pooled = gather_points(points, furthest_point_sample(points, pool))  # B pool 3
    outs: list[torch.Tensor] = []  # votes x [B, K]
    if seed is None:
        aug = augment if augment is not None else ScaleAndTranslate()
        for _ in range(votes):
            pick = torch.randperm(pool)[:npoints].to(points.device)  # npoints: one subset for the batch
            outs.append(model(aug(pooled[:, pick])))  # B K
    else:
        gens = [_cloud_generator(c, seed) for c in points]
        augs = [ScaleAndTranslate(generator=g) for g in gens]
        for _ in range(votes):
            picks = torch.stack([torch.randperm(pool, generator=g)[:npoints] for g in gens]).to(points.device)  # B n
            subset = gather_points(pooled, picks)  # B npoints 3
            outs.append(model(torch.stack([a(c) for a, c in zip(augs, subset)])))  # B K
    return torch.stack(outs).mean(0)  # the official torch.cat(local_pred).mean(0)


@dataclass(frozen=True)
class ClassificationMetrics:
    """Accuracies in percent.

    Attributes:
        accuracy: overall accuracy.
        mean_class_accuracy: the mean of the per-class accuracies over the classes present
            (the official ``acc_avg``).
        per_class: accuracy (recall) of each class, ``None`` for a class with no sample.
        confusion: ``[K, K]`` int64 counts, rows = true class, columns = predicted class.
    """

    accuracy: float
    mean_class_accuracy: float
    per_class: list[float | None]
    confusion: np.ndarray

    @property
    def count(self) -> int:
        return int(self.confusion.sum())


def classification_metrics(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
                           num_classes: int) -> ClassificationMetrics:
    """Metrics of predicted vs true class indices (both in ``[0, num_classes)``)."""
    p = np.asarray(torch.as_tensor(pred).view(-1).cpu(), dtype=np.int64)
    t = np.asarray(torch.as_tensor(target).view(-1).cpu(), dtype=np.int64)
    if p.shape != t.shape:
        raise ValueError(f"{len(p)} predictions for {len(t)} labels")
    for name, v in (("predictions", p), ("labels", t)):
        if len(v) and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} must be in [0, {num_classes}), got {v.min()}..{v.max()}")
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (t, p), 1)
    support = confusion.sum(axis=1)
    per_class = [100.0 * confusion[k, k] / support[k] if support[k] else None for k in range(num_classes)]
    present = [a for a in per_class if a is not None]
    accuracy = 100.0 * float(np.trace(confusion)) / max(1, len(t))
    return ClassificationMetrics(accuracy, float(np.mean(present)) if present else 0.0, per_class, confusion)


def save_confusion_png(confusion: np.ndarray, class_names: Sequence[str], path: str | Path, *,
                       title: str = "confusion matrix") -> Path:
    """Draw ``confusion`` (rows true, columns predicted; cells show counts, colour = row share)
    into a PNG with matplotlib's object API and the Agg canvas (no pyplot, no backend switch)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError('the confusion-matrix PNG needs matplotlib: pip install "act-zoo[train]"') from exc
    k = len(class_names)
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape, dtype=np.float64), where=rows > 0)
    side = min(20.0, 2.5 + 0.45 * k)
    fig = Figure(figsize=(side + 1.5, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(k), labels=list(class_names), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels=list(class_names), fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if confusion[i, j]:
                    ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
