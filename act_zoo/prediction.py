"""Class predictions for files or clouds: ``act_zoo.predict(model, ["a.ply", "scans/"])``.

Every input goes through the one preparation path (:mod:`act_zoo.data.prepare`: read ->
validate -> centre and scale in float64 -> FPS to the model's ``npoints``), then the
classifier; probabilities are the softmax of its logits and class names come from the
model (``model.class_names``; ``class_<i>`` for a model that stores none).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ._inference import (
    CloudLike,
    as_sources,
    autocast_dtype,
    check_num_points,
    class_names_of,
    device_of,
    eval_mode,
    finite_rows,
    non_finite_error,
    prepared_batches,
    resolve_model,
)
from .data.prepare import CloudPreparer
from .models import ACTClassifier

__all__ = ["Prediction", "Predictions", "predict", "write_predictions"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """The classes of one input, best first.

    Attributes:
        source: the file path, or ``"cloud <i>"`` for an in-memory cloud.
        classes: the ``top_k`` class names, most probable first.
        probabilities: their softmax probabilities.
        indices: their class indices (output positions of the head).
    """

    source: str
    classes: tuple[str, ...]
    probabilities: tuple[float, ...]
    indices: tuple[int, ...]

    @property
    def label(self) -> str:
        """The most probable class."""
        return self.classes[0]

    @property
    def probability(self) -> float:
        """The probability of :attr:`label`."""
        return self.probabilities[0]


class Predictions(list):
    """A ``list`` of :class:`Prediction` (in input order), with ``skipped``: the
    ``(source, reason)`` of inputs left out by ``skip_bad=True``."""

    skipped: list[tuple[str, str]]

    def __init__(self, items: Sequence[Prediction] = (), skipped: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(items)
        self.skipped = list(skipped)


def _classifier_of(model: nn.Module) -> ACTClassifier:
    if not isinstance(model, ACTClassifier):
        raise TypeError(f"predict needs a classifier (ACTClassifier), got a {type(model).__name__}; "
                        "for features of an encoder use act_zoo.extract_features")
    return model


@torch.no_grad()
def predict(
    model_or_name: nn.Module | str | os.PathLike,
    clouds: CloudLike | Sequence[CloudLike],
    *,
    top_k: int = 1,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    amp: bool | torch.dtype = False,
    sample: Literal["fps", "random"] = "fps",
    num_points: int | None = None,
    seed: int = 0,
    mesh_samples: int = 8192,
    skip_bad: bool = False,
    class_names: Sequence[str] | None = None,
    progress: bool | None = None,
) -> Predictions:
    """Predict the class of each file or cloud.

    Args:
        model_or_name: an :class:`~act_zoo.ACTClassifier`, or a registry name / run directory /
            file for :func:`act_zoo.from_pretrained` (the model exactly as saved).
        clouds: a file, a directory (its supported files, recursively, sorted), a glob
            pattern, a ``[N, 3]`` / ``[B, N, 3]`` tensor or array, or a list of any of them.
        top_k: how many classes to return per input, best first.
        batch_size: clouds per forward pass (results do not depend on it).
        device, amp, sample, num_points, seed, mesh_samples: as
            :func:`act_zoo.extract_features` (``num_points`` defaults to the model's ``npoints``).
        skip_bad: leave out inputs that cannot be read (listed in ``.skipped``, logged).
        class_names: names of the model's outputs, in order, for a model that stores none
            (otherwise ``class_<i>``).
        progress: a progress bar (None: only on a terminal).

    Returns:
        :class:`Predictions`: one :class:`Prediction` per input, in order.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    sources, names, _ = as_sources(clouds)
    model = _classifier_of(resolve_model(model_or_name, device))
    k_all = model.config.cls_dim
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= k_all:
        raise ValueError(f"top_k must be an int in 1..{k_all} (the model's classes), got {top_k!r}")
    names_out, _ = class_names_of(model, k_all, class_names)
    preparer = CloudPreparer(check_num_points(num_points, model.config.npoints), sample, seed, True, mesh_samples)
    dev = device_of(model)
    amp_dtype = autocast_dtype(amp)
    skipped: list[tuple[str, str]] = []
    out: list[Prediction] = []
    with eval_mode(model):
        for batch, _ in prepared_batches(preparer, sources, names, batch_size=batch_size, skip_bad=skip_bad,
                                         skipped=skipped, progress=progress, desc="predict"):
            points = batch.points.to(dev, model.dtype)  # b n 3
            with torch.autocast(dev.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                logits = model(points).float().cpu()  # b K
            finite = finite_rows(logits)
            if not bool(finite.all()):
                if not skip_bad:
                    raise non_finite_error(batch.names, finite, "logits")
                for j in (~finite).nonzero().flatten().tolist():
                    skipped.append((batch.names[j], "the network produced non-finite logits"))
            probs = logits.softmax(dim=-1)  # b K
            top_p, top_i = probs.topk(top_k, dim=-1)  # b k
            for j, name in enumerate(batch.names):
                if bool(finite[j]):
                    idx = tuple(int(i) for i in top_i[j])
                    out.append(Prediction(name, tuple(names_out[i] for i in idx),
                                          tuple(float(p) for p in top_p[j]), idx))
    return Predictions(out, skipped)


def prediction_rows(predictions: Sequence[Prediction]) -> list[list[str]]:
    """One row per input: ``path, class, probability`` (then the next classes and their
    probabilities for ``top_k > 1``); probabilities with 4 decimals."""
    rows = []
    for p in predictions:
        row = [p.source]
        for name, prob in zip(p.classes, p.probabilities):
            row += [name, f"{prob:.4f}"]
        rows.append(row)
    return rows


def write_predictions(predictions: Sequence[Prediction], out: str | os.PathLike) -> Path:
    """Write the rows of :func:`prediction_rows` with a header line: comma-separated for a
    ``.csv`` file, tab-separated otherwise."""
    from .hub.cache import atomic_path

    path = Path(out)
    k = max((len(p.classes) for p in predictions), default=1)
    header = ["path", "class", "probability"]
    for i in range(2, k + 1):
        header += [f"class_{i}", f"probability_{i}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="," if path.suffix.lower() == ".csv" else "\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(prediction_rows(predictions))
    return path
