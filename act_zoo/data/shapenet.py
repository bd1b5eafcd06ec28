"""ShapeNet-55 (the Point-BERT release ACT pretrains on): unlabelled clouds.

Layout (official ``DATASET.md``)::

    ShapeNet55-34/
        ShapeNet-55/train.txt, test.txt        lines like 02691156-1a04e3eab45ca15dd86060f189eb133.npy
        shapenet_pc/02691156-1a04....npy       [8192, 3] points per model

Official semantics (ACT ``datasets/ShapeNet55Dataset.py``): files in list order (``whole``
puts the ``test.txt`` lines first, then the split's, as the pretraining config does);
``taxonomy_id``/``model_id`` are the name before/after the first ``-``; each access draws
``npoints`` points without replacement (``np.random.shuffle`` of a permutation, then its
first ``npoints``) and *then* applies ``pc_norm`` (centroid, max radius) to those points.

Differences: randomness from a ``seed`` (None: fresh entropy) instead of numpy's global
state; the permutation covers the file's own point count (the official one assumes 8192);
only the first three columns are used if a file has more.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._common import (
    PathLike,
    PointDataset,
    Transform,
    check_choice,
    check_cloud,
    check_positive_int,
    load_npy,
    pc_normalize,
    read_lines,
)
from .errors import DatasetError

__all__ = ["ShapeNet55"]

logger = logging.getLogger(__name__)

_PC_DIRS = ("shapenet_pc", "shapenet_pc_masksurf_with_normal")


class ShapeNet55(PointDataset):
    """ShapeNet-55 point clouds for pretraining.

    Items are ``points`` (float tensor ``[npoints, 3]``) by default, or with
    ``return_dict=True`` a dict ``{"points", "taxonomy_id", "model_id"}``.

    Args:
        root: the ``ShapeNet55-34`` folder (holding ``ShapeNet-55/`` and ``shapenet_pc/``).
        split: ``"train"`` or ``"test"``.
        npoints: points drawn per access (the ACT pretraining config uses 1024).
        whole: prepend the ``test.txt`` models to the split's (official pretraining: True).
        pc_dir: the point folder under ``root`` (default: ``shapenet_pc``, else
            ``shapenet_pc_masksurf_with_normal``).
        list_dir: the split-list folder under ``root``.
        return_dict: return dicts with the ids instead of bare points.
        seed: None: a fresh random subset per access (official); int: fixed by
            ``(seed, epoch, index)``, see :meth:`set_epoch`.
        transform: applied to the points tensor last.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        split: Literal["train", "test"] = "train",
        npoints: int = 1024,
        whole: bool = False,
        pc_dir: str | None = None,
        list_dir: str = "ShapeNet-55",
        return_dict: bool = False,
        seed: int | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform=transform, seed=seed)
        check_choice(split, "split", ("train", "test"))
        self.root = Path(root)
        self.split = split
        self.npoints = int(check_positive_int(npoints, "npoints"))  # type: ignore[arg-type]
        self.whole = bool(whole)
        self.return_dict = bool(return_dict)
        if not self.root.is_dir():
            raise DatasetError(self.root, "ShapeNet55 root folder not found (expected ShapeNet55-34/)")
        if pc_dir is None:
            pc_dir = next((d for d in _PC_DIRS if (self.root / d).is_dir()), _PC_DIRS[0])
        self.pc_path = self.root / pc_dir
        if not self.pc_path.is_dir():
            raise DatasetError(self.pc_path, "point-cloud folder not found")
        lines = read_lines(self.root / list_dir / f"{split}.txt")
        if self.whole:
            lines = read_lines(self.root / list_dir / "test.txt") + lines
        self.files: list[str] = []
        self.taxonomy_ids: list[str] = []
        self.model_ids: list[str] = []
        for line in lines:
            parts = line.split("-")
            if len(parts) < 2 or not parts[0] or not parts[1]:
                raise DatasetError(
                    self.root / list_dir, f"list line {line!r} is not '<taxonomy>-<model>.npy'"
                )
            self.files.append(line)
            self.taxonomy_ids.append(parts[0])
            self.model_ids.append(parts[1].split(".")[0])
        logger.info("ShapeNet55 %s%s: %d models", split, " (whole)" if whole else "", len(self.files))

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> np.ndarray:
        """The stored points of model ``index`` (float32 ``[N, 3]``), unsampled and unnormalised."""
        path = self.pc_path / self.files[self._check_index(index)]
        points = load_npy(path)
        if points.dtype.kind not in "fiu" or points.ndim != 2 or points.shape[1] < 3:
            raise DatasetError(
                path, f"expected a numeric [N, 3] array, got {points.dtype} {list(points.shape)}"
            )
        return check_cloud(points[:, :3].astype(np.float32), path)

    def __getitem__(self, index: int) -> Any:
        index = self._check_index(index)
        data = self.load(index)
        if data.shape[0] < self.npoints:
            path = self.pc_path / self.files[index]
            raise DatasetError(path, f"has {data.shape[0]} points, fewer than npoints={self.npoints}")
        data = data[self.rng(index).permutation(data.shape[0])[: self.npoints]]
        points = self._to_tensor(pc_normalize(data))
        if self.return_dict:
            return {
                "points": points,
                "taxonomy_id": self.taxonomy_ids[index],
                "model_id": self.model_ids[index],
            }
        return points
