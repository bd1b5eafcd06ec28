import pytest
import torch

from act_zoo.layers.propagation import interpolate, square_distance, three_nearest_centers
from act_zoo.models.partseg import (
    SHAPENETPART,
    SHAPENETPART_CATEGORIES,
    SHAPENETPART_PARTS,
    SHAPENETPART_SEG_CLASSES,
    ACTPartSeg,
    PartSegConfig,
    category_from_target,
    part_seg_loss,
    predict_parts,
)
from act_zoo.train.metrics import class_miou, instance_miou, part_iou, per_class_miou, shape_iou
from helpers import assert_close, load_official, manifest, official_keys

TINY_CFG = manifest()["tiny_config"]["partseg"]
TINY = PartSegConfig(
    embed_dim=TINY_CFG["trans_dim"], depth=TINY_CFG["depth"], num_heads=TINY_CFG["num_heads"],
    group_size=TINY_CFG["group_size"], num_group=TINY_CFG["num_group"], encoder_dims=TINY_CFG["trans_dim"],
    drop_path_rate=TINY_CFG["drop_path_rate"], cls_dim=TINY_CFG["num_part"],
    num_classes=TINY_CFG["num_classes"],
    fp_dims=(4 * TINY_CFG["trans_dim"], TINY_CFG["fp_out"]), head_dims=tuple(TINY_CFG["head_dims"]),
    label_dim=TINY_CFG["label_dim"], npoints=TINY_CFG["npoints"], fetch_idx=tuple(TINY_CFG["fetch_idx"]),
)


@pytest.fixture(scope="module")
def official():
    return load_official("partseg_tiny.safetensors")


def _tiny_model(official, fast: bool) -> ACTPartSeg:
    weights, _ = official
    m = ACTPartSeg(TINY)
    m.load_state_dict(weights, strict=True)
    return m.eval().set_fast_path(fast)


def _points(fx) -> torch.Tensor:
    return fx["input.points"].transpose(1, 2)  # official [B, 3, N] -> [B, N, 3]


def _capture(m: ACTPartSeg, caps: dict) -> list:
    def tap(name):
        return lambda mod, inp, out: caps.__setitem__(name, out.detach().clone())

    hooks = [m.encoder.register_forward_hook(tap("encoder.out")),
             m.pos_embed.register_forward_hook(tap("pos.out")),
             m.label_conv_cls.register_forward_hook(tap("label_conv.out")),
             m.propagation_0_cls.register_forward_hook(tap("fp.out")),
             # the official fp.layer0.out is after the ReLU that follows this BN
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
        seg_pred = m.forward_head(feats, fx["input.cls_label"][:, 0])
    for h in hooks:
        h.remove()
    C3 = 3 * TINY.embed_dim
    got = {"concat_feature": feats.feature, "pool.max": feats.global_feature()[:, :C3],
           "pool.avg": feats.global_feature()[:, C3:], "seg_pred": seg_pred,
           "encoder.out": caps["encoder.out"],
           "pos.out": caps["pos.out"], "label_conv.out": caps["label_conv.out"]}
    got.update({f"norm.block{i}": t for i, t in zip(TINY.fetch_idx, feats.taps)})
    if not fast or grad:  # the in-place inference path runs the blocks on one stream, no module calls
        got.update({f"block{i}.out": caps[f"block{i}.out"] for i in range(TINY.depth)})
    if not fast:  # the fast head runs channels-last on derived weights, no module calls
        got.update({k: caps[k] for k in ("fp.layer0.out", "fp.out", "convs1.out", "bns1.out", "convs2.out",
                                         "bns2.out", "convs3.out")})
    for name, value in got.items():
        assert_close(value, fx[name], name=name)
    assert len(got) == 10 + (12 if not fast or grad else 0) + (7 if not fast else 0)
    assert torch.equal(feats.centers, fx["group.center"])
    assert_close(part_seg_loss(seg_pred, fx["target"]), fx["loss"], atol=1e-6, rtol=0, name="loss")
    pred = predict_parts(seg_pred, category_from_target(fx["target"]))
    assert torch.equal(pred, fx["eval.pred"].long())


def test_grouping_and_propagation_indices_exact(official):
    _, fx = official
    m = _tiny_model(official, True)
    patches = m.patchify(_points(fx))
    assert torch.equal(patches.center_idx, fx["fps_idx"].long())
    assert torch.equal(patches.knn_idx, fx["group.knn_idx"])
    assert_close(patches.neighborhood, fx["group.neighborhood"], atol=0, rtol=0, name="neighborhood")
    nearest = three_nearest_centers(_points(fx), fx["group.center"])
    assert torch.equal(nearest.idx, fx["fp.nn_idx"])
    # the official expansion, bit for bit
    assert_close(nearest.sq_dist, fx["fp.sq_dist"], atol=0, rtol=0, name="fp.sq_dist")
    assert_close(nearest.weight, fx["fp.weight"], name="fp.weight")
    assert_close(interpolate(fx["concat_feature"].transpose(1, 2), nearest), fx["fp.interpolated"],
                 name="fp.interpolated")
    assert (fx["fp.sq_dist"][..., 0] < 0).any()  # the fixture exercises the slightly negative distances


def test_square_distance_is_the_official_expansion():
    src = torch.tensor([[[0.1, 0.2, 0.3], [0.5, -0.4, 0.2]]])
    d = square_distance(src, src)
    expect = -2 * src @ src.transpose(1, 2) + (src**2).sum(-1)[..., None] + (src**2).sum(-1)[:, None]
    assert torch.equal(d, expect) and d.shape == (1, 2, 2)


def test_category_as_index_one_hot_and_official_layout_agree(official):
    _, fx = official
    m = _tiny_model(official, True)
    pts = _points(fx)
    with torch.no_grad():
        a = m(pts, fx["input.cls_label"][:, 0])  # [B] int
        b = m(pts, fx["input.cls_one_hot"][:, 0])  # [B, 16] one-hot
        c = m(pts, fx["input.cls_one_hot"])  # [B, 1, 16] (official to_categorical)
        d = m(pts, fx["input.cls_label"])  # [B, 1] int
        e = m(pts, [4, 10])
    for t in (b, c, d, e):
        assert torch.equal(t, a)
    assert_close(a, fx["seg_pred"], name="seg_pred")


def test_single_cloud(official):
    _, fx = official
    m = _tiny_model(official, True)
    pts = _points(fx)
    with torch.no_grad():
        out = m(pts[1], 10)
        out_hot = m(pts[1], fx["input.cls_one_hot"][1, 0])
        feats = m.forward_features(pts[1])
    assert out.shape == (256, 50) and feats.feature.shape == (144, 16) and feats.centers.shape == (16, 3)
    assert torch.equal(out, out_hot)
    assert_close(out, fx["seg_pred"][1], name="single cloud")


def test_fast_path_agrees_with_reference_on_a_trained_like_model():
    torch.manual_seed(1)
    cfg = PartSegConfig(embed_dim=40, depth=5, num_heads=5, group_size=8, num_group=24, encoder_dims=40,
                        drop_path_rate=0.0, cls_dim=50, fp_dims=(64, 48, 32), head_dims=(36, 20),
                        label_dim=16,
                        fetch_idx=(1, 2, 4))
    m = ACTPartSeg(cfg).eval()
    with torch.no_grad():  # non-trivial BN statistics so folding is exercised
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    x = torch.randn(3, 300, 3)
    cat = torch.tensor([0, 7, 15])
    ref = m.set_fast_path(False)(x, cat)
    with torch.inference_mode():
        fast = m.set_fast_path(True)(x, cat)
    grad_fast = m(x, cat)
    assert_close(fast, ref, name="inference path")
    assert_close(grad_fast, ref, name="fast path with grad")


def test_fast_training_path_matches_reference_gradients():
    # float64 so a rounding-level difference cannot move a max-pool argmax
    torch.manual_seed(2)
    cfg = PartSegConfig(embed_dim=32, depth=4, num_heads=2, group_size=8, num_group=16, encoder_dims=32,
                        drop_path_rate=0.0, cls_dim=50, fp_dims=(48, 24), head_dims=(24, 16), label_dim=8,
                        fetch_idx=(0, 2, 3))
    ref = ACTPartSeg(cfg).double().train()
    fast = ACTPartSeg(cfg).double().train()
    fast.load_state_dict(ref.state_dict())
    ref.set_fast_path(False)
    for m in (ref, fast):
        m.dp1.p = 0.0  # dropout off so both see the same function
    x = torch.randn(4, 128, 3, dtype=torch.float64)
    cat = torch.tensor([0, 4, 10, 15])
    target = torch.stack([torch.randint(SHAPENETPART_PARTS[c][0], SHAPENETPART_PARTS[c][-1] + 1, (128,))
                          for c in cat.tolist()])
    losses = []
    for m in (ref, fast):
        loss = part_seg_loss(m(x, cat), target)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], atol=1e-12, rtol=1e-10)
    for (n, a), (_, b) in zip(ref.named_parameters(), fast.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-11, rtol=1e-8, msg=n)
    for (n, a), (_, b) in zip(ref.named_buffers(), fast.named_buffers()):
        # BN running stats updated identically
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-10, msg=n)


def test_blocks_after_the_last_tap_do_not_run():
    cfg = PartSegConfig(embed_dim=16, depth=4, num_heads=2, group_size=4, num_group=8, encoder_dims=16,
                        fp_dims=(16, 8), head_dims=(8, 8), label_dim=4, fetch_idx=(0, 1))
    m = ACTPartSeg(cfg).eval()
    ran = []
    for i, blk in enumerate(m.blocks.blocks):
        blk.register_forward_hook(lambda mod, inp, out, i=i: ran.append(i))
    x = torch.randn(2, 32, 3)
    out = m(x, [1, 2])
    assert ran == [0, 1] and out.shape == (2, 32, 50)
    assert m.convs1_cls.in_channels == 8 + 2 * 2 * 16 + 4


def test_full_size_keys_match_official_on_meta():
    table = official_keys("partseg_shapenetpart.json")
    with torch.device("meta"):
        m = ACTPartSeg()
    sd = m.state_dict()
    want = {e["key"]: e for e in table["keys"]}
    assert list(sd) == list(want)  # same names, same order
    for k, e in want.items():
        assert list(sd[k].shape) == e["shape"], k
    params = dict(m.named_parameters())
    assert {k for k, e in want.items() if e["kind"] == "parameter"} == set(params)
    assert sum(v.numel() for v in sd.values()) == table["num_elements"] == 27071801
    assert m.config == SHAPENETPART and m.convs1_cls.in_channels == 3392
    assert not hasattr(m, "cls_token") and not hasattr(m, "reduce_dim")
    assert all(b.attn.scale_before_matmul for b in m.blocks.blocks)
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in m.blocks.blocks]
    assert rates == pytest.approx([0.1 * i / 11 for i in range(12)])


def test_init_weights_is_the_official_fresh_init():
    torch.manual_seed(0)
    m = ACTPartSeg(TINY)
    with torch.no_grad():
        m.bns1_cls.running_mean.fill_(3.0)
        m.norm.weight.fill_(2.0)
    m.init_weights()
    for name, mod in m.named_modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv1d)):
            w = mod.weight.detach()
            # trunc_normal(0.02) with the absolute bounds +-2
            assert 0.015 < float(w.std()) < 0.025 and w.abs().max() <= 2.0, name
            assert mod.bias is None or bool((mod.bias == 0).all()), name
        elif isinstance(mod, torch.nn.LayerNorm):
            assert bool((mod.weight == 1).all()) and bool((mod.bias == 0).all()), name
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
    m = ACTPartSeg(TINY).eval()
    with pytest.raises(ValueError, match=match):
        m(bad, torch.zeros(bad.shape[0] if bad.dim() == 3 else 1, dtype=torch.long))


@pytest.mark.parametrize(
    "category,match",
    [
        (torch.tensor([0, 16]), r"out of range \[0, 16\)"),
        (torch.tensor([-1, 3]), "out of range"),
        (torch.tensor([1, 2, 3]), r"shape \[2\]"),
        (torch.zeros(2, 15), r"one-hot category must have shape \[2, 16\]"),
        (torch.zeros(3, 16), "one-hot category must have shape"),
        (torch.tensor([True, False]), "bool"),
        (torch.full((2, 16), float("nan")), "NaN"),
    ],
)
def test_bad_category_is_a_clear_value_error(category, match):
    m = ACTPartSeg(TINY).eval()
    with pytest.raises(ValueError, match=match):
        m(torch.rand(2, 64, 3), category)


def test_bad_single_cloud_category():
    m = ACTPartSeg(TINY).eval()
    with pytest.raises(ValueError, match="out of range"):
        m(torch.rand(64, 3), 16)
    with pytest.raises(ValueError, match=r"one-hot category must have shape \[16\]"):
        m(torch.rand(64, 3), torch.zeros(2, 16))


def test_config_validation():
    with pytest.raises(ValueError, match=r"depth \(11\) must exceed max\(fetch_idx\) = 11"):
        PartSegConfig(depth=11)
    with pytest.raises(ValueError, match="strictly increasing"):
        PartSegConfig(fetch_idx=(3, 3, 11))
    with pytest.raises(ValueError, match="no reduce_dim"):
        PartSegConfig(encoder_dims=256)
    with pytest.raises(ValueError, match="divisible"):
        PartSegConfig(embed_dim=30, num_heads=4, encoder_dims=30)
    with pytest.raises(ValueError, match="head_dims"):
        PartSegConfig(head_dims=(512,))
    cfg = PartSegConfig(fp_dims=[8, 4], fetch_idx=[0, 1], depth=2)  # yaml lists become tuples
    assert cfg.fp_dims == (8, 4) and cfg.fetch_idx == (0, 1) and hash(cfg)
    with pytest.raises(Exception):
        SHAPENETPART.depth = 3  # frozen


# ------------------------------------------------------------------ evaluation rule and metrics
def test_shapenetpart_tables():
    assert SHAPENETPART_CATEGORIES[4] == "Chair" and SHAPENETPART_CATEGORIES[10] == "Motorbike"
    assert list(SHAPENETPART_CATEGORIES) == sorted(SHAPENETPART_CATEGORIES)
    flat = [p for parts in SHAPENETPART_PARTS for p in parts]
    assert flat == list(range(50))
    assert SHAPENETPART_SEG_CLASSES["Table"] == (47, 48, 49)
    assert SHAPENETPART_SEG_CLASSES["Airplane"] == (0, 1, 2, 3)


def test_predict_parts_restricts_to_the_category():
    lp = torch.full((2, 3, 50), -10.0)
    lp[:, :, 0] = 0.0  # the global argmax is part 0 (Airplane) everywhere
    lp[0, :, 13] = -1.0  # Chair parts 12..15: 13 wins
    lp[1, 0, 31] = -2.0  # Motorbike parts 30..35: tie at -10 elsewhere -> first part (30)
    pred = predict_parts(lp, torch.tensor([4, 10]))
    assert pred.tolist() == [[13, 13, 13], [31, 30, 30]] and pred.dtype == torch.int64
    assert torch.equal(predict_parts(lp, torch.eye(16)[[4, 10]]), pred)  # one-hot
    assert predict_parts(lp[0], 4).tolist() == [13, 13, 13]  # single cloud
    with pytest.raises(ValueError, match="out of range"):
        predict_parts(lp, torch.tensor([4, 16]))
    with pytest.raises(ValueError, match="expected 2 categories"):
        predict_parts(lp, torch.tensor([4]))


def test_category_from_target():
    target = torch.tensor([[13, 12, 15], [49, 47, 48]])
    assert category_from_target(target).tolist() == [4, 15]
    assert int(category_from_target(target[1])) == 15


def test_part_iou_absent_part_counts_as_one():
    # Chair (parts 12..15): 15 is absent from both -> 1.0
    target = torch.tensor([12, 12, 13, 13, 14, 14])
    pred = torch.tensor([12, 13, 13, 13, 14, 12])
    ious = part_iou(pred, target, 4)
    # 12: inter 1, union 3; 13: inter 2, union 3; 14: inter 1, union 2; 15: absent in both
    assert ious.tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 2, 1.0])
    assert float(shape_iou(pred, target)) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2 + 1) / 4)
    # a part predicted but absent from the target scores 0, not 1 (15); 13 and 14 are absent from both
    ious = part_iou(torch.tensor([15, 12]), torch.tensor([12, 12]), 4)
    assert ious.tolist() == pytest.approx([0.5, 1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="out of range"):
        part_iou(pred, target, 16)


def test_instance_vs_class_miou():
    # two Chairs (IoU 1.0 and 0.5) and one Table (0.0)
    shape_ious = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    cats = torch.tensor([4, 4, 15])
    assert instance_miou(shape_ious) == pytest.approx(0.5)  # mean over shapes
    assert class_miou(shape_ious, cats) == pytest.approx((0.75 + 0.0) / 2)  # mean of category means
    assert per_class_miou(shape_ious, cats) == pytest.approx({"Chair": 0.75, "Table": 0.0})


def test_metrics_on_the_official_fixture(official):
    _, fx = official
    pred = fx["eval.pred"].long()
    target = fx["target"]
    ious = shape_iou(pred, target)
    for i in range(2):
        cat = int(category_from_target(target[i]))
        manual = []
        for part in SHAPENETPART_PARTS[cat]:
            inter = ((pred[i] == part) & (target[i] == part)).sum().item()
            union = ((pred[i] == part) | (target[i] == part)).sum().item()
            manual.append(1.0 if union == 0 else inter / union)
        assert float(ious[i]) == pytest.approx(sum(manual) / len(manual))
    # one shape per category: both averages agree
    assert class_miou(ious, category_from_target(target)) == pytest.approx(instance_miou(ious))
