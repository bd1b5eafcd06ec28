"""Part segmentation fine-tuning (ShapeNetPart): instance and class mIoU."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ...models import ACTPartSeg
from ...models.partseg import category_from_target, part_seg_loss, predict_parts
from ..config import PartSegTrainConfig
from ..loop import StepContext
from ..metrics import class_miou, instance_miou, shape_iou
from .common import DatasetsMixin, load_encoder_into


def _fields(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if isinstance(batch, dict):
        return batch["points"], batch["cls"], batch["seg"]
    return batch[0], batch[1], batch[2]


class PartSegTask(DatasetsMixin):
    name = "partseg"
    best_metric = ("instance_miou", "max")
    plot_train_keys = ("loss", "acc")
    plot_eval_keys = ("instance_miou", "class_miou", "acc")

    def __init__(self, cfg: PartSegTrainConfig, *, train_set: Dataset | None = None,
                 test_set: Dataset | None = None) -> None:
        self.cfg = cfg
        self.model = ACTPartSeg(dataclasses.replace(cfg.model, npoints=cfg.npoints))
        self.init_report = load_encoder_into(self.model, cfg.init) if cfg.init else None
        self.num_workers = cfg.data.num_workers
        self._train, self._test = train_set, test_set

    def train_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        points, cls, seg = _fields(batch)
        points = points.to(ctx.device).float()[..., :3]
        B = points.shape[0]
        # official main.py: a random scale U(0.8, 1.25) per shape, then a shift U(-0.1, 0.1) per shape and axis
        scale = torch.empty(B, 1, 1).uniform_(0.8, 1.25).to(points)
        shift = torch.empty(B, 1, 3).uniform_(-0.1, 0.1).to(points)
        points = points * scale + shift
        seg = seg.to(ctx.device).long()
        log_probs = model(points, cls.to(ctx.device).long().view(-1))  # B N P
        loss = part_seg_loss(log_probs, seg)
        acc = (log_probs.argmax(-1) == seg).float().mean().item() * 100
        return loss, {"acc": acc}

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float]:
        device = next(model.parameters()).device
        ious, cats, correct, total = [], [], 0, 0
        loader = DataLoader(self.test_dataset(), batch_size=self.cfg.run.batch_size, shuffle=False,
                            collate_fn=self.collate)
        for batch in loader:
            points, cls, seg = _fields(batch)
            points, seg = points.to(device).float()[..., :3], seg.to(device).long()
            log_probs = model(points, cls.to(device).long().view(-1))
            category = category_from_target(seg)  # official: the first point's part decides
            pred = predict_parts(log_probs, category)
            ious.append(shape_iou(pred, seg, category).cpu())
            cats.append(category.cpu())
            correct += int((pred == seg).sum())
            total += seg.numel()
        ious_t, cats_t = torch.cat(ious), torch.cat(cats)
        return {"instance_miou": 100 * instance_miou(ious_t), "class_miou": 100 * class_miou(ious_t, cats_t),
                "acc": 100 * correct / max(1, total)}

    def finalize(self, model: nn.Module, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
        final = self.evaluate(model, -1)
        summary["final (last epoch)"] = final
        model.save_pretrained(run_dir, metrics=final, description="ACT part segmentation (last epoch)")
        return summary
