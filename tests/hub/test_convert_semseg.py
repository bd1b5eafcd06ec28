import pytest
import torch
from helpers import assert_close, load_official, manifest, official_keys

import act_zoo
from act_zoo._s3dis import S3DIS_CLASSES
from act_zoo.hub import gdrive, registry
from act_zoo.hub._official_semseg import _load_semseg
from act_zoo.hub.convert import CheckpointMismatchError, LoadReport, from_official, official_names
from act_zoo.models.semseg import S3DIS, ACTSemSeg

_T = manifest()["tiny_config"]["semseg"]
# The tiny semseg config in official key names (trans_dim: the official spelling of embed_dim).
TINY_SEMSEG = dict(
    NAME="SemanticSegmentation", trans_dim=_T["trans_dim"], depth=_T["depth"], num_heads=_T["num_heads"],
    group_size=_T["group_size"], num_group=_T["num_group"], drop_path_rate=_T["drop_path_rate"],
    cls_dim=_T["num_classes"], fp_dims=[4 * _T["trans_dim"], _T["fp_out"]], head_dims=list(_T["head_dims"]),
    npoints=_T["npoints"],
)


@pytest.fixture(scope="module")
def official():
    return load_official("semseg_tiny.safetensors")


def _seg_pred(model, fx) -> torch.Tensor:
    with torch.no_grad():
        return model(fx["input.points"].transpose(1, 2))


def test_name_is_registered():
    assert "SemanticSegmentation" in official_names()


@pytest.mark.parametrize("prefix", ["", "module."])
def test_best_model_layout_reproduces_seg_pred(official, prefix, tmp_path):
    weights, fx = official
    # what semantic_segmentation/main.py saves, read back from a file with weights_only=True
    ckpt = {"epoch": 41, "class_avg_iou": 0.61, "model_state_dict": {prefix + k: v for k, v in weights.items()},
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 2e-4, "params": [0, 1]}]}}
    path = tmp_path / "best_model.pth"
    torch.save(ckpt, path)
    model, report = from_official(path, TINY_SEMSEG, return_report=True)
    assert isinstance(model, ACTSemSeg) and not model.training
    assert report.ok and len(report.loaded) == len(weights) == 186 and not report.initialized and not report.dropped
    assert "checkpoint['model_state_dict']" in report.layout
    assert any("'module.' prefix removed" in note for note in report.layout) == bool(prefix)
    out = _seg_pred(model, fx)
    assert_close(out, fx["seg_pred"], atol=1e-5, rtol=0, name="seg_pred")
    assert torch.equal(out.argmax(-1), fx["eval.pred"])


def test_cls_suffix_fallback_of_main_test(official):
    weights, fx = official
    old = {k.replace("_cls", ""): v for k, v in weights.items()}
    model, report = from_official({"model_state_dict": old}, TINY_SEMSEG, return_report=True)
    assert report.ok and any("'_cls' fallback" in n for n in report.layout)
    assert_close(_seg_pred(model, fx), fx["seg_pred"], atol=1e-5, rtol=0, name="seg_pred")


@pytest.mark.parametrize("prefix", ["", "module."])
def test_pretrain_to_semseg_is_the_official_load_model_from_ckpt(prefix):
    """Full size on the meta device: the stage-II key table of the official release."""
    table = official_keys("pretrain_to_semseg_load.json")
    stage2 = {e["key"]: e for e in official_keys("pretrain_act_distill.json")["keys"]}
    with torch.device("meta"):
        model = ACTSemSeg()
        sd = {prefix + k: torch.empty(e["shape"]) for k, e in stage2.items()}
    report = LoadReport(model_name="SemanticSegmentation", source="<meta>")
    _load_semseg(model, {k.replace("module.", ""): v for k, v in sd.items()}, report, True)
    assert report.ok
    assert sorted(report.loaded) == sorted(table["loaded_keys"]) and len(report.loaded) == 156
    assert set(report.initialized) == set(table["missing_keys"]) | set(table["missing_but_unreported"])
    assert len(report.initialized) == 26 + 4
    assert sorted(report.dropped) == sorted(table["unexpected_keys"]) and len(report.dropped) == 272
    assert report.dropped["cls_token"] == "the semantic-segmentation model has no cls token"


def test_pretrain_checkpoint_through_from_official_keeps_the_fresh_head():
    """A small stage-II checkpoint (depth 12, the taps need it): the trunk is copied, the head
    keeps the official fresh init (zero conv biases), the teacher is dropped."""
    torch.manual_seed(0)
    src = ACTSemSeg(act_zoo.SemSegConfig(embed_dim=16, depth=12, num_heads=2, group_size=4, num_group=8,
                                         encoder_dims=16, fp_dims=(64, 8), head_dims=(8, 8)))
    trunk = {f"ACT_encoder.{k}": v for k, v in src.state_dict().items()
             if k.split(".")[0] in ("encoder", "pos_embed", "blocks", "norm")}
    trunk.update({"ACT_encoder.cls_token": torch.zeros(1, 1, 16), "dvae_tokenizer.codebook": torch.zeros(4, 4),
                  "mask_token": torch.zeros(1, 1, 16)})
    cfg = dict(NAME="SemanticSegmentation", embed_dim=16, depth=12, num_heads=2, group_size=4, num_group=8,
               fp_dims=[64, 8], head_dims=[8, 8])
    model, report = from_official({"base_model": {"module." + k: v for k, v in trunk.items()}}, cfg,
                                  return_report=True)
    assert len(report.loaded) == len(trunk) - 3 and len(report.dropped) == 3
    assert torch.equal(model.blocks.blocks[11].mlp.fc2.weight, src.blocks.blocks[11].mlp.fc2.weight)
    assert bool((model.convs1_cls.bias == 0).all()) and not torch.equal(model.convs1_cls.weight, src.convs1_cls.weight)
    assert "stage-II checkpoint" in " ".join(report.layout)


def test_unexplained_keys_raise(official):
    weights, _ = official
    bad = dict(weights)
    bad["label_conv_cls.0.weight"] = torch.zeros(64, 16, 1)  # a part-seg key
    with pytest.raises(CheckpointMismatchError, match="label_conv_cls.0.weight"):
        from_official(bad, TINY_SEMSEG)
    with pytest.raises(CheckpointMismatchError, match=r"convs3_cls.weight.*\[50, 32, 1\] vs \[13, 32, 1\]"):
        from_official(weights, dict(TINY_SEMSEG, cls_dim=50), strict=False)
    part, _ = load_official("partseg_tiny.safetensors")
    with pytest.raises(CheckpointMismatchError):
        from_official(part, TINY_SEMSEG)


def test_config_keys_and_aliases():
    m = from_official(None, TINY_SEMSEG)
    assert m.config.embed_dim == 64 and m.config.encoder_dims == 64 and m.config.fp_dims == (256, 96)
    m2 = from_official(None, {k: v for k, v in dict(TINY_SEMSEG, embed_dim=64, num_classes=13).items()
                              if k not in ("trans_dim", "cls_dim")})
    assert m2.config == m.config
    m3 = from_official(None, {"NAME": "SemanticSegmentation", "trans_dim": 48, "num_heads": 3})
    assert m3.config.fp_dims == (192, 1024) and m3.config.head_dims == (512, 256) and m3.config.cls_dim == 13
    with pytest.raises(ValueError, match="disagree"):
        from_official(None, dict(TINY_SEMSEG, embed_dim=32))
    with pytest.raises(ValueError, match="unknown config keys"):
        from_official(None, dict(TINY_SEMSEG, label_dim=64))


def test_full_size_default_config_matches_the_official_key_table():
    table = official_keys("semseg_s3dis.json")
    with torch.device("meta"):
        model = from_official(None, {"NAME": "SemanticSegmentation"})
    assert model.config == S3DIS
    assert [e["key"] for e in table["keys"]] == list(model.state_dict())


# ------------------------------------------------------------------------------------ registry
@pytest.fixture
def home(online_home):
    """A fresh online cache and registry (tests/hub/conftest.py)."""
    return online_home


def test_unregister_weights_does_not_deadlock(home):
    import threading

    done = threading.Event()

    def work():
        registry.get_record("act_base.s3dis_semseg")
        registry.unregister_weights("act_base.s3dis_semseg")
        done.set()

    threading.Thread(target=work, daemon=True).start()
    assert done.wait(10), "unregister_weights hung (it took the registry lock twice)"
    assert "act_base.s3dis_semseg" not in registry.list_models()


def test_registry_entry_record():
    rec = registry.get_record("act_base.s3dis_semseg")
    assert rec.model_class == "ACTSemSeg" and rec.convert == "official" and rec.format == "official-pth"
    assert rec.sources == ({"type": "gdrive", "id": "11JXdCkT91A2vdjBsw8-sroYZTryek7a9",
                            "filename": "act-s3dis-best_model.pth"},)
    assert rec.metrics == {"miou": 61.2} and "Area 5" in rec.metrics_note and "MODEL_ZOO" in rec.metrics_source
    assert tuple(rec.config["class_names"]) == S3DIS_CLASSES
    with torch.device("meta"):
        m = act_zoo.create_model("act_base.s3dis_semseg")
    assert m.config == S3DIS and sum(p.numel() for p in m.parameters()) == rec.num_params == 27020301


def test_registry_entry_loads_an_official_best_model_file(home, server, tmp_path, monkeypatch):
    """The real record, served from a local Drive-like server at its real file id: a full-size
    official-format best_model.pth (random weights) downloads, converts once and loads."""
    torch.manual_seed(3)
    src = ACTSemSeg().eval()
    path = tmp_path / "best_model.pth"
    torch.save({"epoch": 59, "class_avg_iou": 0.612, "model_state_dict": src.state_dict(),
                "optimizer_state_dict": {}}, path)
    monkeypatch.setattr(gdrive, "GDRIVE_URL", server.url("/uc"))
    server.add_gdrive("11JXdCkT91A2vdjBsw8-sroYZTryek7a9", path.read_bytes(), name="best_model.pth", flow="form")
    model = act_zoo.from_pretrained("act_base.s3dis_semseg")
    assert isinstance(model, ACTSemSeg) and model.class_names == S3DIS_CLASSES
    for (k, a), (_, b) in zip(src.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), k
    report = (registry.converted_dir(registry.get_record("act_base.s3dis_semseg")) / "conversion_report.txt").read_text()
    assert "loaded: 186 keys" in report and "checkpoint['model_state_dict']" in report
    x = torch.rand(1, 2048, 3)
    with torch.no_grad():
        assert torch.equal(model(x).argmax(-1), src(x).argmax(-1))


@pytest.mark.parametrize("table_name,config", [("semseg_s3dis.json", S3DIS), ("partseg_shapenetpart.json", None)])
def test_official_segmentation_config_is_inferred_from_the_key_table(table_name, config):
    from act_zoo.hub.convert import infer_official_config
    from act_zoo.models.partseg import PartSegConfig

    table = official_keys(table_name)
    sd = {e["key"]: torch.zeros(e["shape"], device="meta") for e in table["keys"]}
    inferred = infer_official_config(sd, source=table_name)
    with torch.device("meta"):
        model = from_official(None, inferred)
    assert model.config == (config or PartSegConfig())
    assert [e["key"] for e in table["keys"]] == list(model.state_dict())


def test_tiny_semseg_checkpoint_converts_without_a_config(tmp_path):
    model = from_official(None, TINY_SEMSEG)
    path = tmp_path / "best_model.pth"
    torch.save({"epoch": 3, "model_state_dict": model.state_dict()}, path)
    back = act_zoo.from_pretrained(path)
    assert type(back).__name__ == "ACTSemSeg"
    assert back.config.cls_dim == model.config.cls_dim and back.config.embed_dim == model.config.embed_dim
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
