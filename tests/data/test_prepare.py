"""The one preparation path: validation, float64 normalisation, per-item seeded resampling, batching."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from act_zoo.data import DatasetError, PointCloudFolder, read_points
from act_zoo.data.prepare import CloudPreparer, PreparedCloud, batch_clouds, prepare_cloud
from act_zoo.ops import furthest_point_sample


@pytest.fixture
def cloud() -> np.ndarray:
    """A float64 cloud on a 2**-20 grid, so that adding 1e7 is exact in float64."""
    rng = np.random.default_rng(0)
    return np.round(rng.normal(size=(700, 3)) * 2**20) / 2**20


def test_steps_read_validate_normalise_resample(cloud):
    prep = CloudPreparer(256)
    out = prep(cloud, "c")
    assert isinstance(out, PreparedCloud) and out.name == "c" and out.num_input_points == 700 and not out.padded
    assert out.points.shape == (256, 3) and out.points.dtype == np.float32
    centred = cloud - cloud.mean(0)
    radius = np.linalg.norm(centred, axis=1).max()
    np.testing.assert_allclose(out.center, cloud.mean(0), rtol=0, atol=1e-12)
    assert out.scale == pytest.approx(radius, rel=1e-12)
    unit = (centred / radius).astype(np.float32)
    idx = furthest_point_sample(torch.from_numpy(unit)[None], 256)[0].numpy()  # official kernel rule
    np.testing.assert_array_equal(out.points, unit[idx])
    # back in the input's frame
    np.testing.assert_allclose(out.points.astype(np.float64) * out.scale + out.center, cloud[idx], atol=1e-5)


def test_a_cloud_offset_by_1e7_prepares_like_the_centred_cloud(cloud):
    centred = CloudPreparer(256)(cloud)
    far = CloudPreparer(256)(cloud + 1e7)
    np.testing.assert_allclose(far.points, centred.points, rtol=0, atol=1e-6)
    np.testing.assert_allclose(far.center, cloud.mean(0) + 1e7, rtol=0, atol=1e-6)
    # the old float32 path lost the shape: float32 cannot even hold the offset cloud's points
    assert np.unique((cloud + 1e7).astype(np.float32), axis=0).shape[0] < 200  # of 700


@pytest.mark.parametrize(("scale", "offset", "dtype", "match"), [
    (1.0, 1e20, np.float64, "shape is lost"),        # float64: rounded to ~2e4 on a unit cloud
    (1.0, 1e6, np.float32, "shape is lost"),         # float32: rounded to ~0.06 on a unit cloud
    (1e300, 1e307, np.float64, "too large to normalise"),  # overflow
])
def test_coordinates_beyond_the_inputs_precision_are_refused(cloud, scale, offset, dtype, match):
    with np.errstate(over="ignore"):
        bad = (cloud * scale + offset).astype(dtype)
    with pytest.raises(ValueError, match=match):
        CloudPreparer(64)(bad, "far cloud")
    # a large cloud far away is fine: its size keeps up with its position
    ok = (cloud * 1e19 + 1e20).astype(np.float64)
    assert np.isfinite(CloudPreparer(64)(ok).points).all()


def test_validation_errors_name_the_cloud(cloud):
    prep = CloudPreparer(64)
    cases = [
        (torch.empty(10, 3, device="meta"), "meta device"),
        (np.zeros((0, 3)), "empty cloud"),
        (np.zeros((10, 4)), r"\[N, 3\]"),
        (np.ones((10, 3), dtype=bool), "unsupported dtype"),
        (torch.ones(10, 3, dtype=torch.complex64), "unsupported dtype"),
        (np.where(np.arange(30).reshape(10, 3) == 4, np.nan, 1.0), "1 of 10 points contain NaN"),
        (np.ones((10, 3)), "all 10 points coincide"),
    ]
    for bad, match in cases:
        with pytest.raises(ValueError, match=f"my cloud: .*{match}"):
            prep(bad, "my cloud")
    with pytest.raises(TypeError, match="expected a tensor, array or path"):
        prep([1, 2, 3], "x")  # type: ignore[arg-type]
    for bad_opts in ({"num_points": 0}, {"num_points": True}, {"num_points": 8, "seed": -1},
                     {"num_points": 8, "sample": "nope"}, {"num_points": 8, "mesh_samples": 0}):
        with pytest.raises(ValueError):
            CloudPreparer(**bad_opts)
    with pytest.raises(ValueError, match="overflow float32"):
        CloudPreparer(8, normalize=False)(cloud + 1e19)


def test_random_draws_are_seeded_per_item_not_by_position(cloud):
    small = cloud[:100]
    for sample in ("fps", "random"):
        prep = CloudPreparer(256 if sample == "fps" else 50, sample=sample, seed=3)  # padding / random subset
        a = prep(small)
        prep(cloud[100:300])  # another cloud in between changes nothing
        assert np.array_equal(prep(small).points, a.points)
        assert np.array_equal(CloudPreparer(prep.num_points, sample=sample, seed=3)(torch.from_numpy(small)).points,
                              a.points)  # a tensor of the same values: the same draws
        other = CloudPreparer(prep.num_points, sample=sample, seed=4)(small)
        assert not np.array_equal(other.points, a.points)
    padded = CloudPreparer(256)(small)
    assert padded.padded and padded.num_input_points == 100
    np.testing.assert_array_equal(padded.points[:100], prepare_cloud(small, num_points=100).points)  # all points first


def test_fps_of_an_fps_pool_is_fps_of_the_cloud(cloud):
    """What makes ``evaluate`` (files prepared to the 1.2x pool, then FPS) agree with ``predict``."""
    pool = CloudPreparer(300)(cloud).points
    direct = CloudPreparer(256)(cloud).points
    idx = furthest_point_sample(torch.from_numpy(pool)[None], 256)[0].numpy()
    np.testing.assert_array_equal(pool[idx], direct)


def test_unnormalised_fps_is_scale_free():
    """The official kernel never picks points within sqrt(1e-3) of the origin after the first:
    a millimetre-sized cloud in metres would collapse to copies of point 0. Without
    normalisation the indices are computed on a unit-sphere copy."""
    tiny = np.random.default_rng(1).normal(size=(200, 3)) * 1e-3
    out = CloudPreparer(64, normalize=False)(tiny).points
    assert np.unique(out, axis=0).shape[0] == 64
    dist = np.linalg.norm(out[:, None, :].astype(np.float64) - tiny[None], axis=2).min(axis=1)
    assert dist.max() < 1e-9  # raw coordinates: every prepared point is an input point


def test_files_normals_and_the_datasets_share_the_path(tmp_path: Path, cloud):
    normals = np.tile([0.0, 0.0, 1.0], (700, 1))
    np.save(tmp_path / "n.npy", np.concatenate([cloud + 5.0, normals], axis=1))
    prep = CloudPreparer(128, keep_normals=True)
    out = prep(tmp_path / "n.npy")
    assert out.points.shape == (128, 6) and out.name == str(tmp_path / "n.npy")
    np.testing.assert_array_equal(out.points[:, 3:], np.float32(normals[:128]))  # normals are not scaled
    np.testing.assert_allclose(out.points[:, :3], CloudPreparer(128)(cloud).points, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[N, 6"):
        prep(cloud)  # an in-memory cloud must carry the columns asked for
    (tmp_path / "cls").mkdir()
    np.save(tmp_path / "cls" / "a.npy", cloud)
    item = PointCloudFolder(tmp_path, num_points=128, extensions=["npy"])
    assert item.classes == ["cls"]
    np.testing.assert_array_equal(item[0][0].numpy(), prepare_cloud(tmp_path / "cls" / "a.npy", num_points=128).points)
    np.save(tmp_path / "cls" / "b.npy", np.ones((5, 3)))
    with pytest.raises(DatasetError, match=r"b\.npy: all 5 points coincide"):
        PointCloudFolder(tmp_path, num_points=8, extensions=["npy"])[1]
    with pytest.raises(DatasetError, match=r"missing\.ply: file not found"):
        prep(tmp_path / "missing.ply")
    # read_points(num_points=...) is the same resampling without normalisation
    np.testing.assert_array_equal(read_points(tmp_path / "cls" / "a.npy", num_points=64),
                                  CloudPreparer(64, normalize=False)(tmp_path / "cls" / "a.npy").points)


def test_batching_and_pickling(cloud):
    prep = CloudPreparer(64, sample="random", seed=2)
    clone = pickle.loads(pickle.dumps(prep))  # DataLoader workers and process pools get a copy
    assert clone == prep
    items = [prep(cloud, "a"), clone(cloud[:300] * 3 + 1, "b")]
    batch = batch_clouds(items)
    assert batch.points.shape == (2, 64, 3) and batch.points.dtype == torch.float32 and len(batch) == 2
    assert batch.centers.dtype == torch.float64 and batch.scales.shape == (2,) and batch.names == ["a", "b"]
    with pytest.raises(ValueError, match="no clouds"):
        batch_clouds([])
    with pytest.raises(ValueError, match="differ in shape"):
        batch_clouds([items[0], CloudPreparer(32)(cloud)])


@pytest.mark.parametrize(("sample", "normalize"), [("fps", True), ("fps", False), ("random", True)])
def test_prepare_many_batches_fps_and_equals_each_cloud_alone(cloud, tmp_path, monkeypatch, sample, normalize):
    import act_zoo.data.prepare as prepare_module
    import act_zoo.ops

    rng = np.random.default_rng(3)
    same = [cloud * s + o for s, o in ((1, 0), (3, 5), (0.1, -2), (7, 1e3))]  # 700 points each: one FPS batch
    others = [cloud[:64], cloud[:40], rng.normal(size=(300, 3)), cloud[:65]]  # exactly n, padded, other sizes
    np.save(tmp_path / "f.npy", cloud.astype(np.float32) * 2)
    sources = [*same[:2], tmp_path / "f.npy", others[0], np.full((5, 3), np.nan), *same[2:], *others[1:],
               tmp_path / "missing.npy"]
    prep = CloudPreparer(64, sample=sample, normalize=normalize, seed=4)
    calls = []
    real = act_zoo.ops.furthest_point_sample

    def spy(xyz, n):
        calls.append(tuple(xyz.shape))
        return real(xyz, n)

    monkeypatch.setattr(act_zoo.ops, "furthest_point_sample", spy)
    monkeypatch.setattr(prepare_module, "FPS_BATCH_POINTS", 3 * 700)  # at most 3 clouds of 700 per call
    many = prep.prepare_many(sources, [f"s{i}" for i in range(len(sources))])
    if sample == "fps":  # 5 clouds of 700 points (2 calls of <= 3), 1 of 300 and 1 of 65
        assert sorted(calls) == sorted([(3, 700, 3), (2, 700, 3), (1, 300, 3), (1, 65, 3)])
    for i, (src, got) in enumerate(zip(sources, many)):
        if i in (4, len(sources) - 1):  # NaN cloud, missing file: the single path's error, in place
            with pytest.raises(ValueError) as alone_error:
                prep(src, f"s{i}")
            assert type(got) is type(alone_error.value) and str(got) == str(alone_error.value)
            continue
        alone = prep(src, f"s{i}")
        assert got.name == alone.name and got.num_input_points == alone.num_input_points
        np.testing.assert_array_equal(got.points, alone.points)  # bit-identical to the single-cloud path
        np.testing.assert_array_equal(got.center, alone.center)
        assert got.scale == alone.scale
