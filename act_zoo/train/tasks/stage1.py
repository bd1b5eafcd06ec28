"""Stage I: train the cross-modal dVAE (frozen prompt-tuned teacher) to reconstruct patches."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ...models import PromptedDiscreteVAE
from ..config import Stage1Config
from ..loop import StepContext
from ..monitor import plot_reconstructions
from ..optim import gumbel_temperature, kl_weight
from .common import DatasetsMixin, points_of


def to_npoints(points: torch.Tensor, n: int) -> torch.Tensor:
    """A random ``n``-point subset for the whole batch (clouds already of size n are kept)."""
    if points.shape[1] == n:
        return points
    if points.shape[1] < n:
        raise ValueError(f"clouds have {points.shape[1]} points, fewer than npoints={n}")
    return points[:, torch.randperm(points.shape[1])[:n].to(points.device)]


class Stage1Task(DatasetsMixin):
    name = "stage1"
    labelled = False
    best_metric = ("cdl1", "min")
    plot_train_keys = ("loss", "recon", "kl", "temperature", "kl_weight")
    plot_eval_keys = ("cdl1", "cdl2")

    def __init__(self, cfg: Stage1Config, *, train_set: Dataset | None = None, test_set: Dataset | None = None) -> None:
        self.cfg = cfg
        self.model = PromptedDiscreteVAE(dataclasses.replace(cfg.model, npoints=cfg.npoints),
                                         pretrained_teacher=cfg.pretrained_teacher)
        self.num_workers = cfg.data.num_workers
        self._train, self._test = train_set, test_set
        self.run_dir = Path(cfg.run.out_dir)

    def train_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.cfg
        points = to_npoints(points_of(batch).to(ctx.device).float(), c.npoints)  # B N 3
        temp = gumbel_temperature(ctx.step, start=c.temp_start, target=c.temp_target, steps=c.temp_steps)
        weight = kl_weight(ctx.step, start=c.kl_start, target=c.kl_target, steps=c.kl_steps, delay=c.kl_delay)
        out = model(points, temperature=temp, hard=False)
        loss = out.recon + weight * out.kl
        return loss, {"recon": out.recon.item(), "kl": out.kl.item(), "temperature": temp, "kl_weight": weight}

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float]:
        """Official dVAE validation (hard tokens, temperature 1): Chamfer L1/L2 x 1000 of the whole
        reconstruction, sparse (coarse) and dense (fine); ``cdl1`` (dense L1) selects the best."""
        device = next(model.parameters()).device
        sums: dict[str, float] = {}
        count = 0
        shown = None
        loader = DataLoader(self.test_dataset(), batch_size=1, shuffle=False, collate_fn=self.collate)
        for batch in loader:  # batch size 1, as the official validation
            points = to_npoints(points_of(batch).to(device).float(), self.cfg.npoints)
            out = model(points, temperature=1.0, hard=True)
            for k, v in model.validation_metrics(points, out).items():
                sums[k] = sums.get(k, 0.0) + v * 1000
            count += 1
            if shown is None:
                shown = []
            if len(shown) < 3:
                shown.append((points[0].cpu().numpy(), out.whole_fine[0].cpu().numpy()))
        metrics = {k: v / max(1, count) for k, v in sums.items()}
        metrics["cdl1"], metrics["cdl2"] = metrics["dense_l1"], metrics["dense_l2"]
        if shown:
            plot_reconstructions(self.run_dir / "plots" / f"recon_epoch{epoch:03d}.png", [a for a, _ in shown],
                                 [b for _, b in shown], title=f"stage I reconstructions, epoch {epoch}")
        return metrics

    def finalize(self, model: nn.Module, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
        final = self.evaluate(model, -1)
        summary["final (last epoch), Chamfer x1000"] = final
        model.save_pretrained(run_dir, metrics={"cdl1_x1000": final["cdl1"], "cdl2_x1000": final["cdl2"]},
                              description="ACT stage-I cross-modal autoencoder (last epoch)")
        return summary
