"""ModelNet40 (``modelnet40_normal_resampled``) and its official few-shot splits.

Layouts (as in the official ``DATASET.md``)::

    modelnet40_normal_resampled/              ModelNetFewshot/
        modelnet40_shape_names.txt                5way_10shot/0.pkl ... 9.pkl
        modelnet40_train.txt / _test.txt          5way_20shot/ 10way_10shot/ 10way_20shot/
        airplane/airplane_0001.txt ...
        modelnet40_train_8192pts_fps.dat          (pickle: [points list, labels list])
        modelnet40_test_8192pts_fps.dat

Official semantics reproduced (Point-BERT / Point-MAE ``ModelNetDataset.py`` and
``ModelNetDatasetFewShot.py``, used unchanged by ACT):

* items are in the order of ``modelnet40_{split}.txt``; the class of ``night_stand_0001``
  is everything before the last ``_``; its index is the line of ``modelnet40_shape_names.txt``;
* the ``.dat`` pickles hold, per shape, the 8192 points (``x y z nx ny nz``, float32) that
  numpy farthest point sampling picked from the 10 000 of the ``.txt`` file, in FPS order;
* ``pc_normalize`` (centroid, max radius) is applied to ``xyz`` of those 8192 points;
  normals are dropped unless ``use_normals``;
* the finetune runner then takes ``npoints`` with the CUDA FPS kernel (``misc.fps``): here
  ``npoints`` + ``sample="fps"`` does exactly that through :mod:`act_zoo.ops`;
  ``sample="first"`` takes the first ``npoints`` of the FPS order instead (nearly the same,
  much faster);
* the train split shuffles the point order per access (``shuffle_points``, see below).

Differences, on purpose: pickles are read only with ``allow_pickle=True`` (and then through
an unpickler that only builds numpy arrays), or converted once to a pickle-free ``.npz``
with :func:`convert_modelnet_pickle`; randomness comes from a ``seed`` instead of numpy's
global state; the FPS start of the ``.txt`` path is seeded (officially
``np.random.randint``).
"""

from __future__ import annotations

import logging
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
    check_seed,
    fps_numpy,
    load_npz,
    pc_normalize,
    read_lines,
    save_npz_atomic,
    subsample,
)
from ._pickle import load_data_pickle
from .errors import DatasetError
from .io import read_table

__all__ = ["ModelNet40", "ModelNet40FewShot", "convert_modelnet_pickle"]

logger = logging.getLogger(__name__)

#: points per shape in the official preprocessed files
FPS_POINTS = 8192
_FORMAT = "act_zoo.modelnet_points.v1"
_CONVERT_HINT = "convert it once with act_zoo.data.convert_modelnet_pickle(path), or pass allow_pickle=True"


# ----------------------------------------------------------------------------- packed arrays


class _Packed:
    """Clouds of possibly different sizes, stored as one ``[sum N, C]`` array and offsets."""

    def __init__(self, points: np.ndarray, offsets: np.ndarray, source: PathLike) -> None:
        if points.ndim != 2 or points.shape[1] < 3 or points.dtype.kind != "f":
            raise DatasetError(
                source, f"points must be a float [N, 3+] array, got {points.dtype} {list(points.shape)}"
            )
        if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(points):
            raise DatasetError(source, "offsets do not partition the points array")
        if np.any(np.diff(offsets) < 0):
            raise DatasetError(source, "offsets are not increasing")
        self.points = points
        self.offsets = offsets.astype(np.int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.points[self.offsets[i] : self.offsets[i + 1]]

    @classmethod
    def from_list(cls, clouds: list[Any], source: PathLike) -> _Packed:
        arrays = []
        for i, c in enumerate(clouds):
            a = np.asarray(c)
            if a.ndim != 2 or a.shape[1] < 3 or a.dtype.kind not in "fiu" or a.shape[0] == 0:
                raise DatasetError(
                    source, f"cloud {i} is not a non-empty numeric [N, 3+] array: {a.dtype} {a.shape}"
                )
            arrays.append(a.astype(np.float32, copy=False))
        widths = {a.shape[1] for a in arrays}
        if len(widths) > 1:
            raise DatasetError(source, f"clouds have different numbers of channels: {sorted(widths)}")
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([len(a) for a in arrays], out=offsets[1:])
        points = np.concatenate(arrays) if arrays else np.zeros((0, 3), np.float32)
        return cls(points, offsets, source)


def _int_label(value: Any, source: PathLike, i: int) -> int:
    a = np.asarray(value)
    if a.dtype.kind not in "iu" or a.size != 1:
        raise DatasetError(source, f"label {i} is not a single integer: {a!r}")
    return int(a.reshape(()))


def _episode_labels(items: list[tuple[Any, ...]], source: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(episode labels, original class ids or -1) of few-shot ``(points, label, class)`` tuples."""
    labels = np.array([_int_label(t[1], source, i) for i, t in enumerate(items)], dtype=np.int64)
    class_ids = [_int_label(t[2], source, i) if len(t) > 2 else -1 for i, t in enumerate(items)]
    return labels, np.array(class_ids, dtype=np.int64)


# ----------------------------------------------------------------------------- converter


def _convert_one(src: Path, dst: Path | None, overwrite: bool) -> Path:
    dst = src.with_suffix(".npz") if dst is None else dst
    if dst.exists() and not overwrite:
        logger.info("%s exists; not converting %s again (overwrite=True to redo)", dst, src)
        return dst
    obj = load_data_pickle(src)
    arrays: dict[str, np.ndarray] = {"format": np.array(_FORMAT)}
    if isinstance(obj, (list, tuple)) and len(obj) >= 2 and isinstance(obj[0], list):  # ModelNet .dat
        clouds, labels = obj[0], obj[1]
        if not isinstance(labels, list) or len(labels) != len(clouds):
            raise DatasetError(src, "is not a ModelNet [points, labels] pickle (lists of different lengths)")
        packed = _Packed.from_list(clouds, src)
        arrays.update(
            kind=np.array("modelnet"),
            points=packed.points,
            offsets=packed.offsets,
            labels=np.array([_int_label(v, src, i) for i, v in enumerate(labels)], dtype=np.int64),
        )
    elif isinstance(obj, dict) and {"train", "test"} <= set(obj):  # few-shot: {split: [(points, label, cls)]}
        arrays["kind"] = np.array("fewshot")
        for split in ("train", "test"):
            items = obj[split]
            if not isinstance(items, list) or not all(isinstance(t, tuple) and len(t) >= 2 for t in items):
                raise DatasetError(src, f"{split!r} is not a list of (points, label, class) tuples")
            packed = _Packed.from_list([t[0] for t in items], src)
            arrays[f"{split}_points"] = packed.points
            arrays[f"{split}_offsets"] = packed.offsets
            labels, class_ids = _episode_labels(items, src)
            arrays[f"{split}_labels"] = labels
            arrays[f"{split}_classes"] = class_ids
    else:
        raise DatasetError(
            src, f"is neither a ModelNet .dat nor a few-shot pickle (top level: {type(obj).__name__})"
        )
    save_npz_atomic(dst, arrays)
    logger.info("converted %s -> %s", src, dst)
    return dst


def convert_modelnet_pickle(
    src: PathLike, dst: PathLike | None = None, *, overwrite: bool = False
) -> Path | list[Path]:
    """Convert official ModelNet pickles to pickle-free ``.npz`` files, once.

    Handles the preprocessed ``modelnet40_{split}_8192pts_fps.dat`` files and the few-shot
    ``{way}way_{shot}shot/{fold}.pkl`` files. This unpickles ``src`` (through a restricted
    unpickler that only builds numpy arrays), so run it on files from a source you trust;
    afterwards :class:`ModelNet40` and :class:`ModelNet40FewShot` read the ``.npz`` without
    ``allow_pickle``.

    Args:
        src: a ``.dat``/``.pkl`` file, or a folder: then every ``*.dat`` and ``*.pkl`` below it
            is converted next to itself (``dst`` must be None).
        dst: output file (default: ``src`` with the suffix ``.npz``).
        overwrite: convert again even when the output exists.

    Returns:
        The ``.npz`` path, or the list of them for a folder.
    """
    src = Path(src)
    if src.is_dir():
        if dst is not None:
            raise ValueError("dst must be None when src is a folder")
        files = sorted([*src.rglob("*.dat"), *src.rglob("*.pkl")])
        if not files:
            raise DatasetError(src, "holds no .dat or .pkl files to convert")
        return [_convert_one(f, None, overwrite) for f in files]
    if not src.exists():
        raise DatasetError(src, "file not found")
    return _convert_one(src, None if dst is None else Path(dst), overwrite)


def _load_converted(path: Path, kind: str, prefix: str = "") -> tuple[_Packed, dict[str, np.ndarray]]:
    keys = ["format", "kind", f"{prefix}points", f"{prefix}offsets", f"{prefix}labels"]
    if kind == "fewshot":
        keys.append(f"{prefix}classes")
    arrays = load_npz(path, keys)
    if str(arrays["format"]) != _FORMAT or str(arrays["kind"]) != kind:
        found = f"format {arrays['format']}, kind {arrays['kind']}"
        raise DatasetError(path, f"is not an act_zoo {kind} cache ({found})")
    packed = _Packed(arrays[f"{prefix}points"], arrays[f"{prefix}offsets"], path)
    labels = arrays[f"{prefix}labels"]
    if labels.shape != (len(packed),) or labels.dtype.kind not in "iu":
        raise DatasetError(path, f"labels have shape {list(labels.shape)}, expected [{len(packed)}]")
    return packed, arrays


# ----------------------------------------------------------------------------- shared item logic


class _ModelNetBase(PointDataset):
    """Normalise -> (shuffle) -> subsample -> drop normals -> transform, on a stored cloud."""

    def __init__(
        self,
        *,
        split: str,
        npoints: int | None,
        sample: str,
        use_normals: bool,
        shuffle_points: bool | None,
        seed: int | None,
        transform: Transform | None,
    ) -> None:
        super().__init__(transform=transform, seed=seed)
        self.split = split
        self.npoints: int | None = check_positive_int(npoints, "npoints", allow_none=True)
        self.sample = check_choice(sample, "sample", ("fps", "first"))
        self.use_normals = bool(use_normals)
        self.shuffle_points = (split == "train") if shuffle_points is None else bool(shuffle_points)

    def _process(self, raw: np.ndarray, index: int, source: PathLike) -> torch.Tensor:
        points = np.array(raw, dtype=np.float32)  # a copy, never a view of the store
        check_cloud(points, source)
        if self.npoints is not None and points.shape[0] < self.npoints:
            raise DatasetError(
                source, f"item {index} has {points.shape[0]} points, fewer than npoints={self.npoints}"
            )
        if self.use_normals and points.shape[1] < 6:
            raise DatasetError(
                source, f"item {index} has no normals (shape {list(points.shape)}), use_normals=True"
            )
        points[:, 0:3] = pc_normalize(points[:, 0:3])
        if self.shuffle_points:
            points = points[self.rng(index).permutation(points.shape[0])]
        if self.npoints is not None:
            points = subsample(points, self.npoints, self.sample)
        points = points[:, 0:6] if self.use_normals else points[:, 0:3]
        return self._to_tensor(points)


# ----------------------------------------------------------------------------- ModelNet40


class ModelNet40(_ModelNetBase):
    """ModelNet40 (or ModelNet10) from ``modelnet40_normal_resampled``: items ``(points, label)``.

    Args:
        root: the ``modelnet40_normal_resampled`` folder.
        split: ``"train"`` or ``"test"``.
        npoints: points per item; None keeps all ``fps_points`` (the official dataset output;
            the finetune configs then take 1024 with the runner's FPS). At most ``fps_points``.
        sample: how ``npoints < fps_points`` are taken: ``"fps"`` (the official ``misc.fps``
            on the normalised cloud, exact) or ``"first"`` (prefix of the FPS order, fast).
        use_normals: return ``[N, 6]`` with the normals (official ``USE_NORMALS``).
        source: ``"auto"`` (the ``.npz`` cache, else the ``.dat`` if ``allow_pickle``, else the
            ``.txt`` files when there is no ``.dat``), ``"npz"``, ``"dat"`` or ``"txt"``.
        allow_pickle: permit reading the official ``.dat`` pickles.
        num_category: 40 or 10 (``modelnet10_*`` lists and caches).
        shuffle_points: shuffle the point order of each item before subsampling (official:
            train split only, which moves the start of the runner's FPS). None: official.
        seed: None draws shuffles from fresh entropy (like the official global RNG); an int
            makes them a function of ``(seed, epoch, index)`` (see :meth:`set_epoch`).
        fps_points: points kept by the official FPS preprocessing (config ``N_POINTS``, 8192);
            it also names the files ``modelnet40_{split}_{fps_points}pts_fps.{dat,npz}``.
        fps_seed: seeds the FPS start point of the ``.txt`` source (item ``i`` starts at
            ``default_rng([fps_seed, i]).integers(N)``); officially ``np.random.randint``.
        transform: applied to the points tensor last.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        split: Literal["train", "test"] = "train",
        npoints: int | None = None,
        sample: Literal["fps", "first"] = "fps",
        use_normals: bool = False,
        source: Literal["auto", "npz", "dat", "txt"] = "auto",
        allow_pickle: bool = False,
        num_category: Literal[40, 10] = 40,
        shuffle_points: bool | None = None,
        seed: int | None = None,
        fps_points: int = FPS_POINTS,
        fps_seed: int = 0,
        transform: Transform | None = None,
    ) -> None:
        check_choice(split, "split", ("train", "test"))
        check_choice(source, "source", ("auto", "npz", "dat", "txt"))
        check_choice(num_category, "num_category", (40, 10))
        super().__init__(
            split=split, npoints=npoints, sample=sample, use_normals=use_normals,
            shuffle_points=shuffle_points, seed=seed, transform=transform,
        )  # fmt: skip
        self.root = Path(root)
        self.num_category = num_category
        self.fps_seed = int(check_seed(fps_seed, "fps_seed"))  # type: ignore[arg-type]
        self.fps_points = int(check_positive_int(fps_points, "fps_points"))  # type: ignore[arg-type]
        if self.npoints is not None and self.npoints > self.fps_points:
            raise ValueError(f"npoints={self.npoints} exceeds fps_points={self.fps_points}")
        if not self.root.is_dir():
            raise DatasetError(
                self.root, "ModelNet root folder not found (expected modelnet40_normal_resampled/)"
            )
        prefix = f"modelnet{num_category}"
        self.classes: list[str] = read_lines(self.root / f"{prefix}_shape_names.txt", "shape-names file")
        class_index = {name: i for i, name in enumerate(self.classes)}
        split_file = self.root / f"{prefix}_{split}.txt"
        self.shape_ids: list[str] = read_lines(split_file, "split file")
        labels = []
        for sid in self.shape_ids:
            name = "_".join(sid.split("_")[:-1])
            if name not in class_index:
                raise DatasetError(
                    split_file, f"shape id {sid!r} names class {name!r}, not in the shape-names file"
                )
            labels.append(class_index[name])
        self.labels = np.asarray(labels, dtype=np.int64)

        stem = f"{prefix}_{split}_{self.fps_points}pts_fps"
        npz, dat = self.root / f"{stem}.npz", self.root / f"{stem}.dat"
        auto = source == "auto"
        if auto:
            source = "npz" if npz.is_file() else "dat" if dat.exists() and allow_pickle else "txt"
            if source == "txt" and dat.exists():
                raise DatasetError(
                    dat, f"is a pickle and allow_pickle=False; {_CONVERT_HINT}, or pass source='txt'"
                )
        if source == "txt" and self.shape_ids and not self._txt_path(self.shape_ids[0]).is_file():
            missing = self._txt_path(self.shape_ids[0])
            if auto:
                raise DatasetError(
                    self.root,
                    f"has neither {npz.name}, {dat.name} nor the shape .txt files ({missing} is missing)",
                )
            raise DatasetError(missing, "shape file not found")
        self.source = source
        self._packed: _Packed | None = None
        self._store_path: Path = self.root
        if source == "npz":
            self._packed, arrays = _load_converted(npz, "modelnet")
            self._store_path = npz
            stored = arrays["labels"].astype(np.int64)
        elif source == "dat":
            if not allow_pickle:
                raise DatasetError(dat, f"is a pickle and allow_pickle=False; {_CONVERT_HINT}")
            obj = load_data_pickle(dat)
            if not (isinstance(obj, (list, tuple)) and len(obj) >= 2 and isinstance(obj[0], list)):
                raise DatasetError(dat, "is not a ModelNet [points, labels] pickle")
            if not isinstance(obj[1], list) or len(obj[1]) != len(obj[0]):
                raise DatasetError(dat, "holds points and labels lists of different lengths")
            self._packed = _Packed.from_list(obj[0], dat)
            self._store_path = dat
            stored = np.array([_int_label(v, dat, i) for i, v in enumerate(obj[1])], dtype=np.int64)
        else:
            stored = None  # the .txt files are read (and checked) item by item
        if stored is not None:
            if len(stored) != len(self.shape_ids):
                raise DatasetError(
                    self._store_path,
                    f"holds {len(stored)} shapes but {split_file.name} lists {len(self.shape_ids)}",
                )
            if not np.array_equal(stored, self.labels):
                bad = int(np.flatnonzero(stored != self.labels)[0])
                raise DatasetError(
                    self._store_path,
                    f"label {stored[bad]} of item {bad} disagrees with {split_file.name} "
                    f"({self.shape_ids[bad]})",
                )
            sizes = np.diff(self._packed.offsets)  # type: ignore[union-attr]
            if len(sizes) and self.npoints is not None and self.npoints > int(sizes.min()):
                raise ValueError(
                    f"npoints={self.npoints} exceeds the {int(sizes.min())} points stored per shape"
                )
        logger.info("ModelNet%d %s: %d shapes from %s", num_category, split, len(self), self.source)

    def _txt_path(self, shape_id: str) -> Path:
        return self.root / "_".join(shape_id.split("_")[:-1]) / f"{shape_id}.txt"

    def __len__(self) -> int:
        return len(self.shape_ids)

    def load_txt_fps(self, index: int) -> np.ndarray:
        """The official preprocessing of one shape: its ``.txt`` (``x,y,z,nx,ny,nz``, float32),
        then numpy FPS to ``fps_points`` from a start seeded by ``(fps_seed, index)``."""
        npoints = self.fps_points
        path = self._txt_path(self.shape_ids[index])
        cloud = check_cloud(read_table(path).astype(np.float32), path)
        if cloud.shape[0] < npoints:
            raise DatasetError(path, f"has {cloud.shape[0]} points, fewer than the {npoints} to sample")
        start = int(np.random.default_rng([self.fps_seed, index]).integers(cloud.shape[0]))
        return cloud[fps_numpy(cloud[:, :3], npoints, start=start)]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = self._check_index(index)
        if self._packed is not None:
            raw = self._packed[index]
            source: PathLike = f"{self._store_path}[{index}]"
        else:
            raw = self.load_txt_fps(index)
            source = self._txt_path(self.shape_ids[index])
        return self._process(raw, index, source), int(self.labels[index])

    @classmethod
    def build_cache(
        cls, root: PathLike, *, split: Literal["train", "test"] = "train", num_category: Literal[40, 10] = 40,
        fps_points: int = FPS_POINTS, fps_seed: int = 0, overwrite: bool = False, progress: bool | None = None,
    ) -> Path:  # fmt: skip
        """Run the official preprocessing (FPS of every ``.txt`` to ``fps_points``) once and write
        ``modelnet{C}_{split}_{fps_points}pts_fps.npz``, which the ``"npz"`` source then reads.
        ``progress``: a progress bar over the shapes (None: only on a terminal)."""
        ds = cls(
            root,
            split=split,
            source="txt",
            num_category=num_category,
            fps_points=fps_points,
            fps_seed=fps_seed,
            shuffle_points=False,
        )
        out = ds.root / f"modelnet{num_category}_{split}_{fps_points}pts_fps.npz"
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} exists (overwrite=True to rebuild it)")
        from tqdm.auto import tqdm

        shapes = tqdm(range(len(ds)), desc=f"ModelNet{num_category} {split} cache", unit="shape",
                      disable=None if progress is None else not progress)
        packed = _Packed.from_list([ds.load_txt_fps(i) for i in shapes], ds.root)
        save_npz_atomic(
            out,
            {"format": np.array(_FORMAT), "kind": np.array("modelnet"), "points": packed.points,
             "offsets": packed.offsets, "labels": ds.labels},
        )  # fmt: skip
        return out


# ----------------------------------------------------------------------------- few-shot


class ModelNet40FewShot(_ModelNetBase):
    """The official ModelNet40 few-shot splits: items ``(points, label)``.

    ``label`` is the episode label ``0 .. way-1`` (the official item's second field);
    ``.class_ids`` holds the original ModelNet40 class of each item (the third field).
    Points are the stored 8192 (xyz + normals), normalised with ``pc_normalize``.

    Args:
        root: the ``ModelNetFewshot`` folder holding ``{way}way_{shot}shot/{fold}.pkl`` (the
            official code's spelling; ``{way}way{shot}shot``, as the official DATASET.md
            draws it, is accepted too).
        way, shot, fold: which split (official: way 5 or 10, shot 10 or 20, fold 0-9).
        split: ``"train"`` (the ``way * shot`` support set) or ``"test"`` (20 queries per way).
        allow_pickle: read the ``.pkl`` directly; otherwise ``{fold}.npz`` written by
            :func:`convert_modelnet_pickle` is read.
        npoints, sample, use_normals, shuffle_points, seed, transform: as :class:`ModelNet40`.
    """

    def __init__(
        self,
        root: PathLike,
        way: int,
        shot: int,
        fold: int,
        split: Literal["train", "test"] = "train",
        *,
        npoints: int | None = None,
        sample: Literal["fps", "first"] = "fps",
        use_normals: bool = False,
        allow_pickle: bool = False,
        shuffle_points: bool | None = None,
        seed: int | None = None,
        transform: Transform | None = None,
    ) -> None:
        check_choice(split, "split", ("train", "test"))
        way = int(check_positive_int(way, "way"))  # type: ignore[arg-type]
        shot = int(check_positive_int(shot, "shot"))  # type: ignore[arg-type]
        if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or fold < 0:
            raise ValueError(f"fold must be a non-negative int, got {fold!r}")
        super().__init__(
            split=split, npoints=npoints, sample=sample, use_normals=use_normals,
            shuffle_points=shuffle_points, seed=seed, transform=transform,
        )  # fmt: skip
        self.root = Path(root)
        self.way, self.shot, self.fold = way, shot, int(fold)
        # the official code and generator write "5way_10shot"; the official DATASET.md shows "5way10shot"
        folder = self.root / f"{way}way_{shot}shot"
        if not folder.is_dir() and (self.root / f"{way}way{shot}shot").is_dir():
            folder = self.root / f"{way}way{shot}shot"
        if not folder.is_dir():
            have = sorted(p.name for p in self.root.glob("*way*shot")) if self.root.is_dir() else []
            raise DatasetError(folder, f"few-shot folder not found (available: {have or 'none'})")
        pkl, npz = folder / f"{fold}.pkl", folder / f"{fold}.npz"
        if npz.is_file():
            packed, arrays = _load_converted(npz, "fewshot", prefix=f"{split}_")
            labels, class_ids = arrays[f"{split}_labels"], arrays[f"{split}_classes"]
            self._store_path = npz
        elif pkl.is_file():
            if not allow_pickle:
                raise DatasetError(pkl, f"is a pickle and allow_pickle=False; {_CONVERT_HINT}")
            obj = load_data_pickle(pkl)
            if not isinstance(obj, dict) or split not in obj or not isinstance(obj[split], list):
                raise DatasetError(pkl, f"is not a few-shot pickle with a {split!r} list")
            items = obj[split]
            if not all(isinstance(t, tuple) and len(t) >= 2 for t in items):
                raise DatasetError(pkl, f"{split!r} is not a list of (points, label, class) tuples")
            packed = _Packed.from_list([t[0] for t in items], pkl)
            labels, class_ids = _episode_labels(items, pkl)
            self._store_path = pkl
        else:
            raise DatasetError(pkl, "few-shot fold file not found (neither .pkl nor converted .npz)")
        if class_ids.shape != labels.shape:
            raise DatasetError(self._store_path, "class ids and labels differ in length")
        if len(labels) and (labels.min() < 0 or labels.max() >= way):
            found = sorted(set(labels.tolist()))
            raise DatasetError(self._store_path, f"episode labels outside 0..{way - 1}: {found}")
        if len(packed) and self.npoints is not None and self.npoints > int(np.diff(packed.offsets).min()):
            raise ValueError(f"npoints={self.npoints} exceeds the stored points per cloud")
        self._packed = packed
        self.labels = labels.astype(np.int64)
        self.class_ids = class_ids.astype(np.int64)

    def __len__(self) -> int:
        return len(self._packed)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = self._check_index(index)
        source = f"{self._store_path}[{self.split}][{index}]"
        return self._process(self._packed[index], index, source), int(self.labels[index])
