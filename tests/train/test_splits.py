"""The validation split (seeded, stratified, file-level) and the overlap check."""

import os

import numpy as np
import pytest
import torch

from act_zoo.data.splits import FileSubset, SplitError, check_no_overlap, stratified_split


def test_stratified_split_holds_out_the_same_share_of_every_class():
    labels = np.repeat([0, 1, 2], [30, 10, 5])
    kept, held = stratified_split(labels, fraction=0.2, seed=0)
    assert set(kept).isdisjoint(held) and sorted(np.concatenate([kept, held])) == list(range(45))
    assert [int((labels[held] == c).sum()) for c in range(3)] == [6, 2, 1]
    again = stratified_split(labels, fraction=0.2, seed=0)
    assert np.array_equal(again[1], held)  # seeded
    assert not np.array_equal(stratified_split(labels, fraction=0.2, seed=1)[1], held)


def test_a_class_split_does_not_move_when_another_class_is_added():
    keys_a = [f"a/{i}.ply" for i in range(10)]
    keys_b = [f"b/{i}.ply" for i in range(10)]
    _, held = stratified_split([0] * 10 + [1] * 10, fraction=0.3, seed=0, class_names=["a", "b"], keys=keys_a + keys_b)
    _, held2 = stratified_split([0] * 5 + [1] * 10 + [2] * 10, fraction=0.3, seed=0, class_names=["0new", "a", "b"],
                                keys=[f"0new/{i}.ply" for i in range(5)] + keys_a + keys_b)
    names = {([*keys_a, *keys_b])[i] for i in held}
    names2 = {([f"0new/{i}.ply" for i in range(5)] + keys_a + keys_b)[i] for i in held2}
    assert names <= names2


def test_every_side_keeps_a_file_and_too_small_classes_are_named():
    kept, held = stratified_split([0, 0, 1, 1, 1], fraction=0.9, seed=0)
    assert len(held) == 3 and len(kept) == 2  # at least one file of each class stays for training
    with pytest.raises(SplitError, match=r"classes 'cat' \(1 file\), 'dog' \(1 file\) need at least 2 files"):
        stratified_split([0, 1, 2, 2], fraction=0.2, seed=0, class_names=["cat", "dog", "eel"])
    for bad in (0.0, 1.0, -0.1, True):
        with pytest.raises(ValueError, match="between 0 and 1"):
            stratified_split([0, 0, 1, 1], fraction=bad, seed=0)


def test_overlap_is_the_same_file_by_path_or_link(tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    a.write_bytes(b"x")
    b.write_bytes(b"x")  # same content, another file: not an overlap
    check_no_overlap([a], [b])
    with pytest.raises(SplitError, match="1 test file is also in the training set"):
        check_no_overlap([a], [tmp_path / "sub" / ".." / "a.npy"])
    os.symlink(a, tmp_path / "link.npy")
    with pytest.raises(SplitError, match=r"link\.npy \(= training file .*a\.npy\)"):
        check_no_overlap([a, b], [tmp_path / "link.npy"])
    os.link(b, tmp_path / "hard.npy")
    with pytest.raises(SplitError, match="hard.npy"):
        check_no_overlap([a, b], [tmp_path / "hard.npy"], what="validation")


class _Files(torch.utils.data.Dataset):
    def __init__(self):
        self.classes = ["x", "y", "z"]
        self.labels = np.array([0, 1, 2, 1])
        self.samples = [(f"f{i}", int(lab)) for i, lab in enumerate(self.labels)]

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.full((2, 3), float(i)), int(self.labels[i])


def test_file_subset_maps_labels_by_name():
    sub = FileSubset(_Files(), [3, 2], classes=["w", "y", "z", "x"], label_map=[3, 1, 2])
    assert len(sub) == 2 and sub.classes == ["w", "y", "z", "x"]
    assert [lab for _, lab in sub.samples] == [1, 2] and sub[1][1] == 2 and float(sub[0][0][0, 0]) == 3.0
    with pytest.raises(IndexError):
        FileSubset(_Files(), [4])
