
import pytest
import torch

import act_zoo
from act_zoo.hub.convert import CheckpointMismatchError, from_official, read_checkpoint
from helpers import (
    FIXTURES,
    TINY_FINETUNE,
    assert_close,
    load_official,
    manifest,
    official_keys,
    tiny_pretrain_checkpoint,
)

RAW = official_keys("official_configs_raw.json")


def _official_model_section(cfg_file: str, **extra) -> dict:
    section = dict(RAW[cfg_file]["model"])
    section.update(extra)
    return section


@pytest.mark.parametrize("name", ["tiny_ckpt_official_format.pth", "tiny_ckpt_official_format_noprefix.pth"])
def test_official_checkpoint_files_load_and_match_logits(name):
    model, report = from_official(FIXTURES / "tiny" / name, TINY_FINETUNE, return_report=True)
    assert report.ok and len(report.loaded) == 64 and not model.training
    assert any("base_model" in note for note in report.layout)
    assert ("'module.' prefix removed from 64 keys" in " ".join(report.layout)) == ("noprefix" not in name)
    _, fx = load_official("finetune_cls_tiny.safetensors")
    with torch.no_grad():
        assert_close(model(fx["input.points"]), fx["logits"], name="logits")


def test_all_checkpoint_wrappers_and_prefixes():
    weights, fx = load_official("finetune_cls_tiny.safetensors")
    for wrap in (lambda sd: sd, lambda sd: {"base_model": sd}, lambda sd: {"model": sd, "epoch": 3},
                 lambda sd: {"model_state_dict": sd}, lambda sd: {"state_dict": sd}):
        for prefix in ("", "module."):
            sd = {prefix + k: v for k, v in weights.items()}
            model = from_official(wrap(sd), TINY_FINETUNE)
            with torch.no_grad():
                assert_close(model(fx["input.points"]), fx["logits"], name="logits")


def test_pretrain_checkpoint_into_finetune_matches_official_loader():
    weights, _ = load_official("pretrain_distill_tiny.safetensors")
    scal = manifest()["scalars"]["pretrain_to_finetune_load"]
    for prefix in ("", "module."):
        ckpt = tiny_pretrain_checkpoint(prefix)
        model, report = from_official(ckpt, TINY_FINETUNE, return_report=True)
        assert report.ok
        fresh = {k for k in report.initialized if not k.endswith("num_batches_tracked")}
        assert fresh == set(scal["missing_keys"])
        assert set(report.dropped) == set(scal["unexpected_keys"])
        for k in report.loaded:  # the encoder really holds the pretrained values
            assert torch.equal(model.state_dict()[k], weights["ACT_encoder." + k])


def test_unexplained_keys_raise_with_a_report_unless_opted_out():
    weights, _ = load_official("finetune_cls_tiny.safetensors")
    bad = dict(weights)
    bad["extra.weight"] = torch.zeros(2)
    del bad["norm.weight"]
    with pytest.raises(CheckpointMismatchError) as err:
        from_official(bad, TINY_FINETUNE)
    msg = str(err.value)
    assert "extra.weight" in msg and "norm.weight" in msg and "UNEXPLAINED" in msg
    model, report = from_official(bad, TINY_FINETUNE, strict=False, return_report=True)
    assert report.unexpected == ["extra.weight"] and report.missing == ["norm.weight"]


def test_wrong_architecture_gives_a_shape_report_not_a_crash():
    weights, _ = load_official("finetune_cls_tiny.safetensors")
    cfg = dict(TINY_FINETUNE, cls_dim=7)
    with pytest.raises(CheckpointMismatchError, match=r"cls_head_finetune.8.weight.*\[7, 256\] vs \[5, 256\]"):
        from_official(weights, cfg, strict=False)


def test_bad_files_and_configs(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        from_official(junk, TINY_FINETUNE)
    with pytest.raises(FileNotFoundError):
        from_official(tmp_path / "missing.pth", TINY_FINETUNE)
    with pytest.raises(ValueError, match="unknown official model NAME 'Nope'"):
        from_official(None, dict(TINY_FINETUNE, NAME="Nope"))
    with pytest.raises(ValueError, match="unknown config keys"):
        from_official(None, dict(TINY_FINETUNE, trans_dim=3))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"base_model": Evil()}, evil)
    with pytest.raises(ValueError, match="weights_only"):
        read_checkpoint(evil)


def test_yaml_config_path_and_whole_yaml(tmp_path):
    import yaml

    whole = {"model": dict(TINY_FINETUNE), "npoints": 256}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(whole))
    weights, _ = load_official("finetune_cls_tiny.safetensors")
    model = from_official(weights, path)
    assert model.config.npoints == 256 and model.config.cls_dim == 5


# ------------------------------------------------------------------ full-size key tables (meta device)
def _meta_model(section: dict):
    with torch.device("meta"):
        return from_official(None, section)


def _assert_keys_match(model, table):
    sd = model.state_dict()
    want = {e["key"]: e for e in table["keys"]}
    assert set(sd) == set(want), (set(sd) ^ set(want))
    for k, e in want.items():
        assert list(sd[k].shape) == e["shape"], k
    params = dict(model.named_parameters())
    for k, e in want.items():
        if e["kind"] == "parameter":
            assert params[k].requires_grad == e["requires_grad"], k
    assert sum(v.numel() for v in sd.values() if v.dtype != torch.int64) + sum(
        v.numel() for v in sd.values() if v.dtype == torch.int64) == table["num_elements"]


@pytest.mark.parametrize(
    "table,cfg_file",
    [
        ("finetune_scan_hardest.json", "cfgs/finetune_classification/full/finetune_scan_hardest.yaml"),
        ("finetune_modelnet.json", "cfgs/finetune_classification/full/finetune_modelnet.yaml"),
    ],
)
def test_full_size_finetune_key_tables(table, cfg_file):
    keys = official_keys(table)
    model = _meta_model(_official_model_section(cfg_file))
    _assert_keys_match(model, keys)
    assert len(model.state_dict()) == keys["num_keys"] == 174


@pytest.mark.parametrize("variant", ["linear", "mlp3"])
def test_full_size_transfer_variants(variant):
    keys = official_keys(f"variant_finetune_scan_hardest_{variant}.json")
    section = _official_model_section("cfgs/finetune_classification/full/finetune_scan_hardest.yaml",
                                      transfer_type={"linear": "linear", "mlp3": "mlp-3"}[variant])
    _assert_keys_match(_meta_model(section), keys)


@pytest.mark.parametrize("target", ["scan_hardest", "modelnet"])
def test_full_size_pretrain_into_finetune(target):
    load = official_keys(f"pretrain_to_finetune_{target}_load.json")
    pretrain = official_keys("pretrain_act_distill.json")
    cfg_file = f"cfgs/finetune_classification/full/finetune_{target}.yaml"
    with torch.device("meta"):
        ckpt = {"base_model": {"module." + e["key"]: torch.zeros(e["shape"]) for e in pretrain["keys"]}}
        model, report = from_official(ckpt, _official_model_section(cfg_file), return_report=True)
    assert report.ok
    assert sorted(report.loaded) == sorted(load["loaded_keys"]) and len(report.loaded) == 158
    assert {k for k in report.initialized if not k.endswith("num_batches_tracked")} == set(load["missing_keys"])
    assert sorted(report.dropped) == sorted(load["unexpected_keys"])


def test_lazy_top_level_api():
    assert act_zoo.from_official is from_official
    with pytest.raises(AttributeError):
        act_zoo.not_a_thing  # noqa: B018


@pytest.mark.parametrize(
    "table,cfg_file",
    [
        ("pretrain_act_distill.json", "cfgs/pretrain/pretrain_act_distill.yaml"),
        ("dvae_act_vit_base.json", "cfgs/autoencoder/act_dvae_with_pretrained_transformer.yaml"),
    ],
)
def test_full_size_pretraining_key_tables(table, cfg_file):
    keys = official_keys(table)
    model = _meta_model(RAW[cfg_file])  # the whole yaml: npoints is read from its top level
    _assert_keys_match(model, keys)
    assert len(model.state_dict()) == keys["num_keys"]


def test_full_size_stage2_checkpoint_loads_strictly_with_its_teacher():
    pretrain = official_keys("pretrain_act_distill.json")
    with torch.device("meta"):
        ckpt = {"base_model": {"module." + e["key"]: torch.zeros(e["shape"]) for e in pretrain["keys"]}}
        _, report = from_official(ckpt, RAW["cfgs/pretrain/pretrain_act_distill.yaml"], return_report=True)
    assert report.ok and len(report.loaded) == 428
