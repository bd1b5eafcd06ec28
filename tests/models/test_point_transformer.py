import pytest
import torch

from act_zoo.models.point_transformer import (
    MODELNET40,
    SCANOBJECTNN,
    ACTClassifier,
    ACTEncoder,
    ClassifierConfig,
    PointTransformerConfig,
)
from helpers import assert_close, load_official

TINY = ClassifierConfig(embed_dim=48, depth=2, num_heads=3, group_size=8, num_group=16, encoder_dims=48,
                        drop_path_rate=0.0, cls_dim=5, npoints=256)


def _tiny_model(fast: bool) -> tuple[ACTClassifier, dict]:
    weights, fx = load_official("finetune_cls_tiny.safetensors")
    m = ACTClassifier(TINY)
    m.load_state_dict(weights, strict=True)
    return m.eval().set_fast_path(fast), fx


@pytest.mark.parametrize("fast", [False, True], ids=["reference", "fast"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_every_intermediate_matches_official(fast, grad):
    m, fx = _tiny_model(fast)
    caps = {}

    def tap(name):
        return lambda mod, inp, out: caps.__setitem__(name, out.detach().clone())

    m.encoder.register_forward_hook(tap("encoder.out"))
    m.pos_embed.register_forward_hook(tap("pos.out"))
    m.norm.register_forward_hook(tap("norm.out"))
    for i, blk in enumerate(m.blocks.blocks):
        blk.register_forward_hook(tap(f"block{i}.out"))
    for i in (0, 4, 8):
        m.cls_head_finetune[i].register_forward_hook(tap(f"head{i}.out"))
    for i in (2, 6):  # the official hook on BN saw ReLU(BN(x)) (in-place ReLU)
        m.cls_head_finetune[i].register_forward_hook(tap(f"head{i - 1}.out"))
    with torch.set_grad_enabled(grad):
        feats = m.forward_features(fx["input.points"])
        logits = m.forward_head(feats)
    if not fast or grad:  # the in-place inference path runs the blocks as one stack
        for i in range(2):
            assert_close(caps[f"block{i}.out"], fx[f"block{i}.out"], name=f"block{i}")
        assert_close(caps["norm.out"], fx["norm.out"], name="norm")
    for name in ("encoder.out", "pos.out", "head0.out", "head1.out", "head4.out", "head5.out", "head8.out"):
        assert_close(caps[name], fx[name], name=name)
    assert_close(feats.global_feature, fx["concat_feature"], name="concat_feature")
    assert_close(logits, fx["logits"], name="logits")
    assert_close(feats.centers, fx["group.center"], atol=0, rtol=0, name="centers")
    assert_close(feats.tokens, fx["norm.out"][:, 1:], name="tokens")
    assert_close(feats.cls, fx["norm.out"][:, 0], name="cls")


def test_fast_path_agrees_with_reference_on_a_trained_like_model():
    torch.manual_seed(1)
    cfg = ClassifierConfig(embed_dim=64, depth=3, num_heads=4, group_size=16, num_group=32, encoder_dims=96,
                           drop_path_rate=0.0, cls_dim=7, npoints=512)
    m = ACTClassifier(cfg).eval()
    with torch.no_grad():  # non-trivial BN statistics so folding is exercised
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    x = torch.randn(3, 512, 3)
    ref = m.set_fast_path(False)(x)
    with torch.inference_mode():
        fast = m.set_fast_path(True)(x)
    grad_fast = m(x)  # differentiable fast path
    assert_close(fast, ref, name="inference path")
    assert_close(grad_fast, ref, name="fast path with grad")


def test_fast_training_path_matches_reference_gradients():
    # float64: in float32 a 1e-7 difference can flip the argmax of a max-pool near-tie and
    # route a gradient to another point, which says nothing about the maths being equal
    torch.manual_seed(2)
    cfg = ClassifierConfig(embed_dim=32, depth=2, num_heads=2, group_size=8, num_group=16, drop_path_rate=0.0,
                           encoder_dims=32, cls_dim=4, npoints=128)
    ref = ACTClassifier(cfg).double().train()
    fast = ACTClassifier(cfg).double().train()
    fast.load_state_dict(ref.state_dict())
    ref.set_fast_path(False)
    for m in (ref, fast):  # dropout off so both see the same function
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
    x = torch.randn(4, 128, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    losses = []
    for m in (ref, fast):
        loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], atol=1e-12, rtol=1e-10)
    for (n, a), (_, b) in zip(ref.named_parameters(), fast.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-11, rtol=1e-8, msg=n)
    for (n, a), (_, b) in zip(ref.named_buffers(), fast.named_buffers()):
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-10, msg=n)  # BN running stats updated identically


def test_feature_api_shapes_and_unbatched_input():
    m = ACTEncoder(PointTransformerConfig(embed_dim=32, depth=1, num_heads=2, group_size=8, num_group=8,
                                          encoder_dims=48)).eval()
    assert isinstance(m.reduce_dim, torch.nn.Linear)  # encoder_dims != embed_dim -> official reduce_dim
    x = torch.randn(2, 64, 3)
    f = m.forward_features(x)
    assert f.global_feature.shape == (2, 64) and f.tokens.shape == (2, 8, 32) and f.centers.shape == (2, 8, 3)
    single = m.forward_features(x[1])
    assert single.global_feature.shape == (64,)
    assert_close(single.global_feature, f.global_feature[1])


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.randn(2, 64), "shape"),
        (torch.randn(2, 64, 4), "shape"),
        (torch.randn(1, 2, 64, 3), "shape"),
        (torch.randn(0, 64, 3), "empty batch"),
        (torch.randn(2, 0, 3), "empty clouds"),
        (torch.randint(0, 5, (2, 64, 3)), "floating"),
        (torch.full((2, 64, 3), float("nan")), "NaN"),
        (torch.full((2, 64, 3), float("inf")), "NaN or inf"),
        (torch.randn(2, 12, 3), "fewer than the model needs"),
    ],
)
def test_bad_input_is_a_clear_value_error(bad, match):
    m = ACTClassifier(TINY).eval()
    with pytest.raises(ValueError, match=match):
        m(bad)


def test_transfer_types_freeze_like_official():
    def trainable(kind):
        cfg = ClassifierConfig(embed_dim=32, depth=1, num_heads=2, group_size=8, num_group=8, encoder_dims=32,
                               cls_dim=3, transfer_type=kind)
        return {n for n, p in ACTClassifier(cfg).named_parameters() if p.requires_grad}

    assert trainable("linear") == {"cls_token", "cls_pos", "cls_head_finetune.0.weight", "cls_head_finetune.0.bias"}
    mlp3 = trainable("mlp-3")
    assert {"cls_token", "cls_pos"} <= mlp3 and all(n.startswith("cls") for n in mlp3) and len(mlp3) == 12
    bitfit = trainable("bit-fit")
    assert "blocks.blocks.0.mlp.fc1.bias" in bitfit and "blocks.blocks.0.mlp.fc1.weight" not in bitfit
    side = trainable("side")
    assert {"side_alpha", "side_projection.weight"} <= side and "blocks.blocks.0.attn.qkv.weight" not in side
    assert len(trainable("full")) > len(side)


def test_side_tuning_mixes_the_side_branch():
    cfg = ClassifierConfig(embed_dim=32, depth=1, num_heads=2, group_size=8, num_group=8, encoder_dims=32, cls_dim=3,
                           transfer_type="side")
    m = ACTClassifier(cfg).eval()
    x = torch.randn(2, 64, 3)
    with torch.no_grad():
        a = m.forward_features(x).global_feature
        m.side_alpha.fill_(20.0)  # sigmoid -> 1: the side branch vanishes
        b = m.forward_features(x).global_feature
        tokens_max = m.forward_features(x).tokens.amax(1)
    assert not torch.allclose(a, b)
    assert_close(b[:, 32:], tokens_max, atol=1e-6)


def test_official_configs():
    assert (MODELNET40.npoints, MODELNET40.num_group, MODELNET40.cls_dim) == (1024, 64, 40)
    assert (SCANOBJECTNN.npoints, SCANOBJECTNN.num_group, SCANOBJECTNN.cls_dim) == (2048, 128, 15)
    with pytest.raises(ValueError, match="divisible"):
        PointTransformerConfig(embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="transfer_type"):
        ClassifierConfig(transfer_type="lora")
    with pytest.raises(Exception):
        MODELNET40.depth = 3  # frozen


def test_drop_path_schedule_and_training_randomness():
    cfg = ClassifierConfig(embed_dim=32, depth=4, num_heads=2, group_size=8, num_group=8, encoder_dims=32,
                           drop_path_rate=0.3, cls_dim=3)
    m = ACTClassifier(cfg)
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in m.blocks.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])
