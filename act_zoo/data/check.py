"""Validate a downloaded official dataset before hours of training (``act-zoo data check``).

Each dataset has one :class:`DatasetSpec` in :data:`DATASETS`: the expected layout, where the
official instructions say to get it, the official split sizes and a checker built on the official
reader of :mod:`act_zoo.data` (so it sees the files exactly as training will). A check reports:

* the layout and the split files (missing, unreadable, inconsistent: always a problem);
* items per split against the official release (a problem by default; a warning with
  ``expect_counts=False``, for subsets and for the tiny files of the tests);
* a sample of items actually read through the reader (evenly spread over each split);
* label ranges (classes, episode labels, part labels of each category).

Official split sizes, checked against the official readers, config files and the split files'
semantics (ACT ``DATASET.md``, which defers to Point-BERT's for ShapeNet-55 and ModelNet):

=====================  ==============  ===================================================
ShapeNet-55            41952 / 10518   ``ShapeNet-55/train.txt`` / ``test.txt`` lines; stage II
                                       trains on both (``whole: true``): 52470
ModelNet40             9843 / 2468     ``modelnet40_train.txt`` / ``modelnet40_test.txt`` lines
ScanObjectNN PB_T50_RS 11416 / 2882    ``*_objectdataset_augmentedrot_scale75.h5`` items
ScanObjectNN OBJ_BG    2309 / 581      ``main_split/*_objectdataset.h5`` items
ScanObjectNN OBJ_ONLY  2309 / 581      ``main_split_nobg/*_objectdataset.h5`` items
ShapeNetPart           12137 + 1870 /  ``shuffled_{train,val,test}_file_list.json``; ACT trains
                       2874            on train + val (``split='trainval'``): 14007
ModelNet40 few-shot    way x shot /    per fold; 10 folds for each of 5/10-way x 10/20-shot
                       way x 20
=====================  ==============  ===================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DatasetError

__all__ = ["DATASETS", "CheckOptions", "CheckReport", "DatasetSpec", "check_dataset"]

logger = logging.getLogger(__name__)

POINT_BERT_DATASET_MD = "https://github.com/lulutang0608/Point-BERT/blob/49e2c7407d351ce8fe65764bbddd5d9c0e0a4c52/DATASET.md"
ACT_DATASET_MD = "https://github.com/RunpeiDong/ACT/blob/main/DATASET.md"


@dataclass(frozen=True)
class CheckOptions:
    """What to check. ``expect_counts``: official split sizes and points per item are required
    (else a mismatch is a warning). ``samples``: items read per split. ``allow_pickle``: read the
    official ModelNet pickles (through the restricted unpickler). ``variants`` (ScanObjectNN) and
    ``way`` / ``shot`` (few-shot) narrow the check; None checks all."""

    expect_counts: bool = True
    samples: int = 8
    allow_pickle: bool = False
    variants: tuple[str, ...] | None = None
    way: int | None = None
    shot: int | None = None


@dataclass
class CheckReport:
    """The outcome: ``lines`` (status, text) in check order; ``problems`` make it fail."""

    dataset: str
    root: Path
    lines: list[tuple[str, str]] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [text for status, text in self.lines if status == "problem"]

    @property
    def warnings(self) -> list[str]:
        return [text for status, text in self.lines if status == "warning"]

    @property
    def ok(self) -> bool:
        return not self.problems

    # -- recording ---------------------------------------------------------------------------------
    def good(self, text: str) -> None:
        self.lines.append(("ok", text))

    def problem(self, text: str) -> None:
        self.lines.append(("problem", text))

    def warning(self, text: str) -> None:
        self.lines.append(("warning", text))


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset ``act-zoo data check`` knows. ``counts``: the official split sizes (for the
    listing; the checker compares them). ``options``: the :class:`CheckOptions` fields besides the
    common ones that apply to it."""

    name: str
    title: str
    source: str
    layout: str
    counts: Mapping[str, int]
    checker: Callable[[Path, CheckOptions, CheckReport], None]
    options: frozenset[str] = frozenset()


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _count(report: CheckReport, opts: CheckOptions, what: str, found: int, official: int, unit: str = "items") -> None:
    if found == official:
        report.good(f"{what}: {found} {unit} (official {official})")
    elif opts.expect_counts:
        report.problem(f"{what}: {found} {unit}, the official release has {official} "
                       "(a partial or different download? --no-expect-counts accepts it)")
    else:
        report.warning(f"{what}: {found} {unit}, the official release has {official}")


def sample_indices(n: int, k: int) -> list[int]:
    """``min(n, k)`` indices spread evenly over ``0 .. n-1``, first and last included."""
    if n <= 0 or k <= 0:
        return []
    return sorted({round(float(x)) for x in np.linspace(0, n - 1, min(n, k))})


def _describe(values: Iterable[int]) -> str:
    values = sorted(set(values))
    return f"{values[0]}..{values[-1]} ({len(values)} distinct)" if values else "none"


def _points_per_item(report: CheckReport, opts: CheckOptions, what: str, sizes: Sequence[int], official: int) -> None:
    sizes = sorted({int(s) for s in sizes})
    if not sizes:
        return
    if sizes == [official]:
        report.good(f"{what}: {official} points per item (official {official})")
        return
    text = f"{what}: {sizes[0]}{'..' + str(sizes[-1]) if len(sizes) > 1 else ''} points per item, official {official}"
    (report.problem if opts.expect_counts else report.warning)(text)


def _guard(report: CheckReport, what: str, fn: Callable[[], Any]) -> Any:
    """Run one reader step; a reader error becomes a problem naming the file (None returned)."""
    try:
        return fn()
    except (DatasetError, OSError, ImportError, KeyError, ValueError) as exc:
        report.problem(f"{what}: {exc}")
        return None


def _read_samples(report: CheckReport, opts: CheckOptions, what: str, n: int,
                  read: Callable[[int], Any]) -> list[Any]:
    """Read the sampled items with ``read``; every failure is a problem; returns what was read."""
    got = []
    failures = 0
    for i in sample_indices(n, opts.samples):
        try:
            got.append(read(i))
        except (DatasetError, OSError, ValueError, KeyError) as exc:
            failures += 1
            report.problem(f"{what}: item {i} cannot be read: {exc}")
    if got and not failures:
        report.good(f"{what}: read {len(got)} of {n} items (spread over the split), all finite")
    return got


# ----------------------------------------------------------------------------------------------
# ShapeNet-55
# ----------------------------------------------------------------------------------------------
SHAPENET55_COUNTS = {"train": 41952, "test": 10518}


def _check_shapenet55(root: Path, opts: CheckOptions, report: CheckReport) -> None:
    from .shapenet import ShapeNet55

    taxonomies: set[str] = set()
    for split, official in SHAPENET55_COUNTS.items():
        ds = _guard(report, f"{split} list", lambda split=split: ShapeNet55(root, split=split))
        if ds is None:
            continue
        _count(report, opts, f"{split} (ShapeNet-55/{split}.txt)", len(ds), official)
        taxonomies.update(ds.taxonomy_ids)
        missing = [f for f in ds.files if not (ds.pc_path / f).is_file()]
        if missing:
            report.problem(f"{split}: {len(missing)} of {len(ds.files)} listed clouds are missing from {ds.pc_path} "
                           f"(e.g. {', '.join(missing[:3])})")
        else:
            report.good(f"{split}: every listed cloud exists in {ds.pc_path.name}/")
        clouds = _read_samples(report, opts, f"{split} samples", len(ds), ds.load)
        _points_per_item(report, opts, f"{split} samples", [len(c) for c in clouds], 8192)
    if taxonomies:
        _count(report, opts, "categories (taxonomy ids)", len(taxonomies), 55, unit="synsets")


# ----------------------------------------------------------------------------------------------
# ModelNet40
# ----------------------------------------------------------------------------------------------
MODELNET40_COUNTS = {"train": 9843, "test": 2468}


def _check_modelnet40(root: Path, opts: CheckOptions, report: CheckReport) -> None:
    from .modelnet import ModelNet40

    for split, official in MODELNET40_COUNTS.items():
        ds = _guard(report, f"{split} split",
                    lambda split=split: ModelNet40(root, split=split, allow_pickle=opts.allow_pickle, shuffle_points=False))
        if ds is None:
            continue
        if split == "train":
            _count(report, opts, "classes (modelnet40_shape_names.txt)", len(ds.classes), 40, unit="names")
        _count(report, opts, f"{split} (modelnet40_{split}.txt)", len(ds), official)
        report.good(f"{split}: points come from the {ds.source} files"
                    + (" (each read samples 8192 of the .txt points by FPS, slow; build the .npz cache once with "
                       "ModelNet40.build_cache)" if ds.source == "txt" else ""))
        labels = ds.labels.tolist()  # the reader maps every listed id to a class of the names file
        if labels:
            present = len(set(labels))
            text = f"{split} labels: {_describe(labels)}"
            if present == len(ds.classes) or not opts.expect_counts:
                report.good(text)
            else:
                report.problem(f"{text}: {len(ds.classes) - present} classes have no {split} shape")
        _read_samples(report, opts, f"{split} samples", len(ds), lambda i, ds=ds: ds[i][0])
        if ds._packed is not None:  # stored clouds: the official preprocessing keeps 8192 points
            _points_per_item(report, opts, f"{split} stored clouds", np.diff(ds._packed.offsets).tolist(), 8192)


# ----------------------------------------------------------------------------------------------
# ModelNet40 few-shot
# ----------------------------------------------------------------------------------------------
FEWSHOT_SETTINGS = ((5, 10), (5, 20), (10, 10), (10, 20))
FEWSHOT_FOLDS = 10
FEWSHOT_QUERIES = 20


def _check_fewshot(root: Path, opts: CheckOptions, report: CheckReport) -> None:
    from .modelnet import ModelNet40FewShot

    settings = [(w, s) for w, s in FEWSHOT_SETTINGS
                if (opts.way is None or w == opts.way) and (opts.shot is None or s == opts.shot)]
    if not settings:  # a way/shot outside the official four: check just that one
        settings = [(opts.way or 5, opts.shot or 10)]
    for way, shot in settings:
        sizes: dict[str, list[int]] = {"train": [], "test": []}
        read = 0
        folder = next((root / name for name in (f"{way}way_{shot}shot", f"{way}way{shot}shot")
                       if (root / name).is_dir()), None)
        if folder is None:
            report.problem(f"{way}-way {shot}-shot: folder {root / f'{way}way_{shot}shot'} not found")
            continue
        folds = [f for f in range(FEWSHOT_FOLDS) if (folder / f"{f}.pkl").is_file() or (folder / f"{f}.npz").is_file()]
        if len(folds) < FEWSHOT_FOLDS:
            missing = sorted(set(range(FEWSHOT_FOLDS)) - set(folds))
            report.problem(f"{way}-way {shot}-shot: folds {missing} missing from {folder} (official: 0.pkl ... 9.pkl)")
        if not opts.allow_pickle:
            pickles = [f for f in folds if not (folder / f"{f}.npz").is_file()]
            if pickles:
                report.problem(f"{way}-way {shot}-shot: folds {pickles} are pickles ({folder}/*.pkl); convert them once "
                               f"with act_zoo.data.convert_modelnet_pickle('{folder}') or check with --allow-pickle")
                folds = [f for f in folds if f not in pickles]
        for fold in folds:
            for split in ("train", "test"):
                what = f"{way}-way {shot}-shot fold {fold} {split}"
                ds = _guard(report, what, lambda split=split, fold=fold, way=way, shot=shot: ModelNet40FewShot(
                    root, way, shot, fold, split=split, allow_pickle=opts.allow_pickle, shuffle_points=False))
                if ds is None:
                    continue
                sizes[split].append(len(ds))
                if split == "train" and len(ds) != way * shot:
                    report.problem(f"{what}: {len(ds)} support clouds, a {way}-way {shot}-shot split has {way * shot}")
                per_label = {int(lab): set() for lab in ds.labels}
                for lab, cls in zip(ds.labels.tolist(), ds.class_ids.tolist()):
                    per_label[lab].add(cls)
                if len(per_label) != way and len(ds):
                    report.problem(f"{what}: episode labels {sorted(per_label)}, expected all of 0..{way - 1}")
                mixed = [lab for lab, classes in per_label.items() if len(classes) > 1]
                if mixed:
                    report.problem(f"{what}: episode label(s) {mixed} map to several ModelNet40 classes")
                for i in sample_indices(len(ds), max(1, opts.samples // (2 * FEWSHOT_FOLDS)) if opts.samples else 0):
                    try:
                        ds[i]
                        read += 1
                    except (DatasetError, ValueError) as exc:
                        report.problem(f"{what}: item {i} cannot be read: {exc}")
        if sizes["train"]:
            report.good(f"{way}-way {shot}-shot: {len(sizes['train'])} folds, {sorted(set(sizes['train']))} support "
                        f"clouds each, labels 0..{way - 1}; {read} items read")
        if sizes["test"]:
            found = sorted(set(sizes["test"]))
            official = way * FEWSHOT_QUERIES
            if found == [official]:
                report.good(f"{way}-way {shot}-shot: {official} query clouds per fold ({FEWSHOT_QUERIES} per class, official)")
            else:
                text = f"{way}-way {shot}-shot: {found} query clouds per fold, the official splits have {official}"
                (report.problem if opts.expect_counts else report.warning)(text)


# ----------------------------------------------------------------------------------------------
# ScanObjectNN
# ----------------------------------------------------------------------------------------------
SCANOBJECTNN_COUNTS = {
    "PB_T50_RS": {"train": 11416, "test": 2882},
    "OBJ_BG": {"train": 2309, "test": 581},
    "OBJ_ONLY": {"train": 2309, "test": 581},
}


def _check_scanobjectnn(root: Path, opts: CheckOptions, report: CheckReport) -> None:
    from .scanobjectnn import SCANOBJECTNN_CLASSES, ScanObjectNN

    variants = opts.variants or tuple(SCANOBJECTNN_COUNTS)
    for variant in variants:
        if variant not in SCANOBJECTNN_COUNTS:
            report.problem(f"unknown ScanObjectNN variant {variant!r}; choose from {', '.join(SCANOBJECTNN_COUNTS)}")
            continue
        for split, official in SCANOBJECTNN_COUNTS[variant].items():
            what = f"{variant} {split}"
            ds = _guard(report, what, lambda v=variant, s=split: ScanObjectNN(root, variant=v, split=s, in_memory=False,
                                                                             shuffle_points=False))
            if ds is None:
                continue
            _count(report, opts, f"{what} ({ds.path.name})", len(ds), official)
            labels = ds.labels.tolist()
            k = len(SCANOBJECTNN_CLASSES)
            if labels and max(labels) >= k:
                bad = sum(lab >= k for lab in labels)
                report.problem(f"{what}: labels {_describe(labels)}; {bad} item(s) outside 0..{k - 1}")
            elif labels:
                missing = k - len(set(labels))
                if missing and opts.expect_counts:
                    report.problem(f"{what} labels: {_describe(labels)}: {missing} of the {k} classes are absent")
                else:
                    report.good(f"{what} labels: {_describe(labels)}")
            _points_per_item(report, opts, what, [ds.num_points], 2048)
            _read_samples(report, opts, f"{what} samples", len(ds), lambda i, ds=ds: ds[i][0])
            ds.close()


# ----------------------------------------------------------------------------------------------
# ShapeNetPart
# ----------------------------------------------------------------------------------------------
SHAPENETPART_COUNTS = {"train": 12137, "val": 1870, "test": 2874}


def _check_shapenetpart(root: Path, opts: CheckOptions, report: CheckReport) -> None:
    from .._shapenetpart import SHAPENETPART_CATEGORIES, SHAPENETPART_SEG_CLASSES
    from .shapenetpart import ShapeNetPart

    sizes = {}
    for split, official in SHAPENETPART_COUNTS.items():
        ds = _guard(report, f"{split} split", lambda split=split: ShapeNetPart(root, split=split))
        if ds is None:
            continue
        if split == "train":
            unknown = [c for c in ds.categories if c not in SHAPENETPART_SEG_CLASSES]
            if unknown:
                report.problem(f"synsetoffset2category.txt: unknown categories {unknown}; "
                               f"expected {', '.join(SHAPENETPART_CATEGORIES)}")
            elif list(ds.categories) != list(SHAPENETPART_CATEGORIES):
                report.problem(f"synsetoffset2category.txt lists {ds.categories}, the official file lists the 16 "
                               "categories in alphabetical order (the order fixes the category index)")
            else:
                report.good("categories: the 16 official ones, in the official order")
        ids = _guard(report, f"{split} list", lambda ds=ds, split=split: ds._split_ids(split))
        sizes[split] = len(ds)
        _count(report, opts, f"{split} (shuffled_{split}_file_list.json)", len(ds), official, unit="shapes")
        if ids is not None and len(ids) != len(ds):
            report.problem(f"{split}: {len(ids) - len(ds)} of the {len(ids)} listed shapes have no .txt file")
        tables = _read_samples(report, opts, f"{split} samples", len(ds), ds.load)
        bad = []
        for (data, cls, seg), i in zip(tables, sample_indices(len(ds), opts.samples)):
            parts = SHAPENETPART_SEG_CLASSES.get(ds.categories[cls], ())
            if not set(np.unique(seg).tolist()) <= set(parts):
                bad.append(f"{ds.datapath[i][1]} ({ds.categories[cls]}: parts {sorted(set(seg.tolist()))}, "
                           f"allowed {list(parts)})")
        if bad:
            report.problem(f"{split}: part labels outside the category's parts in {'; '.join(bad[:3])}")
        elif tables:
            report.good(f"{split} samples: part labels within each category's parts")
    if "train" in sizes and "val" in sizes:
        report.good(f"trainval (what ACT trains on): {sizes['train'] + sizes['val']} shapes "
                    f"(official {SHAPENETPART_COUNTS['train'] + SHAPENETPART_COUNTS['val']})")


# ----------------------------------------------------------------------------------------------
# the registry: one entry per dataset
# ----------------------------------------------------------------------------------------------
SHAPENET55 = DatasetSpec(
    name="shapenet55", title="ShapeNet-55 (stage I and II pretraining)",
    source=f"Point-BERT's DATASET.md ({POINT_BERT_DATASET_MD}), as ACT's DATASET.md ({ACT_DATASET_MD}) says",
    layout="ShapeNet55-34/\n  ShapeNet-55/train.txt, test.txt     one '<synset>-<model>.npy' a line\n"
           "  shapenet_pc/<synset>-<model>.npy     [8192, 3] float arrays",
    counts=SHAPENET55_COUNTS, checker=_check_shapenet55,
)
MODELNET40 = DatasetSpec(
    name="modelnet40", title="ModelNet40 (fine-tuning)",
    source=f"Point-BERT's DATASET.md ({POINT_BERT_DATASET_MD}), or the official site "
           f"(https://modelnet.cs.princeton.edu/) processed yourself, as ACT's DATASET.md ({ACT_DATASET_MD}) says",
    layout="modelnet40_normal_resampled/\n  modelnet40_shape_names.txt, modelnet40_train.txt, modelnet40_test.txt\n"
           "  modelnet40_{train,test}_8192pts_fps.dat   pickles: convert once with "
           "act_zoo.data.convert_modelnet_pickle (-> .npz)\n  <class>/<class>_0001.txt ...          optional: the raw "
           "10000-point files",
    counts=MODELNET40_COUNTS, checker=_check_modelnet40, options=frozenset({"allow_pickle"}),
)
MODELNET40_FEWSHOT = DatasetSpec(
    name="modelnet40_fewshot", title="ModelNet40 few-shot splits (5/10-way x 10/20-shot, 10 folds)",
    source=f"Point-BERT's DATASET.md ({POINT_BERT_DATASET_MD}), as ACT's DATASET.md ({ACT_DATASET_MD}) says",
    layout="ModelNetFewshot/\n  5way_10shot/0.pkl ... 9.pkl         (5way10shot/ is accepted too)\n"
           "  5way_20shot/  10way_10shot/  10way_20shot/\n  pickles: convert once with act_zoo.data.convert_modelnet_pickle",
    counts={f"{w}way_{s}shot {split}": w * (s if split == "train" else FEWSHOT_QUERIES)
            for w, s in FEWSHOT_SETTINGS for split in ("train", "test")},
    checker=_check_fewshot, options=frozenset({"allow_pickle", "way", "shot"}),
)
SCANOBJECTNN = DatasetSpec(
    name="scanobjectnn", title="ScanObjectNN h5 files (PB_T50_RS, OBJ_BG, OBJ_ONLY)",
    source=f"the official website (https://hkust-vgd.github.io/scanobjectnn/), as ACT's DATASET.md ({ACT_DATASET_MD}) says",
    layout="ScanObjectNN/ (or its h5_files/)\n  main_split/training_objectdataset_augmentedrot_scale75.h5, "
           "test_objectdataset_augmentedrot_scale75.h5   PB_T50_RS\n"
           "  main_split/training_objectdataset.h5, test_objectdataset.h5        OBJ_BG\n"
           "  main_split_nobg/training_objectdataset.h5, test_objectdataset.h5   OBJ_ONLY",
    counts={f"{v} {s}": n for v, c in SCANOBJECTNN_COUNTS.items() for s, n in c.items()},
    checker=_check_scanobjectnn, options=frozenset({"variants"}),
)
SHAPENETPART = DatasetSpec(
    name="shapenetpart", title="ShapeNetPart (part segmentation)",
    source="the official archive (https://shapenet.cs.stanford.edu/media/"
           f"shapenetcore_partanno_segmentation_benchmark_v0_normal.zip), as ACT's DATASET.md ({ACT_DATASET_MD}) says",
    layout="shapenetcore_partanno_segmentation_benchmark_v0_normal/\n  synsetoffset2category.txt\n"
           "  train_test_split/shuffled_{train,val,test}_file_list.json\n"
           "  <synset>/<model>.txt                 'x y z nx ny nz part' per line",
    counts=SHAPENETPART_COUNTS, checker=_check_shapenetpart,
)



def _check_s3dis(root: Path, opts: CheckOptions, report: CheckReport) -> None:
    from .s3dis import check_s3dis

    check_s3dis(root, report, expect_counts=opts.expect_counts, samples=opts.samples)


S3DIS = DatasetSpec(
    name="s3dis", title="S3DIS rooms (semantic segmentation)",
    source="the official Stanford3dDataset_v1.2_Aligned_Version (http://buildingparser.stanford.edu/dataset.html), "
           "converted with the official semantic_segmentation/data_utils/collect_indoor3d_data.py",
    layout=("stanford_indoor3d/    (the output folder of collect_indoor3d_data.py)\n"
            "  Area_1_conferenceRoom_1.npy ...     float [N, 7] x y z r g b label, room minimum at the origin\n"
            "  272 rooms: Area_1 44, Area_2 40, Area_3 23, Area_4 49, Area_5 68 (test), Area_6 48"),
    counts={"Area_1": 44, "Area_2": 40, "Area_3": 23, "Area_4": 49, "Area_5 (test)": 68, "Area_6": 48},
    checker=_check_s3dis,
)

#: every dataset ``act-zoo data check`` knows, by name (add a dataset: one spec, one entry)
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (SHAPENET55, MODELNET40, MODELNET40_FEWSHOT, SCANOBJECTNN, SHAPENETPART, S3DIS)
}

_COMMON = frozenset({"expect_counts", "samples"})


def check_dataset(name: str, root: str | Path, options: CheckOptions | None = None) -> CheckReport:
    """Check the dataset ``name`` (a key of :data:`DATASETS`) at ``root``; see the module docstring."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    spec = DATASETS[name]
    opts = options or CheckOptions()
    defaults = CheckOptions()
    given = {f for f in CheckOptions.__dataclass_fields__ if getattr(opts, f) != getattr(defaults, f)}
    stray = sorted(given - _COMMON - spec.options)
    if stray:
        raise ValueError(f"option(s) {', '.join(stray)} do not apply to {name}")
    if not (isinstance(opts.samples, int) and opts.samples >= 0) or isinstance(opts.samples, bool):
        raise ValueError(f"samples must be a non-negative int, got {opts.samples!r}")
    root = Path(root)
    report = CheckReport(dataset=name, root=root)
    if not root.is_dir():
        report.problem(f"{root}: folder not found")
        return report
    spec.checker(root, opts, report)
    logger.info("checked %s at %s: %d problems, %d warnings", name, root, len(report.problems), len(report.warnings))
    return report

