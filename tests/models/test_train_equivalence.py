"""Official training mode, fast path vs reference path (float64, ~1e-10).

The stage-II model in ``train()`` exactly as official pretraining: the frozen teacher in
train mode (BatchNorm batch statistics and running-stat updates, prompt dropout active,
Gumbel noise drawn at every call), drop-path in the student and decoder. Seeding torch before
each path makes every draw identical, so the two paths must agree on the loss, every
gradient, every BatchNorm running statistic and the parameters after AdamW steps."""

import copy

import pytest
import torch

from act_zoo.layers import attention
from act_zoo.models.distill import ACTDistillation, DistillConfig
from act_zoo.models.dvae import DVAEConfig, PromptedDiscreteVAE

F64 = torch.float64
TOL = {"atol": 1e-10, "rtol": 1e-9}

TINY_D = DVAEConfig(group_size=8, num_group=16, num_tokens=64, encoder_dims=48, tokens_dims=40, decoder_dims=40,
                    teacher="tinyvit_e32_d3_h2", num_prompt_token=4, npoints=256)


def _config(**kw) -> DistillConfig:
    base = {"embed_dim": 48, "depth": 3, "num_heads": 3, "drop_path_rate": 0.1, "cls_dim": 32, "decoder_depth": 2,
            "decoder_num_heads": 3, "register_shallow_hook": 1, "dvae": TINY_D}
    return DistillConfig(**{**base, **kw})


def _randomize_bn(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(5)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.weight.data = torch.empty_like(m.weight).uniform_(-1.5, 1.5, generator=g)
            m.bias.data = torch.empty_like(m.bias).uniform_(-0.5, 0.5, generator=g)


def _points(B=3, N=256, seed=0):
    x = torch.randn(B, N, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return x / x.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True)


def _run(model, steps, points, masks, *, seed=1234):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.05)
    record = []
    for i in range(steps):
        torch.manual_seed(seed + i)  # same prompt dropout, Gumbel noise and drop-path draws on both paths
        opt.zero_grad(set_to_none=True)
        out = model.forward_loss(points, mask=masks[i])
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        opt.step()
        record.append((out.loss.detach(), out.teacher_feat.detach(), grads))
    return record


def _assert_same(fast, ref, rec_f, rec_r):
    for (lf, tf, gf), (lr, tr, gr) in zip(rec_f, rec_r):
        torch.testing.assert_close(lf, lr, **TOL)
        torch.testing.assert_close(tf, tr, **TOL)
        assert gf.keys() == gr.keys()
        for name in gr:
            torch.testing.assert_close(gf[name], gr[name], **TOL, msg=lambda m, n=name: f"grad {n}: {m}")
    for (name, a), (_, b) in zip(fast.named_buffers(), ref.named_buffers()):
        if a.dtype == torch.long:
            assert torch.equal(a, b), name
        else:
            torch.testing.assert_close(a, b, **TOL, msg=lambda m, n=name: f"buffer {n}: {m}")
    # after the AdamW steps; atol 1e-9: a bias in front of a batch-statistics BatchNorm has an
    # exactly-zero gradient, computed as ~1e-17 rounding noise that Adam's normalisation amplifies
    for (name, a), (_, b) in zip(fast.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9, msg=lambda m, n=name: f"param {n}: {m}")


@pytest.mark.parametrize("variant", ["official", "cls_loss", "teacher_eval", "no_mask"])
def test_training_steps_fast_equal_reference(variant):
    kw = {"cls_loss": {"cls_loss": True}, "teacher_eval": {"teacher_train_mode": False},
          "no_mask": {"mask_ratio": 0.0}, "official": {}}[variant]
    torch.manual_seed(0)
    model = ACTDistillation(_config(**kw)).to(F64)
    _randomize_bn(model)
    model.train()
    assert model.dvae_tokenizer.training == (variant != "teacher_eval")
    assert model.dvae_tokenizer.prompt_dropout.p == 0.1
    points = _points()
    g = torch.Generator().manual_seed(3)
    masks = [model.make_mask(torch.zeros(3, 16, 3), generator=g) for _ in range(2)]
    ref = copy.deepcopy(model).set_fast_path(False)
    fast = copy.deepcopy(model).set_fast_path(True)
    rec_r = _run(ref, 2, points, masks)
    rec_f = _run(fast, 2, points, masks)
    _assert_same(fast, ref, rec_f, rec_r)
    assert rec_r[0][0].item() != rec_r[1][0].item()
    if variant != "teacher_eval":  # the teacher's BatchNorms followed the batches
        assert int(fast.dvae_tokenizer.encoder.first_conv[1].num_batches_tracked) == 2
    assert int(fast.ACT_encoder.encoder.second_conv[1].num_batches_tracked) == 2


def test_fast_training_step_skips_the_teacher_blocks_and_masked_groups(monkeypatch):
    """The fast path really takes the fast routes (and the reference path does not)."""
    model = ACTDistillation(_config()).to(F64).train()
    teacher_blocks = set(map(id, model.dvae_tokenizer.visual_embed[0]))
    calls = {"teacher_blocks": 0, "subset": 0}
    block_forward = attention.Block.forward

    def counting_forward(self, x):
        calls["teacher_blocks"] += id(self) in teacher_blocks
        return block_forward(self, x)

    monkeypatch.setattr(attention.Block, "forward", counting_forward)
    subset = type(model.ACT_encoder.encoder)._forward_subset_batch_stats

    def counting_subset(self, *a):
        calls["subset"] += 1
        return subset(self, *a)

    monkeypatch.setattr(type(model.ACT_encoder.encoder), "_forward_subset_batch_stats", counting_subset)
    model.forward_loss(_points()).loss.backward()
    assert calls == {"teacher_blocks": 0, "subset": 1}
    model.set_fast_path(False).forward_loss(_points()).loss.backward()
    assert calls == {"teacher_blocks": 3, "subset": 1}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_teacher_tokenizer_features_fast_equal_reference(train):
    """The frozen teacher alone (stage-II targets): Gumbel draw, mini-PointNet batch stats,
    dgcnn_1, codebook lookup, prompted ViT, dgcnn_2."""
    torch.manual_seed(0)
    teacher = PromptedDiscreteVAE(TINY_D).to(F64).train(train)
    _randomize_bn(teacher)
    p = teacher.patchify(_points())
    outs, mods = [], []
    for fast in (False, True):
        m = copy.deepcopy(teacher).set_fast_path(fast)
        torch.manual_seed(7)
        with torch.no_grad():
            outs.append(m.tokenizer_features(p.neighborhood, p.center))
        mods.append(m)
    torch.testing.assert_close(outs[1], outs[0], **TOL)
    for (name, a), (_, b) in zip(mods[1].named_buffers(), mods[0].named_buffers()):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, n=name: f"buffer {n}: {m}")
    # the same teacher pieces with the vit blocks hooked: the hooks see full sequences
    seen = []
    mods[1].visual_embed[0][0].register_forward_hook(lambda mod, i, o: seen.append(o.shape))
    torch.manual_seed(7)
    with torch.no_grad():
        hooked = mods[1].tokenizer_features(p.neighborhood, p.center)
    assert seen == [torch.Size([3, 4 + 16, 32])]
    assert hooked.shape == outs[1].shape


def test_official_size_step_float32_close():
    """Official widths (384-d student, 8192 tokens, 64 deep prompts) with a 2-block ViT-B
    teacher, float32: the paths agree to float rounding in train mode."""
    d = DVAEConfig(teacher={"embed_dim": 768, "depth": 2, "num_heads": 12})
    cfg = DistillConfig(depth=2, dvae=d)
    torch.manual_seed(0)
    model = ACTDistillation(cfg).train()
    points = _points(B=2, N=1024).float()
    mask = model.make_mask(torch.zeros(2, 64, 3), generator=torch.Generator().manual_seed(1))
    rec = []
    for fast in (False, True):
        m = copy.deepcopy(model).set_fast_path(fast)
        torch.manual_seed(11)
        out = m.forward_loss(points, mask=mask)
        out.loss.backward()
        rec.append((out.loss.item(), {n: p.grad for n, p in m.named_parameters() if p.grad is not None},
                    {n: b for n, b in m.named_buffers() if "running" in n}))
    (lr, gr, br), (lf, gf, bf) = rec
    assert abs(lr - lf) < 1e-5
    for n in gr:
        torch.testing.assert_close(gf[n], gr[n], atol=1e-5, rtol=1e-3, msg=lambda m, n=n: f"grad {n}: {m}")
    for n in br:
        torch.testing.assert_close(bf[n], br[n], atol=1e-5, rtol=1e-4)
