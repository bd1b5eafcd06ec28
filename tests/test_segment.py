"""``act_zoo.segment`` and ``act-zoo segment`` on a procedural room (~200k points: floor,
walls, a table and chairs made of primitives) with a tiny random model."""

import matplotlib
import numpy as np
import pytest
import torch

import act_zoo
from act_zoo._s3dis import S3DIS_CLASSES, S3DIS_COLORS
from act_zoo.cli import main
from act_zoo.data.synthetic_scene import synthetic_room
from act_zoo.models.semseg import ACTSemSeg, SemSegConfig
from act_zoo.scene import class_colors, prepare_scene, segment

plyfile = pytest.importorskip("plyfile")

TINY = SemSegConfig(embed_dim=32, depth=4, num_heads=2, group_size=16, num_group=16, encoder_dims=32,
                    drop_path_rate=0.0, fp_dims=(64, 32), head_dims=(32, 16), fetch_idx=(1, 2, 3))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = ACTSemSeg(TINY).eval()
    with torch.no_grad():  # sharper logits: the random model then splits the room into several classes
        m.convs3_cls.weight.mul_(50.0)
    return m


@pytest.fixture(scope="module")
def room():
    xyz, labels = synthetic_room(200_000, seed=0)
    return xyz.astype(np.float32), labels  # float32, what a PLY scan holds


@pytest.fixture(scope="module")
def room_result(model, room):
    return segment(model, room[0])


def test_every_point_of_the_room_is_labelled(room_result, room):
    xyz, _ = room
    r = room_result
    assert r.labels.shape == (200_000,) and r.labels.dtype == np.int64
    assert r.labels.min() >= 0 and r.labels.max() < 13 and r.class_names == S3DIS_CLASSES
    assert np.shares_memory(r.points, xyz) and np.array_equal(r.points, xyz)  # the input, not a copy
    assert r.confidence.shape == (200_000,) and ((r.confidence > 0) & (r.confidence <= 1)).all()
    assert sum(r.counts().values()) == 200_000 and len(r.counts()) >= 2
    assert np.array_equal(r.colors()[:3], np.array(S3DIS_COLORS, np.uint8)[r.labels[:3]])


def test_labels_do_not_depend_on_the_order_of_the_points(model, room, room_result):
    xyz, _ = room
    perm = np.random.default_rng(1).permutation(len(xyz))
    shuffled = segment(model, xyz[perm])
    assert np.array_equal(shuffled.labels, room_result.labels[perm])
    assert np.array_equal(shuffled.confidence, room_result.confidence[perm])  # bit for bit


def test_duplicates_axes_and_mean_log_probs(model):
    xyz, _ = synthetic_room(6000, size=(2.5, 2.0, 2.5), seed=4)
    dup = np.concatenate([xyz, xyz[:500]])
    r = segment(model, dup, return_log_probs=True)
    assert np.array_equal(r.labels[:500], r.labels[6000:])  # a duplicate gets its twin's label
    assert r.log_probs.shape == (6500, 13) and np.array_equal(r.log_probs.argmax(1), r.labels)
    # a y-up scan in millimetres, told so, is the same scene
    y_up = np.stack([xyz[:, 0], xyz[:, 2], -xyz[:, 1]], axis=1)
    same = segment(model, y_up, up="y")
    assert np.array_equal(same.labels, r.labels[:6000])
    mm = segment(model, xyz * 1000.0, scale=0.001)
    assert (mm.labels == r.labels[:6000]).mean() > 0.99  # float rounding of the unit change only
    # an offset scene (e.g. georeferenced) gives the same labels: the frame is built in float64
    far = segment(model, xyz + np.array([3.5e5, 5.2e6, 120.0]))
    assert np.array_equal(far.labels, r.labels[:6000])


def test_blocks_are_streamed_in_bounded_batches(model):
    xyz, _ = synthetic_room(20_000, size=(4.0, 3.0, 2.5), seed=2)
    sizes = []
    hook = model.register_forward_pre_hook(lambda mod, args: sizes.append(args[0].shape[0]))
    try:
        r = segment(model, xyz, batch_size=3, npoints=1024)
    finally:
        hook.remove()
    assert max(sizes) <= 3 and len(sizes) > 10 and sum(sizes) >= 20_000 // 1024
    assert len(r.labels) == 20_000
    # the batch size changes only float rounding (BLAS blocking), not the chunks
    other = segment(model, xyz, batch_size=16, npoints=1024)
    np.testing.assert_allclose(other.confidence, r.confidence, rtol=1e-5)
    assert (other.labels == r.labels).mean() > 0.999


def test_progress_bar_counts_every_chunk_and_training_mode_comes_back(model, capsys):
    from act_zoo.data.blocks import count_chunks
    from act_zoo.scene import prepare_scene

    xyz, _ = synthetic_room(8000, size=(2.5, 2.0, 2.5), seed=5)
    quiet = segment(model, xyz, passes=2, npoints=1024, return_log_probs=True)
    capsys.readouterr()
    model.train()
    try:
        shown = segment(model, xyz, passes=2, npoints=1024, progress=True, return_log_probs=True)
        assert model.training  # the caller's mode is restored
    finally:
        model.eval()
    assert np.array_equal(shown.log_probs, quiet.log_probs)  # eval mode inside; the bar changes nothing
    err = capsys.readouterr().err
    unique = np.unique(prepare_scene(xyz.astype(np.float64)), axis=0)
    total = 2 * count_chunks(unique, npoints=1024, block_size=TINY.block_size, stride=TINY.block_size / 2)
    assert "segment" in err and f"{total}/{total}" in err and "chunk" in err


def test_bad_inputs_are_clear_errors(model, tmp_path):
    with pytest.raises(ValueError, match="NaN or inf"):
        segment(model, np.array([[0.0, 0.0, np.nan]] * 10))
    with pytest.raises(ValueError, match=r"shape \[N, 3\]"):
        segment(model, np.zeros((10, 2)))
    with pytest.raises(ValueError, match="empty cloud"):
        segment(model, np.zeros((0, 3)))
    with pytest.raises(TypeError, match="semantic-segmentation model"):
        segment(torch.nn.Linear(3, 3), np.zeros((10, 3)))
    with pytest.raises(ValueError, match="scale"):
        segment(model, np.zeros((10, 3)), scale=0)
    with pytest.raises(ValueError, match="up"):
        prepare_scene(np.zeros((10, 3)), up="x")


def test_colours_for_any_class_count():
    assert np.array_equal(class_colors(S3DIS_CLASSES), np.array(S3DIS_COLORS, np.uint8))
    c = class_colors([f"c{i}" for i in range(20)])
    assert c.shape == (20, 3) and len({tuple(x) for x in c}) == 20


def test_act_zoo_segment_cli_writes_ply_and_png(model, room, room_result, tmp_path, capsys):
    """``act-zoo segment MODEL scan.ply --out labelled.ply --png top.png``, as a user types it."""
    xyz, _ = room
    model_dir = tmp_path / "my_semseg"
    model.save_pretrained(model_dir)
    scan = tmp_path / "scan.ply"
    vertex = np.empty(len(xyz), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    vertex["x"], vertex["y"], vertex["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")]).write(str(scan))
    backend = matplotlib.get_backend()
    out, png = tmp_path / "labelled.ply", tmp_path / "top.png"
    assert main(["segment", str(model_dir), str(scan), "--out", str(out), "--png", str(png), "-q"]) == 0
    assert matplotlib.get_backend() == backend  # Figure + Agg canvas, the backend untouched
    text = capsys.readouterr().out
    assert "200,000 points labelled" in text and "%" in text
    ply = plyfile.PlyData.read(str(out))
    v = ply["vertex"].data
    assert len(v) == 200_000 and set(v.dtype.names) >= {"x", "y", "z", "red", "green", "blue", "label", "confidence"}
    assert np.array_equal(v["x"], vertex["x"])  # coordinates as given
    colors = np.array(S3DIS_COLORS, np.uint8)[v["label"]]
    assert np.array_equal(np.stack([v["red"], v["green"], v["blue"]], 1), colors)
    assert np.array_equal(v["label"], room_result.labels)  # the CLI read the same float32 values
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert main(["segment", str(model_dir), str(scan), "--out", str(tmp_path / "x.txt")]) == 1
    assert main(["segment", str(model_dir), str(tmp_path / "missing.ply"), "--out", str(out)]) == 1
    assert "scan not found" in capsys.readouterr().err


def test_lazy_export_survives_importing_the_module():
    import act_zoo.scene

    assert act_zoo.segment is segment and callable(act_zoo.segment)
    assert act_zoo.ACTSemSeg is ACTSemSeg


def test_readme_semantic_segmentation_commands(model, tmp_path, monkeypatch, capsys):
    """The README's commands, exactly as typed, with a tiny stand-in registered under the real
    name (the real weights are a Google Drive download) and tiny files in the official layouts."""
    import hashlib

    from hub.http_server import LocalServer

    from act_zoo.hub import registry
    from act_zoo.models.common import config_to_dict
    from act_zoo.train import api

    monkeypatch.setenv("ACT_ZOO_HOME", str(tmp_path / "home"))
    for var in ("NO_PROXY", "no_proxy"):  # the stand-in weights come from a local server
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    monkeypatch.chdir(tmp_path)
    model.save_pretrained(tmp_path / "standin")
    weights = (tmp_path / "standin" / "model.safetensors").read_bytes()
    server = LocalServer().start()
    registry.reset_registry()
    try:
        real = registry.get_record("act_base.s3dis_semseg")
        registry.unregister_weights("act_base.s3dis_semseg")
        rec = dict(real.to_dict(), config=config_to_dict(model.config), official_config=None, convert="none",
                   format="safetensors", sources=[{"type": "url", "url": server.add_file("/w.safetensors", weights)}],
                   sha256=hashlib.sha256(weights).hexdigest(), size_bytes=len(weights), num_params=1)
        act_zoo.register_weights(rec)
        # act-zoo segment act_base.s3dis_semseg room.ply --out labelled.ply --png top.png
        xyz, _ = synthetic_room(30_000, seed=5)
        vertex = np.empty(len(xyz), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
        vertex["x"], vertex["y"], vertex["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        plyfile.PlyData([plyfile.PlyElement.describe(vertex, "vertex")]).write("room.ply")
        argv = ["segment", "act_base.s3dis_semseg", "room.ply", "--out", "labelled.ply", "--png", "top.png"]
        assert main(argv) == 0
        assert len(plyfile.PlyData.read("labelled.ply")["vertex"].data) == 30_000
        assert (tmp_path / "top.png").stat().st_size > 0
        # the S3DIS protocol commands on tiny rooms at the README's path
        root = tmp_path / "data" / "s3dis" / "stanford_indoor3d"
        root.mkdir(parents=True)
        rng = np.random.default_rng(0)
        from act_zoo._s3dis import S3DIS_ROOMS_PER_AREA

        for area, n in S3DIS_ROOMS_PER_AREA.items():
            for j in range(n):
                data = np.concatenate([rng.random((40, 6)) * 0.9, rng.integers(0, 13, (40, 1))], axis=1)  # one block
                data[:, :3] -= data[:, :3].min(0)
                np.save(root / f"Area_{area}_room_{j}.npy", data)
        assert main(["data", "check", "s3dis", "data/s3dis/stanford_indoor3d"]) == 0
        seen = {}
        monkeypatch.setattr(api, "train", lambda pipeline, cfg, **kw: seen.update(pipeline=pipeline, cfg=cfg) or {})
        argv = ["train", "semseg", "--config", "recipe:s3dis_semseg", "--set", "data.root=data/s3dis/stanford_indoor3d"]
        assert main(argv) == 0
        assert seen["pipeline"] == "semseg" and seen["cfg"].data.root == "data/s3dis/stanford_indoor3d"
        assert seen["cfg"].model == SemSegConfig() and seen["cfg"].run.max_epoch == 60
        capsys.readouterr()
        argv = ["evaluate", "act_base.s3dis_semseg", "--dataset", "s3dis", "--root", "data/s3dis/stanford_indoor3d"]
        assert main(argv + ["--votes", "1", "-q"]) == 0  # one pass instead of 3, for time
        out = capsys.readouterr().out
        assert "evaluated 68 rooms" in out and out.splitlines()[-1].startswith("miou: ")
    finally:
        server.stop()
        registry.reset_registry()
