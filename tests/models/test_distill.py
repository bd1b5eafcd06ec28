import random

import numpy as np
import pytest
import torch

from act_zoo.hub.convert import from_official
from act_zoo.models.distill import ACTDistillation, DistillConfig, block_mask, random_mask
from act_zoo.models.dvae import DVAEConfig
from act_zoo.models.point_transformer import ACTEncoder
from helpers import TINY_DISTILL, assert_close, load_official, tiny_pretrain_checkpoint

TINY_D = DVAEConfig(group_size=8, num_group=16, num_tokens=64, encoder_dims=48, tokens_dims=40, decoder_dims=40,
                    teacher="tinyvit_e32_d2_h2", teacher_dim=32, num_prompt_token=4, npoints=256)
TINY = DistillConfig(embed_dim=48, depth=2, num_heads=3, drop_path_rate=0.0, cls_dim=32, decoder_depth=2,
                     decoder_num_heads=3, dvae=TINY_D)


def _tiny(fast: bool) -> tuple[ACTDistillation, dict]:
    m = ACTDistillation(TINY)
    m.load_state_dict(tiny_pretrain_checkpoint()["base_model"], strict=True)
    _, fx = load_official("pretrain_distill_tiny.safetensors")
    return m.eval().set_fast_path(fast), fx


@pytest.mark.parametrize("fast", [False, True], ids=["reference", "fast"])
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
def test_every_intermediate_matches_official(fast, grad):
    m, fx = _tiny(fast)
    caps: dict = {}

    def tap(name):
        return lambda mod, i, o: caps.__setitem__(name, o.detach().clone())

    enc, teacher = m.ACT_encoder, m.dvae_tokenizer
    enc.encoder.register_forward_hook(tap("enc.group_tokens"))
    enc.pos_embed.register_forward_hook(tap("enc.pos_vis"))
    enc.norm.register_forward_hook(lambda mod, i, o: caps.__setitem__("enc.x_vis", o[:, 1:].detach().clone()))
    teacher.dgcnn_1.register_forward_hook(tap("teacher.logits"))
    teacher.proj_post.register_forward_hook(tap("teacher.proj_post"))
    teacher.dgcnn_2.register_forward_hook(tap("teacher.feat_all"))
    m.ACT_decoder.register_forward_hook(tap("dec.out"))
    m.ACT_decoder.register_forward_hook(lambda mod, i, o: caps.update({"dec.x_full": i[0].detach().clone(),
                                                                       "dec.pos_full": i[1].detach().clone()}))
    pos_calls = []
    m.decoder_pos_embed.register_forward_hook(lambda mod, i, o: pos_calls.append(o.detach().clone()))
    for i, blk in enumerate(enc.blocks.blocks):
        blk.register_forward_hook(tap(f"enc.block{i}.out"))
    with torch.set_grad_enabled(grad):
        out = m.forward_loss(fx["input.points"], mask=fx["mask"].bool(), gumbel_noise=fx["teacher.gumbel_noise"])
    names = ["enc.group_tokens", "enc.pos_vis", "enc.x_vis", "teacher.logits", "teacher.proj_post", "teacher.feat_all",
             "dec.x_full", "dec.pos_full", "dec.out"]
    if not fast or grad:
        names += ["enc.block0.out", "enc.block1.out"]
    for name in names:
        assert_close(caps[name], fx[name], name=name)
    assert_close(pos_calls[0], fx["dec.pos_vis"], name="dec.pos_vis")
    assert_close(pos_calls[1], fx["dec.pos_mask"], name="dec.pos_mask")
    assert_close(out.teacher_feat, fx["teacher.feat_masked"], name="teacher.feat_masked")
    assert_close(out.student_feat, fx["student_feat"], name="student_feat")
    assert out.loss.dim() == 0 and abs(out.loss.item() - fx["loss"].item()) < 1e-6
    assert torch.equal(out.mask, fx["mask"].bool())
    assert_close(m.forward_cls_feature(fx["input.points"]), fx["eval.cls_feature"], name="eval.cls_feature")


def test_numpy_mask_reproduces_the_official_draw():
    _, fx = load_official("pretrain_distill_tiny.safetensors")
    np.random.seed(20)  # the fixture generator seeded numpy like this before the forward
    assert torch.equal(random_mask(2, 16, 0.8), fx["mask"].bool())
    m, fx = _tiny(True)
    np.random.seed(20)
    with torch.no_grad():
        out = m.forward_loss(fx["input.points"], gumbel_noise=fx["teacher.gumbel_noise"])
    assert torch.equal(out.mask, fx["mask"].bool()) and abs(out.loss.item() - fx["loss"].item()) < 1e-6


def test_torch_generator_masks_and_block_masks():
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, b = random_mask(4, 64, 0.8, generator=g1), random_mask(4, 64, 0.8, generator=g2)
    assert torch.equal(a, b) and (a.sum(1) == 51).all()
    rs = np.random.RandomState(0)
    assert (random_mask(3, 10, 0.5, generator=rs).sum(1) == 5).all()
    center = torch.randn(2, 32, 3)
    m = block_mask(center, 0.5, rng=random.Random(7))
    assert (m.sum(1) == 16).all()
    rng = random.Random(7)
    for b in range(2):  # the masked set is the ball of the 16 centres nearest the drawn seed centre
        seed = center[b, rng.randint(0, 31)]
        d = (center[b] - seed).norm(dim=-1)
        assert d[m[b]].max() <= d[~m[b]].min()


def test_student_encoder_is_the_finetuning_encoder():
    m, fx = _tiny(True)
    assert isinstance(m.encoder, ACTEncoder)
    feats = m.encoder.forward_features(fx["input.points"])
    assert feats.global_feature.shape == (2, 96) and feats.tokens.shape == (2, 16, 48)


def test_teacher_mode_official_train_and_eval_option():
    m = ACTDistillation(TINY).train()
    assert m.dvae_tokenizer.training and m.dvae_tokenizer.encoder.first_conv[1].training  # official
    m2 = ACTDistillation(DistillConfig(**{**TINY.__dict__, "teacher_train_mode": False})).train()
    assert m2.ACT_encoder.training and not m2.dvae_tokenizer.training
    assert not any(p.requires_grad for p in m.dvae_tokenizer.parameters())


def test_training_step_teacher_frozen_and_running_stats_follow_mode():
    m, fx = _tiny(True)
    m.train()
    before = m.dvae_tokenizer.encoder.first_conv[1].running_mean.clone()
    weights = {k: v.clone() for k, v in m.dvae_tokenizer.state_dict().items() if "running" not in k and "num_batches" not in k}
    out = m.forward_loss(fx["input.points"])
    out.loss.backward()
    torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3).step()
    assert not torch.equal(before, m.dvae_tokenizer.encoder.first_conv[1].running_mean)  # official: stats update
    for k, v in m.dvae_tokenizer.state_dict().items():
        if k in weights:
            assert torch.equal(v, weights[k]), k
    assert m.ACT_encoder.cls_token.grad is not None and m.ACT_encoder.lm_head.weight.grad is None


def test_mask_argument_checks():
    m, fx = _tiny(True)
    with pytest.raises(ValueError, match="mask must have shape"):
        m.forward_loss(fx["input.points"], mask=torch.zeros(2, 15, dtype=torch.bool))
    bad = fx["mask"].bool().clone()
    bad[0, 1] = ~bad[0, 1]
    with pytest.raises(ValueError, match="same number"):
        m.forward_loss(fx["input.points"], mask=bad)


def test_from_official_stage2_teacher_from_checkpoint_not_yaml():
    for prefix in ("", "module."):
        model, report = from_official(tiny_pretrain_checkpoint(prefix), TINY_DISTILL, return_report=True)
        assert report.ok and any("dvae_config.ckpt not read" in note for note in report.layout)
    _, fx = load_official("pretrain_distill_tiny.safetensors")
    with torch.no_grad():
        out = model.forward_loss(fx["input.points"], mask=fx["mask"].bool(), gumbel_noise=fx["teacher.gumbel_noise"])
    assert abs(out.loss.item() - fx["loss"].item()) < 1e-6


def test_from_official_stage2_teacher_from_yaml_ckpt(tmp_path):
    full = tiny_pretrain_checkpoint()["base_model"]
    teacher = {k[len("dvae_tokenizer."):]: v for k, v in full.items() if k.startswith("dvae_tokenizer.")}
    student = {k: v for k, v in full.items() if not k.startswith("dvae_tokenizer.")}
    path = tmp_path / "ckpt_dvae.pth"
    torch.save({"base_model": {"module." + k: v for k, v in teacher.items()}}, path)
    cfg = dict(TINY_DISTILL, dvae_config=dict(TINY_DISTILL["dvae_config"], ckpt=str(path)))
    model, report = from_official({"base_model": student}, cfg, return_report=True)
    assert report.ok and any("dvae_config.ckpt" in note for note in report.layout)
    assert torch.equal(model.dvae_tokenizer.codebook, teacher["codebook"])
    with pytest.raises(FileNotFoundError, match="dvae_config.ckpt"):
        from_official({"base_model": student}, TINY_DISTILL)
    fresh = from_official(None, cfg)  # a fresh stage-II build loads its teacher like the official code
    assert torch.equal(fresh.dvae_tokenizer.codebook, teacher["codebook"])
