"""Writers of tiny files in each official layout, for the data tests."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np

MODELNET_CLASSES = ("airplane", "night_stand", "chair")


def cloud(rng: np.random.Generator, n: int, channels: int = 3, scale: float = 3.0) -> np.ndarray:
    """A float32 cloud, off-centre and not unit-sized, so normalisation is visible."""
    pts = rng.normal(size=(n, channels)).astype(np.float32)
    pts[:, :3] = pts[:, :3] * scale + np.array([5.0, -2.0, 1.0], dtype=np.float32)
    return pts


def write_modelnet(
    root: Path,
    *,
    train: tuple[str, ...] = ("airplane_0001", "night_stand_0001", "chair_0001", "airplane_0002"),
    test: tuple[str, ...] = ("chair_0002", "night_stand_0002"),
    txt_points: int = 40,
    fps_points: int = 16,
    dat: bool = False,
    seed: int = 0,
) -> dict[str, list[np.ndarray]]:
    """A ``modelnet40_normal_resampled`` folder: shape names, split lists, per-shape ``.txt``
    (``x,y,z,nx,ny,nz``) and optionally the ``.dat`` pickles (``fps_points`` per shape).

    Returns the stored ``.dat`` clouds per split (the first ``fps_points`` rows of each txt)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(MODELNET_CLASSES) + "\n")
    stored: dict[str, list[np.ndarray]] = {}
    for split, ids in (("train", train), ("test", test)):
        (root / f"modelnet40_{split}.txt").write_text("\n".join(ids) + "\n")
        stored[split] = []
        labels = []
        for sid in ids:
            cls = "_".join(sid.split("_")[:-1])
            (root / cls).mkdir(exist_ok=True)
            pts = cloud(rng, txt_points, 6)
            np.savetxt(root / cls / f"{sid}.txt", pts, fmt="%.6f", delimiter=",")
            pts = np.loadtxt(root / cls / f"{sid}.txt", delimiter=",").astype(np.float32)
            stored[split].append(pts[:fps_points].copy())
            labels.append(np.array([MODELNET_CLASSES.index(cls)], dtype=np.int32))
        if dat:
            with open(root / f"modelnet40_{split}_{fps_points}pts_fps.dat", "wb") as f:
                pickle.dump([stored[split], labels], f)
    return stored


def write_fewshot(
    root: Path, *, way: int = 5, shot: int = 2, fold: int = 0, points: int = 12, seed: int = 0
) -> dict:
    """``{way}way_{shot}shot/{fold}.pkl`` as the official generator writes it."""
    rng = np.random.default_rng(seed)
    classes = rng.permutation(40)[:way]
    data: dict[str, list] = {"train": [], "test": []}
    for i, c in enumerate(classes):
        data["train"] += [(cloud(rng, points, 6), i, np.int32(c)) for _ in range(shot)]
        data["test"] += [(cloud(rng, points, 6), i, np.int32(c)) for _ in range(3)]
    for split in data:
        order = rng.permutation(len(data[split]))
        data[split] = [data[split][j] for j in order]
    folder = root / f"{way}way_{shot}shot"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{fold}.pkl", "wb") as f:
        pickle.dump(data, f)
    return data


SCAN_FILES = {
    ("OBJ_BG", "train"): "main_split/training_objectdataset.h5",
    ("OBJ_BG", "test"): "main_split/test_objectdataset.h5",
    ("OBJ_ONLY", "train"): "main_split_nobg/training_objectdataset.h5",
    ("OBJ_ONLY", "test"): "main_split_nobg/test_objectdataset.h5",
    ("PB_T50_RS", "train"): "main_split/training_objectdataset_augmentedrot_scale75.h5",
    ("PB_T50_RS", "test"): "main_split/test_objectdataset_augmentedrot_scale75.h5",
}


def write_scanobjectnn(root: Path, *, items: int = 5, points: int = 32, seed: int = 0) -> dict:
    """Every variant's h5 pair under ``root``; each file has distinct data. Returns them."""
    import pytest

    h5py = pytest.importorskip("h5py")  # the io extra
    rng = np.random.default_rng(seed)
    out = {}
    for (variant, split), rel in SCAN_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = cloud(rng, items * points).reshape(items, points, 3)
        label = rng.integers(0, 15, items).astype(np.int64)
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=data)
            f.create_dataset("label", data=label)
            f.create_dataset("mask", data=np.zeros((items, points), np.int64))
        out[(variant, split)] = (data, label)
    return out


def write_shapenet55(root: Path, *, train: int = 4, test: int = 2, points: int = 64, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    (root / "ShapeNet-55").mkdir(parents=True, exist_ok=True)
    (root / "shapenet_pc").mkdir(exist_ok=True)
    out = {}
    for split, n in (("train", train), ("test", test)):
        names = [f"0{2691156 + i}-{split}model{i:03d}abc.npy" for i in range(n)]
        (root / "ShapeNet-55" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for name in names:
            pts = cloud(rng, points)
            np.save(root / "shapenet_pc" / name, pts)
            out[name] = pts
    return out


PART_CATS = ("Airplane", "Bag", "Cap", "Car", "Chair", "Earphone", "Guitar", "Knife", "Lamp", "Laptop",
             "Motorbike", "Mug", "Pistol", "Rocket", "Skateboard", "Table")  # fmt: skip


def write_shapenetpart(
    root: Path,
    *,
    cats: tuple[str, ...] = ("Airplane", "Chair"),
    per_cat: int = 3,
    points: int = 30,
    seed: int = 0,
) -> dict:
    """The benchmark folder with all 16 categories listed and files for ``cats``; the first
    file of each category is in test, the second in val, the rest in train."""
    from act_zoo.data.shapenetpart import SHAPENETPART_SEG_CLASSES

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    synsets = {c: f"{3000000 + i:08d}" for i, c in enumerate(PART_CATS)}
    (root / "synsetoffset2category.txt").write_text("".join(f"{c}\t{synsets[c]}\n" for c in PART_CATS))
    for c in PART_CATS:
        (root / synsets[c]).mkdir()
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    files = {}
    for cat in cats:
        folder = root / synsets[cat]
        # names in reverse order of creation, so sorting matters
        for j in range(per_cat):
            model = f"m{per_cat - j:03d}{cat.lower()}"
            parts = np.array(SHAPENETPART_SEG_CLASSES[cat])
            xyz = cloud(rng, points, 6)
            seg = rng.choice(parts, points).astype(np.float32)
            table = np.concatenate([xyz, seg[:, None]], axis=1)
            np.savetxt(folder / f"{model}.txt", table, fmt="%.6f")
            files[(cat, model)] = np.loadtxt(folder / f"{model}.txt").astype(np.float32)
            split = "test" if j == 0 else "val" if j == 1 else "train"
            splits[split].append(f"shape_data/{synsets[cat]}/{model}")
    (root / "train_test_split").mkdir()
    for split, entries in splits.items():
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))
    return {"synsets": synsets, "splits": splits, "files": files}


# ----------------------------------------------------------------------------- PCD


def lzf_literal(data: bytes) -> bytes:
    """Valid LZF made of literal runs only (at most 32 bytes each)."""
    out = bytearray()
    for i in range(0, len(data), 32):
        chunk = data[i : i + 32]
        out.append(len(chunk) - 1)
        out += chunk
    return bytes(out)


def pcd_bytes(xyz: np.ndarray, *, mode: str = "ascii", rgb: np.ndarray | None = None,
              normals: np.ndarray | None = None, compressor=lzf_literal) -> bytes:  # fmt: skip
    """A PCD v0.7 file with fields x y z [normal_x normal_y normal_z] [rgb]."""
    n = len(xyz)
    cols = [xyz.astype(np.float32)]
    fields, sizes, types = ["x", "y", "z"], ["4", "4", "4"], ["F", "F", "F"]
    if normals is not None:
        cols.append(normals.astype(np.float32))
        fields += ["normal_x", "normal_y", "normal_z"]
        sizes += ["4"] * 3
        types += ["F"] * 3
    packed = None
    if rgb is not None:
        r, g, b = (rgb[:, i].astype(np.uint32) for i in range(3))
        packed = (r << 16) | (g << 8) | b
        fields.append("rgb")
        sizes.append("4")
        types.append("U")
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {' '.join(fields)}\nSIZE {' '.join(sizes)}\nTYPE {' '.join(types)}\n"
        f"COUNT {' '.join(['1'] * len(fields))}\n"
        f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {mode}\n"
    ).encode()
    floats = np.concatenate(cols, axis=1)
    if mode == "ascii":
        lines = []
        for i in range(n):
            vals = [f"{v:.7g}" for v in floats[i]]
            if packed is not None:
                vals.append(str(int(packed[i])))
            lines.append(" ".join(vals))
        return header + ("\n".join(lines) + "\n").encode()
    dtype = [(f, "<f4") for f in fields if f != "rgb"] + ([("rgb", "<u4")] if packed is not None else [])
    rec = np.zeros(n, dtype=dtype)
    for j, f in enumerate([f for f in fields if f != "rgb"]):
        rec[f] = floats[:, j]
    if packed is not None:
        rec["rgb"] = packed
    if mode == "binary":
        return header + rec.tobytes()
    # binary_compressed: column-major payload, LZF, preceded by the two sizes
    payload = b"".join(np.ascontiguousarray(rec[f]).tobytes() for f in rec.dtype.names)
    comp = compressor(payload)
    return header + struct.pack("<II", len(comp), len(payload)) + comp
