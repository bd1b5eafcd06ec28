"""Training: stage I (cross-modal dVAE), stage II (masked distillation), stage III (fine-tuning,
few-shot, part segmentation). ``act-zoo train PIPELINE --config ...`` or::

    from act_zoo.train import load_config, train
    summary = train("finetune", load_config("finetune", "my.yaml", ["run.max_epoch=10"]))

Your own files, one call (``act-zoo train finetune --data DIR --init NAME --out RUN``)::

    from act_zoo.train import finetune
    summary = finetune(data="shapes/", init="act_tiny.pretrain", out="runs/shapes")
"""

from .api import finetune, plan_finetune, sweep_seeds, train
from .config import (
    PIPELINES,
    DataConfig,
    FewShotConfig,
    FinetuneConfig,
    OptimConfig,
    PartSegTrainConfig,
    RunConfig,
    SchedulerConfig,
    Stage1Config,
    Stage2Config,
    dump_config,
    load_config,
)

__all__ = [
    "PIPELINES",
    "DataConfig",
    "FewShotConfig",
    "FinetuneConfig",
    "OptimConfig",
    "PartSegTrainConfig",
    "RunConfig",
    "SchedulerConfig",
    "Stage1Config",
    "Stage2Config",
    "dump_config",
    "finetune",
    "load_config",
    "plan_finetune",
    "sweep_seeds",
    "train",
]
