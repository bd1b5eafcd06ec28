"""Stage III: fine-tuning classification (ScanObjectNN, ModelNet40, custom data), voting."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ...data.transforms import RotateY, ScaleAndTranslate
from ...models import ACTClassifier
from ..config import FinetuneConfig
from ..loop import StepContext
from ..evaluation import classify_logits
from .common import DatasetsMixin, accuracy_metrics, fps_exact, fps_subset, load_encoder_into

logger = logging.getLogger(__name__)


class FinetuneTask(DatasetsMixin):
    """Official fine-tuning protocol (see :class:`~act_zoo.train.config.FinetuneConfig`)."""

    name = "finetune"
    best_metric = ("acc", "max")
    plot_train_keys = ("loss", "acc")
    plot_eval_keys = ("acc", "acc_avg")

    def __init__(self, cfg: FinetuneConfig, *, train_set: Dataset | None = None, test_set: Dataset | None = None) -> None:
        self.cfg = cfg
        model_cfg = dataclasses.replace(cfg.model, npoints=cfg.npoints)
        self.model = ACTClassifier(model_cfg)
        self.init_report = load_encoder_into(self.model, cfg.init) if cfg.init else None
        self.num_workers = cfg.data.num_workers
        self._train = train_set
        self._test = test_set
        self.rotate = RotateY()  # official PointcloudRotate (global RNG, re-seeded per micro-batch)
        self.vote_aug = ScaleAndTranslate()  # official test_transforms for voting

    # -- training --------------------------------------------------------------------------------
    def train_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        points, label = batch[0].to(ctx.device).float(), torch.as_tensor(batch[1]).to(ctx.device).long().view(-1)
        points = fps_subset(points, self.cfg.npoints, pool_ratio=self.cfg.point_pool_ratio)  # B n 3
        if self.cfg.rotate:
            points = self.rotate(points)
        logits = model(points)  # B K
        loss = F.cross_entropy(logits, label, label_smoothing=self.cfg.label_smoothing)
        acc = (logits.argmax(-1) == label).float().mean().item() * 100
        return loss, {"acc": acc}

    # -- evaluation ------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        bs = max(1, self.cfg.run.batch_size)
        return DataLoader(self.test_dataset(), batch_size=bs, shuffle=False, collate_fn=self.collate,
                          num_workers=self.num_workers)

    def predict(self, model: nn.Module, *, votes: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, labels) on the test split; ``votes > 0``: average the logits of that many
        random FPS-pool subsets with scale-and-translate (official ``validate_vote``)."""
        device = next(model.parameters()).device
        preds, labels = [], []
        for points, label in self._loader():
            points = points.to(device).float()
            logits = classify_logits(model, points, npoints=self.cfg.npoints, votes=votes,
                                     pool_ratio=self.cfg.point_pool_ratio, augment=self.vote_aug)
            preds.append(logits.argmax(-1).cpu())
            labels.append(torch.as_tensor(label).view(-1))
        return torch.cat(preds), torch.cat(labels)

    def evaluate(self, model: nn.Module, epoch: int, *, votes: int = 0) -> dict[str, float]:
        pred, label = self.predict(model, votes=votes)
        return accuracy_metrics(pred, label, self.cfg.model.cls_dim)

    def final_report(self, model: nn.Module) -> dict[str, Any]:
        """Accuracy without and with voting, and (only if asked) the official TEST_VOTE figure."""
        out: dict[str, Any] = {}
        plain = self.evaluate(model, -1)
        out["acc"], out["acc_avg"] = plain["acc"], plain["acc_avg"]
        if self.cfg.vote:
            voted = self.evaluate(model, -1, votes=self.cfg.vote)
            out[f"acc_vote{self.cfg.vote}"] = voted["acc"]
        if self.cfg.test_vote_repeats:
            best = max(self.evaluate(model, -1, votes=self.cfg.vote or 10)["acc"] for _ in range(self.cfg.test_vote_repeats))
            out[f"acc_test_vote_best_of_{self.cfg.test_vote_repeats} (official TEST_VOTE, optimistic)"] = best
        return out

    def finalize(self, model: nn.Module, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
        final = self.final_report(model)
        summary["final (last epoch)"] = final
        best_dir = Path(run_dir) / "best"
        if best_dir.is_dir():
            from ...hub.io import load_pretrained

            best = load_pretrained(best_dir).to(next(model.parameters()).device)
            summary["best (selected on the test split, official protocol)"] = self.final_report(best)
        model.save_pretrained(run_dir, metrics={k: v for k, v in final.items() if isinstance(v, float)},
                              description="ACT fine-tuned classifier (last epoch); see summary.json")
        if self.init_report is not None:
            summary["init"] = self.init_report.source
        return summary
