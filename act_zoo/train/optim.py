"""Optimizer, learning-rate schedule and the stage-I schedules, exactly as the official code.

* :func:`param_groups` -- the official ``add_weight_decay``: frozen parameters are skipped;
  1-D parameters, ``*.bias`` and names containing ``token`` get no weight decay.
* :class:`CosineSchedule` -- timm's ``CosineLRScheduler(t_initial=epochs, lr_min, warmup_t,
  warmup_lr_init, cycle_limit=1, t_in_epochs=True)`` as built by ``tools/builder.py`` and
  stepped with ``scheduler.step(epoch)`` at the end of each epoch: epoch 0 trains at
  ``warmup_lr_init``, epoch ``e >= 1`` at ``f(e - 1)``.
* :func:`gumbel_temperature`, :func:`kl_weight` -- ``runner_autoencoder.py``'s cosine ramps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from .config import OptimConfig, SchedulerConfig


def param_groups(model: nn.Module, weight_decay: float, skip: Iterable[str] = ()) -> list[dict]:
    skip = set(skip)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.dim() == 1 or name.endswith(".bias") or "token" in name or name in skip:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if not any(g["params"] for g in groups):
        raise ValueError("the model has no trainable parameters")
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam([p for g in groups for p in g["params"]], lr=cfg.lr, betas=tuple(cfg.betas))
    if cfg.name == "sgd":
        return torch.optim.SGD([p for g in groups for p in g["params"]], lr=cfg.lr, momentum=0.9, nesterov=True,
                               weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.name!r} (adamw, adam, sgd)")


class CosineSchedule:
    """Per-epoch learning rates of the official timm cosine schedule (see module docstring)."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int) -> None:
        if cfg.name not in ("cosine", "constant"):
            raise ValueError(f"unknown scheduler {cfg.name!r} (cosine, constant)")
        self.optimizer = optimizer
        self.cfg = cfg
        self.t_initial = max(1, int(epochs))
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        for g, lr in zip(optimizer.param_groups, self.base_lrs):
            g["initial_lr"] = lr

    def value(self, t: int, base: float) -> float:
        """timm ``_get_lr(t)`` for one base learning rate."""
        c = self.cfg
        if c.name == "constant":
            return base
        if c.warmup_epochs and t < c.warmup_epochs:
            return c.warmup_lr_init + t * (base - c.warmup_lr_init) / c.warmup_epochs
        if t < self.t_initial:
            return c.lr_min + 0.5 * (base - c.lr_min) * (1 + math.cos(math.pi * t / self.t_initial))
        return c.lr_min

    def lr_for_epoch(self, epoch: int, base: float) -> float:
        if self.cfg.name == "constant":
            return base
        if epoch == 0:
            return self.cfg.warmup_lr_init if self.cfg.warmup_epochs else self.value(0, base)
        return self.value(epoch - 1, base)

    def set_epoch(self, epoch: int) -> None:
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = self.lr_for_epoch(epoch, base)


def _cosine_ramp(start: float, target: float, t: float, total: int) -> float:
    return target + (start - target) * (1.0 + math.cos(math.pi * t / total)) / 2.0


def gumbel_temperature(step: int, *, start: float, target: float, steps: int) -> float:
    """Official ``get_temp``: cosine from ``start`` to ``target`` over ``steps`` iterations."""
    return target if step > steps else _cosine_ramp(start, target, float(step), steps)


def kl_weight(step: int, *, start: float, target: float, steps: int, delay: int = 10_000) -> float:
    """Official ``compute_loss`` weight: 0 for the first ``delay`` iterations, then a cosine
    ramp from ``start`` to ``target`` over ``steps``."""
    t = step - delay
    if t > steps:
        return target
    if t < 0:
        return 0.0
    return _cosine_ramp(start, target, float(t), steps)
