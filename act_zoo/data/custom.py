"""Datasets of your own files: a class-per-folder tree or a CSV/JSON list of (path, label).

Every file goes through the one preparation path, :mod:`act_zoo.data.prepare` (the same
as ``extract_features``, ``predict`` and ``evaluate``): read (any supported point-cloud or
mesh format) -> validate -> normalise to the unit sphere in float64 (``pc_normalize``, by
default) -> resample to ``num_points`` (FPS or random; padding with repeats), with random
draws seeded by ``seed`` and the file's own values. Prepared clouds can be cached on disk
(``cache_dir``): one ``.npy`` per file, keyed by the file's path, size, modification time
and the preparation options, written atomically, so several workers or runs can share it.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ._common import PathLike, PointDataset, Transform, load_npy, read_text
from .errors import DatasetError
from .io import SUPPORTED_EXTENSIONS, files_under
from .prepare import CloudPreparer, as_dataset_error

__all__ = ["PointCloudFolder", "PointCloudList"]

logger = logging.getLogger(__name__)

_CACHE_VERSION = 2  # 2: the cache holds prepared (normalised) clouds


class _FileDataset(PointDataset):
    """Items ``(points [num_points, 3 (+extra)], label)`` from a list of ``(path, label)``."""

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        classes: list[str],
        *,
        num_points: int,
        sample: str,
        seed: int,
        keep_normals: bool,
        keep_colors: bool,
        normalize: bool,
        mesh_samples: int,
        cache_dir: PathLike | None,
        transform: Transform | None,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        super().__init__(transform=transform, seed=seed)
        self.samples = samples
        self.classes = classes
        self.class_to_idx = {c: i for i, c in enumerate(classes)}
        self.labels = np.array([label for _, label in samples], dtype=np.int64)
        self.preparer = CloudPreparer(num_points, sample, int(seed), bool(normalize), mesh_samples,
                                      bool(keep_normals), bool(keep_colors))  # fmt: skip
        self.num_points, self.sample = self.preparer.num_points, self.preparer.sample
        self.keep_normals, self.keep_colors = self.preparer.keep_normals, self.preparer.keep_colors
        self.normalize = self.preparer.normalize
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.samples)

    def _cache_file(self, path: Path) -> Path:
        st = path.stat()
        options = dataclasses.asdict(self.preparer)
        fields = [_CACHE_VERSION, str(path.resolve()), st.st_size, st.st_mtime_ns, options]
        key = json.dumps(fields, sort_keys=True)
        return self.cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"  # type: ignore[operator]

    def _prepare(self, path: Path) -> np.ndarray:
        try:
            return self.preparer(path).points
        except ValueError as exc:
            raise as_dataset_error(exc, str(path)) from exc

    def read(self, index: int) -> np.ndarray:
        """The prepared cloud of item ``index``: float32 ``[num_points, 3 (+3 +3)]`` (from the
        cache if set), before ``transform``."""
        path = self.samples[self._check_index(index)][0]
        if self.cache_dir is None:
            return self._prepare(path)
        if not path.is_file():
            raise DatasetError(path, "file not found")
        cached = self._cache_file(path)
        if cached.is_file():
            try:
                arr = load_npy(cached)
                if arr.dtype == np.float32 and arr.shape == (self.num_points, self.preparer.width):
                    return arr
            except DatasetError as exc:
                logger.warning("ignoring a bad cache file %s: %s", cached, exc)
        arr = self._prepare(path)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as fp:  # a file object: np.save would append ".npy" to a name
                np.save(fp, arr)
            os.replace(tmp, cached)
        except OSError as exc:
            logger.warning("cannot write cache file %s: %s", cached, exc)
        finally:
            if tmp.exists():
                tmp.unlink()
        return arr

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = self._check_index(index)
        return self._to_tensor(self.read(index)), int(self.labels[index])


class PointCloudFolder(_FileDataset):
    """A class-per-folder tree: ``root/<class>/**/<file>``; classes sorted by name.

    Args:
        root: the tree's root (one sub-folder per class; files may sit deeper).
        num_points: points per item (see :mod:`act_zoo.data.prepare`).
        sample: ``"fps"`` or ``"random"`` resampling.
        seed: seed of random subsets, padding and mesh sampling, mixed with each file's own
            values: an item is the same whatever the order, worker or epoch.
        keep_normals, keep_colors: append normals / colours as extra columns.
        normalize: ``pc_normalize`` the ``xyz`` of the whole file, in float64, before resampling.
        mesh_samples: points sampled by area from a mesh file before resampling.
        extensions: the file extensions to take (default: all supported).
        cache_dir: folder for cached resampled clouds (None: no cache).
        transform: applied to the points tensor last.

    Attributes:
        classes, class_to_idx, samples (``(path, label)``), labels.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        num_points: int = 1024,
        sample: Literal["fps", "random"] = "fps",
        seed: int = 0,
        keep_normals: bool = False,
        keep_colors: bool = False,
        normalize: bool = True,
        mesh_samples: int = 8192,
        extensions: Sequence[str] | None = None,
        cache_dir: PathLike | None = None,
        transform: Transform | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(self.root, "dataset folder not found")
        exts = {"." + e.lower().lstrip(".") for e in extensions or SUPPORTED_EXTENSIONS}
        unknown = sorted(exts - set(SUPPORTED_EXTENSIONS))
        if unknown:
            raise ValueError(f"unsupported extensions {unknown}; supported: {SUPPORTED_EXTENSIONS}")
        classes = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise DatasetError(self.root, "has no class sub-folders (expected root/<class>/<files>)")
        samples: list[tuple[Path, int]] = []
        for label, name in enumerate(classes):
            files = files_under(self.root / name, exts)
            if not files:
                logger.warning("class folder %s holds no supported files", self.root / name)
            samples += [(p, label) for p in files]
        if not samples:
            raise DatasetError(self.root, f"holds no files with extensions {sorted(exts)}")
        super().__init__(
            samples, classes, num_points=num_points, sample=sample, seed=seed, keep_normals=keep_normals,
            keep_colors=keep_colors, normalize=normalize, mesh_samples=mesh_samples, cache_dir=cache_dir,
            transform=transform,
        )  # fmt: skip


class PointCloudList(_FileDataset):
    """A CSV or JSON list of ``(path, label)``.

    Accepted layouts (relative paths are resolved against ``root``, default: the list's folder):

    * CSV: rows ``path,label``, with an optional header row (``path,label``);
    * JSON: ``[["a.ply", 0], ...]``, ``[{"path": "a.ply", "label": "chair"}, ...]`` or
      ``{"classes": [...], "samples": [...]}`` with either of those.

    Labels are all integers (used as they are) or all class names (numbered in the order
    of ``classes``, by default sorted).

    Args:
        list_file: the ``.csv`` or ``.json`` list.
        root: folder that relative paths start from.
        classes: class names in label order (for named labels, or to name integer labels).
        Other arguments: as :class:`PointCloudFolder`.
    """

    def __init__(
        self,
        list_file: PathLike,
        *,
        root: PathLike | None = None,
        classes: Sequence[str] | None = None,
        num_points: int = 1024,
        sample: Literal["fps", "random"] = "fps",
        seed: int = 0,
        keep_normals: bool = False,
        keep_colors: bool = False,
        normalize: bool = True,
        mesh_samples: int = 8192,
        cache_dir: PathLike | None = None,
        transform: Transform | None = None,
    ) -> None:
        self.list_file = Path(list_file)
        base = self.list_file.parent if root is None else Path(root)
        rows, listed_classes = _parse_list(self.list_file)
        if classes is None and listed_classes is not None:
            classes = listed_classes
        raw_labels = [lab for _, lab in rows]
        if all(isinstance(lab, int) for lab in raw_labels):
            labels = [int(lab) for lab in raw_labels]  # type: ignore[arg-type]
            if min(labels) < 0:
                raise DatasetError(self.list_file, "integer labels must be >= 0")
            names = list(classes) if classes is not None else [str(i) for i in range(max(labels) + 1)]
            if max(labels) >= len(names):
                raise DatasetError(
                    self.list_file, f"label {max(labels)} has no name among {len(names)} classes"
                )
        elif all(isinstance(lab, str) for lab in raw_labels):
            names = sorted(set(raw_labels)) if classes is None else list(classes)  # type: ignore[arg-type]
            index = {c: i for i, c in enumerate(names)}
            missing = sorted(set(raw_labels) - set(index))  # type: ignore[arg-type]
            if missing:
                raise DatasetError(self.list_file, f"labels {missing} are not in classes {names}")
            labels = [index[lab] for lab in raw_labels]  # type: ignore[index]
        else:
            raise DatasetError(self.list_file, "labels must be all integers or all class names")
        samples = []
        for (rel, _), label in zip(rows, labels):
            path = Path(rel) if Path(rel).is_absolute() else base / rel
            if not path.is_file():
                raise DatasetError(path, f"listed in {self.list_file} but not found")
            if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
                raise DatasetError(path, f"listed in {self.list_file} has an unsupported extension")
            samples.append((path, label))
        super().__init__(
            samples, names, num_points=num_points, sample=sample, seed=seed, keep_normals=keep_normals,
            keep_colors=keep_colors, normalize=normalize, mesh_samples=mesh_samples, cache_dir=cache_dir,
            transform=transform,
        )  # fmt: skip


def _label_value(value: Any, source: Path) -> int | str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DatasetError(source, f"label {value!r} is neither an integer nor a class name")
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        if not text:
            raise DatasetError(source, "has an empty label")
        return text
    return value


def _parse_list(path: Path) -> tuple[list[tuple[str, int | str]], list[str] | None]:
    text = read_text(path, "list file")
    ext = path.suffix.lower()
    classes: list[str] | None = None
    rows: list[tuple[str, int | str]] = []
    if ext == ".json":
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise DatasetError(path, f"is not valid JSON ({exc})") from exc
        if isinstance(obj, dict):
            classes = obj.get("classes")
            if classes is not None and not (
                isinstance(classes, list) and all(isinstance(c, str) for c in classes)
            ):
                raise DatasetError(path, "'classes' must be a list of names")
            obj = obj.get("samples")
        if not isinstance(obj, list):
            raise DatasetError(path, "must hold a list of samples (or {'samples': [...]})")
        for i, item in enumerate(obj):
            if isinstance(item, dict) and "path" in item and "label" in item:
                p, lab = item["path"], item["label"]
            elif isinstance(item, list) and len(item) == 2:
                p, lab = item
            else:
                raise DatasetError(
                    path, f"sample {i} is not [path, label] or {{'path', 'label'}}: {item!r:.80}"
                )
            if not isinstance(p, str) or not p:
                raise DatasetError(path, f"sample {i} has no path string")
            rows.append((p, _label_value(lab, path)))
    elif ext == ".csv":
        try:
            table = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise DatasetError(path, f"is not valid CSV ({exc})") from exc
        table = [r for r in table if any(c.strip() for c in r)]
        headers = (["path", "label"], ["file", "label"], ["filename", "label"])
        if table and [c.strip().lower() for c in table[0][:2]] in headers:
            table = table[1:]
        for i, r in enumerate(table):
            if len(r) < 2 or not r[0].strip():
                raise DatasetError(path, f"row {i + 1} is not 'path,label': {r!r:.80}")
            rows.append((r[0].strip(), _label_value(r[1], path)))
    else:
        raise DatasetError(path, "list files must be .csv or .json")
    if not rows:
        raise DatasetError(path, "lists no samples")
    return rows, classes
