"""S3DIS rooms as the official ``collect_indoor3d_data.py`` writes them, and the official
semantic-segmentation protocol (``semantic_segmentation/dataset.py``, ``main.py``, ``main_test.py``).

Layout::

    stanford_indoor3d/
        Area_1_conferenceRoom_1.npy      float [N, 7]: x y z r g b label, one file per room
        ...                              272 rooms: Area_1 44, Area_2 40, Area_3 23,
        Area_6_pantry_1.npy                          Area_4 49, Area_5 68, Area_6 48

Each room's xyz has the room minimum subtracted (its lowest point is at z = 0), rgb is 0-255 and
the label is the class index of :data:`S3DIS_CLASSES` (``ceiling`` 0 ... ``clutter`` 12).
Training uses Areas 1, 2, 3, 4 and 6, testing Area 5 (``test_area``).

The official protocol, reproduced here (the model sees **xyz only**; colours are read but
never fed):

* **Training blocks** (:class:`S3DIS`): an item picks a room with probability proportional to
  its point count (``len = int(total points * sample_rate / npoints)`` items, each room repeated
  ``round(share * len)`` times); a 1 m x 1 m window (full height) is centred on a random point
  of the room and redrawn until it holds more than ``min_points`` (1024) points; ``npoints``
  (2048) of them are drawn, with replacement only when fewer; x and y are centred on the
  picked point, z stays the height above the room floor. Per-block scale U(0.8, 1.25) and
  shift U(-0.1, 0.1) are applied by the trainer (``train/tasks/semseg.py``, as ``main.py``).
* **Class weights** (:func:`label_weights`): ``w_c = (max_c f_c / f_c) ** (1/3)`` from the
  label frequencies of the training rooms, in a weighted NLL loss.
* **Whole-room test** (:mod:`act_zoo.data.blocks`): 1 m blocks at stride 0.5 m, each padded by
  resampling to a multiple of 2048 and chunked, 3 voting passes of hard votes, the label of a
  point is the argmax of its votes; IoU/mAcc/OA from counts summed over all Area-5 points.

Notes on the official code: ``main.py`` keeps as ``best_model.pth`` the epoch with the best
mIoU on random Area-5 blocks, so the released model is selected on the test area itself
(there is no validation split); the official scripts call ``np.float``, removed in NumPy 1.24,
so they fail on current NumPy as published. Randomness here comes from per-item generators
(:class:`~act_zoo.data._common.PointDataset`): with a ``seed``, an item is a pure function of
``(seed, epoch, index)``; draws match the official distribution, not its global-RNG stream.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .._s3dis import S3DIS_CLASSES, S3DIS_NUM_CLASSES, S3DIS_ROOMS_PER_AREA, S3DIS_TEST_AREA
from ._common import (
    PathLike,
    PointDataset,
    Transform,
    _read_npy_header,
    check_choice,
    check_positive_int,
    load_npy,
)
from .blocks import block_frame
from .errors import DatasetError

__all__ = ["S3DIS", "S3DIS_CLASSES", "S3DISRoom", "check_s3dis", "label_histogram", "label_weights",
           "list_rooms", "read_room", "split_rooms"]

logger = logging.getLogger(__name__)

ROOM_RE = re.compile(r"^Area_(\d+)_(.+)\.npy$")
# how far a room's minimum may sit from the origin before it is reported as not preprocessed
_ORIGIN_TOL = 1e-3


@dataclass(frozen=True)
class S3DISRoom:
    """One room file: ``name`` (``Area_5_office_1``), ``area`` (5) and ``path``."""

    name: str
    area: int
    path: Path


def list_rooms(root: PathLike, *, areas: Iterable[int] | None = None) -> list[S3DISRoom]:
    """The ``Area_<k>_<room>.npy`` files of ``root``, sorted by name (official ``sorted(os.listdir)``),
    optionally only those of ``areas``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "S3DIS folder not found (the output folder of collect_indoor3d_data.py, "
                                 "e.g. data/s3dis/stanford_indoor3d)")
    wanted = None if areas is None else {int(a) for a in areas}
    rooms = []
    for p in sorted(root.iterdir()):
        m = ROOM_RE.match(p.name)
        if m and p.is_file() and (wanted is None or int(m.group(1)) in wanted):
            rooms.append(S3DISRoom(p.name[:-4], int(m.group(1)), p))
    return rooms


def split_rooms(root: PathLike, split: Literal["train", "test"], *, test_area: int = S3DIS_TEST_AREA) -> list[S3DISRoom]:
    """Official split: ``test`` = the rooms of ``test_area``, ``train`` = all other areas."""
    check_choice(split, "split", ("train", "test"))
    rooms = [r for r in list_rooms(root) if (r.area == test_area) == (split == "test")]
    if not rooms:
        raise DatasetError(root, f"no Area_<k>_<room>.npy files for the {split} split (test_area={test_area})")
    return rooms


@dataclass
class RoomData:
    """A room as stored: ``xyz`` float64 ``[N, 3]``, ``rgb`` float32 ``[N, 3]`` (0-255), ``labels`` int64 ``[N]``."""

    xyz: np.ndarray
    rgb: np.ndarray
    labels: np.ndarray


def read_room(path: PathLike, *, num_classes: int = S3DIS_NUM_CLASSES) -> RoomData:
    """Read one room file safely (no pickle) and check it: a finite float ``[N, 7]`` array with
    integer labels in ``[0, num_classes)``. Errors name the file."""
    arr = load_npy(path)
    if arr.ndim != 2 or arr.shape[1] != 7:
        raise DatasetError(path, f"expected an [N, 7] array (x y z r g b label), got {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise DatasetError(path, "holds no points")
    if arr.dtype.kind not in "fiu":
        raise DatasetError(path, f"holds {arr.dtype} values, expected numbers")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise DatasetError(path, f"{bad} of {arr.shape[0]} points contain NaN or infinite values")
    raw = arr[:, 6]
    labels = raw.astype(np.int64)
    if np.any(labels != raw) or labels.min() < 0 or labels.max() >= num_classes:
        bad = np.unique(raw[(labels != raw) | (labels < 0) | (labels >= num_classes)])[:5].tolist()
        raise DatasetError(path, f"labels must be integers in 0..{num_classes - 1}, found {bad}")
    return RoomData(arr[:, :3].astype(np.float64), arr[:, 3:6].astype(np.float32), labels)


def label_histogram(labels: np.ndarray, num_classes: int = S3DIS_NUM_CLASSES) -> np.ndarray:
    """int64 ``[num_classes]`` point counts per class (official ``np.histogram(labels, range(14))``)."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)[:num_classes]


def label_weights(histogram: np.ndarray) -> np.ndarray:
    """Official class weights ``(max_c f_c / f_c) ** (1/3)`` in float32, ``f`` the class
    frequencies. A class with no point would get an infinite weight there; it gets 0 here (it
    never occurs as a target of the same split) and a warning."""
    h = np.asarray(histogram).astype(np.float32)
    if h.ndim != 1 or not h.size or h.sum() <= 0:
        raise ValueError(f"histogram must be a non-empty 1-D count vector with points, got {h.tolist()}")
    f = h / np.sum(h)
    with np.errstate(divide="ignore"):
        w = np.power(np.amax(f) / f, 1 / 3.0).astype(np.float32)
    absent = np.flatnonzero(h == 0)
    if absent.size:
        logger.warning("classes %s have no point in the split: their loss weight is 0 (official: inf)", absent.tolist())
        w[absent] = 0.0
    return w


class S3DIS(PointDataset):
    """Official S3DIS training/test blocks: items ``{"points": float32 [npoints, 3], "seg": int64 [npoints]}``.

    Args:
        root: the folder of ``Area_<k>_<room>.npy`` files.
        split: ``"train"`` (every area but ``test_area``) or ``"test"`` (``test_area``; random
            blocks, what ``main.py`` evaluates each epoch -- the whole-room test is
            :func:`act_zoo.train.tasks.semseg.evaluate_rooms`).
        test_area: the held-out area (5).
        npoints: points per block (2048).
        block_size: window side in metres (1.0).
        sample_rate: items per epoch = ``int(total points * sample_rate / npoints)`` (1.0).
        min_points: a window is redrawn until it holds more than this many points (1024).
        max_draws: give up (``DatasetError`` naming the room) after this many draws; the
            official loop would spin forever on a room without such a window.
        seed: None: fresh draws per access (official); int: fixed by ``(seed, epoch, index)``.
        transform: applied to ``points`` last (must keep the number and order of points).

    Rooms are held in memory (like the official code) as float32 xyz sorted by x plus uint8
    labels, 13 bytes a point; a window is found by binary search instead of a full scan.
    Attributes: ``rooms``, ``labelweights`` (float32 ``[13]``, :func:`label_weights` of the
    split), ``histogram``, ``room_idxs``.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        split: Literal["train", "test"] = "train",
        test_area: int = S3DIS_TEST_AREA,
        npoints: int = 2048,
        block_size: float = 1.0,
        sample_rate: float = 1.0,
        min_points: int = 1024,
        max_draws: int = 10_000,
        num_classes: int = S3DIS_NUM_CLASSES,
        seed: int | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform=transform, seed=seed)
        self.npoints = int(check_positive_int(npoints, "npoints"))  # type: ignore[arg-type]
        self.max_draws = int(check_positive_int(max_draws, "max_draws"))  # type: ignore[arg-type]
        if not block_size > 0 or not sample_rate > 0 or min_points < 0:
            raise ValueError(f"need block_size > 0, sample_rate > 0, min_points >= 0; got {block_size}, "
                             f"{sample_rate}, {min_points}")
        self.block_size, self.sample_rate, self.min_points = float(block_size), float(sample_rate), int(min_points)
        self.split, self.test_area = split, int(test_area)
        self.rooms = split_rooms(root, split, test_area=self.test_area)
        self._xyz: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self.histogram = np.zeros(num_classes, dtype=np.int64)
        for room in self.rooms:
            data = read_room(room.path, num_classes=num_classes)
            order = np.argsort(data.xyz[:, 0], kind="stable")
            self._xyz.append(np.ascontiguousarray(data.xyz[order], dtype=np.float32))
            self._labels.append(data.labels[order].astype(np.uint8))
            self.histogram += label_histogram(data.labels, num_classes)
        self.labelweights = label_weights(self.histogram)
        counts = np.array([len(x) for x in self._xyz], dtype=np.float64)
        share = counts / counts.sum()
        num_iter = int(counts.sum() * self.sample_rate / self.npoints)
        self.room_idxs = np.concatenate([np.full(round(s * num_iter), i, dtype=np.int64)
                                         for i, s in enumerate(share)] or [np.zeros(0, np.int64)])
        logger.info("S3DIS %s (test area %d): %d rooms, %d points, %d blocks per epoch", split, self.test_area,
                    len(self.rooms), int(counts.sum()), len(self.room_idxs))

    def __len__(self) -> int:
        return len(self.room_idxs)

    def window(self, room: int, center: np.ndarray) -> np.ndarray:
        """Indices of the points of room ``room`` in the ``block_size`` window around ``center``
        (official bounds: ``center -/+ block_size / 2`` in x and y, inclusive)."""
        xyz = self._xyz[room]
        h = self.block_size / 2.0
        a = np.searchsorted(xyz[:, 0], center[0] - h, side="left")
        b = np.searchsorted(xyz[:, 0], center[0] + h, side="right")
        y = xyz[a:b, 1]
        return a + np.flatnonzero((y >= center[1] - h) & (y <= center[1] + h))

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        room = int(self.room_idxs[index])
        xyz, labels = self._xyz[room], self._labels[room]
        rng = self.rng(index)
        for _ in range(self.max_draws):
            center = xyz[rng.integers(len(xyz))].astype(np.float64)
            idx = self.window(room, center)
            if idx.size > self.min_points:
                break
        else:
            raise DatasetError(self.rooms[room].path,
                               f"no {self.block_size} m window around a room point holds more than {self.min_points} "
                               f"points after {self.max_draws} draws (the room has {len(xyz)} points); lower min_points")
        pick = rng.choice(idx, self.npoints, replace=idx.size < self.npoints)
        pts = block_frame(xyz, pick, (center[0], center[1]))
        return {"points": self._to_tensor(pts), "seg": torch.from_numpy(labels[pick].astype(np.int64))}


# ----------------------------------------------------------------------------------------------
# act-zoo data check s3dis ROOT (registered in act_zoo.data.check.DATASETS)
# ----------------------------------------------------------------------------------------------
def check_s3dis(root: PathLike, report: Any, *, expect_counts: bool = True, samples: int = 8) -> None:
    """The ``act-zoo data check s3dis ROOT`` checker (see :func:`act_zoo.data.check.check_dataset`).

    Records into ``report`` (``good`` / ``warning`` / ``problem``): the room files per area
    against the official counts (a warning instead with ``expect_counts=False``); every file's
    ``.npy`` header (an ``[N, 7]`` numeric array whose data fits in the file) and the total
    points; the split (train areas, test area 5); and, for ``samples`` rooms spread over the
    list, a full read: finite values, integer labels in 0..12, the room minimum at the origin
    (what ``collect_indoor3d_data.py`` writes: z is the height above the floor)."""
    from .check import sample_indices

    root = Path(root)
    rooms = list_rooms(root)
    if not rooms:
        report.problem(f"{root}: no Area_<k>_<room>.npy files (run the official collect_indoor3d_data.py first)")
        return
    others = [p.name for p in root.iterdir() if p.is_file() and not ROOM_RE.match(p.name)]
    if others:
        report.warning(f"{len(others)} other files are ignored (e.g. {others[0]})")
    per_area: dict[int, int] = {}
    for room in rooms:
        per_area[room.area] = per_area.get(room.area, 0) + 1
    for area, want in S3DIS_ROOMS_PER_AREA.items():
        got = per_area.get(area, 0)
        role = "test" if area == S3DIS_TEST_AREA else "train"
        if got == want:
            report.good(f"Area_{area} ({role}): {got} rooms (official {want})")
        elif expect_counts:
            report.problem(f"Area_{area} ({role}): {got} rooms, the official release has {want} "
                           "(a partial download? --no-expect-counts accepts it)")
        else:
            report.warning(f"Area_{area} ({role}): {got} rooms, the official release has {want}")
    unknown = sorted(set(per_area) - set(S3DIS_ROOMS_PER_AREA))
    if unknown:
        report.problem(f"unknown areas {unknown} (S3DIS has Areas 1-6)")
    points, broken = 0, 0
    for room in rooms:
        try:
            points += _npy_rows(room.path)
        except DatasetError as exc:
            broken += 1
            report.problem(str(exc))
    if not broken:
        report.good(f"every room file is an [N, 7] array: {points:,} points in {len(rooms)} rooms")
    picked = [rooms[i] for i in sample_indices(len(rooms), samples)]
    histogram = np.zeros(S3DIS_NUM_CLASSES, dtype=np.int64)
    good = 0
    for room in picked:
        try:
            data = read_room(room.path)
        except DatasetError as exc:
            report.problem(str(exc))
            continue
        low = data.xyz.min(0)
        if np.abs(low).max() > _ORIGIN_TOL:
            report.problem(f"{room.path.name}: the room minimum is at {low.round(3).tolist()}, not the origin (not "
                           "preprocessed by collect_indoor3d_data.py; z must be the height above the room floor)")
            continue
        histogram += label_histogram(data.labels)
        good += 1
    if good:
        total = max(1, int(histogram.sum()))
        shares = ", ".join(f"{n} {100 * c / total:.1f}%" for n, c in zip(S3DIS_CLASSES, histogram) if c)
        report.good(f"read {good} of {len(rooms)} rooms (spread over the list): finite, labels in 0..12, "
                    f"minimum at the origin; classes: {shares}")


def _npy_rows(path: Path) -> int:
    """Rows of an ``[N, 7]`` ``.npy`` file, from its header only; errors name the file."""
    size = path.stat().st_size
    if size == 0:
        raise DatasetError(path, "is empty")
    with open(path, "rb") as fp:
        try:
            shape, _, dtype = _read_npy_header(fp, path)
        except DatasetError:
            raise
        except (ValueError, SyntaxError, TypeError, EOFError, OverflowError) as exc:
            raise DatasetError(path, f"not a valid .npy array header ({exc})") from exc
        header = fp.tell()
    if len(shape) != 2 or shape[1] != 7 or shape[0] == 0:
        raise DatasetError(path, f"expected an [N, 7] array (x y z r g b label), got shape {list(shape)}")
    if dtype.kind not in "fiu":
        raise DatasetError(path, f"holds {dtype} values, expected numbers")
    if header + shape[0] * 7 * dtype.itemsize > size:
        raise DatasetError(path, f"is truncated: its header declares {shape[0]} rows")
    return int(shape[0])
