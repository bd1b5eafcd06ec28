"""extract_features: inputs of every kind, normalisation, resampling, devices, export."""

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
