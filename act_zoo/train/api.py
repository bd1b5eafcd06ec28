"""Run a pipeline from a config: ``train(pipeline, config)`` and the seed sweep; fine-tune on
your own files in one call: ``finetune(data=DIR, init=NAME, out=RUN)`` (see :mod:`.own_data`)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from .config import PIPELINES, dump_config
from .distributed import init_distributed
from .loop import Trainer, derive_seed, seed_everything
from .own_data import finetune, plan_finetune
from .tasks.common import mean_std

logger = logging.getLogger(__name__)


def make_task(pipeline: str, cfg: Any, **kwargs: Any) -> Any:
    if pipeline == "finetune":
        from .tasks.finetune import FinetuneTask

        return FinetuneTask(cfg, **kwargs)
    if pipeline == "stage1":
        from .tasks.stage1 import Stage1Task

        return Stage1Task(cfg, **kwargs)
    if pipeline == "stage2":
        from .tasks.stage2 import Stage2Task

        return Stage2Task(cfg, **kwargs)
    if pipeline == "partseg":
        from .tasks.partseg import PartSegTask

        return PartSegTask(cfg, **kwargs)
    raise ValueError(f"unknown pipeline {pipeline!r}; choose one of {sorted(PIPELINES)}")


def train(pipeline: str, cfg: Any, *, resume: bool = False, overwrite: bool = False,
          **task_kwargs: Any) -> dict[str, Any]:
    """Train one pipeline; returns the run summary (also written to ``out_dir/summary.json``).

    ``out_dir`` must be empty or new unless ``resume`` (continue the run there from its newest
    intact checkpoint) or ``overwrite`` (delete the previous run there first)."""
    if pipeline == "fewshot":
        from .tasks.fewshot import run_fewshot

        return run_fewshot(cfg, resume=resume, overwrite=overwrite)
    if not isinstance(cfg, PIPELINES[pipeline]):
        raise TypeError(f"{pipeline} needs a {PIPELINES[pipeline].__name__}, got {type(cfg).__name__}")
    dist = init_distributed(cfg.run.device)
    seed_everything(derive_seed(cfg.run.seed, "init"))  # model initialisation is part of the run's seed
    task = make_task(pipeline, cfg, **task_kwargs)
    trainer = Trainer(task, run=cfg.run, optim=cfg.optim, scheduler=cfg.scheduler, dist=dist, resume=resume,
                      overwrite=overwrite,
                      double_step=getattr(cfg, "double_step", False),
                      find_unused_parameters=getattr(task, "find_unused_parameters", False),
                      config_text=dump_config(cfg))
    return trainer.fit()


def sweep_seeds(pipeline: str, cfg: Any, seeds: list[int], *, resume: bool = False,
                overwrite: bool = False) -> dict[str, Any]:
    """Run once per seed (``out_dir/seed_<s>``) and report mean ± std of every final metric."""
    base = Path(cfg.run.out_dir)
    runs = []
    for s in seeds:
        run = dataclasses.replace(cfg.run, seed=s, out_dir=str(base / f"seed_{s}"))
        runs.append(train(pipeline, dataclasses.replace(cfg, run=run), resume=resume, overwrite=overwrite))
    flat: dict[str, list[float]] = {}
    for summary in runs:
        for section, values in summary.items():
            if isinstance(values, dict):
                for k, v in values.items():
                    if isinstance(v, (int, float)):
                        flat.setdefault(f"{section}/{k}", []).append(float(v))
    report = {"seeds": seeds, "metrics": {k: {"mean": mean_std(v)[0], "std": mean_std(v)[1], "values": v}
                                          for k, v in flat.items()}}
    base.mkdir(parents=True, exist_ok=True)
    (base / "seeds_summary.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


__all__ = ["finetune", "make_task", "plan_finetune", "sweep_seeds", "train"]
