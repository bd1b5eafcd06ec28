"""Stage II: masked distillation of the frozen stage-I autoencoder into a 3D Transformer."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ...data.transforms import ScaleAndTranslate
from ...models import ACTDistillation, ACTEncoder, PromptedDiscreteVAE
from ..config import Stage2Config
from ..loop import StepContext
from .common import DatasetsMixin, load_teacher, points_of
from .stage1 import to_npoints


class Stage2Task(DatasetsMixin):
    name = "stage2"
    labelled = False
    whole_train = True  # official: ShapeNet-55 train + test
    best_metric = ("val_loss", "min")
    plot_train_keys = ("loss",)
    plot_eval_keys = ("val_loss",)
    find_unused_parameters = True  # lm_head / cls_head are in the model but unused by the loss

    def __init__(self, cfg: Stage2Config, *, teacher: PromptedDiscreteVAE | None = None,
                 train_set: Dataset | None = None, test_set: Dataset | None = None) -> None:
        self.cfg = cfg
        if cfg.teacher_mode not in ("train", "eval"):
            raise ValueError(f"teacher_mode must be 'train' (official) or 'eval', got {cfg.teacher_mode!r}")
        if teacher is None:
            if not cfg.teacher:
                raise ValueError("stage2 needs `teacher`: the stage-I result (run directory, registry name or checkpoint)")
            teacher = load_teacher(cfg.teacher)
        teacher.config = dataclasses.replace(teacher.config, npoints=cfg.npoints)
        model_cfg = dataclasses.replace(cfg.model, dvae=teacher.config, teacher_train_mode=cfg.teacher_mode == "train")
        self.model = ACTDistillation(model_cfg, teacher=teacher)
        self.num_workers = cfg.data.num_workers
        self._train, self._test = train_set, test_set
        self.augment = ScaleAndTranslate()  # official train_transforms

    def train_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        points = to_npoints(points_of(batch).to(ctx.device).float(), self.cfg.npoints)
        out = model(self.augment(points))
        return out.loss, {}

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float]:
        """Distillation loss on held-out clouds (eval-mode teacher and student, seeded masks)."""
        device = next(model.parameters()).device
        total, count = 0.0, 0
        loader = DataLoader(self.test_dataset(), batch_size=self.cfg.run.batch_size, shuffle=False,
                            collate_fn=self.collate)
        for batch in loader:
            points = to_npoints(points_of(batch).to(device).float(), self.cfg.npoints)
            g = torch.Generator().manual_seed(count)
            out = model.forward_loss(points, generator=g)
            total += out.loss.item() * len(points)
            count += len(points)
        return {"val_loss": total / max(1, count)}

    def finalize(self, model: nn.Module, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
        final = self.evaluate(model, -1)
        summary["final (last epoch)"] = final
        model.save_pretrained(run_dir, metrics=final, description="ACT stage-II model (student + frozen teacher)")
        encoder = student_encoder(model)
        encoder.save_pretrained(Path(run_dir) / "encoder", description="ACT stage-II student encoder")
        summary["encoder"] = str(Path(run_dir) / "encoder")
        return summary


def student_encoder(model: ACTDistillation) -> ACTEncoder:
    """The stage-II student as a plain :class:`ACTEncoder` (for fine-tuning and extraction)."""
    enc = ACTEncoder(model.config.encoder_config())
    state = {k: v for k, v in model.encoder.state_dict().items() if not k.startswith(("lm_head.", "cls_head."))}
    enc.load_state_dict(state, strict=True)
    return enc.eval()
