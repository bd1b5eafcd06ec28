import dataclasses

import pytest
import torch
from helpers import assert_close, load_official, manifest, official_keys

from act_zoo._s3dis import S3DIS_CLASSES
from act_zoo.layers.propagation import interpolate, three_nearest_centers
from act_zoo.models import MODEL_CLASSES, ACTPartSeg, PartSegConfig
from act_zoo.models.semseg import S3DIS, ACTSemSeg, SemSegConfig, semseg_loss

TINY_CFG = manifest()["tiny_config"]["semseg"]
TINY = SemSegConfig(
    embed_dim=TINY_CFG["trans_dim"], depth=TINY_CFG["depth"], num_heads=TINY_CFG["num_heads"],
    group_size=TINY_CFG["group_size"], num_group=TINY_CFG["num_group"], encoder_dims=TINY_CFG["trans_dim"],
    drop_path_rate=TINY_CFG["drop_path_rate"], cls_dim=TINY_CFG["num_classes"],
    fp_dims=(4 * TINY_CFG["trans_dim"], TINY_CFG["fp_out"]), head_dims=tuple(TINY_CFG["head_dims"]),
    npoints=TINY_CFG["npoints"], fetch_idx=tuple(TINY_CFG["fetch_idx"]),
)


@pytest.fixture(scope="module")
def official():
    return load_official("semseg_tiny.safetensors")


def _tiny_model(official, fast: bool) -> ACTSemSeg:
    weights, _ = official
    m = ACTSemSeg(TINY)
    m.load_state_dict(weights, strict=True)
    return m.eval().set_fast_path(fast)


def _points(fx) -> torch.Tensor:
    return fx["input.points"].transpose(1, 2)  # official [B, 3, N] -> [B, N, 3]


def _capture(m: ACTSemSeg, caps: dict) -> list:
    def tap(name):
        return lambda mod, inp, out: caps.__setitem__(name, out.detach().clone())

    hooks = [m.encoder.register_forward_hook(tap("encoder.out")),
             m.pos_embed.register_forward_hook(tap("pos.out")),
             m.propagation_0_cls.register_forward_hook(tap("fp.out")),
             m.propagation_0_cls.mlp_bns[0].register_forward_hook(
                 lambda mod, inp, out: caps.__setitem__("fp.layer0.out", torch.relu(out.detach())))]
    for i, blk in enumerate(m.blocks.blocks):
        hooks.append(blk.register_forward_hook(tap(f"block{i}.out")))
    for name in ("convs1", "bns1", "convs2", "bns2", "convs3"):
        hooks.append(getattr(m, f"{name}_cls").register_forward_hook(tap(f"{name}.out")))
    return hooks


@pytest.mark.parametrize("fast", [False, True], ids=["reference", "fast"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_every_intermediate_matches_official(official, fast, grad):
    _, fx = official
    m = _tiny_model(official, fast)
    caps: dict = {}
    hooks = _capture(m, caps)
    with torch.set_grad_enabled(grad):
        feats = m.forward_features(_points(fx))
        seg_pred = m.forward_head(feats)
    for h in hooks:
        h.remove()
    C3 = 3 * TINY.embed_dim
    got = {"concat_feature": feats.feature, "pool.max": feats.global_feature()[:, :C3],
           "pool.avg": feats.global_feature()[:, C3:], "seg_pred": seg_pred,
           "encoder.out": caps["encoder.out"], "pos.out": caps["pos.out"]}
    got.update({f"norm.block{i}": t for i, t in zip(TINY.fetch_idx, feats.taps)})
    if not fast or grad:  # the in-place inference path runs the blocks on one stream, no module calls
        got.update({f"block{i}.out": caps[f"block{i}.out"] for i in range(TINY.depth)})
    if not fast:  # the fast head runs channels-last on derived weights, no module calls
        got.update({k: caps[k] for k in ("fp.layer0.out", "fp.out", "convs1.out", "bns1.out", "convs2.out",
                                         "bns2.out", "convs3.out")})
    for name, value in got.items():  # the bar: 1e-5 absolute, no relative slack
        assert_close(value, fx[name], atol=1e-5, rtol=0, name=name)
    assert len(got) == 9 + (12 if not fast or grad else 0) + (7 if not fast else 0)
    assert torch.equal(feats.centers, fx["group.center"])
    assert torch.equal(seg_pred.argmax(-1), fx["eval.pred"])
    loss = semseg_loss(seg_pred, fx["target"], fx["labelweights"])
    assert_close(loss, fx["loss"], atol=1e-6, rtol=0, name="loss")


def test_grouping_and_propagation_exact(official):
    _, fx = official
    m = _tiny_model(official, True)
    patches = m.patchify(_points(fx))
    assert torch.equal(patches.center_idx, fx["fps_idx"].long())
    assert torch.equal(patches.knn_idx, fx["group.knn_idx"])
    assert_close(patches.neighborhood, fx["group.neighborhood"], atol=0, rtol=0, name="neighborhood")
    nearest = three_nearest_centers(_points(fx), fx["group.center"])
    assert torch.equal(nearest.idx, fx["fp.nn_idx"])
    assert_close(nearest.sq_dist, fx["fp.sq_dist"], atol=0, rtol=0, name="fp.sq_dist")
    assert_close(nearest.weight, fx["fp.weight"], atol=1e-5, rtol=0, name="fp.weight")
    assert_close(interpolate(fx["concat_feature"].transpose(1, 2), nearest), fx["fp.interpolated"],
                 atol=1e-5, rtol=0, name="fp.interpolated")
    assert (fx["fp.sq_dist"][..., 0] < 0).any()  # the fixture exercises the slightly negative distances


def test_loss_is_the_class_weighted_mean(official):
    _, fx = official
    lp, t, w = fx["seg_pred"], fx["target"], fx["labelweights"]
    picked = -lp.reshape(-1, 13).gather(1, t.reshape(-1, 1))[:, 0]
    manual = (w[t.reshape(-1)] * picked).sum() / w[t.reshape(-1)].sum()
    assert_close(semseg_loss(lp, t, w), manual, atol=1e-6, rtol=0, name="weighted nll")
    assert not torch.allclose(semseg_loss(lp, t), manual)  # the weights matter on this fixture
    with pytest.raises(ValueError, match=r"class weights must have shape \[13\]"):
        semseg_loss(lp, t, w[:5])


def test_single_cloud_and_batch_agree(official):
    _, fx = official
    m = _tiny_model(official, True)
    pts = _points(fx)
    with torch.no_grad():
        batched = m(pts)
        single = m(pts[1])
        feats = m.forward_features(pts[1])
    assert single.shape == (384, 13) and feats.feature.shape == (192, 32) and feats.centers.shape == (32, 3)
    assert_close(single, batched[1], atol=1e-5, rtol=0, name="single cloud")
    assert_close(single, fx["seg_pred"][1], atol=1e-5, rtol=0, name="single cloud vs official")


def test_fast_path_agrees_with_reference_on_a_trained_like_model():
    torch.manual_seed(1)
    cfg = SemSegConfig(embed_dim=40, depth=5, num_heads=5, group_size=8, num_group=24, encoder_dims=40,
                       drop_path_rate=0.0, cls_dim=7, fp_dims=(64, 48, 32), head_dims=(36, 20), fetch_idx=(1, 2, 4))
    m = ACTSemSeg(cfg).eval()
    with torch.no_grad():  # non-trivial BN statistics so folding is exercised
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    x = torch.randn(3, 300, 3)
    ref = m.set_fast_path(False)(x)
    with torch.inference_mode():
        fast = m.set_fast_path(True)(x)
    grad_fast = m(x)
    assert_close(fast, ref, name="inference path")
    assert_close(grad_fast, ref, name="fast path with grad")
    assert m.class_names == tuple(f"class_{i}" for i in range(7))


def test_fast_training_path_matches_reference_gradients():
    torch.manual_seed(2)  # float64 so a rounding-level difference cannot move a max-pool argmax
    cfg = SemSegConfig(embed_dim=32, depth=4, num_heads=2, group_size=8, num_group=16, encoder_dims=32,
                       drop_path_rate=0.0, fp_dims=(48, 24), head_dims=(24, 16), fetch_idx=(0, 2, 3))
    ref = ACTSemSeg(cfg).double().train()
    fast = ACTSemSeg(cfg).double().train()
    fast.load_state_dict(ref.state_dict())
    ref.set_fast_path(False)
    for m in (ref, fast):
        m.dp1.p = 0.0
    x = torch.randn(4, 128, 3, dtype=torch.float64)
    target = torch.randint(0, 13, (4, 128))
    w = torch.rand(13, dtype=torch.float64) + 0.5
    losses = []
    for m in (ref, fast):
        loss = semseg_loss(m(x), target, w)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], atol=1e-12, rtol=1e-10)
    for (n, a), (_, b) in zip(ref.named_parameters(), fast.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-11, rtol=1e-8, msg=n)
    for (n, a), (_, b) in zip(ref.named_buffers(), fast.named_buffers()):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-10, msg=n)


def test_full_size_keys_match_official_on_meta():
    table = official_keys("semseg_s3dis.json")
    with torch.device("meta"):
        m = ACTSemSeg()
    sd = m.state_dict()
    want = {e["key"]: e for e in table["keys"]}
    assert list(sd) == list(want)  # same names, same order
    for k, e in want.items():
        assert list(sd[k].shape) == e["shape"], k
    params = dict(m.named_parameters())
    assert {k for k, e in want.items() if e["kind"] == "parameter"} == set(params)
    assert sum(v.numel() for v in sd.values()) == table["num_elements"] == 27028243
    assert sum(p.numel() for p in params.values()) == table["num_parameters"] == 27020301
    assert m.config == S3DIS and m.convs1_cls.in_channels == 3328 and m.convs3_cls.out_channels == 13
    assert not hasattr(m, "cls_token") and not hasattr(m, "label_conv_cls")
    assert m.class_names == S3DIS_CLASSES and S3DIS_CLASSES[0] == "ceiling" and S3DIS_CLASSES[-1] == "clutter"
    # the part-seg key table without the label conv, and the head resized
    part = official_keys("partseg_shapenetpart.json")
    part_keys = [e["key"] for e in part["keys"] if not e["key"].startswith("label_conv_cls.")]
    assert part_keys == list(want)


def test_semseg_and_partseg_share_the_trunk_and_head_code():
    from act_zoo.models.segmentation import SegmentationNet

    assert issubclass(ACTSemSeg, SegmentationNet) and issubclass(ACTPartSeg, SegmentationNet)
    assert MODEL_CLASSES["ACTSemSeg"] == (ACTSemSeg, SemSegConfig)
    # a part-seg model with the same sizes gives the same trunk features for the same weights
    sem = ACTSemSeg(TINY).eval()
    part_cfg = PartSegConfig(embed_dim=64, depth=12, num_heads=4, group_size=16, num_group=32, encoder_dims=64,
                             fp_dims=(256, 96), head_dims=(48, 32))
    part = ACTPartSeg(part_cfg).eval()
    trunk = {k: v for k, v in sem.state_dict().items() if k.split(".")[0] in ("encoder", "pos_embed", "blocks", "norm")}
    part.load_state_dict(trunk, strict=False)
    x = torch.rand(2, 128, 3)
    with torch.no_grad():
        assert torch.equal(sem.forward_features(x).feature, part.forward_features(x).feature)


def test_init_weights_is_the_official_fresh_init():
    torch.manual_seed(0)
    m = ACTSemSeg(TINY)
    for name, mod in m.named_modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv1d)):
            w = mod.weight.detach()
            assert 0.01 < float(w.std()) < 0.03 and w.abs().max() <= 2.0, name
            assert mod.bias is None or bool((mod.bias == 0).all()), name
        elif isinstance(mod, torch.nn.BatchNorm1d):
            assert bool((mod.weight == 1).all()) and bool((mod.running_mean == 0).all()), name


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.randn(2, 64), "shape"),
        (torch.randn(2, 64, 4), "shape"),
        (torch.randn(0, 64, 3), "empty batch"),
        (torch.randint(0, 5, (2, 64, 3)), "floating"),
        (torch.full((2, 64, 3), float("nan")), "NaN"),
        (torch.randn(2, 12, 3), "fewer than the model needs"),
    ],
)
def test_bad_points_are_clear_value_errors(bad, match):
    m = ACTSemSeg(TINY).eval()
    with pytest.raises(ValueError, match=match):
        m(bad)


def test_config_validation():
    with pytest.raises(ValueError, match=r"depth \(11\) must exceed max\(fetch_idx\) = 11"):
        SemSegConfig(depth=11)
    with pytest.raises(ValueError, match="no reduce_dim"):
        SemSegConfig(encoder_dims=256)
    with pytest.raises(ValueError, match="3 class_names for cls_dim=13"):
        SemSegConfig(class_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="unique"):
        SemSegConfig(cls_dim=2, class_names=("a", "a"))
    with pytest.raises(ValueError, match="block_size"):
        SemSegConfig(block_size=0)
    cfg = SemSegConfig(cls_dim=2, class_names=["floor", "rest"], fp_dims=[8, 4])  # yaml lists become tuples
    assert cfg.class_names == ("floor", "rest") and cfg.fp_dims == (8, 4) and hash(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        S3DIS.depth = 3  # type: ignore[misc]
