"""Training on your own files (``data.dataset: folder | list``): checked before any step.

:func:`build_file_splits` opens the training tree or list, reads every file once (all
unreadable files are listed together; ``data.skip_bad`` trains without them and the run
reports them), refuses fewer than two classes and empty classes, holds out a seeded,
stratified, file-level validation split, opens the separate test set (its classes put in the
training order by name) and refuses a test file that is also a training file. What it read is
kept in memory (within a budget) so the epochs do not read the files again.

Which side is which is never guessed by the caller: :attr:`FileSplits.eval_name` is
``"validation"`` when a split was held out and ``"test"`` when only a test set exists.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ...data.splits import FileSubset, SplitError, check_no_overlap, stratified_split
from ..config import DataConfig

logger = logging.getLogger(__name__)

DEFAULT_VAL_SPLIT = 0.2
# Clouds read by the pre-flight check are kept for the epochs up to this many bytes (a
# measured win: reading + resampling a 1k-point .ply costs about as much as a training step of
# the tiny model per item); beyond it, items are read from disk again each epoch.
PRELOAD_BUDGET_BYTES = 2 << 30
_LIST_SUFFIXES = (".csv", ".json")


class _Preloaded(Dataset):
    """A file dataset whose items, read once, are served from memory. Items of
    :class:`~act_zoo.data.PointCloudFolder` / ``PointCloudList`` are a pure function of the
    file and the reading options (per-file seed), so serving them again changes nothing."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.samples, self.labels, self.classes = dataset.samples, dataset.labels, dataset.classes
        self.items: dict[int, tuple[torch.Tensor, int]] = {}
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def load(self, i: int) -> tuple[torch.Tensor, int]:
        item = self.dataset[i]
        size = item[0].numel() * item[0].element_size()
        if self.nbytes + size <= PRELOAD_BUDGET_BYTES:
            self.items[i] = item
            self.nbytes += size
        return item

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        hit = self.items.get(int(i))
        return hit if hit is not None else self.dataset[i]


def open_file_dataset(path: str | Path, *, num_points: int, seed: int) -> Any:
    """A class-per-folder tree (a directory) or a CSV/JSON list (a file)."""
    from ...data import PointCloudFolder, PointCloudList

    p = Path(path).expanduser()
    if p.is_dir():
        return PointCloudFolder(p, num_points=num_points, seed=seed)
    if p.is_file() and p.suffix.lower() in _LIST_SUFFIXES:
        return PointCloudList(p, num_points=num_points, seed=seed)
    if p.exists():
        raise ValueError(f"{p}: expected a class-per-folder directory or a .csv/.json list of (path, label)")
    raise FileNotFoundError(f"{p}: no such directory or list file")


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def read_all(dataset: _Preloaded, *, progress: bool, what: str) -> tuple[list[int], list[tuple[str, str]]]:
    """Read every item once: (readable indices, [(path, reason)] of the others)."""
    from tqdm import tqdm

    from ...data import DatasetError

    good: list[int] = []
    bad: list[tuple[str, str]] = []
    for i in tqdm(range(len(dataset)), desc=f"reading {what} files", unit="file", disable=(not progress) or None,
                  leave=False):
        path = dataset.samples[i][0]
        try:
            dataset.load(i)
        except (DatasetError, ValueError, OSError) as exc:  # an ImportError (missing extra) is not a bad file
            bad.append((str(path), str(exc).removeprefix(f"{path}: ")))
        else:
            good.append(i)
    return good, bad


def _bad_files_error(bad: list[tuple[str, str]], total: int, what: str) -> ValueError:
    listed = "\n".join(f"  {p}: {r}" for p, r in bad)
    return ValueError(
        f"{len(bad)} of {total} {what} files cannot be read; fix or remove them, or pass --skip-bad "
        f"(Python: skip_bad=True; config: data.skip_bad=true) to train without them:\n{listed}"
    )


@dataclass
class FileSplits:
    """The checked sides of a run on the user's files."""

    classes: list[str]
    train: FileSubset
    val: FileSubset | None
    test: FileSubset | None
    root: str
    test_root: str | None
    val_fraction: float
    seed: int
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def eval_name(self) -> str:
        """The per-epoch evaluation set: ``validation`` if held out, else ``test``."""
        return "validation" if self.val is not None else "test"

    @property
    def eval_set(self) -> FileSubset:
        return self.val if self.val is not None else self.test  # type: ignore[return-value]

    def sides(self) -> dict[str, FileSubset]:
        return {k: v for k, v in (("train", self.train), ("validation", self.val), ("test", self.test)) if v is not None}

    def split_text(self) -> str:
        """One line naming the split, for cards, logs and summaries."""
        n = {k: len(v) for k, v in self.sides().items()}
        parts = [f"{n['train']} training files"]
        if self.val is not None:
            parts.append(f"{n['validation']} validation files (seeded stratified file-level hold-out of "
                         f"{self.val_fraction:g} per class from {self.root}, seed {self.seed})")
        if self.test is not None:
            parts.append(f"{n['test']} test files ({self.test_root})")
        else:
            parts.append("no test set")
        return ", ".join(parts)

    def describe(self) -> dict[str, Any]:
        """The ``data`` section of ``summary.json``."""
        out: dict[str, Any] = {
            "root": self.root, "classes": list(self.classes),
            "split": ("validation: seeded stratified file-level hold-out" if self.val is not None
                      else "no validation split; evaluated on the separate test set"),
            "val_fraction": self.val_fraction, "split_seed": self.seed,
            "files": {k: len(v) for k, v in self.sides().items()},
            "files_per_class": {k: {c: int((v.labels == i).sum()) for i, c in enumerate(self.classes)}
                                for k, v in self.sides().items()},
            "test_root": self.test_root,
            "skipped_files": [{"path": p, "error": r} for p, r in self.skipped],
        }
        return out

    def file_lists(self) -> dict[str, Any]:
        """Every side's files (``splits.json``), relative to their root where possible."""
        roots = {"train": Path(self.root), "validation": Path(self.root),
                 "test": Path(self.test_root) if self.test_root else Path(self.root)}
        lists = {}
        for k, v in self.sides().items():
            base = roots[k] if roots[k].is_dir() else roots[k].parent
            lists[k] = [[_relative(p, base), self.classes[lab]] for p, lab in v.samples]
        return {"classes": list(self.classes), "root": self.root, "test_root": self.test_root,
                "val_fraction": self.val_fraction, "split_seed": self.seed, "files": lists,
                "skipped_files": [p for p, _ in self.skipped]}


def resolve_val_fraction(data: DataConfig) -> float:
    """``data.val_split``, or the default: 0.2 without a test set, none with one."""
    if data.val_split is None:
        return 0.0 if data.test_root else DEFAULT_VAL_SPLIT
    return float(data.val_split)


def build_file_splits(data: DataConfig, *, npoints: int, seed: int, progress: bool = False,
                      labelled: bool = True) -> FileSplits:
    """Open, read, check and split ``data.root`` (+ ``data.test_root``); see the module docstring.
    ``labelled=False`` (pretraining: the folders only group files) skips the class checks."""
    if not data.root:
        raise ValueError(f"data.root is required for dataset {data.dataset!r} (a class-per-folder tree or a list)")
    fraction = resolve_val_fraction(data)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.val_split must be in [0, 1), got {fraction}")
    if fraction == 0.0 and not data.test_root:
        raise ValueError("nothing to evaluate on: the validation split is 0 and no test set is given; hold out a "
                         "validation split (--val-split 0.2 / data.val_split) or give a test set "
                         "(--test-data DIR / data.test_root)")
    pool = data.points_per_cloud or math.ceil(1.2 * npoints)
    full = _Preloaded(open_file_dataset(data.root, num_points=pool, seed=seed))
    classes = list(full.classes)
    good, bad = read_all(full, progress=progress, what="training")
    if bad and not data.skip_bad:
        raise _bad_files_error(bad, len(full), "training")
    for p, r in bad:
        logger.warning("skipping unreadable file %s: %s", p, r)
    labels = np.asarray(full.labels, dtype=np.int64)[good]
    counts = np.bincount(labels, minlength=len(classes))
    empty = [c for c, k in zip(classes, counts) if k == 0]
    if empty and labelled:
        raise ValueError(f"{data.root}: class{'es' * (len(empty) > 1)} {empty} "
                         f"{'have' if len(empty) > 1 else 'has'} no readable files; add files or remove "
                         f"{'them' if len(empty) > 1 else 'it'} (every class needs training examples)")
    if len(classes) < 2 and labelled:
        raise ValueError(f"{data.root}: a classifier needs at least 2 classes, found {len(classes)} ({classes}); "
                         "put each class's files in its own sub-folder (root/<class>/<files>)")
    root_dir = Path(data.root) if Path(data.root).is_dir() else Path(data.root).parent
    val = None
    train_idx = np.asarray(good, dtype=np.int64)
    if fraction > 0:
        keys = [_relative(full.samples[i][0], root_dir) for i in good]
        kept, held = stratified_split(labels, fraction=fraction, seed=data.data_seed, class_names=classes, keys=keys)
        train_idx, val_idx = train_idx[kept], train_idx[held]
        val = FileSubset(full, val_idx)
    train = FileSubset(full, train_idx)
    test = None
    skipped = list(bad)
    if data.test_root:
        tfull = _Preloaded(open_file_dataset(data.test_root, num_points=pool, seed=seed))
        extra = [c for c in tfull.classes if c not in classes]
        if extra:
            raise SplitError(f"the test set {data.test_root} has classes {extra} that the training data "
                             f"{data.root} does not have ({classes}); a test class must be a training class")
        check_no_overlap([p for p, _ in full.samples], [p for p, _ in tfull.samples], what="test")
        tgood, tbad = read_all(tfull, progress=progress, what="test")
        if tbad and not data.skip_bad:
            raise _bad_files_error(tbad, len(tfull), "test")
        for p, r in tbad:
            logger.warning("skipping unreadable test file %s: %s", p, r)
        skipped += tbad
        label_map = np.asarray([classes.index(c) for c in tfull.classes], dtype=np.int64)
        test = FileSubset(tfull, tgood, classes=classes, label_map=label_map)
        if len(test) == 0:
            raise ValueError(f"the test set {data.test_root} has no readable files")
    return FileSplits(classes=classes, train=train, val=val, test=test, root=str(data.root),
                      test_root=str(data.test_root) if data.test_root else None, val_fraction=fraction,
                      seed=data.data_seed, skipped=skipped)


__all__ = ["DEFAULT_VAL_SPLIT", "FileSplits", "build_file_splits", "open_file_dataset", "resolve_val_fraction"]
