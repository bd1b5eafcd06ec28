"""``act-zoo train PIPELINE``: the training pipelines (also under ``torchrun``)."""

from __future__ import annotations

import argparse


def _cmd_train(args: argparse.Namespace) -> int:
    from ..train.cli import run_train

    return run_train(args)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from ..train.cli import add_train_arguments

    s = sub.add_parser("train", parents=[common], help="run a training pipeline (stage1, stage2, finetune, fewshot, partseg)",
                       description="Run an ACT training pipeline. Defaults are the official configs; a YAML file and "
                                   "--set key=value override any field. Multi-process: torchrun --nproc-per-node N "
                                   "-m act_zoo.cli train ... Your own files: act-zoo train finetune --data DIR "
                                   "--init act_tiny.pretrain --out RUN (architecture from --init, head from the "
                                   "data, a validation split held out, small-data defaults printed).")
    add_train_arguments(s)
    s.set_defaults(func=_cmd_train)
