"""extract_features: inputs of every kind, normalisation, resampling, devices, export."""

import json

import numpy as np
import pytest
import torch

import act_zoo
from act_zoo.data import SyntheticShapes
from act_zoo.models import ACTEncoder, PointTransformerConfig

CFG = PointTransformerConfig(embed_dim=32, depth=2, num_heads=2, group_size=8, num_group=16, encoder_dims=32,
                             drop_path_rate=0.0, npoints=128)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ACTEncoder(CFG).eval()


def _pc_normalize(x):
    x = x - x.mean(0)
    return x / x.norm(dim=1).max()


def test_matches_forward_features_after_official_normalisation(model):
    clouds = torch.randn(3, 128, 3) * 5 + 2
    feats = act_zoo.extract_features(model, clouds)
    with torch.no_grad():
        ref = model.forward_features(torch.stack([_pc_normalize(c) for c in clouds]))
    torch.testing.assert_close(feats.global_feature, ref.global_feature, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(feats.tokens, ref.tokens, atol=1e-5, rtol=1e-4)
    # centres come back in each input's own frame: they are input points
    for b in range(3):
        d = torch.cdist(feats.centers[b], clouds[b], compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
        assert d.max() < 1e-4


def test_lists_of_clouds_of_different_sizes_numpy_and_files(model, tmp_path):
    shapes = SyntheticShapes(4, num_points=300, seed=1)
    a = shapes[0][0].numpy()
    b = shapes[1][0][:90]  # fewer points than npoints: padded with seeded repeats
    path = tmp_path / "c.npy"
    np.save(path, shapes[2][0].numpy())
    xyz = tmp_path / "d.xyz"
    np.savetxt(xyz, shapes[3][0].numpy())
    feats = act_zoo.extract_features(model, [a, b, str(path), xyz], batch_size=3)
    assert feats.global_feature.shape == (4, 64) and feats.tokens.shape == (4, 16, 32)
    again = act_zoo.extract_features(model, [a, b, str(path), xyz], batch_size=1)
    torch.testing.assert_close(feats.global_feature, again.global_feature, atol=1e-5, rtol=1e-4)
    one = act_zoo.extract_features(model, path)  # a single file: no batch axis
    assert one.global_feature.shape == (64,)
    torch.testing.assert_close(one.global_feature, feats.global_feature[2], atol=1e-5, rtol=1e-4)


def test_mesh_file_is_sampled_by_area(model, tmp_path):
    trimesh = pytest.importorskip("trimesh")
    mesh = trimesh.creation.box(extents=(1, 2, 3))
    path = tmp_path / "box.off"
    mesh.export(path)
    f1 = act_zoo.extract_features(model, path, seed=3)
    f2 = act_zoo.extract_features(model, path, seed=3)
    assert torch.equal(f1.global_feature, f2.global_feature)  # fixed seed: reproducible
    assert f1.centers.abs().max() <= 1.5 + 1e-4  # centres on the box surface, in the mesh's frame


def test_features_feed_user_autograd_code_and_inference_mode_callers(model):
    feats = act_zoo.extract_features(model, torch.randn(2, 128, 3))
    head = torch.nn.Linear(64, 3)
    head(feats.global_feature).sum().backward()  # plain tensors, not inference tensors
    assert head.weight.grad is not None
    with torch.inference_mode():
        inner = act_zoo.extract_features(model, torch.randn(2, 128, 3))
    assert inner.global_feature.shape == (2, 64)


def test_random_resampling_is_seeded(model):
    cloud = torch.randn(1000, 3)
    a = act_zoo.extract_features(model, cloud, sample="random", seed=1)
    b = act_zoo.extract_features(model, cloud, sample="random", seed=1)
    c = act_zoo.extract_features(model, cloud, sample="random", seed=2)
    assert torch.equal(a.global_feature, b.global_feature)
    assert not torch.equal(a.global_feature, c.global_feature)


def test_bf16_autocast_is_close(model):
    clouds = torch.randn(2, 128, 3)
    ref = act_zoo.extract_features(model, clouds)
    low = act_zoo.extract_features(model, clouds, amp=True)
    assert low.global_feature.dtype == torch.float32
    assert (low.global_feature - ref.global_feature).abs().max() < 0.1


@pytest.mark.parametrize("bad,match", [
    (torch.randn(10, 4), r"\[N, 3\]"),
    (torch.randn(0, 3), "empty"),
    ([], "empty list"),
    (torch.full((50, 3), float("nan")), "NaN"),
    ([torch.randn(20, 3), 5], "cloud 1"),
    (torch.randn(2, 3, 4, 3), r"\[B, N, 3\]"),
])
def test_bad_inputs(model, bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        act_zoo.extract_features(model, bad)


def test_unreadable_file_names_the_file(model, tmp_path):
    p = tmp_path / "junk.ply"
    p.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="junk.ply"):
        act_zoo.extract_features(model, p)


def test_stage2_model_uses_its_student(model):
    from act_zoo.models import ACTDistillation, DistillConfig, DVAEConfig

    d = DVAEConfig(group_size=8, num_group=16, num_tokens=16, encoder_dims=32, tokens_dims=16, decoder_dims=16,
                   teacher={"embed_dim": 16, "depth": 2, "num_heads": 2}, num_prompt_token=2, npoints=128)
    m = ACTDistillation(DistillConfig(embed_dim=32, depth=2, num_heads=2, decoder_num_heads=2, dvae=d))
    feats = act_zoo.extract_features(m, torch.randn(2, 128, 3))
    assert feats.tokens.shape == (2, 16, 32)


def test_works_under_inference_mode_and_torch_export(model):
    x = torch.randn(2, 128, 3)
    with torch.inference_mode():
        ref = model.forward_features(x)
    exported = torch.export.export(model, (x,))
    out = exported.module()(x)
    torch.testing.assert_close(out.global_feature, ref.global_feature, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.centers, ref.centers)


def test_onnx_export_where_supported(model, tmp_path):
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            f = self.m.forward_features(x)
            return f.global_feature, f.tokens, f.centers

    x = torch.randn(2, 128, 3)
    path = tmp_path / "enc.onnx"
    torch.onnx.export(Wrapper(model).eval(), (x,), str(path), dynamo=True)
    onnx.checker.check_model(str(path))
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path))
    outs = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = model.forward_features(x)
    np.testing.assert_allclose(outs[0], ref.global_feature.numpy(), atol=1e-4, rtol=1e-3)


# ----------------------------------------------------------------------------- one path, per-item seeds


def _mixed_clouds(n: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    sizes = [60, 128, 90, 400, 300, 128, 75, 1000, 64, 500, 200, 129][:n]  # < npoints: padded with seeded repeats
    return [rng.normal(size=(s, 3)) * rng.uniform(0.5, 20) + rng.normal(size=3) * 50 for s in sizes]


def test_features_do_not_depend_on_order_batch_size_or_neighbours(model):
    clouds = _mixed_clouds()
    for sample in ("fps", "random"):
        ref = act_zoo.extract_features(model, clouds, batch_size=1, sample=sample)
        perm = np.random.default_rng(0).permutation(len(clouds))
        for bs in (7, 32):
            got = act_zoo.extract_features(model, [clouds[i] for i in perm], batch_size=bs, sample=sample)
            for key in ("global_feature", "tokens", "centers"):
                torch.testing.assert_close(getattr(got, key), getattr(ref, key)[perm], atol=1e-5, rtol=0,
                                           msg=f"{sample} {key} batch {bs}")
        alone = act_zoo.extract_features(model, clouds[0], sample=sample)  # one cloud on its own
        torch.testing.assert_close(alone.global_feature, ref.global_feature[0], atol=1e-5, rtol=0)


def test_a_cloud_far_from_the_origin_gives_the_centred_clouds_features(model):
    rng = np.random.default_rng(2)
    cloud = np.round(rng.normal(size=(500, 3)) * 2**20) / 2**20  # exact after + 1e7 in float64
    near = act_zoo.extract_features(model, cloud)
    far = act_zoo.extract_features(model, cloud + 1e7)
    torch.testing.assert_close(far.global_feature, near.global_feature, atol=1e-5, rtol=0)
    torch.testing.assert_close(far.tokens, near.tokens, atol=1e-5, rtol=0)
    assert far.centers.dtype == torch.float64  # float64 input: centres keep their precision
    torch.testing.assert_close(far.centers - 1e7, near.centers, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="shape is lost"):
        act_zoo.extract_features(model, cloud + 1e20)
    with pytest.raises(ValueError, match="shape is lost"):
        act_zoo.extract_features(model, torch.from_numpy(cloud + 1e7).float())  # float32 cannot hold it


@pytest.mark.parametrize(("clouds", "kwargs", "match"), [
    (torch.randn(3, 100, 3), {"num_points": 0}, "num_points must be a positive int"),
    (torch.randn(3, 100, 3), {"num_points": -5}, "num_points must be a positive int"),
    ([], {}, "empty list"),
    (torch.empty(0, 100, 3), {}, "empty batch"),
    (torch.empty(2, 100, 3, device="meta"), {}, "meta device"),
    ([torch.randn(50, 3), torch.empty(50, 3, device="meta")], {}, "cloud 1: is on the meta device"),
    (torch.randn(3, 100, 3), {"batch_size": 0}, "batch_size"),
])
def test_clear_errors(model, clouds, kwargs, match):
    with pytest.raises(ValueError, match=match):
        act_zoo.extract_features(model, clouds, **kwargs)


def test_non_finite_features_are_an_error_naming_the_cloud(model, monkeypatch):
    real = model.forward_features

    def poisoned(points):
        out = real(points)
        out.global_feature[-1] = float("nan")
        return out

    monkeypatch.setattr(model, "forward_features", poisoned)
    with pytest.raises(ValueError, match="cloud 2: the network produced non-finite features"):
        act_zoo.extract_features(model, torch.randn(3, 128, 3), batch_size=3)


def test_progress_bar_and_model_mode(model, capfd):
    model.train()
    act_zoo.extract_features(model, torch.randn(5, 128, 3), batch_size=2)
    assert model.training  # the caller's mode comes back
    model.eval()
    assert capfd.readouterr().err == ""  # not a terminal: no bar
    act_zoo.extract_features(model, torch.randn(5, 128, 3), batch_size=2, progress=True)
    err = capfd.readouterr().err
    assert "extract" in err and "5/5" in err
    act_zoo.extract_features(model, torch.randn(5, 128, 3), progress=False)
    assert capfd.readouterr().err == ""


# ----------------------------------------------------------------------------- folder scale


@pytest.fixture
def files(tmp_path):
    from shape_files import write_shape_folder

    written = write_shape_folder(tmp_path / "shapes", per_class=1, classes=4, num_points=300, offset=7.0)
    (tmp_path / "shapes" / "box" / "junk.ply").write_bytes(b"ply\nformat ascii 1.0\nend_header\n")
    return tmp_path / "shapes", sorted(str(p) for p, _ in written)


def test_extract_files_folders_globs_skip_bad_and_outputs(model, files, tmp_path):
    from act_zoo.extract import check_output, extract_files

    root, good = files
    with pytest.raises(ValueError, match=r"junk\.ply"):
        extract_files(model, root)  # one bad file stops the job unless skip_bad
    res = extract_files(model, root, skip_bad=True, out=tmp_path / "f.npz")
    assert res.files == good and [f for f, _ in res.skipped] == [str(root / "box" / "junk.ply")]
    ref = act_zoo.extract_features(model, good)
    torch.testing.assert_close(res.features.global_feature, ref.global_feature, atol=1e-5, rtol=0)
    data = np.load(tmp_path / "f.npz")
    assert list(data["files"]) == good and list(data["skipped"]) == [str(root / "box" / "junk.ply")]
    assert data["global_feature"].shape == (4, 64) and data["tokens"].shape == (4, 16, 32)
    assert "no 'vertex' element" in data["skipped_reasons"][0]
    # a glob, and the same features whatever the way in
    sub = extract_files(model, str(root / "*" / "*.npy"))
    assert sub.files == [f for f in good if f.endswith(".npy")]
    # safetensors and a directory of .npy files
    from safetensors import safe_open

    res.save(tmp_path / "f.safetensors")
    with safe_open(str(tmp_path / "f.safetensors"), "np") as fh:
        assert json.loads(fh.metadata()["files"]) == good
        np.testing.assert_array_equal(fh.get_tensor("global_feature"), data["global_feature"])
    res.save(tmp_path / "feats/", tokens=False)
    assert json.loads((tmp_path / "feats" / "files.json").read_text()) == good
    assert sorted(p.name for p in (tmp_path / "feats").iterdir()) == [
        "centers.npy", "cls.npy", "files.json", "global_feature.npy", "meta.json", "skipped.json"]
    # the destination is checked before any work (not even the model is loaded)
    for bad, match in ((tmp_path / "f.txt", "must end in .npz or .safetensors"), (tmp_path / "f.npz" / "x", "cannot create the output folder")):
        with pytest.raises(ValueError, match=match):
            extract_files("no-such-model", root, out=bad)
    with pytest.raises(FileNotFoundError, match="nope: no such file"):
        extract_files(model, tmp_path / "nope")
    assert check_output(tmp_path / "new" / "deeper.npz") == (tmp_path / "new" / "deeper.npz", "npz")


def test_cli_extract_directory_glob_skip_bad(files, tmp_path, capsys, monkeypatch):
    from act_zoo.cli import main

    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    root, good = files
    out = tmp_path / "feats.npz"
    assert main(["extract", "act_tiny.synthetic10", str(root), "--out", str(out), "-q"]) == 1
    assert "junk.ply" in capsys.readouterr().err and not out.exists()
    assert main(["extract", "act_tiny.synthetic10", str(root), "--out", str(out), "--skip-bad", "-q"]) == 0
    cap = capsys.readouterr()
    assert "4 files" in cap.out and "skipped 1 unreadable file" in cap.out and "junk.ply" in cap.out
    assert "skipped" in cap.err and "junk.ply" in cap.err
    assert list(np.load(out)["files"]) == good
    assert main(["extract", "act_tiny.synthetic10", str(root / "b*"), "--out", str(tmp_path / "g/"), "-q"]) == 1
    assert "junk.ply" in capsys.readouterr().err  # the glob found the box folder, junk included
    # an existing folder is not "file not found"; a missing one is named; a bad --out fails first
    assert main(["extract", "act_tiny.synthetic10", str(root / "nope"), "--out", str(out)]) == 1
    assert "nope: no such file or directory" in capsys.readouterr().err
    assert main(["extract", "no-such-model", str(root), "--out", str(tmp_path / "f.csv")]) == 1
    assert "must end in .npz or .safetensors" in capsys.readouterr().err
