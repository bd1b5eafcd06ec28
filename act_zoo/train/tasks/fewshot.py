"""Few-shot classification: one fine-tuning run per fold, mean ± std over folds.

Folds come from the official ModelNet40 few-shot files (``data.dataset: modelnet40_fewshot``)
or are generated with a seed from any labelled dataset (``make_few_shot_splits``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..config import FewShotConfig, FinetuneConfig
from .common import build_dataset, mean_std


def run_fewshot(cfg: FewShotConfig, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    from ...data import make_few_shot_splits
    from ..api import train

    base = Path(cfg.run.out_dir)
    model = dataclasses.replace(cfg.model, cls_dim=cfg.way)
    per_fold: dict[int, dict[str, Any]] = {}
    pool = None
    for fold in cfg.folds:
        ft_fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(FinetuneConfig)}
        ft_fields["model"] = model
        ft_fields["run"] = dataclasses.replace(cfg.run, out_dir=str(base / f"fold_{fold}"))
        ft = FinetuneConfig(**ft_fields)
        if cfg.data.dataset == "modelnet40_fewshot":
            train_set = build_dataset(cfg.data, split="train", npoints=cfg.npoints, labelled=True, seed=cfg.run.seed,
                                      fewshot=(cfg.way, cfg.shot, fold))
            test_set = build_dataset(cfg.data, split="test", npoints=cfg.npoints, labelled=True, seed=cfg.run.seed,
                                     fewshot=(cfg.way, cfg.shot, fold))
        else:
            if pool is None:
                pool = build_dataset(cfg.data, split="train", npoints=cfg.npoints, labelled=True, seed=cfg.run.seed)
            split = make_few_shot_splits(pool, way=cfg.way, shot=cfg.shot, query=cfg.query, seed=cfg.data.data_seed + fold)
            train_set, test_set = split.datasets(pool)
        summary = train("finetune", ft, resume=resume, overwrite=overwrite, train_set=train_set, test_set=test_set)
        per_fold[fold] = summary
    accs = [s["final (last epoch)"]["acc"] for s in per_fold.values()]
    best = [s.get("best (selected on the test split, official protocol)", {}).get("acc", float("nan"))
            for s in per_fold.values()]
    m, sd = mean_std(accs)
    bm, bsd = mean_std(best)
    report = {"way": cfg.way, "shot": cfg.shot, "folds": list(cfg.folds),
              "final (last epoch)": {"acc_mean": m, "acc_std": sd, "per_fold": accs},
              "best (selected on the query split, official protocol)": {"acc_mean": bm, "acc_std": bsd, "per_fold": best}}
    base.mkdir(parents=True, exist_ok=True)
    (base / "fewshot_summary.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
