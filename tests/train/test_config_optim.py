"""Training configs (official defaults, YAML, overrides) and the official optimizer/schedules."""

import math

import pytest
import torch

from act_zoo.models import ClassifierConfig
from act_zoo.models.point_transformer import ACTClassifier
from act_zoo.train.config import FinetuneConfig, PartSegTrainConfig, Stage1Config, Stage2Config, load_config
from act_zoo.train.optim import CosineSchedule, build_optimizer, gumbel_temperature, kl_weight, param_groups


def test_defaults_are_the_official_configs():
    ft = FinetuneConfig()
    assert (ft.optim.lr, ft.optim.weight_decay, ft.run.max_epoch, ft.run.batch_size, ft.run.grad_clip) == (5e-4, 0.05, 300, 32, 10.0)
    assert (ft.scheduler.warmup_epochs, ft.scheduler.warmup_lr_init, ft.scheduler.lr_min) == (10, 1e-6, 1e-7)
    assert ft.label_smoothing == 0.0 and ft.point_pool_ratio == 1.2 and ft.vote == 10 and ft.test_vote_repeats == 0
    s2 = Stage2Config()
    assert (s2.optim.lr, s2.optim.weight_decay, s2.run.batch_size, s2.model.mask_ratio, s2.model.decoder_depth) == (1e-3, 0.05, 128, 0.8, 2)
    assert s2.teacher_mode == "train" and s2.run.grad_clip is None
    s1 = Stage1Config()
    assert (s1.temp_start, s1.temp_target, s1.temp_steps, s1.kl_target, s1.kl_steps) == (1.0, 0.0625, 100_000, 0.1, 100_000)
    assert (s1.optim.lr, s1.optim.weight_decay, s1.run.batch_size) == (5e-4, 5e-4, 64)
    ps = PartSegTrainConfig()
    assert (ps.optim.lr, ps.scheduler.lr_min, ps.run.batch_size, ps.double_step) == (2e-4, 1e-6, 16, True)


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("model:\n  cls_dim: 15\n  num_group: 128\nnpoints: 2048\nrun:\n  max_epoch: 7\n")
    cfg = load_config("finetune", path, ["optim.lr=1e-3", "run.amp=bf16", "model.transfer_type=linear"])
    assert cfg.model.cls_dim == 15 and cfg.model.num_group == 128 and cfg.npoints == 2048
    assert cfg.run.max_epoch == 7 and cfg.optim.lr == 1e-3 and cfg.run.amp == "bf16"
    assert cfg.model.transfer_type == "linear" and cfg.model.depth == 12  # untouched fields keep defaults
    with pytest.raises(ValueError, match="unknown keys.*'epochs'"):
        load_config("finetune", None, ["run.epochs=3"])
    with pytest.raises(ValueError, match="expected int"):
        load_config("finetune", None, ["run.max_epoch=many"])
    with pytest.raises(ValueError, match="unknown pipeline"):
        load_config("stage9")
    s1 = load_config("stage1", None, ["model.teacher={embed_dim: 16, depth: 2, num_heads: 2}"])
    assert s1.model.spec.embed_dim == 16


def test_param_groups_follow_the_official_rule():
    m = ACTClassifier(ClassifierConfig(embed_dim=32, depth=1, num_heads=2, group_size=8, num_group=8, encoder_dims=32, cls_dim=3))
    no_decay, decay = param_groups(m, 0.05)
    names = {id(p): n for n, p in m.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    d = {names[id(p)] for p in decay["params"]}
    assert {"cls_token", "norm.weight", "blocks.blocks.0.attn.proj.bias"} <= nd
    # official quirk: cls_pos ([1, 1, C], no "token" in its name) is decayed
    assert {"cls_pos", "blocks.blocks.0.attn.qkv.weight", "cls_head_finetune.0.weight"} <= d
    assert all(n.endswith(".bias") or "token" in n or dict(m.named_parameters())[n].dim() == 1 for n in nd)
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.05
    frozen = ACTClassifier(ClassifierConfig(embed_dim=32, depth=1, num_heads=2, group_size=8, num_group=8, encoder_dims=32,
                                            cls_dim=3, transfer_type="linear"))
    groups = param_groups(frozen, 0.05)
    assert sum(len(g["params"]) for g in groups) == 4  # cls_token, cls_pos, head weight, head bias


def test_cosine_schedule_equals_timm_as_the_official_builder_uses_it():
    timm_sched = pytest.importorskip("timm.scheduler")
    for epochs, warmup in [(300, 10), (20, 3), (5, 0)]:
        p = torch.nn.Parameter(torch.zeros(1))
        opt_timm = torch.optim.AdamW([p], lr=5e-4)
        ref = timm_sched.CosineLRScheduler(opt_timm, t_initial=epochs, cycle_mul=1.0, lr_min=1e-7, cycle_decay=0.1,
                                           warmup_lr_init=1e-6, warmup_t=warmup, cycle_limit=1, t_in_epochs=True)
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=5e-4)
        from act_zoo.train.config import SchedulerConfig

        ours = CosineSchedule(opt, SchedulerConfig(warmup_epochs=warmup), epochs=epochs)
        for epoch in range(epochs + 1):  # the official loop: train epoch, then scheduler.step(epoch)
            ours.set_epoch(epoch)
            assert opt.param_groups[0]["lr"] == pytest.approx(opt_timm.param_groups[0]["lr"], rel=1e-12), (epochs, epoch)
            ref.step(epoch)


def test_stage1_schedules():
    assert gumbel_temperature(0, start=1, target=0.0625, steps=100) == 1
    assert gumbel_temperature(50, start=1, target=0.0625, steps=100) == pytest.approx((1 + 0.0625) / 2)
    assert gumbel_temperature(1000, start=1, target=0.0625, steps=100) == 0.0625
    assert kl_weight(5_000, start=0, target=0.1, steps=100_000) == 0.0  # the official 10k-iteration delay
    assert kl_weight(10_000 + 50_000, start=0, target=0.1, steps=100_000) == pytest.approx(0.05)
    assert kl_weight(10**7, start=0, target=0.1, steps=100_000) == 0.1
    t = [gumbel_temperature(i, start=1, target=0.0625, steps=100) for i in range(101)]
    assert all(a >= b for a, b in zip(t, t[1:])) and math.isclose(t[-1], 0.0625)


def test_build_optimizer_checks():
    m = torch.nn.Linear(2, 2)
    from act_zoo.train.config import OptimConfig

    assert isinstance(build_optimizer(m, OptimConfig()), torch.optim.AdamW)
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(m, OptimConfig(name="lion"))
    m.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        build_optimizer(m, OptimConfig())
