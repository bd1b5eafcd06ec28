"""Stage III: fine-tuning classification (ScanObjectNN, ModelNet40, custom data), voting."""

from __future__ import annotations

import dataclasses
import json
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
from ..evaluation import classify_logits
from ..loop import StepContext
from .common import DatasetsMixin, accuracy_metrics, fps_subset, init_encoder, load_encoder_into
from .files import FileSplits

logger = logging.getLogger(__name__)


class FinetuneTask(DatasetsMixin):
    """Official fine-tuning protocol (see :class:`~act_zoo.train.config.FinetuneConfig`).

    On your own files (``data.dataset: folder | list``) the data are read and checked, and the
    head checked against them, before the model is built; per-epoch metrics and the best
    checkpoint are on the held-out *validation* split (``val_acc``), the final report names
    each split (``validation (last epoch)``, ``test (last epoch)``), and the class names are
    stored with the model when the head has one output per class."""

    name = "finetune"
    best_metric: tuple[str | None, str] = ("acc", "max")
    plot_train_keys = ("loss", "acc")
    plot_eval_keys: tuple[str, ...] = ("acc", "acc_avg")

    def __init__(self, cfg: FinetuneConfig, *, train_set: Dataset | None = None, test_set: Dataset | None = None,
                 init_model: nn.Module | None = None, file_splits: FileSplits | None = None,
                 run_info: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.run_info = run_info or {}
        self._train = train_set
        self._test = test_set
        self._file_splits = file_splits
        if train_set is None and test_set is None:
            self.file_splits()  # your own files: read and checked before anything is built
        splits = self._file_splits
        self.metric_prefix = ""
        if splits is not None:
            self.metric_prefix = "val_" if splits.eval_name == "validation" else "test_"
            self.best_metric = (f"{self.metric_prefix}acc", "max") if splits.val is not None else (None, "max")
            self.plot_eval_keys = (f"{self.metric_prefix}acc", f"{self.metric_prefix}acc_avg")
        model_cfg = dataclasses.replace(cfg.model, npoints=cfg.npoints)
        model_cfg = self._check_head(model_cfg)
        self.model = ACTClassifier(model_cfg)
        self.init_report = None
        init_name = None if cfg.init is None or str(cfg.init).lower() == "none" else str(cfg.init)
        if init_model is not None or init_name:
            init = init_model if init_model is not None else init_encoder(init_name)  # type: ignore[arg-type]
            keep, note = resolve_keep_head(cfg.keep_head, init, model_cfg, init_name or type(init).__name__)
            if note:
                logger.log(logging.WARNING if cfg.keep_head is None else logging.INFO, "%s", note)
            self.init_report = load_encoder_into(self.model, init, keep_head=keep, name=init_name)
        self.num_workers = cfg.data.num_workers
        self.rotate = RotateY()  # official PointcloudRotate (global RNG, re-seeded per micro-batch)
        self.vote_aug = ScaleAndTranslate()  # official test_transforms for voting

    def _check_head(self, model_cfg: Any) -> Any:
        """``cls_dim`` against the data's classes, before anything is built; names stored."""
        classes = _class_names_of(self._file_splits.train if self._file_splits is not None else self._train)
        if classes is None and self._train is None and self.cfg.data.dataset == "synthetic":
            classes = [str(i) for i in range(self.cfg.data.num_classes)]
        if classes is None:
            return model_cfg
        if model_cfg.cls_dim < len(classes):
            raise ValueError(f"model.cls_dim={model_cfg.cls_dim} is smaller than the {len(classes)} classes of the "
                             f"training data; the head needs one output per class: --set model.cls_dim={len(classes)}")
        if model_cfg.cls_dim > len(classes):
            logger.warning("model.cls_dim=%d but the training data have %d classes: %d outputs are never trained",
                           model_cfg.cls_dim, len(classes), model_cfg.cls_dim - len(classes))
        elif not model_cfg.class_names and self._file_splits is not None:
            model_cfg = dataclasses.replace(model_cfg, class_names=tuple(classes))
        if model_cfg.class_names and list(model_cfg.class_names[:len(classes)]) != list(classes) \
                and self._file_splits is not None:
            raise ValueError(f"model.class_names {list(model_cfg.class_names)} do not match the data's classes "
                             f"{classes} (label order)")
        return model_cfg

    # -- training --------------------------------------------------------------------------------
    def train_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        label = torch.as_tensor(batch[1]).long().view(-1)
        _check_labels(label, self.cfg.model.cls_dim)
        points, label = batch[0].to(ctx.device).float(), label.to(ctx.device)
        points = fps_subset(points, self.cfg.npoints, pool_ratio=self.cfg.point_pool_ratio)  # B n 3
        if self.cfg.rotate:
            points = self.rotate(points)
        logits = model(points)  # B K
        loss = F.cross_entropy(logits, label, label_smoothing=self.cfg.label_smoothing)
        acc = (logits.argmax(-1) == label).float().mean().item() * 100
        return loss, {"acc": acc}

    # -- evaluation ------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset | None = None) -> DataLoader:
        bs = max(1, self.cfg.run.batch_size)
        return DataLoader(dataset if dataset is not None else self.test_dataset(), batch_size=bs, shuffle=False,
                          collate_fn=self.collate, num_workers=self.num_workers)

    def predict(self, model: nn.Module, *, votes: int = 0, dataset: Dataset | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(predictions, labels) on the evaluation split (or ``dataset``); ``votes > 0``: average
        the logits of that many random FPS-pool subsets with scale-and-translate (official
        ``validate_vote``)."""
        device = next(model.parameters()).device
        preds, labels = [], []
        for points, label in self._loader(dataset):
            _check_labels(torch.as_tensor(label), self.cfg.model.cls_dim)
            points = points.to(device).float()
            logits = classify_logits(model, points, npoints=self.cfg.npoints, votes=votes,
                                     pool_ratio=self.cfg.point_pool_ratio, augment=self.vote_aug)
            preds.append(logits.argmax(-1).cpu())
            labels.append(torch.as_tensor(label).view(-1))
        return torch.cat(preds), torch.cat(labels)

    def evaluate(self, model: nn.Module, epoch: int, *, votes: int = 0,
                 dataset: Dataset | None = None) -> dict[str, float]:
        pred, label = self.predict(model, votes=votes, dataset=dataset)
        metrics = accuracy_metrics(pred, label, self.cfg.model.cls_dim)
        if dataset is None and self.metric_prefix:
            metrics = {self.metric_prefix + k: v for k, v in metrics.items()}
        return metrics

    def final_report(self, model: nn.Module, dataset: Dataset | None = None) -> dict[str, Any]:
        """Accuracy without and with voting, and (only if asked) the official TEST_VOTE figure,
        on the evaluation split (or ``dataset``)."""
        ds = dataset if dataset is not None else self.test_dataset()
        out: dict[str, Any] = {}
        plain = self.evaluate(model, -1, dataset=ds)
        out["acc"], out["acc_avg"] = plain["acc"], plain["acc_avg"]
        if self.cfg.vote:
            out[f"acc_vote{self.cfg.vote}"] = self.evaluate(model, -1, votes=self.cfg.vote, dataset=ds)["acc"]
        if self.cfg.test_vote_repeats:
            best = max(self.evaluate(model, -1, votes=self.cfg.vote or 10, dataset=ds)["acc"]
                       for _ in range(self.cfg.test_vote_repeats))
            out[f"acc_test_vote_best_of_{self.cfg.test_vote_repeats} (official TEST_VOTE, optimistic)"] = best
        return out

    def finalize(self, model: nn.Module, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
        if self._file_splits is not None:
            return self._finalize_files(model, Path(run_dir), summary, self._file_splits)
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

    def _finalize_files(self, model: nn.Module, run_dir: Path, summary: dict[str, Any],
                        splits: FileSplits) -> dict[str, Any]:
        """Your own files: every number names its split; the card and summary say how it was made."""
        evals = {k: v for k, v in (("validation", splits.val), ("test", splits.test)) if v is not None}
        metrics: dict[str, float] = {}
        for name, ds in evals.items():
            report = self.final_report(model, ds)
            summary[f"{name} (last epoch)"] = {**report, "files": len(ds)}
            metrics.update({f"{name}_{k}": v for k, v in report.items() if isinstance(v, float)})
        best_dir = run_dir / "best"
        if splits.val is not None and best_dir.is_dir() and summary.get("best_epoch") is not None:
            from ...hub.io import load_pretrained

            best = load_pretrained(best_dir).to(next(model.parameters()).device)
            for name, ds in evals.items():
                summary[f"{name} (best epoch {summary['best_epoch']}, selected on validation)"] = \
                    self.final_report(best, ds)
        summary["data"] = splits.describe()
        summary.update(self.run_info)
        (run_dir / "splits.json").write_text(json.dumps(splits.file_lists(), indent=1) + "\n", encoding="utf-8")
        if self.init_report is not None:
            summary["init"] = self.init_report.source
        classes = ", ".join(splits.classes)
        head = ("a validation split held out from the training folder; it is not a test set"
                if splits.val is not None else "the separate test set")
        description = (
            f"ACT classifier fine-tuned by act_zoo on {splits.root}: {len(splits.classes)} classes ({classes}); "
            f"init: {summary.get('init', 'none (trained from scratch)')}; {summary.get('epochs_run')} epochs.\n\n"
            f"Data: {splits.split_text()}. Metrics (last epoch) are on {head}. "
            + (f"{len(splits.skipped)} unreadable files were skipped (listed in summary.json). " if splits.skipped else "")
            + "Every file of each side is listed in splits.json; the full report is summary.json."
        )
        model.save_pretrained(run_dir, metrics=metrics, description=description)
        return summary


def resolve_keep_head(keep_head: bool | None, init: nn.Module, model_cfg: Any, name: str) -> tuple[bool, str | None]:
    """Whether the init classifier's head is kept, and what to say about it.

    ``None`` (auto): kept exactly when the init is a classifier whose stored class names, in
    order, are the data's (``model.class_names``) and whose head has the same shape; an init
    classifier's head that is discarded is said too. ``True`` needs a head of the same shape
    (and the same class names when both are known)."""
    has_head = isinstance(init, ACTClassifier)
    theirs = tuple(init.config.class_names) if has_head else ()
    ours = tuple(model_cfg.class_names)
    same_shape = (has_head and init.config.cls_dim == model_cfg.cls_dim
                  and init.config.transfer_type == model_cfg.transfer_type and init.config.embed_dim == model_cfg.embed_dim)
    same = same_shape and bool(ours) and theirs == ours
    if keep_head is None:
        if same:
            return True, (f"keeping the classifier head of {name}: its classes are the data's ({', '.join(ours)}); "
                          "--set keep_head=false starts a fresh head")
        if has_head:
            return False, (f"{name} is a classifier whose classes ({', '.join(theirs) or f'{init.config.cls_dim} unnamed'})"
                           f" are not the data's ({', '.join(ours) or f'{model_cfg.cls_dim} outputs'}): its head is "
                           f"discarded and a fresh {model_cfg.cls_dim}-way head is trained")
        return False, None
    if keep_head and not (same_shape and (not theirs or not ours or theirs == ours)):
        raise ValueError(f"keep_head=true: the head of {name} cannot be kept: "
                         + ("it has no classifier head" if not has_head else
                            f"its {init.config.cls_dim} outputs ({', '.join(theirs) or 'unnamed'}) are not the data's "
                            f"{model_cfg.cls_dim} ({', '.join(ours) or 'unnamed'}) or its head has another shape"))
    return bool(keep_head), (f"keeping the classifier head of {name} (keep_head=true)" if keep_head else None)


def _class_names_of(dataset: Dataset | None) -> list[str] | None:
    classes = getattr(dataset, "classes", None)
    return [str(c) for c in classes] if classes is not None else None


def _check_labels(label: torch.Tensor, cls_dim: int) -> None:
    """A label the head has no output for is an error naming the fix (not an IndexError)."""
    if label.numel() and (int(label.max()) >= cls_dim or int(label.min()) < 0):
        raise ValueError(f"label {int(label.max()) if int(label.max()) >= cls_dim else int(label.min())} is out of "
                         f"range for a head with model.cls_dim={cls_dim} outputs; set model.cls_dim to the number "
                         f"of classes (at least {int(label.max()) + 1})")
