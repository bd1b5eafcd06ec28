"""S3DIS semantic segmentation (official ``semantic_segmentation/main.py`` training and
``main_test.py`` whole-room evaluation): OA, mAcc, mIoU and per-class IoU.

:func:`evaluate_rooms` is the evaluation API for any model of this family on S3DIS-format
rooms (a folder of ``Area_<k>_<room>.npy`` or a list of room files): the official whole-room
protocol of :mod:`act_zoo.data.blocks` with hard votes, IoU/mAcc/OA from counts summed over
every point of every room (:class:`~act_zoo.train.metrics.SemSegScores`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..._inference import eval_mode, progress_bar
from ...data.blocks import accumulate_scene, model_predictor
from ...data.s3dis import S3DIS, S3DISRoom, read_room, split_rooms
from ...models.semseg import ACTSemSeg, semseg_loss
from ..config import SemSegTrainConfig
from ..loop import StepContext
from ..metrics import SemSegMeter, SemSegScores
from .common import load_encoder_into, scale_shift

logger = logging.getLogger(__name__)

RoomsLike = str | os.PathLike | Sequence[str | os.PathLike | S3DISRoom]


def _room_paths(rooms: RoomsLike, test_area: int | None) -> list[Path]:
    """Room files: a folder's ``test_area`` rooms (all its ``.npy`` files when ``test_area`` is
    None), one file, or a list."""
    if isinstance(rooms, (str, os.PathLike)):
        path = Path(rooms)
        if path.is_dir():
            if test_area is None:
                files = sorted(p for p in path.iterdir() if p.suffix == ".npy" and p.is_file())
                if not files:
                    raise FileNotFoundError(f"{path}: no .npy room files (x y z r g b label, one room a file)")
                return files
            return [r.path for r in split_rooms(path, "test", test_area=test_area)]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such room file or folder")
        return [path]
    return [r.path if isinstance(r, S3DISRoom) else Path(r) for r in rooms]


@torch.no_grad()
def evaluate_rooms(
    model: ACTSemSeg,
    rooms: RoomsLike,
    *,
    test_area: int | None = 5,
    votes: int = 3,
    npoints: int | None = None,
    batch_size: int = 32,
    block_size: float | None = None,
    stride: float = 0.5,
    padding: float = 0.001,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool | None = False,
) -> SemSegScores:
    """Official whole-room evaluation (``main_test.py``) of ``model``.

    Args:
        rooms: a folder of ``Area_<k>_<room>.npy`` files (its ``test_area`` rooms are used; with
            ``test_area=None`` every ``.npy`` room file of the folder), one room file, or a list
            of room files, all in the official ``[N, 7]`` format (x y z r g b label).
        votes: voting passes (official ``num_votes`` = 3): each pass covers every room with
            blocks at ``stride``, each prediction adds a hard vote to its point; the label is
            the argmax of the votes.
        npoints, block_size: points per chunk and block side (default: the model's config).
        seed: the padding/shuffle draws are keyed by ``(seed, pass, block)``.
        device: where the model runs (the model is moved there, as :func:`act_zoo.segment`
            does; default: the model's device).
        progress: a progress bar over the rooms (None: only on a terminal).

    Returns:
        :class:`~act_zoo.train.metrics.SemSegScores` over all points of all rooms.
    """
    paths = _room_paths(rooms, test_area)
    if not paths:
        raise ValueError("no rooms to evaluate")
    cfg = model.config
    npoints = npoints or cfg.npoints
    block_size = block_size or cfg.block_size
    if device is not None:
        model = model.to(device)
    device = next(model.parameters()).device
    meter = SemSegMeter(model.class_names)
    with eval_mode(model), progress_bar(len(paths), "rooms", progress, unit="room") as bar:
        for path in paths:
            room = read_room(path, num_classes=cfg.cls_dim)
            counts = accumulate_scene(room.xyz, model_predictor(model, device), num_classes=cfg.cls_dim, npoints=npoints,
                                      batch_size=batch_size, mode="votes", passes=votes, block_size=block_size,
                                      stride=stride, padding=padding, seed=seed)
            pred = counts.argmax(1)  # N, ties to the lower class like np.argmax
            meter.update(pred, torch.from_numpy(room.labels))
            bar.update(1)
    return meter.compute()


@dataclass(frozen=True)
class RoomEvaluation:
    """What :func:`evaluate_s3dis` measured: :class:`~act_zoo.train.metrics.SemSegScores` of
    every point of ``rooms`` room files (``points`` points), with ``votes`` voting passes."""

    scores: SemSegScores
    rooms: int
    points: int
    votes: int
    source: str
    confusion_png: Path | None = None

    @property
    def miou(self) -> float:
        """Official mIoU in percent (the headline)."""
        return 100.0 * self.scores.miou

    def report(self) -> str:
        """Human-readable lines; the last one is ``miou: X`` (percent)."""
        lines = [f"evaluated {self.rooms} rooms ({self.points:,} points) of {self.source}, "
                 f"whole rooms, {self.votes} voting passes",
                 *("  " + line for line in self.scores.format().splitlines())]
        if self.confusion_png is not None:
            lines.append(f"confusion matrix: {self.confusion_png}")
        lines.append(f"miou: {self.miou:.2f}")
        return "\n".join(lines)


def evaluate_s3dis(
    model: ACTSemSeg,
    rooms: RoomsLike,
    *,
    test_area: int | None = 5,
    votes: int = 3,
    confusion_png: str | os.PathLike | None = None,
    **kwargs: Any,
) -> RoomEvaluation:
    """:func:`evaluate_rooms` for users (``act_zoo.evaluate`` and ``act-zoo evaluate`` with a
    semantic-segmentation model): the scores, what was evaluated, and an optional
    confusion-matrix PNG. ``kwargs`` go to :func:`evaluate_rooms`."""
    paths = _room_paths(rooms, test_area)
    scores = evaluate_rooms(model, paths, votes=votes, **kwargs)
    png = None
    if confusion_png is not None:
        from ..evaluation import save_confusion_png

        assert scores.confusion is not None
        png = save_confusion_png(scores.confusion.numpy(), scores.class_names, confusion_png,
                                 title=f"{len(paths)} rooms: mIoU {100 * scores.miou:.2f} %")
    source = str(rooms) if isinstance(rooms, (str, os.PathLike)) else f"{len(paths)} room files"
    return RoomEvaluation(scores, len(paths), int(scores.gt.sum()), votes, source, png)


class SemSegTask:
    """The official S3DIS protocol (see :class:`~act_zoo.train.config.SemSegTrainConfig`)."""

    name = "semseg"
    best_metric = ("miou", "max")
    plot_train_keys = ("loss", "acc")
    plot_eval_keys = ("miou", "macc", "oa")

    def __init__(self, cfg: SemSegTrainConfig, *, train_set: Dataset | None = None,
                 test_set: Dataset | None = None, test_rooms: RoomsLike | None = None) -> None:
        if cfg.data.dataset != "s3dis" and (train_set is None or (test_set is None and test_rooms is None)):
            raise ValueError(f"the semseg pipeline reads S3DIS rooms (data.dataset: s3dis), got {cfg.data.dataset!r}")
        if cfg.eval_protocol not in ("blocks", "rooms"):
            raise ValueError(f"eval_protocol must be 'blocks' or 'rooms', got {cfg.eval_protocol!r}")
        self.cfg = cfg
        self.model = ACTSemSeg(dataclasses.replace(cfg.model, npoints=cfg.npoints, block_size=cfg.block_size))
        self.init_report = load_encoder_into(self.model, cfg.init) if cfg.init else None
        self.num_workers = cfg.data.num_workers
        self._train, self._test = train_set, test_set
        self._rooms = test_rooms
        self._weights: torch.Tensor | None = None

    # -- data ------------------------------------------------------------------------------------
    def _root(self) -> str:
        if not self.cfg.data.root:
            raise ValueError("data.root is required: the folder of Area_<k>_<room>.npy files "
                             "(collect_indoor3d_data.py output)")
        return self.cfg.data.root

    def _blocks(self, split: str) -> S3DIS:
        c = self.cfg
        return S3DIS(self._root(), split=split, test_area=c.test_area, npoints=c.npoints, block_size=c.block_size,
                     sample_rate=c.sample_rate, min_points=c.min_block_points, num_classes=c.model.cls_dim,
                     seed=c.run.seed)

    def train_dataset(self) -> Dataset:
        if self._train is None:
            self._train = self._blocks("train")
        return self._train

    def test_dataset(self) -> Dataset:
        if self._test is None:
            self._test = self._blocks("test")
        return self._test

    def test_rooms(self) -> RoomsLike:
        return self._rooms if self._rooms is not None else self._root()

    def collate(self, items: list[Any]) -> Any:
        return torch.utils.data.default_collate(list(items))

    def class_weights(self) -> torch.Tensor | None:
        """The training split's official class weights (None when turned off or unknown)."""
        if self._weights is None and self.cfg.class_weights:
            lw = getattr(self.train_dataset(), "labelweights", None)
            if lw is None:
                logger.warning("the training set has no labelweights: unweighted NLL loss")
            else:
                self._weights = torch.as_tensor(np.asarray(lw), dtype=torch.float32)
        return self._weights

    # -- training --------------------------------------------------------------------------------
    def train_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        points, seg = batch["points"], batch["seg"]
        points = points.to(ctx.device).float()[..., :3]
        points = scale_shift(points)  # official main.py augmentation, per cloud
        seg = seg.to(ctx.device).long()
        log_probs = model(points)  # B N K
        w = self.class_weights()
        loss = semseg_loss(log_probs, seg, None if w is None else w.to(ctx.device))
        acc = (log_probs.argmax(-1) == seg).float().mean().item() * 100
        return loss, {"acc": acc}

    # -- evaluation ------------------------------------------------------------------------------
    def _evaluate_blocks(self, model: nn.Module) -> SemSegScores:
        device = next(model.parameters()).device
        meter = SemSegMeter(model.class_names)
        loader = DataLoader(self.test_dataset(), batch_size=self.cfg.eval_batch_size, shuffle=False,
                            collate_fn=self.collate, num_workers=self.num_workers)
        for batch in loader:
            log_probs = model(batch["points"].to(device).float()[..., :3])
            meter.update(log_probs.argmax(-1).cpu(), batch["seg"])
        return meter.compute()

    def _evaluate_rooms(self, model: nn.Module) -> SemSegScores:
        c = self.cfg
        return evaluate_rooms(model, self.test_rooms(), test_area=c.test_area, votes=c.votes, npoints=c.npoints,
                              batch_size=c.eval_batch_size, block_size=c.block_size, stride=c.stride,
                              seed=c.run.seed)

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float]:
        scores = self._evaluate_blocks(model) if self.cfg.eval_protocol == "blocks" else self._evaluate_rooms(model)
        return scores.to_dict()

    def finalize(self, model: nn.Module, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
        scores = self._evaluate_rooms(model)
        logger.info("whole-room evaluation (%d votes):\n%s", self.cfg.votes, scores.format())
        final = scores.to_dict()
        summary["final (last epoch, whole rooms)"] = final
        (Path(run_dir) / "final_scores.txt").write_text(scores.format() + "\n", encoding="utf-8")
        model.save_pretrained(run_dir, metrics={k: final[k] for k in ("miou", "macc", "oa")},
                              description="ACT semantic segmentation (last epoch)")
        return summary


__all__ = ["RoomEvaluation", "SemSegTask", "evaluate_rooms", "evaluate_s3dis"]
