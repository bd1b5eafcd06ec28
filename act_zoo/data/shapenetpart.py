"""ShapeNetPart (``shapenetcore_partanno_segmentation_benchmark_v0_normal``): 16 categories, 50 parts.

Layout::

    shapenetcore_partanno_segmentation_benchmark_v0_normal/
        synsetoffset2category.txt              "Airplane<TAB>02691156", one category a line
        train_test_split/shuffled_{train,val,test}_file_list.json
                                               ["shape_data/02691156/1a04e3eab45ca15dd86060f189eb133", ...]
        02691156/1a04e3eab45ca15dd86060f189eb133.txt     "x y z nx ny nz part" per line

Official semantics (``part_segmentation/dataset.py`` ``PartNormalDataset``, as ACT uses it):
``cls`` is the line of ``synsetoffset2category.txt`` (alphabetical: Airplane 0 ... Table 15),
kept even with ``class_choice``; items go category by category in that order, each
category's files sorted by name and filtered by the split's ids (``trainval`` = train + val);
``seg`` is the last column; ``pc_normalize`` is applied to ``xyz`` of the *whole* file; then
``npoints`` points are drawn *with replacement* (``np.random.choice``) from numpy's global
RNG (here: a ``seed``, None = fresh entropy).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .._shapenetpart import SHAPENETPART_NUM_PARTS, SHAPENETPART_SEG_CLASSES
from ._common import (
    PathLike,
    PointDataset,
    Transform,
    check_choice,
    check_cloud,
    check_positive_int,
    pc_normalize,
    read_lines,
    read_text,
)
from .errors import DatasetError
from .io import read_table

__all__ = ["SHAPENETPART_SEG_CLASSES", "ShapeNetPart"]

logger = logging.getLogger(__name__)

# official ``seg_classes`` (part labels of each category), shared with the part-segmentation model
NUM_PARTS = SHAPENETPART_NUM_PARTS


class ShapeNetPart(PointDataset):
    """ShapeNetPart for part segmentation: items ``{"points", "cls", "seg"}``.

    ``points`` float ``[npoints, 3]`` (``[npoints, 6]`` with normals), ``cls`` the category
    index (int), ``seg`` int64 ``[npoints]`` part labels in ``0..49``.

    Args:
        root: the ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` folder.
        split: ``"trainval"`` (ACT trains on it), ``"train"``, ``"val"`` or ``"test"``.
        npoints: points drawn per access, with replacement (ACT: 2048).
        use_normals: keep the normals (official ``normal_channel``).
        class_choice: keep only these category names (``cls`` keeps the full numbering).
        seed: None: fresh draws per access (official); int: fixed by ``(seed, epoch, index)``.
        transform: applied to ``points`` last; it must keep the number and order of points,
            or ``seg`` no longer matches.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        split: Literal["trainval", "train", "val", "test"] = "trainval",
        npoints: int = 2048,
        use_normals: bool = False,
        class_choice: list[str] | tuple[str, ...] | None = None,
        seed: int | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(transform=transform, seed=seed)
        check_choice(split, "split", ("trainval", "train", "val", "test"))
        self.root = Path(root)
        self.split = split
        self.npoints = int(check_positive_int(npoints, "npoints"))  # type: ignore[arg-type]
        self.use_normals = bool(use_normals)
        if not self.root.is_dir():
            raise DatasetError(self.root, "ShapeNetPart root folder not found")
        catfile = self.root / "synsetoffset2category.txt"
        self.categories: list[str] = []
        synsets: dict[str, str] = {}
        for line in read_lines(catfile, "category file"):
            words = line.split()
            if len(words) != 2:
                raise DatasetError(catfile, f"line {line!r} is not '<Category> <synset offset>'")
            self.categories.append(words[0])
            synsets[words[0]] = words[1]
        self.seg_classes = {c: SHAPENETPART_SEG_CLASSES.get(c, ()) for c in self.categories}
        chosen = self.categories
        if class_choice is not None:
            unknown = sorted(set(class_choice) - set(self.categories))
            if unknown:
                raise ValueError(f"class_choice {unknown} not in {self.categories}")
            chosen = [c for c in self.categories if c in set(class_choice)]
        wanted = ("train", "val") if split == "trainval" else (split,)
        ids: set[str] = set()
        for name in wanted:
            ids |= self._split_ids(name)
        self.datapath: list[tuple[str, Path]] = []
        for cat in chosen:
            folder = self.root / synsets[cat]
            if not folder.is_dir():
                raise DatasetError(folder, f"category folder of {cat} not found")
            for fn in sorted(p.name for p in folder.iterdir()):
                if fn.endswith(".txt") and fn[:-4] in ids:
                    self.datapath.append((cat, folder / fn))
        cls_of = {c: i for i, c in enumerate(self.categories)}
        self.labels = np.array([cls_of[c] for c, _ in self.datapath], dtype=np.int64)
        logger.info("ShapeNetPart %s: %d shapes", split, len(self))

    def _split_ids(self, name: str) -> set[str]:
        path = self.root / "train_test_split" / f"shuffled_{name}_file_list.json"
        try:
            entries = json.loads(read_text(path, "split file"))
        except json.JSONDecodeError as exc:
            raise DatasetError(path, f"is not valid JSON ({exc})") from exc
        valid = isinstance(entries, list) and all(isinstance(e, str) and e.count("/") >= 2 for e in entries)
        if not valid:
            raise DatasetError(path, "must be a JSON list of 'shape_data/<synset>/<id>' strings")
        return {e.split("/")[2] for e in entries}

    def __len__(self) -> int:
        return len(self.datapath)

    def load(self, index: int) -> tuple[np.ndarray, int, np.ndarray]:
        """File ``index`` as stored: (float32 ``[N, 6]`` xyz+normals, cls, int64 seg ``[N]``)."""
        cat, path = self.datapath[self._check_index(index)]
        table = read_table(path)
        if table.shape[1] != 7:
            raise DatasetError(path, f"expected 7 columns (x y z nx ny nz part), found {table.shape[1]}")
        data = check_cloud(table.astype(np.float32), path)
        seg_f = table[:, -1]
        seg = seg_f.astype(np.int64)
        if np.any(seg != seg_f) or seg.min() < 0 or seg.max() >= NUM_PARTS:
            raise DatasetError(path, f"part labels must be integers in 0..{NUM_PARTS - 1}")
        return data[:, :6], self.categories.index(cat), seg

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        data, cls, seg = self.load(index)
        points = data if self.use_normals else data[:, 0:3]
        points = points.copy()
        points[:, 0:3] = pc_normalize(points[:, 0:3])
        choice = self.rng(index).choice(len(seg), self.npoints, replace=True)
        return {
            "points": self._to_tensor(points[choice]),
            "cls": int(cls),
            "seg": torch.from_numpy(seg[choice]),
        }
