"""The training loop shared by every pipeline: a small, readable trainer, not a framework.

Determinism is by construction: every micro-batch's randomness (augmentation, masks, dropout,
Gumbel noise) comes from global RNGs re-seeded with ``(seed, epoch, step, micro-batch)``, and
the data order of an epoch from ``(seed, epoch)``. So

* a resumed run (even after SIGKILL mid-epoch) replays exactly what the uninterrupted run did;
* ``W`` processes x ``A`` accumulation steps see the same micro-batches, with the same random
  draws, as any other split of the same global batch (DDP averages the gradients exactly as
  accumulation does).

The global batch of ``batch_size`` clouds is split into ``world_size x accumulate``
micro-batches; process ``r`` runs micro-batches ``r*A .. r*A+A-1``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from .checkpoint import TrainState, load_checkpoint, save_checkpoint, select_checkpoint, unwrap
from .config import OptimConfig, RunConfig, SchedulerConfig
from .distributed import (
    DistInfo,
    RunningStatsSync,
    all_reduce_mean,
    barrier,
    broadcast_object,
    init_distributed,
)
from .monitor import Monitor
from .optim import CosineSchedule, build_optimizer
from .provenance import run_provenance
from .rundir import RunDirectory

logger = logging.getLogger(__name__)


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed that is a pure function of ``parts``."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class StepContext:
    epoch: int
    step: int  # global optimizer step being computed
    micro: int  # index of this micro-batch within the global batch
    device: torch.device
    extra: dict[str, Any] = field(default_factory=dict)


class Task(Protocol):
    """What a pipeline provides to the :class:`Trainer`."""

    name: str
    model: nn.Module

    def train_dataset(self) -> Dataset: ...
    def collate(self, items: list[Any]) -> Any: ...
    def train_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]: ...
    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float] | None: ...
    def finalize(self, model: nn.Module, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]: ...


class MicroBatches(Sampler[list[int]]):
    """Yields this process's micro-batches of one epoch, from step ``start`` on."""

    def __init__(self, order: torch.Tensor, *, global_batch: int, micro: int, rank: int, accumulate: int,
                 start: int, steps: int) -> None:
        self.order, self.G, self.b, self.rank, self.A = order.tolist(), global_batch, micro, rank, accumulate
        self.start, self.steps = start, steps

    def __iter__(self) -> Iterator[list[int]]:
        for s in range(self.start, self.steps):
            base = s * self.G
            for a in range(self.A):
                m = self.rank * self.A + a
                yield self.order[base + m * self.b: base + (m + 1) * self.b]

    def __len__(self) -> int:
        return (self.steps - self.start) * self.A


# values that do not change what a training step computes: free to differ on --resume
_RESUME_FREE = frozenset({"run.progress", "run.threads", "run.log_every", "run.tensorboard", "run.device",
                          "run.max_steps", "run.ckpt_every_steps", "run.keep_checkpoints", "run.val_every",
                          "data.num_workers"})


def config_changes(old_text: str, new_text: str, *, limit: int = 12) -> list[str]:
    """``key: old -> new`` for every value (dotted key) that differs between two dumped configs,
    except those in ``_RESUME_FREE``; an unreadable old config is one entry saying so."""
    import yaml

    def flat(node: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(node, dict):
            return {prefix.rstrip("."): node}
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flat(v, f"{prefix}{k}."))
        return out

    try:
        old, new = flat(yaml.safe_load(old_text) or {}), flat(yaml.safe_load(new_text) or {})
    except yaml.YAMLError as exc:
        return [f"the saved train_config.yaml cannot be read ({exc})"]
    keys = sorted(k for k in old.keys() | new.keys() if k not in _RESUME_FREE and old.get(k) != new.get(k))
    changes = [f"{k}: {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in keys[:limit]]
    return changes + ([f"... and {len(keys) - limit} more"] if len(keys) > limit else [])


class Trainer:
    """Runs a :class:`Task` with the official optimizer/schedule, DDP, AMP, accumulation,
    clipping, checkpoints and exact resume.

    The run directory is held for the whole run (a second trainer on it fails at once). A new
    run needs an empty (or new) directory unless ``overwrite``; ``resume`` continues from the
    newest intact checkpoint there."""

    def __init__(self, task: Task, *, run: RunConfig, optim: OptimConfig, scheduler: SchedulerConfig,
                 dist: DistInfo | None = None, resume: bool = False, overwrite: bool = False,
                 double_step: bool = False, find_unused_parameters: bool = False,
                 config_text: str | None = None) -> None:
        self.task, self.run, self.optim_cfg, self.sched_cfg = task, run, optim, scheduler
        self.dist = dist or init_distributed(run.device)
        self.resume = resume
        self.overwrite = overwrite
        self.run_id = ""
        self.double_step = double_step
        self.find_unused = find_unused_parameters
        self.run_dir = Path(run.out_dir)
        self.config_text = config_text
        if run.amp not in ("no", "bf16", "fp16"):
            raise ValueError(f"run.amp must be no, bf16 or fp16, got {run.amp!r}")
        per = self.dist.world_size * run.accumulate
        if run.batch_size % per:
            raise ValueError(f"batch_size {run.batch_size} is not divisible by world_size x accumulate = {per}")
        self.micro_batch = run.batch_size // per

    # -- helpers ---------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.run.amp == "no":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.run.amp == "bf16" else torch.float16
        return torch.autocast(self.dist.device.type, dtype=dtype)

    def _epoch_order(self, epoch: int, n: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(derive_seed(self.run.seed, "order", epoch))
        return torch.randperm(n, generator=g)

    def _on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on rank 0 only (the one process that touches the run directory); its result,
        or its error as the same message, reaches every rank (this is also a barrier)."""
        result, error = None, None
        if self.dist.is_main:
            try:
                result = fn()
            except Exception as exc:
                if not self.dist.enabled:
                    raise
                error = exc
        result, message = broadcast_object((result, None if error is None else f"{type(error).__name__}: {error}"),
                                           self.dist)
        if error is not None:
            raise error
        if message is not None:
            raise RuntimeError(f"rank 0 failed: {message}")
        return result

    # -- main entry ------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        rundir = RunDirectory(self.run_dir)

        def claim() -> None:
            rundir.open(resume=self.resume, overwrite=self.overwrite)

        self._on_main(claim)
        try:
            return self._fit()
        finally:
            rundir.close()

    def _fit(self) -> dict[str, Any]:
        run, dist = self.run, self.dist
        if run.threads:
            torch.set_num_threads(run.threads)
        if run.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        seed_everything(derive_seed(run.seed, "init"))
        if dist.is_main and self.config_text is not None:
            saved = self.run_dir / "train_config.yaml"
            if self.resume and saved.is_file():
                changes = config_changes(saved.read_text(encoding="utf-8"), self.config_text)
                if changes:
                    logger.warning("--resume: this config differs from the one the run in %s was started with, so "
                                   "the resumed run is not an exact continuation of it: %s", self.run_dir,
                                   "; ".join(changes))
            saved.write_text(self.config_text, encoding="utf-8")

        model = self.task.model.to(dist.device)
        if hasattr(model, "set_fast_path"):
            model.set_fast_path(run.fast_path)
        optimizer = build_optimizer(model, self.optim_cfg)
        schedule = CosineSchedule(optimizer, self.sched_cfg, epochs=run.max_epoch)
        scaler = torch.amp.GradScaler(dist.device.type) if run.amp == "fp16" else None
        state = TrainState()
        ckpt = self._on_main(lambda: select_checkpoint(self.run_dir)) if self.resume else None
        if self.resume and ckpt is None:
            logger.warning("--resume: no checkpoint in %s, starting from scratch", self.run_dir)
        if ckpt is not None:
            state = load_checkpoint(ckpt.path, model, optimizer, scaler=scaler)
            self.run_id = ckpt.run_id
            logger.info("resumed from %s (epoch %d, step %d)", ckpt.path, state.epoch, state.global_step)
        else:
            self.run_id = uuid.uuid4().hex  # marks this run's checkpoints: pruning touches no other run's
        wrapped: nn.Module = model
        self.stats_sync = RunningStatsSync(model, dist)
        if dist.enabled:  # BatchNorm statistics are composed across ranks after each step (RunningStatsSync)
            with warnings.catch_warnings():  # torch >= 2.14 calls broadcast_buffers deprecated, yet advises
                # keeping broadcast_buffers=False for rank-local buffers until init_sync_buffers exists
                warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
                wrapped = nn.parallel.DistributedDataParallel(
                    model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
                    find_unused_parameters=self.find_unused, broadcast_buffers=False)
        monitor = Monitor(self.run_dir, tensorboard=run.tensorboard, enabled=dist.is_main)
        monitor.resume_at(state.global_step)

        dataset = self.task.train_dataset()
        n = len(dataset)
        steps = n // run.batch_size
        if steps == 0:
            raise ValueError(f"the training set has {n} items, fewer than one global batch of {run.batch_size}")
        progress = None
        if dist.is_main and run.progress:
            from tqdm import tqdm

            total = min((run.max_epoch + 1) * steps, run.max_steps or math.inf)
            progress = tqdm(total=int(total), initial=state.global_step, desc=self.task.name, unit="step",
                            dynamic_ncols=True, disable=None)  # None: silent when stderr is not a terminal
        stop = False
        t0 = time.time()
        while state.epoch <= run.max_epoch and not stop:
            epoch = state.epoch
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
            schedule.set_epoch(epoch)
            wrapped.train()
            sampler = MicroBatches(self._epoch_order(epoch, n), global_batch=run.batch_size, micro=self.micro_batch,
                                   rank=dist.rank, accumulate=run.accumulate, start=state.step_in_epoch, steps=steps)
            loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=self.task.collate,
                                num_workers=getattr(self.task, "num_workers", 0),
                                generator=torch.Generator().manual_seed(derive_seed(run.seed, "workers", epoch,
                                                                                    state.step_in_epoch)))
            batches = iter(loader)
            while state.step_in_epoch < steps:
                logs = self._optimizer_step(wrapped, model, optimizer, scaler, batches, epoch, state.global_step)
                state.global_step += 1
                state.step_in_epoch += 1
                for k, v in logs.items():
                    state.epoch_sums[k] = state.epoch_sums.get(k, 0.0) + v
                state.epoch_count += 1
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix({k: f"{v:.4g}" for k, v in list(logs.items())[:3]})
                if state.global_step % max(1, run.log_every) == 0 or state.step_in_epoch == steps:
                    monitor.log_train({"step": state.global_step, "epoch": epoch, "lr": optimizer.param_groups[-1]["lr"],
                                       **logs})
                if run.max_steps is not None and state.global_step >= run.max_steps:
                    stop = True
                if run.ckpt_every_steps and state.global_step % run.ckpt_every_steps == 0 and not stop:
                    self._checkpoint(model, optimizer, scaler, state)
                if stop:
                    break
            if state.step_in_epoch >= steps or stop:
                epoch_logs = {f"epoch_{k}": v / max(1, state.epoch_count) for k, v in state.epoch_sums.items()}
                metrics = self._evaluate(model, epoch, force=stop or epoch == run.max_epoch)
                if metrics is not None:
                    self._track_best(model, state, metrics, epoch)
                    monitor.log_eval({"step": state.global_step, "epoch": epoch, **epoch_logs, **metrics})
                if state.step_in_epoch >= steps:
                    state.epoch += 1
                    state.step_in_epoch = 0
                    state.epoch_sums, state.epoch_count = {}, 0
                self._checkpoint(model, optimizer, scaler, state)
        if progress is not None:
            progress.close()
        summary = {"task": self.task.name, "world_size": dist.world_size, "epochs_run": state.epoch,
                   "steps": state.global_step,
                   "seconds": round(time.time() - t0, 2), "best_value": state.best_value, "best_epoch": state.best_epoch,
                   "provenance": run_provenance(started=t0, finished=time.time())}
        summary = self._finalize(model, summary)
        monitor.plot_curves(getattr(self.task, "plot_train_keys", ["loss"]), getattr(self.task, "plot_eval_keys", []))
        monitor.close()
        return summary

    def _optimizer_step(self, wrapped: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any,
                        batches: Iterator, epoch: int, step: int) -> dict[str, float]:
        run, dist = self.run, self.dist
        sums: dict[str, float] = {}
        if dist.enabled:
            self.stats_sync.begin_step()
        for a in range(run.accumulate):
            batch = next(batches)
            micro = dist.rank * run.accumulate + a
            seed_everything(derive_seed(run.seed, epoch, step, micro))
            ctx = StepContext(epoch=epoch, step=step, micro=micro, device=dist.device)
            sync = contextlib.nullcontext()
            if dist.enabled and a < run.accumulate - 1:
                sync = wrapped.no_sync()
            with sync:
                with self._autocast():
                    loss, logs = self.task.train_step(wrapped, batch, ctx)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss {loss.item()} at epoch {epoch} step {step}")
                scaled = loss / run.accumulate
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            for k, v in {"loss": float(loss.detach()), **logs}.items():
                sums[k] = sums.get(k, 0.0) + float(v) / run.accumulate
        if scaler is not None:
            scaler.unscale_(optimizer)
        if self.double_step:  # official part segmentation: a step on the raw gradients first
            (scaler.step(optimizer) if scaler is not None else optimizer.step())
        if run.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], run.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if dist.enabled:
            self.stats_sync.end_step()
            keys = sorted(sums)
            reduced = all_reduce_mean(torch.tensor([sums[k] for k in keys], dtype=torch.float64), dist)
            sums = dict(zip(keys, reduced.tolist()))
        return sums

    def _evaluate(self, model: nn.Module, epoch: int, *, force: bool) -> dict[str, float] | None:
        run = self.run
        due = epoch != 0 and epoch % max(1, run.val_every) == 0
        if not (due or force):
            return None
        metrics = None
        if self.dist.is_main:
            model.eval()
            seed_everything(derive_seed(run.seed, "eval", epoch))
            with torch.no_grad():
                metrics = self.task.evaluate(model, epoch)
            model.train()
        metrics = broadcast_object(metrics, self.dist)
        if metrics:
            logger.info("epoch %d: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        return metrics

    def _track_best(self, model: nn.Module, state: TrainState, metrics: dict[str, float], epoch: int) -> None:
        key, mode = getattr(self.task, "best_metric", (None, "max"))
        if key is None or key not in metrics:
            return
        value = metrics[key]
        better = state.best_value is None or (value > state.best_value if mode == "max" else value < state.best_value)
        if better:
            state.best_value, state.best_epoch = float(value), epoch
            if self.dist.is_main:
                unwrap(model).save_pretrained(self.run_dir / "best", metrics={key: value, "epoch": epoch},
                                              description=f"best {key} over evaluations (epoch {epoch})")

    def _checkpoint(self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any, state: TrainState) -> None:
        self._on_main(lambda: save_checkpoint(self.run_dir, model, optimizer, state, run_id=self.run_id, scaler=scaler,
                                              keep=self.run.keep_checkpoints))

    def _finalize(self, model: nn.Module, summary: dict[str, Any]) -> dict[str, Any]:
        if self.dist.is_main:
            model.eval()
            with torch.no_grad():
                summary = self.task.finalize(unwrap(model), self.run_dir, summary)
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        barrier(self.dist)
        return broadcast_object(summary, self.dist)


__all__ = ["MicroBatches", "StepContext", "Task", "Trainer", "derive_seed", "seed_everything"]
