"""Evaluate a classifier, exactly as saved, on labelled data: ``act_zoo.evaluate(model, data=DIR)``.

Data: a class-per-folder tree or a CSV/JSON list (prepared by the one preparation path, as
:func:`act_zoo.predict` prepares a file), an official dataset (``dataset="modelnet40"``,
``"modelnet10"`` or ``"scanobjectnn"`` with ``root``), or any ``Dataset`` of
``(points, label)``. Accuracy is measured without voting (FPS to the model's ``npoints``)
and, with ``votes > 0``, with the official voting (an FPS pool of 1.2 x ``npoints``, per vote
a random subset and a random scale-and-translate, logits averaged), seeded per cloud so the
result is reproducible and independent of the batch size. The model is never changed: no
head is re-initialised, its train/eval mode is restored afterwards.

Class names: the data's classes are matched to the model's ``class_names`` by name (a test
set may hold a subset of them); a data class the model does not know is an error naming it.
A model without class names is taken to use the data's order (with a warning), and a label
beyond its head is an error.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ._inference import (
    class_names_of,
    device_of,
    eval_mode,
    finite_rows,
    non_finite_error,
    progress_bar,
    resolve_model,
)
from .data.splits import shared_files
from .models import ACTClassifier, ACTSemSeg
from .train.evaluation import (
    ClassificationMetrics,
    classification_metrics,
    classify_logits,
    save_confusion_png,
    vote_pool_size,
)

__all__ = ["EvaluationResult", "evaluate"]

logger = logging.getLogger(__name__)

OFFICIAL_DATASETS = ("modelnet40", "modelnet10", "scanobjectnn")


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`act_zoo.evaluate` measured (accuracies in percent).

    Attributes:
        plain: metrics without voting (:class:`~act_zoo.train.evaluation.ClassificationMetrics`:
            ``accuracy``, ``mean_class_accuracy``, ``per_class``, ``confusion``).
        voted: metrics with voting (None when ``votes=0``).
        votes: number of votes.
        class_names: the model's class names (the confusion matrix's rows and columns).
        num_samples: clouds evaluated.
        source: what was evaluated (folder, list file or dataset name).
        confusion_png: the written confusion-matrix PNG, if any.
        predictions: ``[num_samples]`` predicted class indices (without voting).
        labels: ``[num_samples]`` true class indices (in the model's numbering).
        training_files: how many of the evaluated files the model was trained on (known when
            it was loaded from a run directory, from its ``splits.json``; 0 otherwise).
        model_source: the run directory those training files belong to ("" when none).
    """

    plain: ClassificationMetrics
    voted: ClassificationMetrics | None
    votes: int
    class_names: list[str]
    num_samples: int
    source: str
    confusion_png: Path | None
    predictions: np.ndarray
    labels: np.ndarray
    training_files: int = 0
    model_source: str = ""

    @property
    def accuracy(self) -> float:
        """The headline accuracy: without voting -- the share of clouds whose
        :func:`act_zoo.predict` label is right (voting: ``voted.accuracy``)."""
        return self.plain.accuracy

    def per_class(self) -> dict[str, tuple[int, float | None, float | None]]:
        """``{class: (samples, accuracy without voting, with voting)}`` for every class."""
        support = self.plain.confusion.sum(axis=1)
        return {name: (int(support[k]), self.plain.per_class[k], self.voted.per_class[k] if self.voted else None)
                for k, name in enumerate(self.class_names)}

    def report(self) -> str:
        """Human-readable lines; the last one is ``accuracy: X`` (percent, :attr:`accuracy`)."""
        lines = [f"evaluated {self.num_samples} clouds of {self.source}"]
        width = max(8, *(len(n) for n in self.class_names))
        head = f"  {'class':<{width}} {'samples':>7} {'accuracy':>9}" + (f" {f'vote x{self.votes}':>9}" if self.voted else "")
        lines.append(head)
        for name, (count, plain, voted) in self.per_class().items():
            if not count:
                continue
            row = f"  {name:<{width}} {count:>7} {plain:>9.2f}"
            if self.voted:
                row += f" {voted:>9.2f}"
            lines.append(row)
        lines.append(f"overall accuracy (no voting): {self.plain.accuracy:.2f} %  "
                     f"(mean per-class {self.plain.mean_class_accuracy:.2f} %)")
        if self.voted:
            lines.append(f"overall accuracy ({self.votes} votes): {self.voted.accuracy:.2f} %  "
                         f"(mean per-class {self.voted.mean_class_accuracy:.2f} %)")
        if self.confusion_png is not None:
            lines.append(f"confusion matrix: {self.confusion_png}")
        if self.training_files:
            lines.append(f"! {_training_files_note(self.training_files, self.num_samples, self.model_source)}")
        lines.append(f"accuracy: {self.accuracy:.2f}")
        return "\n".join(lines)


def _training_files_note(n: int, total: int, run: str) -> str:
    return (f"{n} of {total} clouds are training files of {run} (its splits.json): this accuracy is not a "
            "held-out measurement; evaluate on files the model never saw")


def _run_training_files(model_or_name: Any) -> list[Path]:
    """The training files of a run directory (from its ``splits.json``), or [] when
    ``model_or_name`` is not one or they cannot be located any more."""
    if not isinstance(model_or_name, (str, os.PathLike)):
        return []
    listing = Path(model_or_name).expanduser() / "splits.json"
    if not listing.is_file():
        return []
    try:
        spec = json.loads(listing.read_text(encoding="utf-8"))
        train = [str(rel) for rel, _ in spec["files"]["train"]]
        roots = [spec.get("root_resolved"), spec.get("root")]  # "root" as given, relative to the training cwd
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.debug("cannot read the training files of %s: %s", listing, exc)
        return []
    for root in filter(None, roots):
        base = Path(root)
        base = base if base.is_dir() else base.parent
        if base.is_dir():
            return [base / rel for rel in train]
    return []


def _dataset(data: Any, dataset: str | None, root: str | os.PathLike | None, *, split: str, variant: str | None,
             pool: int, seed: int, allow_pickle: bool) -> tuple[Dataset, list[str] | None, str]:
    """(dataset of (points, label), its class names or None, a description)."""
    from . import data as D

    if (data is None) == (dataset is None):
        raise ValueError("give exactly one of data= (a folder, a CSV/JSON list or a Dataset) and dataset= (with root=)")
    if dataset is not None:
        if dataset not in OFFICIAL_DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; official readers: {', '.join(OFFICIAL_DATASETS)} "
                             "(for your own files use data=FOLDER)")
        if root is None:
            raise ValueError(f"dataset {dataset!r} needs root= (its folder)")
        if dataset == "scanobjectnn":
            ds = D.ScanObjectNN(root, variant=variant or "PB_T50_RS", split=split, seed=seed)  # type: ignore[arg-type]
        else:
            ds = D.ModelNet40(root, split=split, num_category=40 if dataset == "modelnet40" else 10,  # type: ignore[arg-type]
                              allow_pickle=allow_pickle, seed=seed)
        return ds, list(ds.classes), f"{dataset} {split} ({root})"
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            ds = D.PointCloudFolder(path, num_points=pool, seed=seed)
        elif path.suffix.lower() in (".csv", ".json"):
            ds = D.PointCloudList(path, num_points=pool, seed=seed)
        elif not path.exists():
            raise FileNotFoundError(f"{path}: no such folder or list file")
        else:
            raise ValueError(f"{path}: data must be a class-per-folder directory or a .csv/.json list")
        return ds, list(ds.classes), str(path)
    if isinstance(data, Dataset):
        classes = getattr(data, "classes", None)
        return data, (list(classes) if classes is not None else None), type(data).__name__
    raise TypeError(f"data must be a folder, a list file or a torch Dataset, got {type(data).__name__}")


def _label_map(data_classes: list[str] | None, model_classes: list[str], known: bool, num_classes: int, *,
               positional: bool) -> np.ndarray | None:
    """Data label -> model output index (None: the same numbers). Errors say which classes differ.

    ``positional``: the data's label order is the one the model was trained with (official
    datasets with official checkpoints), so a model without class names is used as it is."""
    if data_classes is None:
        return None  # a Dataset without .classes: labels are output indices (checked per batch)
    if not known:
        if not positional:
            raise ValueError(
                f"the model stores no class names, so the data's classes {data_classes[:8]}"
                f"{'...' if len(data_classes) > 8 else ''} cannot be matched to its {num_classes} outputs: give "
                f"class_names= (CLI --class-names) in the model's output order"
            )
        if len(data_classes) > num_classes:
            raise ValueError(f"the data has {len(data_classes)} classes but the model's head has only "
                             f"{num_classes} outputs")
        logger.warning("the model stores no class names: data class i is taken as output i (%s)",
                       ", ".join(f"{i}={c}" for i, c in enumerate(data_classes[:8])))
        return None
    unknown = [c for c in data_classes if c not in model_classes]
    if unknown and all(c.isdigit() for c in data_classes):
        raise ValueError(f"the data's labels are integer labels {unknown[:8]} but the model's outputs are named "
                         f"{model_classes}; classes are matched by name: write the class names as labels in the list "
                         "(or a JSON list with \"classes\": [...] naming each integer)")
    if unknown:
        raise ValueError(f"class names of the data and the model differ: the data's classes {unknown} are not "
                         f"among the model's {model_classes}")
    index = {c: i for i, c in enumerate(model_classes)}
    return np.array([index[c] for c in data_classes], dtype=np.int64)


def _evaluate_rooms(model: ACTSemSeg, data: Any, dataset: str | None, root: Any, *, test_area: int,
                    votes: int | None, **kwargs: Any) -> Any:
    """Semantic segmentation: whole rooms in the S3DIS format (official main_test.py protocol)."""
    from .train.tasks.semseg import evaluate_s3dis

    if dataset not in (None, "s3dis") or (data is None) == (root is None) or (dataset == "s3dis") != (root is not None):
        raise ValueError("a semantic-segmentation model is evaluated on rooms in the S3DIS format: give data= (a room "
                         ".npy file or a folder of them) or dataset='s3dis' with root= (its test_area rooms)")
    rooms, area = (data, None) if root is None else (root, test_area)
    return evaluate_s3dis(model, rooms, test_area=area, votes=3 if votes is None else votes, **kwargs)


@torch.no_grad()
def evaluate(
    model_or_name: nn.Module | str | os.PathLike,
    data: str | os.PathLike | Dataset | None = None,
    *,
    dataset: Literal["modelnet40", "modelnet10", "scanobjectnn", "s3dis"] | None = None,
    root: str | os.PathLike | None = None,
    split: Literal["train", "test"] = "test",
    variant: str | None = None,
    votes: int | None = None,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    seed: int = 0,
    pool_ratio: float = 1.2,
    allow_pickle: bool = False,
    num_workers: int = 0,
    class_names: Sequence[str] | None = None,
    confusion_png: str | os.PathLike | None = None,
    progress: bool | None = None,
    test_area: int = 5,
) -> EvaluationResult | Any:
    """Accuracy of a classifier on labelled data, with and without voting.

    A semantic-segmentation model (:class:`~act_zoo.ACTSemSeg`) is evaluated on whole rooms in
    the S3DIS format instead (``data=`` a room ``.npy`` or a folder of them, or
    ``dataset="s3dis", root=`` with its ``test_area`` rooms; ``votes`` official 3) and gives a
    :class:`~act_zoo.train.tasks.semseg.RoomEvaluation` (mIoU, mAcc, OA, per-class IoU).

    Args:
        model_or_name: an :class:`~act_zoo.ACTClassifier`, or a registry name / run directory /
            file for :func:`act_zoo.from_pretrained`; evaluated exactly as saved.
        data: a class-per-folder directory, a ``.csv``/``.json`` list of ``(path, label)``, or
            a ``Dataset`` of ``(points [N, 3], label)`` (with ``.classes`` to match names).
        dataset, root, split, variant: an official dataset instead (``variant`` for ScanObjectNN:
            ``PB_T50_RS`` (default), ``OBJ_BG``, ``OBJ_ONLY``); ``allow_pickle`` permits the
            official ModelNet ``.dat`` pickles.
        votes: voting passes (None: official 10; S3DIS rooms: 3); 0: no voting.
        batch_size: clouds per forward pass (results do not depend on it).
        device: where to run (default: the model's; cuda when loading by name and available).
        seed: seeds file preparation (padding) and the per-cloud voting draws.
        pool_ratio: the voting FPS pool relative to ``npoints`` (official 1.2).
        num_workers: ``DataLoader`` workers preparing the data.
        class_names: the names of the model's outputs, in order, for a model that stores none
            (needed to evaluate such a model on a folder or list).
        confusion_png: write the confusion matrix (without voting, as :attr:`EvaluationResult.accuracy`) there.
        progress: progress bars (None: only on a terminal).

    Returns:
        :class:`EvaluationResult` (``.report()`` prints it; ``.accuracy`` is the headline).
    """
    if votes is not None and (isinstance(votes, bool) or not isinstance(votes, int) or votes < 0):
        raise ValueError(f"votes must be an int >= 0, got {votes!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    model = resolve_model(model_or_name, device)
    if isinstance(model, ACTSemSeg):
        return _evaluate_rooms(model, data, dataset, root, test_area=test_area, votes=votes, batch_size=batch_size,
                               seed=seed, confusion_png=confusion_png, progress=progress)
    votes = 10 if votes is None else votes
    if not isinstance(model, ACTClassifier):
        raise TypeError(f"evaluate needs a classifier (ACTClassifier), got a {type(model).__name__}")
    npoints, num_classes = model.config.npoints, model.config.cls_dim
    model_classes, known = class_names_of(model, num_classes, class_names)
    pool = max(npoints, vote_pool_size(2**62, npoints, pool_ratio))  # points prepared per file
    ds, data_classes, source = _dataset(data, dataset, root, split=split, variant=variant, pool=pool, seed=seed,
                                        allow_pickle=allow_pickle)
    if len(ds) == 0:  # type: ignore[arg-type]
        raise ValueError(f"{source} holds no samples")
    mapping = _label_map(data_classes, model_classes, known, num_classes,
                         positional=dataset is not None or not isinstance(data, (str, os.PathLike)))
    names = getattr(ds, "samples", None)
    trained_on = 0
    if names is not None:
        train_files = _run_training_files(model_or_name)
        trained_on = len(shared_files(train_files, [p for p, _ in names])) if train_files else 0
        if trained_on:
            logger.warning("%s", _training_files_note(trained_on, len(names), str(model_or_name)))
    dev = device_of(model)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    plain_pred, vote_pred, labels = [], [], []
    bar = progress_bar(len(ds), f"evaluate{f' (vote x{votes})' if votes else ''}", progress)  # type: ignore[arg-type]
    seen = 0
    with eval_mode(model):
        try:
            for points, label in loader:
                label = torch.as_tensor(label).view(-1).long()
                batch_names = [str(names[seen + j][0]) if names is not None else f"item {seen + j}"
                               for j in range(len(label))]
                if mapping is not None:
                    label = torch.from_numpy(mapping[label.numpy()])
                bad = (label < 0) | (label >= num_classes)
                if bool(bad.any()):
                    j = int(bad.nonzero()[0, 0])
                    raise ValueError(f"{batch_names[j]}: label {int(label[j])} is beyond the model's "
                                     f"{num_classes}-way head")
                points = points[..., :3].to(dev, model.dtype)  # b N 3
                logits = classify_logits(model, points, npoints=npoints).float().cpu()  # b K
                finite = finite_rows(logits)
                if not bool(finite.all()):
                    raise non_finite_error(batch_names, finite, "logits")
                plain_pred.append(logits.argmax(-1))
                if votes:
                    voted = classify_logits(model, points, npoints=npoints, votes=votes, pool_ratio=pool_ratio,
                                            seed=seed).float().cpu()  # b K
                    finite = finite_rows(voted)
                    if not bool(finite.all()):
                        raise non_finite_error(batch_names, finite, "voting logits")
                    vote_pred.append(voted.argmax(-1))
                labels.append(label)
                seen += len(label)
                bar.update(len(label))
        finally:
            bar.close()
    target = torch.cat(labels)
    plain = classification_metrics(torch.cat(plain_pred), target, num_classes)
    voted_metrics = classification_metrics(torch.cat(vote_pred), target, num_classes) if votes else None
    png = None
    if confusion_png is not None:
        title = f"{source}: accuracy {plain.accuracy:.2f} % (no voting)"
        png = save_confusion_png(plain.confusion, model_classes, confusion_png, title=title)
    final = torch.cat(plain_pred)
    return EvaluationResult(plain, voted_metrics, votes, model_classes, len(target), source, png,
                            final.numpy(), target.numpy(), trained_on, str(model_or_name) if trained_on else "")

