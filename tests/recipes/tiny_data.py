"""Tiny files in the official layouts of every dataset a recipe reads (no real data needed).

Sizes are about the smallest that run a recipe for two optimizer steps at its official batch size
with the tiny-model overrides of ``test_recipe_runs.py``: clouds of :data:`POINTS` points."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from data.builders import cloud, write_fewshot, write_scanobjectnn, write_shapenet55, write_shapenetpart

from act_zoo.data import convert_modelnet_pickle

POINTS = 96  # >= 1.2 x the tests' npoints (64): the official FPS pool

MODELNET40_CLASSES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone", "cup", "curtain",
    "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp", "laptop", "mantel", "monitor",
    "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink", "sofa", "stairs", "stool", "table",
    "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
)  # fmt: skip


def write_modelnet40(root: Path, *, train: int = 36, test: int = 8, seed: int = 0) -> Path:
    """``modelnet40_normal_resampled``: the 40 official class names, split lists and the official
    ``modelnet40_{split}_8192pts_fps.dat`` pickles (holding :data:`POINTS`-point clouds), converted
    once to ``.npz`` as the README tells users to."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(MODELNET40_CLASSES) + "\n")
    for split, n in (("train", train), ("test", test)):
        labels = [int(i * 7 % 40) for i in range(n)]
        ids = [f"{MODELNET40_CLASSES[c]}_{i + 1:04d}" for i, c in enumerate(labels)]
        (root / f"modelnet40_{split}.txt").write_text("\n".join(ids) + "\n")
        clouds = [cloud(rng, POINTS, 6) for _ in ids]
        with open(root / f"modelnet40_{split}_8192pts_fps.dat", "wb") as f:
            pickle.dump([clouds, [np.array([c], dtype=np.int32) for c in labels]], f)
    convert_modelnet_pickle(root)
    return root


def write_fewshot_folds(root: Path, way: int, shot: int) -> Path:
    """All 10 official folds of ``{way}way_{shot}shot`` (3 queries per class), converted to ``.npz``."""
    for fold in range(10):
        write_fewshot(root, way=way, shot=shot, fold=fold, points=POINTS, seed=fold)
    convert_modelnet_pickle(root / f"{way}way_{shot}shot")
    return root


def write_all(base: Path) -> dict[str, Path]:
    """Every dataset the recipes read, under ``base``; returns the ``data.root`` of each."""
    roots = {
        "shapenet55": base / "ShapeNet55-34",
        "scanobjectnn": base / "ScanObjectNN",
        "modelnet40": base / "modelnet40_normal_resampled",
        "modelnet40_fewshot": base / "ModelNetFewshot",
        "shapenetpart": base / "shapenetcore_partanno_segmentation_benchmark_v0_normal",
        "s3dis": base / "s3dis" / "stanford_indoor3d",
    }
    write_shapenet55(roots["shapenet55"], train=128, test=8, points=POINTS)  # batches of 64 (I) and 128 (II)
    write_scanobjectnn(roots["scanobjectnn"], items=36, points=POINTS)  # a batch of 32
    write_modelnet40(roots["modelnet40"])
    for way, shot in ((5, 10), (5, 20), (10, 10), (10, 20)):
        write_fewshot_folds(roots["modelnet40_fewshot"], way, shot)
    write_shapenetpart(roots["shapenetpart"], cats=("Airplane", "Chair"), per_cat=10, points=POINTS)  # 18 in trainval
    write_s3dis(roots["s3dis"])
    return roots


def write_s3dis(root: Path) -> Path:
    """Rooms in the official ``collect_indoor3d_data`` format: one training room in each of Areas 1 and 2
    and one Area-5 test room, dense enough that a 1 m window holds more than the official 1024 points."""
    from act_zoo.data.synthetic_scene import synthetic_room, write_s3dis_room

    root.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(("Area_1_office_1", "Area_2_office_1", "Area_5_office_1")):
        xyz, labels = synthetic_room(20_000, size=(2.0, 1.8, 2.4), chairs=2, seed=k)
        write_s3dis_room(root / f"{name}.npy", xyz, labels, seed=k)
    return root
