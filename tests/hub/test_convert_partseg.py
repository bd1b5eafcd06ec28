import pytest
import torch

import act_zoo.hub._official_partseg  # noqa: F401  (registers PartSegmentation / get_model)
from act_zoo.hub.convert import CheckpointMismatchError, from_official, official_names
from act_zoo.models.partseg import ACTPartSeg, PartSegConfig
from helpers import assert_close, load_official, manifest, official_keys, tiny_pretrain_checkpoint

_T = manifest()["tiny_config"]["partseg"]
# The tiny part-seg config in official key names (trans_dim: the official spelling of embed_dim).
TINY_PARTSEG = dict(
    NAME="PartSegmentation", trans_dim=_T["trans_dim"], depth=_T["depth"], num_heads=_T["num_heads"],
    group_size=_T["group_size"], num_group=_T["num_group"], drop_path_rate=_T["drop_path_rate"],
    cls_dim=_T["num_part"], num_classes=_T["num_classes"], fp_dims=[4 * _T["trans_dim"], _T["fp_out"]],
    head_dims=list(_T["head_dims"]), label_dim=_T["label_dim"], npoints=_T["npoints"],
)


@pytest.fixture(scope="module")
def official():
    return load_official("partseg_tiny.safetensors")


def _seg_pred(model, fx) -> torch.Tensor:
    with torch.no_grad():
        return model(fx["input.points"].transpose(1, 2), fx["input.cls_label"][:, 0])


def test_names_are_registered():
    assert {"PartSegmentation", "get_model"} <= set(official_names())


@pytest.mark.parametrize("name", ["PartSegmentation", "get_model"])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_model_state_dict_layout_reproduces_seg_pred(official, name, prefix):
    weights, fx = official
    ckpt = {"epoch": 7, "train_acc": 0.9, "test_acc": 0.9, "class_avg_iou": 0.8, "inctance_avg_iou": 0.85,
            "model_state_dict": {prefix + k: v for k, v in weights.items()}, "optimizer_state_dict": {}}
    model, report = from_official(ckpt, dict(TINY_PARTSEG, NAME=name), return_report=True)
    assert isinstance(model, ACTPartSeg) and not model.training
    assert report.ok and len(report.loaded) == len(weights) and not report.initialized and not report.dropped
    assert "checkpoint['model_state_dict']" in report.layout
    assert any("'module.' prefix removed" in note for note in report.layout) == bool(prefix)
    assert_close(_seg_pred(model, fx), fx["seg_pred"], name="seg_pred")


def test_bare_state_dict_and_file(official, tmp_path):
    weights, fx = official
    path = tmp_path / "best_model.pth"
    torch.save({"model_state_dict": weights, "epoch": 1}, path)
    for source in (weights, path):
        model = from_official(source, TINY_PARTSEG)
        assert_close(_seg_pred(model, fx), fx["seg_pred"], name="seg_pred")


def test_cls_suffix_fallback_is_an_explained_rename(official):
    weights, fx = official
    # names without '_cls': convs1.weight, propagation_0.mlp_convs.0.weight, ...
    old = {k.replace("_cls", ""): v for k, v in weights.items()}
    renamed = sum(k != k.replace("_cls", "") for k in weights)
    model, report = from_official({"model_state_dict": old}, TINY_PARTSEG, return_report=True)
    assert report.ok and len(report.loaded) == len(weights)
    note = next(n for n in report.layout if "'_cls' fallback" in n)
    assert f"{renamed} keys" in note
    assert_close(_seg_pred(model, fx), fx["seg_pred"], name="seg_pred")
    # a mix: keys under their real name win, the rest fall back
    mixed = dict(weights)
    mixed["convs3.weight"] = mixed.pop("convs3_cls.weight")
    model, report = from_official(mixed, TINY_PARTSEG, return_report=True)
    assert report.ok
    assert any("1 keys" in n and "'convs3.weight' -> 'convs3_cls.weight'" in n for n in report.layout)


def test_unexplained_keys_raise(official):
    weights, _ = official
    bad = dict(weights)
    bad["extra.weight"] = torch.zeros(2)
    del bad["norm.weight"]
    with pytest.raises(CheckpointMismatchError) as err:
        from_official(bad, TINY_PARTSEG)
    assert "extra.weight" in str(err.value) and "norm.weight" in str(err.value)
    model, report = from_official(bad, TINY_PARTSEG, strict=False, return_report=True)
    assert report.unexpected == ["extra.weight"] and report.missing == ["norm.weight"]
    # a stage-II checkpoint with an extra, unknown key
    ckpt = tiny_pretrain_checkpoint()
    ckpt["base_model"]["ACT_encoder.something_new"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match="something_new"):
        from_official(ckpt, dict(TINY_PARTSEG, depth=2, fetch_idx=[0, 1]))
    # a classification fine-tuning checkpoint is not a part-seg checkpoint
    cls_weights, _ = load_official("finetune_cls_tiny.safetensors")
    with pytest.raises(CheckpointMismatchError, match="cls_head_finetune"):
        from_official(cls_weights, TINY_PARTSEG)


def test_wrong_head_size_is_a_shape_report(official):
    weights, _ = official
    with pytest.raises(CheckpointMismatchError, match=r"convs3_cls.weight.*\[13, 40, 1\] vs \[50, 40, 1\]"):
        from_official(weights, dict(TINY_PARTSEG, cls_dim=13), strict=False)


def test_config_keys_and_aliases():
    m = from_official(None, dict(TINY_PARTSEG, NAME="get_model"))
    assert m.config.embed_dim == 48 and m.config.encoder_dims == 48 and m.config.fp_dims == (192, 96)
    m2 = from_official(None, {k: v for k, v in dict(TINY_PARTSEG, embed_dim=48).items() if k != "trans_dim"})
    assert m2.config == m.config
    # sizes left out take the official values; the FP mlp follows the width like the official [4C, 1024]
    m3 = from_official(None, {"NAME": "PartSegmentation", "trans_dim": 48, "num_heads": 3})
    assert m3.config.fp_dims == (192, 1024) and m3.config.head_dims == (512, 256) and m3.config.cls_dim == 50
    with pytest.raises(ValueError, match="disagree"):
        from_official(None, dict(TINY_PARTSEG, embed_dim=64))
    with pytest.raises(ValueError, match="unknown config keys"):
        from_official(None, dict(TINY_PARTSEG, transfer_type="full"))
    with pytest.raises(ValueError, match="depth"):
        from_official(None, dict(TINY_PARTSEG, depth=11))


def test_full_size_default_config_matches_the_official_key_table():
    table = official_keys("partseg_shapenetpart.json")
    with torch.device("meta"):
        model = from_official(None, {"NAME": "get_model"})
    sd = model.state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == {e["key"]: e["shape"] for e in table["keys"]}
    assert model.config == PartSegConfig()


def test_full_size_pretrain_into_partseg_matches_official_loader():
    load = official_keys("pretrain_to_partseg_load.json")
    pretrain = official_keys("pretrain_act_distill.json")
    for prefix in ("", "module."):
        with torch.device("meta"):
            ckpt = {"base_model": {prefix + e["key"]: torch.zeros(e["shape"]) for e in pretrain["keys"]}}
            model, report = from_official(ckpt, {"NAME": "PartSegmentation"}, return_report=True)
        assert report.ok
        assert sorted(report.loaded) == sorted(load["loaded_keys"]) and len(report.loaded) == 156
        fresh = {k for k in report.initialized if not k.endswith("num_batches_tracked")}
        assert fresh == set(load["missing_keys"]) and len(fresh) == 31
        counters = {k.rsplit(".", 1)[0] for k in report.initialized if k.endswith("num_batches_tracked")}
        assert counters == {"label_conv_cls.1", "propagation_0_cls.mlp_bns.0", "propagation_0_cls.mlp_bns.1",
                            "bns1_cls", "bns2_cls"}
        assert sorted(report.dropped) == sorted(load["unexpected_keys"]) and len(report.dropped) == 272
        assert "no cls token" in report.dropped["cls_token"]
        assert "freshly initialised" in report.initialized["convs1_cls.weight"]


def test_tiny_pretrain_checkpoint_loads_the_encoder():
    student, _ = load_official("pretrain_distill_tiny.safetensors")
    cfg = dict(TINY_PARTSEG, depth=2, fetch_idx=[0, 1])  # the tiny stage-II student has 2 blocks
    for prefix in ("", "module."):
        torch.manual_seed(0)
        model, report = from_official(tiny_pretrain_checkpoint(prefix), cfg, return_report=True)
        assert report.ok
        encoder_keys = {k[len("ACT_encoder."):] for k in student if k.startswith("ACT_encoder.")}
        not_in_partseg = {"cls_token", "cls_pos", "lm_head.weight", "lm_head.bias", "cls_head.0.weight",
                          "cls_head.0.bias", "cls_head.2.weight", "cls_head.2.bias"}
        assert set(report.loaded) == encoder_keys - not_in_partseg
        for k in report.loaded:
            assert torch.equal(model.state_dict()[k], student["ACT_encoder." + k]), k
        assert {"cls_token", "cls_pos", "mask_token"} <= set(report.dropped)
        # the head keeps the fresh official init (trunc_normal weights, zero bias)
        assert bool((model.convs1_cls.bias == 0).all())
        assert 0.01 < float(model.convs1_cls.weight.detach().std()) < 0.03
        x = torch.rand(2, 64, 3)
        with torch.no_grad():
            assert model(x, [0, 3]).shape == (2, 64, 50)


def test_tiny_pretrain_checkpoint_into_depth_12_reports_the_missing_blocks():
    ckpt = tiny_pretrain_checkpoint()
    with pytest.raises(CheckpointMismatchError, match=r"UNEXPLAINED missing keys \(110\):\n    blocks\.\*"):
        from_official(ckpt, TINY_PARTSEG)
    model, report = from_official(ckpt, TINY_PARTSEG, strict=False, return_report=True)
    assert {k.split(".")[2] for k in report.missing} == {str(i) for i in range(2, 12)}
    assert "encoder.first_conv.0.weight" in report.loaded
    assert "blocks.blocks.1.attn.qkv.weight" in report.loaded
