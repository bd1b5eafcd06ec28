"""The train-mode fast paths of the layers compute the reference function (float64, ~1e-10):
outputs, every parameter gradient and the BatchNorm running statistics."""

import copy

import pytest
import torch
from torch import nn

from act_zoo.layers import DGCNN, MiniPointNet
from act_zoo.layers.attention import has_hooks
from act_zoo.layers.pointnet import affine_sum_moments, linear_moments, update_running_stats
from act_zoo.layers.teacher import deep_prompt_inference, deterministic_vit_block, run_block, vit_block

F64 = torch.float64
TOL = {"atol": 1e-10, "rtol": 1e-10}


def _close(a, b, name=""):
    torch.testing.assert_close(a, b, **TOL, msg=lambda m: f"{name}: {m}")


def _pointnet(momentum=0.1, C=48):
    m = MiniPointNet(C).to(F64)
    for bn in (m.first_conv[1], m.second_conv[1]):
        bn.momentum = momentum
        bn.weight.data.uniform_(-1.5, 1.5)  # negative scales too
        bn.bias.data.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    return m


def _keep(B, G, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    keep = torch.zeros(B, G, dtype=torch.bool)
    for b in range(B):
        keep[b, torch.randperm(G, generator=g)[:k]] = True
    return keep


def _compare_modules(fast, ref):
    for (name, a), (_, b) in zip(fast.named_parameters(), ref.named_parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            _close(a.grad, b.grad, f"grad {name}")
    for (name, a), (_, b) in zip(fast.named_buffers(), ref.named_buffers()):
        if a.dtype == torch.long:
            assert torch.equal(a, b), name
        else:
            _close(a, b, f"buffer {name}")


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_pointnet_subset_equals_reference_then_select(momentum, train):
    ref = _pointnet(momentum).train(train)
    ref.fast = False
    fast = copy.deepcopy(ref)
    fast.fast = True
    x = torch.randn(3, 16, 8, 3, dtype=F64)
    keep = _keep(3, 16, 4)
    for step in range(2):  # the running stats accumulate over steps
        out_r = ref(x)[keep].view(3, 4, 48)
        out_f = fast.forward_subset(x, keep)
        _close(out_f, out_r, f"step {step} output")
        g = torch.randn_like(out_r)
        (out_r * g).sum().backward()
        (out_f * g).sum().backward()
        _compare_modules(fast, ref)
        x = x * 1.3 + 0.1
    if train:
        assert int(fast.second_conv[1].num_batches_tracked) == 2


def test_pointnet_subset_all_kept_and_reference_switch():
    m = _pointnet().train()
    x = torch.randn(2, 8, 8, 3, dtype=F64)
    keep = torch.ones(2, 8, dtype=torch.bool)
    a = copy.deepcopy(m).forward_subset(x, keep)
    b = copy.deepcopy(m)
    b.fast = False
    _close(a, b(x), "all kept")


@pytest.mark.parametrize("rows_per_chunk", [2048, 24], ids=["one_chunk", "chunks"])
def test_pointnet_train_mode_no_grad_equals_reference(rows_per_chunk):
    """The frozen teacher's mini-PointNet: batch statistics, running-stat updates, no graph."""
    ref = _pointnet().train()
    ref.fast = False
    fast = copy.deepcopy(ref)
    x = torch.randn(3, 16, 8, 3, dtype=F64)
    with torch.no_grad():
        for _ in range(2):
            out_r = ref(x)
            out_f = fast.forward_inference(x, rows_per_chunk=rows_per_chunk)
            _close(out_f, out_r, "output")
            _compare_modules(fast, ref)
        assert not out_f.requires_grad


def test_pointnet_mixed_bn_modes():
    """One BatchNorm in train mode, the other in eval mode: every path still matches."""
    for which in (0, 1):
        ref = _pointnet().train()
        (ref.first_conv[1] if which == 0 else ref.second_conv[1]).eval()
        ref.fast = False
        fast = copy.deepcopy(ref)
        fast.fast = True
        x = torch.randn(2, 8, 8, 3, dtype=F64)
        keep = _keep(2, 8, 3)
        with torch.no_grad():
            _close(copy.deepcopy(fast)(x), copy.deepcopy(ref)(x), "no grad")
        out_r = ref(x)[keep].view(2, 3, 48)
        out_f = fast.forward_subset(x, keep)
        _close(out_f, out_r, "subset")
        out_r.sum().backward()
        out_f.sum().backward()
        _compare_modules(fast, ref)


@pytest.mark.parametrize("grad", [True, False])
def test_affine_sum_moments(grad):
    g = torch.Generator().manual_seed(1)
    u = torch.randn(6, 10, dtype=F64, generator=g) * 3 + 5
    r = torch.rand(6, 7, 4, dtype=F64, generator=g) + 2  # large mean: centring matters
    L = torch.randn(10, 4, dtype=F64, generator=g)
    y = u[:, None, :] + r @ L.t()  # 6 7 10
    with torch.set_grad_enabled(grad):
        mean, var = affine_sum_moments(u, r, L)
    _close(mean, y.reshape(-1, 10).mean(0), "mean")
    _close(var, y.reshape(-1, 10).var(0, unbiased=False), "var")
    w, b = torch.randn(5, 3, dtype=F64), torch.randn(5, dtype=F64)
    x = torch.randn(40, 3, dtype=F64) + 4
    mean, var = linear_moments(x, w, b)
    h = x @ w.t() + b
    _close(mean, h.mean(0), "linear mean")
    _close(var, h.var(0, unbiased=False), "linear var")


def test_update_running_stats_is_batchnorm():
    for momentum in (0.1, None):
        bn = nn.BatchNorm1d(5, momentum=momentum).to(F64)
        ours = copy.deepcopy(bn)
        for _ in range(3):
            x = torch.randn(12, 5, dtype=F64) * 2 + 1
            bn(x)
            update_running_stats(ours, x.mean(0), x.var(0, unbiased=False), 12)
        _close(ours.running_mean, bn.running_mean, "running_mean")
        _close(ours.running_var, bn.running_var, "running_var")
        assert torch.equal(ours.num_batches_tracked, bn.num_batches_tracked)
    with pytest.raises(ValueError, match="more than 1 value"):
        update_running_stats(bn, x.mean(0), x.var(0), 1)


def test_dgcnn_no_grad_channels_last_equals_reference():
    m = DGCNN(24, 40).to(F64)
    for mod in m.modules():
        if isinstance(mod, nn.GroupNorm):
            mod.weight.data.uniform_(-1.5, 1.5)
            mod.bias.data.uniform_(-0.5, 0.5)
    f, c = torch.randn(3, 16, 24, dtype=F64) + 1, torch.randn(3, 16, 3, dtype=F64)
    with torch.no_grad():
        fast = m.forward_inference(f, c)
        m.fast = False
        ref = m(f, c)
    _close(fast, ref, "dgcnn")
    assert fast.is_contiguous()


def _prompted_reference(blocks, x, pos, prompts, prompt_pos):
    """The official deep-prompt loop on full sequences: prompts replace the first P rows."""
    B, P = x.shape[0], prompts[0].shape[1]
    seq, spos = None, None
    for i, blk in enumerate(blocks):
        pr = prompts[i].expand(B, -1, -1)
        pp = prompt_pos[i].expand(B, -1, -1)
        seq = torch.cat((pr, x if seq is None else seq[:, P:]), dim=1)
        spos = torch.cat((pp, pos), dim=1)
        seq = run_block(blk, seq + spos)
    return seq[:, P:]


@pytest.mark.parametrize("shared", [False, True], ids=["per_sample_prompts", "shared_prompts"])
def test_deep_prompt_inference_equals_full_sequence(shared):
    blocks = nn.Sequential(*(vit_block(32, 4) for _ in range(3))).to(F64).train()
    assert all(deterministic_vit_block(b) for b in blocks)
    B, G, P = 3, 10, 4
    x, pos = torch.randn(B, G, 32, dtype=F64), torch.randn(B, G, 32, dtype=F64)
    prompts = [torch.randn(1 if shared else B, P, 32, dtype=F64) for _ in blocks]
    prompt_pos = [torch.randn(1, P, 32, dtype=F64) for _ in blocks]
    with torch.no_grad():
        ref = _prompted_reference(blocks, x, pos, prompts, prompt_pos)
        fast = deep_prompt_inference(blocks, x, pos, [p + q for p, q in zip(prompts, prompt_pos)])
    _close(fast, ref, "patch rows")


def test_deterministic_block_detection_and_hooks():
    blk = vit_block(16, 2).train()
    assert deterministic_vit_block(blk)
    blk.attn.attn_drop.p = 0.1
    assert not deterministic_vit_block(blk) and deterministic_vit_block(blk.eval())
    seq = nn.Sequential(vit_block(16, 2))
    assert not has_hooks(seq)
    h = seq[0].mlp.register_forward_hook(lambda *a: None)
    assert has_hooks(seq) and has_hooks(seq, include_self=False)
    h.remove()
    h = seq.register_forward_hook(lambda *a: None)
    assert has_hooks(seq) and not has_hooks(seq, include_self=False)
    h.remove()


def test_pointnet_float32_as_accurate_as_reference():
    """Official widths and init, real patches (the second BatchNorm's std is small next to its
    mean): in float32 the fast paths' outputs and running stats are as close to the exact
    (float64) values as the reference path's. (Gradients are not compared in float32: a
    pre-activation within rounding of a ReLU kink legitimately routes them differently.)"""
    from act_zoo.layers.transformer import trunc_normal_init
    from act_zoo.ops import group_points

    torch.manual_seed(0)
    m = MiniPointNet(384).apply(trunc_normal_init).train()
    cloud = torch.randn(4, 1024, 3, generator=torch.Generator().manual_seed(0))
    x = group_points(cloud / cloud.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True), 64, 32).neighborhood
    keep = _keep(4, 64, 13)
    exact = copy.deepcopy(m).double()
    exact.fast = False
    ref = copy.deepcopy(m)
    ref.fast = False
    teacher = copy.deepcopy(m)
    out_e, out_r = exact(x.double()), ref(x)
    with torch.no_grad():
        out_t = teacher(x)  # train-mode no-grad path
    out_s = m.forward_subset(x, keep)

    def err(a, b):
        return (a.double() - b).abs().max().item()

    e_ref = err(out_r, out_e)
    assert err(out_t, out_e) < 4 * e_ref + 1e-6
    assert err(out_s, out_e[keep].view(4, 13, 384)) < 4 * e_ref + 1e-6
    for mod in (m, teacher):
        for (name, a), (_, b), (_, c) in zip(mod.named_buffers(), ref.named_buffers(), exact.named_buffers()):
            if a.is_floating_point():
                assert err(a, c) < 4 * err(b, c) + 1e-7, name
