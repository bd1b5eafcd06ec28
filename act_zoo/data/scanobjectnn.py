"""ScanObjectNN (Uy et al. 2019): the three variants ACT reports, read from the official h5 files.

Layout (the official download, ``h5_files/`` may be the root itself)::

    ScanObjectNN/
        main_split/                                        OBJ_BG and PB_T50_RS
            training_objectdataset.h5, test_objectdataset.h5
            training_objectdataset_augmentedrot_scale75.h5, test_objectdataset_augmentedrot_scale75.h5
        main_split_nobg/                                   OBJ_ONLY
            training_objectdataset.h5, test_objectdataset.h5

Official semantics (ACT ``datasets/ScanObjectNNDataset.py``): ``data`` ``[M, 2048, 3]`` read
as float32 without any normalisation, ``label`` ``[M]`` as int; items in file order; the
train split shuffles the point order of each item with numpy's global RNG (here:
``shuffle_points`` with a ``seed``, see :class:`~act_zoo.data.ModelNet40`). ``npoints``
below 2048 is taken with the official ``misc.fps`` (``sample="fps"``) or as a prefix.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ._common import (
    PathLike,
    PointDataset,
    Transform,
    check_choice,
    check_cloud,
    check_positive_int,
    require,
    subsample,
)
from .errors import DatasetError

__all__ = ["SCANOBJECTNN_CLASSES", "ScanObjectNN"]

logger = logging.getLogger(__name__)

#: class names in label order (the ScanObjectNN ``shape_names.txt``)
SCANOBJECTNN_CLASSES: tuple[str, ...] = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door",
    "shelf", "table", "bed", "pillow", "sink", "sofa", "toilet",
)  # fmt: skip

_VARIANTS = {
    "OBJ_BG": ("main_split", "objectdataset"),
    "OBJ_ONLY": ("main_split_nobg", "objectdataset"),
    "PB_T50_RS": ("main_split", "objectdataset_augmentedrot_scale75"),
}
# a dataset may declare at most this many times more bytes than its file holds (compression)
_MAX_INFLATE = 64


def scanobjectnn_file(root: PathLike, variant: str, split: str) -> Path:
    """The h5 file of a variant and split under ``root`` (``root`` or ``root/h5_files``)."""
    check_choice(variant, "variant", tuple(_VARIANTS))
    check_choice(split, "split", ("train", "test"))
    folder, stem = _VARIANTS[variant]
    name = f"{'training' if split == 'train' else 'test'}_{stem}.h5"
    root = Path(root)
    for base in (root, root / "h5_files"):
        if (base / folder).is_dir():
            return base / folder / name
    return root / folder / name


class ScanObjectNN(PointDataset):
    """ScanObjectNN ``OBJ_BG`` / ``OBJ_ONLY`` / ``PB_T50_RS``: items ``(points [N, 3], label)``.

    Args:
        root: the folder holding ``main_split/`` and ``main_split_nobg/`` (or ``h5_files/``).
        variant: ``"PB_T50_RS"`` (hardest), ``"OBJ_BG"`` or ``"OBJ_ONLY"``.
        split: ``"train"`` or ``"test"``.
        npoints: points per item; None keeps all (2048, the official finetune setting).
        sample: ``"fps"`` (official ``misc.fps``, exact) or ``"first"`` for ``npoints`` < stored.
        in_memory: read the whole ``data`` array at construction (official). False reads one
            item at a time from an h5 handle opened lazily in each process (never pickled).
        shuffle_points: shuffle each item's point order (official: train only; None = official).
        seed: None: fresh entropy per access; int: shuffles fixed by ``(seed, epoch, index)``.
        transform: applied to the points tensor last.

    Attributes:
        classes: the 15 class names. labels: ``[M]`` int64. path: the h5 file.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        variant: Literal["PB_T50_RS", "OBJ_BG", "OBJ_ONLY"] = "PB_T50_RS",
        split: Literal["train", "test"] = "train",
        npoints: int | None = None,
        sample: Literal["fps", "first"] = "fps",
        in_memory: bool = True,
        shuffle_points: bool | None = None,
        seed: int | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform=transform, seed=seed)
        self.path = scanobjectnn_file(root, variant, split)
        self.variant, self.split = variant, split
        self.npoints = check_positive_int(npoints, "npoints", allow_none=True)
        self.sample = check_choice(sample, "sample", ("fps", "first"))
        self.shuffle_points = (split == "train") if shuffle_points is None else bool(shuffle_points)
        self.in_memory = bool(in_memory)
        self.classes = list(SCANOBJECTNN_CLASSES)
        self._h5: Any = None
        self._h5_pid: int | None = None
        if not self.path.is_file():
            raise DatasetError(self.path, f"ScanObjectNN {variant} {split} file not found")
        h5py = require("h5py", "reading ScanObjectNN")
        try:
            with h5py.File(self.path, "r") as f:
                data, label = self._datasets(f)
                self.num_points = int(data.shape[1])
                labels = np.asarray(label[()])
                self._points = np.asarray(data[()], dtype=np.float32) if self.in_memory else None
        except DatasetError:
            raise
        except Exception as exc:  # h5py raises OSError/KeyError/ValueError on garbage
            problem = f"is not a readable ScanObjectNN h5 file ({type(exc).__name__}: {exc})"
            raise DatasetError(self.path, problem) from exc
        kind = labels.dtype.kind
        integral = kind in "iu" or (kind == "f" and bool(np.all(labels == np.round(labels))))
        if not integral:
            raise DatasetError(self.path, f"'label' must hold integers, got {labels.dtype}")
        self.labels = labels.reshape(-1).astype(np.int64)
        if self.labels.size and self.labels.min() < 0:
            raise DatasetError(self.path, "'label' holds negative values")
        if self.npoints is not None and self.npoints > self.num_points:
            raise ValueError(
                f"npoints={self.npoints} exceeds the {self.num_points} points per item in {self.path}"
            )
        logger.info("ScanObjectNN %s %s: %d items of %d points", variant, split, len(self), self.num_points)

    def _datasets(self, f: Any) -> tuple[Any, Any]:
        """Validate and return the ``data`` and ``label`` h5 datasets."""
        for key in ("data", "label"):
            if key not in f:
                raise DatasetError(self.path, f"has no {key!r} dataset (keys: {sorted(f.keys())})")
        data, label = f["data"], f["label"]
        if not hasattr(data, "shape") or len(data.shape) != 3 or data.shape[2] != 3 or data.shape[1] < 1:
            shape = getattr(data, "shape", None)
            raise DatasetError(self.path, f"'data' must have shape [M, N, 3], got {shape}")
        if data.dtype.kind not in "fiu":
            raise DatasetError(self.path, f"'data' must be numeric, got {data.dtype}")
        if not hasattr(label, "shape") or label.shape not in ((data.shape[0],), (data.shape[0], 1)):
            raise DatasetError(
                self.path,
                f"'label' must have shape [{data.shape[0]}] to match 'data', "
                f"got {getattr(label, 'shape', None)}",
            )
        declared = int(np.prod(data.shape)) * data.dtype.itemsize
        if declared > _MAX_INFLATE * max(self.path.stat().st_size, 1 << 20):
            raise DatasetError(self.path, f"'data' declares {declared} bytes, far more than the file holds")
        return data, label

    def __len__(self) -> int:
        return len(self.labels)

    def _item_points(self, index: int) -> np.ndarray:
        if self._points is not None:
            return self._points[index]
        if self._h5 is None or self._h5_pid != os.getpid():  # lazily, once per process (fork copies it)
            h5py = require("h5py", "reading ScanObjectNN")
            self._h5 = h5py.File(self.path, "r")
            self._h5_pid = os.getpid()
        try:
            return np.asarray(self._h5["data"][index], dtype=np.float32)
        except Exception as exc:
            raise DatasetError(self.path, f"cannot read item {index} ({type(exc).__name__}: {exc})") from exc

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = self._check_index(index)
        points = check_cloud(np.array(self._item_points(index), dtype=np.float32), f"{self.path}[{index}]")
        if self.shuffle_points:
            points = points[self.rng(index).permutation(points.shape[0])]
        if self.npoints is not None:
            points = subsample(points, self.npoints, self.sample)
        return self._to_tensor(points), int(self.labels[index])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"] = state["_h5_pid"] = None  # an open h5 handle never crosses a pickle
        return state

    def close(self) -> None:
        """Close the lazily opened h5 handle (``in_memory=False``), if any."""
        if self._h5 is not None and self._h5_pid == os.getpid():
            self._h5.close()
        self._h5 = self._h5_pid = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
