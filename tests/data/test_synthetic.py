"""SyntheticShapes: determinism, classes, geometry sanity, options and speed."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
import torch

from act_zoo.data import SHAPE_CLASSES, SyntheticShapes


def test_items_are_a_function_of_seed_and_index():
    ds = SyntheticShapes(40, num_points=256, seed=3, partial=True, clutter=True)
    forward = [ds[i][0] for i in range(40)]
    backward = [ds[i][0] for i in reversed(range(40))][::-1]
    other = SyntheticShapes(40, num_points=256, seed=3, partial=True, clutter=True)
    for i, (a, b) in enumerate(zip(forward, backward)):
        assert torch.equal(a, b) and torch.equal(a, other[i][0])
    reseeded = SyntheticShapes(40, num_points=256, seed=4, partial=True, clutter=True)
    assert not torch.equal(reseeded[5][0], forward[5])
    assert torch.equal(pickle.loads(pickle.dumps(ds))[7][0], forward[7])


def test_classes_labels_and_shapes():
    assert len(SHAPE_CLASSES) >= 10
    ds = SyntheticShapes(52, num_points=128)
    assert ds.classes == list(SHAPE_CLASSES)
    assert np.bincount(ds.labels).tolist() == [4] * 13  # exactly balanced
    points, label = ds[14]
    assert points.shape == (128, 3) and points.dtype == torch.float32 and label == 1
    assert abs(float(points.norm(dim=1).max()) - 1) < 1e-5 and float(points.mean(0).abs().max()) < 1e-5
    sub = SyntheticShapes(6, classes=["torus", "helix"])
    assert sub.classes == ["torus", "helix"] and sub.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert SyntheticShapes(3, classes=3).classes == ["sphere", "box", "cylinder"]
    unlabelled = SyntheticShapes(3, labelled=False)
    assert isinstance(unlabelled[0], torch.Tensor) and unlabelled[0].shape == (1024, 3)
    with pytest.raises(ValueError, match="classes"):
        SyntheticShapes(3, classes=["sphere", "blob"])
    with pytest.raises(IndexError):
        ds[52]


def _canonical(name: str, n: int = 2000) -> np.ndarray:
    ds = SyntheticShapes(1, num_points=n, classes=[name], rotate=False, noise=0.0)
    return ds[0][0].numpy().astype(np.float64)


def test_geometry_of_some_classes():
    sphere = _canonical("sphere")
    # atol: the centroid of the samples is not exactly the centre
    np.testing.assert_allclose(np.linalg.norm(sphere, axis=1), 1.0, atol=0.08)
    assert np.linalg.norm(_canonical("box"), axis=1).min() < 0.8
    box = _canonical("box")
    on_face = np.isclose(box, box.min(0), atol=1e-5) | np.isclose(box, box.max(0), atol=1e-5)
    assert np.all(on_face.any(1))  # every point on a face
    ex, ey, ez = box.max(0) - box.min(0)  # faces are hit in proportion to their area
    expected = np.array([ey * ez, ex * ez, ex * ey]) / (ey * ez + ex * ez + ex * ey)
    np.testing.assert_allclose(on_face.mean(0), expected, atol=0.04)
    torus = _canonical("torus")
    radial = np.linalg.norm(torus[:, [0, 2]], axis=1)
    assert radial.min() > 0.2  # a hole in the middle
    assert np.abs(torus[:, 1]).max() < 0.5 * radial.max()  # flat ring around y
    cylinder = _canonical("cylinder")
    axis = (cylinder.min(0) + cylinder.max(0)) / 2  # the centroid of samples is not exactly on the axis
    r = np.linalg.norm(cylinder[:, [0, 2]] - axis[[0, 2]], axis=1)
    on_side = np.isclose(r, r.max(), atol=2e-3)
    y = cylinder[:, 1]
    on_caps = (np.isclose(y, y.min(), atol=1e-5) | np.isclose(y, y.max(), atol=1e-5)) & (r <= r.max() + 1e-5)
    assert np.all(on_side | on_caps)


def test_options_change_the_clouds():
    base = dict(num_points=512, seed=1, noise=0.0)
    plain = SyntheticShapes(13, rotate=False, **base)
    yrot = SyntheticShapes(13, rotate="y", **base)
    full = SyntheticShapes(13, rotate=True, **base)
    for i in range(13):
        p, y, f = plain[i][0], yrot[i][0], full[i][0]
        # a rotation about y keeps the multiset of heights
        torch.testing.assert_close(torch.sort(p[:, 1]).values, torch.sort(y[:, 1]).values, atol=1e-5, rtol=0)
        if plain.classes[i] != "sphere":
            assert not torch.allclose(torch.sort(p[:, 1]).values, torch.sort(f[:, 1]).values, atol=1e-3)
    noisy = SyntheticShapes(1, classes=["sphere"], rotate=False, noise=0.05, num_points=2000)[0][0]
    assert float(noisy.norm(dim=1).std()) > 0.02  # noise moves points off the sphere
    sphere = dict(classes=["sphere"], rotate=False, noise=0.0, num_points=2000)
    partial = SyntheticShapes(1, partial=True, **sphere)[0][0]
    # a cut sphere, re-normalised: no longer every point at the same radius
    assert float(partial.norm(dim=1).std()) > 0.05
    clutter = SyntheticShapes(1, clutter=True, **sphere)[0][0]
    heights = clutter[:, 1]
    floor = torch.isclose(heights, heights.min(), atol=1e-4)
    assert int(floor.sum()) > 100  # a flat floor patch under the object


def test_generation_is_fast():
    ds = SyntheticShapes(1000, num_points=1024)
    start = time.perf_counter()
    for i in range(1000):
        ds[i]
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0, f"1000 clouds took {elapsed:.2f} s"
