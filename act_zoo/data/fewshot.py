"""Seeded N-way K-shot splits from any labelled dataset.

The procedure follows the script that made the official ModelNet40 few-shot pickles
(Point-BERT): shuffle the classes and take ``way`` of them; for each, ``shot`` random
support samples and ``query`` random query samples (officially the support comes from the
train split and the queries from the test split: pass ``query_labels`` for that); episode
label ``i`` is the ``i``-th chosen class; both lists are shuffled at the end. Python's
``random`` module is replaced by a seeded ``numpy.random.Generator``, so the same seed gives
the same split (but not the official pickles' folds, which were drawn unseeded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ._common import check_positive_int, check_seed

__all__ = ["FewShotSplit", "make_few_shot_splits"]


def _labels_of(labels: Any, name: str) -> np.ndarray:
    if isinstance(labels, Dataset) or hasattr(labels, "labels"):
        if not hasattr(labels, "labels"):
            raise TypeError(f"{name}: a dataset must expose a .labels array (the act_zoo readers do)")
        labels = labels.labels
    arr = np.asarray(labels)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(
            f"{name} must be a 1-D sequence of integer labels, got {arr.dtype} {list(arr.shape)}"
        )
    return arr.astype(np.int64)


@dataclass(frozen=True)
class FewShotSplit:
    """One few-shot episode: indices into the labelled set(s) and episode labels.

    Attributes:
        way, shot, query, seed: the request.
        classes: the original label of episode class ``0 .. way-1``.
        support, support_labels: indices into ``labels`` and their episode labels.
        query_indices, query_labels: indices into ``query_labels`` (or ``labels``) and
            their episode labels.
    """

    way: int
    shot: int
    query: int
    seed: int
    classes: tuple[int, ...]
    support: tuple[int, ...]
    support_labels: tuple[int, ...]
    query_indices: tuple[int, ...]
    query_labels: tuple[int, ...]

    def datasets(self, dataset: Dataset, query_dataset: Dataset | None = None) -> tuple[Dataset, Dataset]:
        """(support, query) datasets over ``dataset`` (and ``query_dataset`` for the queries)
        whose items are ``(points, episode_label)``."""
        q = dataset if query_dataset is None else query_dataset
        return (
            _EpisodeSubset(dataset, self.support, self.support_labels),
            _EpisodeSubset(q, self.query_indices, self.query_labels),
        )


class _EpisodeSubset(Dataset):
    """Items ``(points, episode_label)`` of a labelled dataset (picklable, unlike a lambda)."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], labels: Sequence[int]) -> None:
        self.dataset, self.indices, self.labels = dataset, tuple(indices), np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        item = self.dataset[self.indices[i]]
        points = item[0] if isinstance(item, tuple) else item["points"] if isinstance(item, dict) else item
        return points, int(self.labels[i])


def make_few_shot_splits(
    labels: Sequence[int] | np.ndarray | Dataset,
    *,
    way: int,
    shot: int,
    query: int = 20,
    seed: int,
    query_labels: Sequence[int] | np.ndarray | Dataset | None = None,
) -> FewShotSplit:
    """Draw a ``way``-way ``shot``-shot split with ``query`` queries per class.

    Args:
        labels: class labels of the support pool (a sequence, or a dataset with ``.labels``).
        way, shot, query: classes, support samples per class, query samples per class.
        seed: the split is a pure function of the inputs and this seed.
        query_labels: a separate query pool (the official splits: train -> support, test ->
            query). When None the queries come from ``labels`` too, disjoint from the support.

    Returns:
        A :class:`FewShotSplit`; ``split.datasets(ds)`` (or ``(train_ds, test_ds)``) makes the
        two datasets.

    Raises:
        ValueError: fewer than ``way`` classes have enough samples.
    """
    way = int(check_positive_int(way, "way"))  # type: ignore[arg-type]
    shot = int(check_positive_int(shot, "shot"))  # type: ignore[arg-type]
    query = int(check_positive_int(query, "query"))  # type: ignore[arg-type]
    seed_ = check_seed(seed)
    if seed_ is None:
        raise ValueError("seed is required (an int)")
    support_pool = _labels_of(labels, "labels")
    separate = query_labels is not None
    query_pool = _labels_of(query_labels, "query_labels") if separate else support_pool
    rng = np.random.default_rng(seed_)

    def eligible(c: int) -> bool:
        n_support = int(np.sum(support_pool == c))
        if separate:
            return n_support >= shot and int(np.sum(query_pool == c)) >= query
        return n_support >= shot + query

    classes = [int(c) for c in np.unique(support_pool) if eligible(int(c))]
    if len(classes) < way:
        joint = " and " if separate else " + "
        need = f"{shot} support{joint}{query} query samples"
        raise ValueError(f"only {len(classes)} classes have {need}; cannot draw a {way}-way split")
    chosen = [classes[i] for i in rng.permutation(len(classes))[:way]]
    support: list[tuple[int, int]] = []
    queries: list[tuple[int, int]] = []
    for episode_label, c in enumerate(chosen):
        members = rng.permutation(np.flatnonzero(support_pool == c))
        support += [(int(i), episode_label) for i in members[:shot]]
        if separate:
            q_members = rng.permutation(np.flatnonzero(query_pool == c))[:query]
        else:
            q_members = members[shot : shot + query]
        queries += [(int(i), episode_label) for i in q_members]
    support = [support[i] for i in rng.permutation(len(support))]
    queries = [queries[i] for i in rng.permutation(len(queries))]
    return FewShotSplit(
        way=way,
        shot=shot,
        query=query,
        seed=seed_,
        classes=tuple(chosen),
        support=tuple(i for i, _ in support),
        support_labels=tuple(lab for _, lab in support),
        query_indices=tuple(i for i, _ in queries),
        query_labels=tuple(lab for _, lab in queries),
    )
