"""Registry, weights manifest, from_pretrained from every source, cache, save/push."""

import json
from pathlib import Path

import pytest
import torch

import act_zoo
from act_zoo.hub import gdrive, http_fetch, registry
from act_zoo.hub.convert import CheckpointMismatchError
from act_zoo.hub.io import load_pretrained, push_to_hub, save_pretrained
from act_zoo.hub.manifest import ManifestError, load_records, read_manifest_file, validate_record
from act_zoo.models import ACTClassifier, ClassifierConfig
from act_zoo.models.common import config_to_dict
from helpers import FIXTURES, TINY_FINETUNE, assert_close, load_official, tiny_pretrain_checkpoint

from .http_server import LocalServer

TINY_CFG = ClassifierConfig(embed_dim=48, depth=2, num_heads=3, group_size=8, num_group=16, encoder_dims=48,
                            drop_path_rate=0.0, cls_dim=5, npoints=256)
PTH = FIXTURES / "tiny" / "tiny_ckpt_official_format.pth"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ACT_ZOO_HOME", str(tmp_path / "home"))
    for var in ("ACT_ZOO_OFFLINE", "HF_HUB_OFFLINE", "ACT_ZOO_GDRIVE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(http_fetch, "RETRY_BACKOFF_S", 0.0)
    registry.reset_registry()
    yield tmp_path / "home"
    registry.reset_registry()


@pytest.fixture
def server():
    srv = LocalServer().start()
    yield srv
    srv.stop()


def _record(name, source, **extra):
    rec = dict(
        name=name, architecture=name.split(".")[0], model_class="ACTClassifier", description="tiny test model",
        task="classification", dataset="synthetic", config=config_to_dict(TINY_CFG),
        official_config=dict(TINY_FINETUNE, npoints=256), convert="finetune", sources=[source],
        format="official-pth", sha256=None, sha256_note="test file", size_bytes=None, num_params=1,
        metrics={"overall_accuracy": 50.0}, metrics_source="test", license="MIT", citation="test",
    )
    rec.update(extra)
    return rec


def _logits(model):
    _, fx = load_official("finetune_cls_tiny.safetensors")
    with torch.no_grad():
        return model(fx["input.points"]), fx["logits"]


# ------------------------------------------------------------------------------------ manifest
def test_every_packaged_manifest_record_is_valid_and_buildable():
    records = load_records()
    names = set(records)
    for required in ("act_base.pretrain", "act_base.scanobjectnn_hardest", "act_base.scanobjectnn_objbg",
                     "act_base.scanobjectnn_objonly", "act_base.modelnet40", "act_dvae_vit_base.shapenet55"):
        assert required in names
    assert records["act_base.scanobjectnn_hardest"].metrics["overall_accuracy"] == 88.21
    assert records["act_base.modelnet40"].metrics["overall_accuracy"] == 93.70
    for name, rec in records.items():
        assert rec.sources and rec.license and rec.citation
        if rec.sha256 is None:
            assert "not yet known" in rec.sha256_note
        with torch.device("meta"):
            model = act_zoo.create_model(name)
        assert sum(p.numel() for p in model.parameters()) == rec.num_params, name
        if rec.official_config:  # the official conversion builds the very same architecture
            with torch.device("meta"):
                official = act_zoo.from_official(None, rec.official_config)
            if rec.convert != "encoder_from_pretrain":
                assert set(official.state_dict()) == set(model.state_dict()), name


@pytest.mark.parametrize("field,value,match", [
    ("name", "Bad Name", "arch.tag"),
    ("sha256", "xyz", "64 lowercase hex"),
    ("model_class", "Nope", "model_class"),
    ("sources", [{"type": "ftp", "url": "x"}], "type in"),
    ("sources", [{"type": "url", "url": "file:///etc/passwd"}], "http"),
    ("num_params", 0, "positive"),
    ("metrics", {"acc": "high"}, "number"),
    ("architecture", "other", "prefix"),
])
def test_manifest_schema_rejects_bad_records(field, value, match):
    rec = _record("t_arch.tag", {"type": "url", "url": "https://example.org/x.pth"})
    rec[field] = value
    with pytest.raises(ManifestError, match=match):
        validate_record(rec)
    rec = _record("t_arch.tag", {"type": "url", "url": "https://example.org/x.pth"})
    rec["surprise"] = 1
    with pytest.raises(ManifestError, match="unknown fields"):
        validate_record(rec)


def test_manifest_files_and_duplicate_names(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"schema_version": 1, "weights": [
        _record("t_arch.one", {"type": "url", "url": "https://example.org/x.pth"})]}))
    assert [r.name for r in read_manifest_file(tmp_path / "a.json")] == ["t_arch.one"]
    (tmp_path / "b.json").write_text((tmp_path / "a.json").read_text())
    with pytest.raises(ManifestError, match="already defined"):
        load_records([tmp_path])
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(ManifestError, match="b.json"):
        load_records([tmp_path])


# ------------------------------------------------------------------------------------ registry
def test_list_create_and_unknown_names():
    assert "act_base.modelnet40" in act_zoo.list_models()
    assert act_zoo.list_models("act_base.scan*", pretrained=True) == [
        "act_base.scanobjectnn_hardest", "act_base.scanobjectnn_objbg", "act_base.scanobjectnn_objonly"]
    m = act_zoo.create_model("act_base.modelnet40", depth=1, drop_path_rate=0.0)
    assert isinstance(m, ACTClassifier) and len(m.blocks.blocks) == 1 and m.config.cls_dim == 40
    with pytest.raises(ValueError, match="did you mean 'act_base.modelnet40'"):
        act_zoo.create_model("act_base.modelnet4")
    with pytest.raises(ValueError, match="unknown config overrides"):
        act_zoo.create_model("act_base.modelnet40", depthh=2)


def test_register_duplicate_name_raises(server):
    url = server.add_file("/tiny.pth", PTH.read_bytes())
    act_zoo.register_weights(_record("t_arch.tiny", {"type": "url", "url": url}))
    with pytest.raises(ValueError, match="already registered"):
        act_zoo.register_weights(_record("t_arch.tiny", {"type": "url", "url": url}))
    with pytest.raises(ValueError, match="already registered"):
        act_zoo.register_weights(_record("act_base.modelnet40", {"type": "url", "url": url},
                                         architecture="act_base"))


def test_pretrained_download_convert_once_then_cache_and_offline(server, home, monkeypatch, caplog):
    url = server.add_file("/tiny.pth", PTH.read_bytes())
    act_zoo.register_weights(_record("t_arch.tiny", {"type": "url", "url": url}))
    with caplog.at_level("WARNING"):
        model = act_zoo.create_model("t_arch.tiny", pretrained=True)
    assert "unverified" in caplog.text  # unknown hash: warned, and recorded in the cache metadata
    got, want = _logits(model)
    assert_close(got, want, name="logits")
    converted = home / "converted" / "t_arch.tiny" / "model.safetensors"
    assert converted.is_file() and (home / "converted" / "t_arch.tiny" / "config.json").is_file()
    assert server.full_gets("/tiny.pth") == 1
    again = act_zoo.from_pretrained("t_arch.tiny")
    assert server.full_gets("/tiny.pth") == 1  # converted once, cached as safetensors
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    assert isinstance(act_zoo.from_pretrained("t_arch.tiny"), ACTClassifier)
    act_zoo.register_weights(_record("t_arch.other", {"type": "url", "url": server.url("/other.pth")}))
    with pytest.raises(Exception, match="offline") as err:
        act_zoo.from_pretrained("t_arch.other")
    assert "other.pth" in str(err.value)


def test_official_gdrive_entry_through_confirm_page(server, monkeypatch):
    """The packaged official records use Google Drive ids: exercise that path end to end with a
    local Drive-like server (confirm page) serving the tiny official checkpoint."""
    monkeypatch.setattr(gdrive, "GDRIVE_URL", server.url("/uc"))
    server.add_gdrive("1TinyFileIdForTheTestsXYZabc", PTH.read_bytes(), name="ckpt.pth", flow="form")
    act_zoo.register_weights(_record("t_arch.gd", {"type": "gdrive", "id": "1TinyFileIdForTheTestsXYZabc"}))
    got, want = _logits(act_zoo.create_model("t_arch.gd", pretrained=True))
    assert_close(got, want, name="logits")


def test_wrong_hash_is_rejected_and_nothing_is_cached(server, home):
    url = server.add_file("/tiny.pth", PTH.read_bytes())
    act_zoo.register_weights(_record("t_arch.bad", {"type": "url", "url": url}, sha256="0" * 64,
                                     sha256_note=""))
    with pytest.raises(Exception, match="sha256"):
        act_zoo.create_model("t_arch.bad", pretrained=True)
    assert not (home / "converted" / "t_arch.bad" / "model.safetensors").exists()


def test_encoder_from_stage2_entry(server, tmp_path):
    ckpt = tmp_path / "pretrain.pth"
    torch.save(tiny_pretrain_checkpoint("module."), ckpt)
    url = server.add_file("/pre.pth", ckpt.read_bytes())
    from act_zoo.models import PointTransformerConfig

    enc_cfg = PointTransformerConfig(embed_dim=48, depth=2, num_heads=3, group_size=8, num_group=16, encoder_dims=48,
                                     drop_path_rate=0.0, npoints=256)
    act_zoo.register_weights(_record("t_arch.pre", {"type": "url", "url": url}, model_class="ACTEncoder",
                                     config=config_to_dict(enc_cfg), convert="encoder_from_pretrain"))
    enc = act_zoo.create_model("t_arch.pre", pretrained=True)
    student = tiny_pretrain_checkpoint()["base_model"]
    assert torch.equal(enc.cls_token, student["ACT_encoder.cls_token"])
    report = (registry.converted_dir(registry.get_record("t_arch.pre")) / "conversion_report.txt").read_text()
    assert "lm_head.weight  -- unused stage-II token head" in report and "ACT_decoder.norm.weight" in report


def test_head_override_with_pretrained_weights_reinitialises_the_head(server):
    url = server.add_file("/tiny.pth", PTH.read_bytes())
    act_zoo.register_weights(_record("t_arch.tiny", {"type": "url", "url": url}))
    m = act_zoo.create_model("t_arch.tiny", pretrained=True, cls_dim=9)
    assert m.cls_head_finetune[-1].out_features == 9
    assert "cls_head_finetune.8.weight" in m.load_report.initialized
    assert len(m.load_report.loaded) == 62


# ------------------------------------------------------------------------------------ from_pretrained sources
def test_save_pretrained_round_trips_bit_exactly(tmp_path):
    model = act_zoo.from_official(PTH, TINY_FINETUNE)
    out = model.save_pretrained(tmp_path / "saved", metrics={"overall_accuracy": 12.5})
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (out / "README.md").read_text()
    assert "overall_accuracy" in card and "dong2023act" in card
    back = act_zoo.from_pretrained(out)
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    assert back.config == model.config and not back.training
    single = act_zoo.from_pretrained(out / "model.safetensors")  # config rides in the metadata
    assert single.config == model.config


def test_official_pth_and_bare_safetensors_with_inferred_config(tmp_path):
    model = act_zoo.from_pretrained(PTH, config=TINY_FINETUNE)
    got, want = _logits(model)
    assert_close(got, want)
    inferred = act_zoo.from_pretrained(PTH)  # shapes give widths/depth/head; defaults give the rest
    assert inferred.config.cls_dim == 5 and inferred.config.embed_dim == 48 and inferred.config.depth == 2
    from safetensors.torch import save_file

    weights, _ = load_official("finetune_cls_tiny.safetensors")
    save_file(weights, str(tmp_path / "plain.safetensors"))
    got, want = _logits(act_zoo.from_pretrained(tmp_path / "plain.safetensors", config=TINY_FINETUNE))
    assert_close(got, want)


def test_url_and_gdrive_url_sources(server, tmp_path, monkeypatch):
    model = act_zoo.from_official(PTH, TINY_FINETUNE)
    model.save_pretrained(tmp_path / "m")
    url = server.add_file("/m.safetensors", (tmp_path / "m" / "model.safetensors").read_bytes())
    assert act_zoo.from_pretrained(url).config == model.config
    monkeypatch.setattr(gdrive, "GDRIVE_URL", server.url("/uc"))
    server.add_gdrive("1AnotherTinyFileIdForTestsXYZ", PTH.read_bytes(), name="ft.pth", flow="cookie")
    got, want = _logits(act_zoo.from_pretrained("https://drive.google.com/file/d/1AnotherTinyFileIdForTestsXYZ/view",
                                                config=TINY_FINETUNE))
    assert_close(got, want)


def test_hf_hub_source_uses_the_hub_cache(tmp_path, monkeypatch):
    model = act_zoo.from_official(PTH, TINY_FINETUNE)
    snap = tmp_path / "snap"
    model.save_pretrained(snap)
    calls = []

    def fake_hf_hub_file(repo, filename, *, revision=None):
        calls.append((repo, filename, revision))
        return snap / filename

    monkeypatch.setattr(registry, "hf_hub_file", fake_hf_hub_file)
    back = act_zoo.from_pretrained("hf-hub:act-zoo/tiny@v1")
    assert calls == [("act-zoo/tiny", "config.json", "v1"), ("act-zoo/tiny", "model.safetensors", "v1")]
    assert back.config == model.config


def test_wrong_architecture_and_corrupt_files_give_reports(tmp_path):
    model = act_zoo.from_official(PTH, TINY_FINETUNE)
    out = model.save_pretrained(tmp_path / "m")
    spec = json.loads((out / "config.json").read_text())
    spec["config"]["cls_dim"] = 7
    (out / "config.json").write_text(json.dumps(spec))
    with pytest.raises(CheckpointMismatchError, match=r"cls_head_finetune.8.weight.*\[7, 256\] vs \[5, 256\]"):
        act_zoo.from_pretrained(out)
    (out / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="model.safetensors"):
        act_zoo.from_pretrained(out)
    with pytest.raises(ValueError, match="unknown model 'nonexistent_model'"):
        act_zoo.from_pretrained("nonexistent_model")


def test_save_is_atomic_and_leaves_no_partial_file(tmp_path, monkeypatch):
    import act_zoo.hub.io as hio

    model = act_zoo.from_official(PTH, TINY_FINETUNE)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        hio.save_pretrained(model, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_push_to_hub_uses_the_upload_api(tmp_path, monkeypatch):
    import huggingface_hub

    seen = {}

    class FakeApi:
        def __init__(self, token=None):
            seen["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            seen["repo"] = (repo_id, private, exist_ok)

        def upload_folder(self, folder_path, repo_id, revision=None, commit_message=""):
            seen["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            seen["config"] = json.loads((Path(folder_path) / "config.json").read_text())
            return "commit-url"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = act_zoo.from_official(PTH, TINY_FINETUNE)
    assert push_to_hub(model, "me/tiny", token="tok", private=True) == "commit-url"
    assert seen["repo"] == ("me/tiny", True, True)
    assert seen["files"] == ["README.md", "config.json", "model.safetensors"]
    assert seen["config"]["model_class"] == "ACTClassifier"


def test_load_pretrained_directory_checks(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path)
    save_pretrained(ACTClassifier(TINY_CFG), tmp_path / "x")
    (tmp_path / "x" / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_pretrained(tmp_path / "x")
