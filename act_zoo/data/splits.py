"""Held-out splits of a labelled file dataset: seeded, stratified, file-level, checked.

* :func:`stratified_split` holds out the same fraction of every class (at least one file of
  each class on each side). Which files go where is a pure function of ``seed``, each class's
  name and the sorted file keys, so a class's split does not move when another class is
  added, and two runs with the same seed hold out the same files.
* :func:`check_no_overlap` refuses a training set and an evaluation set that share a file
  (the same resolved path, or the same file reached through a link).
* :class:`FileSubset` is a view of some items of a dataset (a split side, or the readable
  files), with its own ``samples`` / ``labels`` / ``classes`` and, optionally, a label map
  that puts a second dataset's classes in the first one's order (by name).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["FileSubset", "SplitError", "check_no_overlap", "stratified_split"]


class SplitError(ValueError):
    """A split cannot be made as asked (too few files, overlapping sets, mismatched classes)."""


def stratified_split(
    labels: Sequence[int] | np.ndarray,
    *,
    fraction: float,
    seed: int,
    class_names: Sequence[str] | None = None,
    keys: Sequence[str] | None = None,
    what: str = "validation",
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(kept, held_out)`` with ``round(fraction * n_c)`` of each class's ``n_c``
    items held out, clamped to ``1 .. n_c - 1``.

    Args:
        labels: the label of every item.
        fraction: share held out, ``0 < fraction < 1``.
        seed: split seed; with ``class_names`` and ``keys`` the split of a class depends only
            on the seed, its name and its own files.
        class_names: name of each label (default: the label number).
        keys: a stable key per item (e.g. the file path relative to the dataset root); items
            are ordered by it before shuffling (default: their index).
        what: the held-out side's name, for messages.

    Raises:
        SplitError: a class has fewer than two items (it cannot be on both sides); every
            such class is named.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"the {what} fraction must be between 0 and 1 (exclusive), got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if keys is not None and len(keys) != len(labels):
        raise ValueError(f"keys has {len(keys)} entries for {len(labels)} labels")
    present = np.unique(labels)
    names = {int(c): (str(class_names[c]) if class_names is not None else str(int(c))) for c in present}
    too_few = {names[int(c)]: int((labels == c).sum()) for c in present if (labels == c).sum() < 2}
    if too_few:
        listed = ", ".join(f"{n!r} ({k} file{'s' * (k != 1)})" for n, k in sorted(too_few.items()))
        raise SplitError(
            f"cannot hold out a stratified {what} split: class{'es' * (len(too_few) > 1)} {listed} need at least "
            f"2 files each (1 to train on, 1 to hold out); add files, or give a separate test set"
        )
    kept: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for c in present:
        idx = np.flatnonzero(labels == c)
        if keys is not None:
            idx = idx[np.argsort(np.asarray([keys[i] for i in idx], dtype=object), kind="stable")]
        rng = np.random.default_rng([int(seed), zlib.crc32(names[int(c)].encode("utf-8"))])
        idx = idx[rng.permutation(len(idx))]
        k = min(max(1, round(fraction * len(idx))), len(idx) - 1)
        held.append(idx[:k])
        kept.append(idx[k:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def _identity(path: Path) -> tuple[Any, ...]:
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", str(Path(path).resolve()))


def check_no_overlap(
    train: Iterable[str | os.PathLike[str]],
    other: Iterable[str | os.PathLike[str]],
    *,
    what: str = "test",
    limit: int = 10,
) -> None:
    """Raise :class:`SplitError` if a file of ``other`` is also a training file: the same
    resolved path, or the same file through a symbolic or hard link. Lists the shared files."""
    seen: dict[tuple[Any, ...], Path] = {}
    for p in train:
        p = Path(p)
        seen.setdefault(_identity(p), p)
        seen.setdefault(("path", str(p.resolve())), p)
    shared: list[tuple[Path, Path]] = []
    for p in other:
        p = Path(p)
        hit = seen.get(_identity(p)) or seen.get(("path", str(p.resolve())))
        if hit is not None:
            shared.append((hit, p))
    if shared:
        lines = [f"  {b}" + (f" (= training file {a})" if Path(a) != Path(b) else "") for a, b in shared[:limit]]
        more = [f"  ... and {len(shared) - limit} more"] if len(shared) > limit else []
        raise SplitError(
            f"{len(shared)} {what} file{'s are' if len(shared) > 1 else ' is'} also in the training set; "
            f"{what} files must be held out from training:\n" + "\n".join(lines + more)
        )


class FileSubset(Dataset):
    """Items ``indices`` of ``dataset`` (an act_zoo file dataset: ``samples``, ``labels``,
    ``classes``), optionally with labels mapped by ``label_map[old] -> new`` and new
    ``classes``. ``set_epoch`` is passed on; ``samples`` and ``labels`` are the subset's."""

    def __init__(
        self,
        dataset: Dataset,
        indices: Sequence[int] | np.ndarray,
        *,
        classes: Sequence[str] | None = None,
        label_map: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(dataset)  # type: ignore[arg-type]
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= n):
            raise IndexError(f"subset indices must be in 0..{n - 1}")
        self.label_map = None if label_map is None else np.asarray(label_map, dtype=np.int64)
        base_labels = np.asarray(dataset.labels, dtype=np.int64)[self.indices]  # type: ignore[attr-defined]
        self.labels = base_labels if self.label_map is None else self.label_map[base_labels]
        self.classes: list[str] = list(classes if classes is not None else dataset.classes)  # type: ignore[attr-defined]
        self.samples: list[tuple[Path, int]] = [
            (Path(dataset.samples[i][0]), int(lab))  # type: ignore[attr-defined]
            for i, lab in zip(self.indices.tolist(), self.labels.tolist())
        ]

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        points, _ = self.dataset[int(self.indices[i])]
        return points, int(self.labels[i])

    @property
    def paths(self) -> list[Path]:
        return [p for p, _ in self.samples]
