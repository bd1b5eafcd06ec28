"""Count the FLOPs per sample of every recipe's full-size model (the GPU-hours estimate's input).

For each recipe in ``act_zoo/recipes``: the model its config builds, at full size, on the official
reference computation (``set_fast_path(False)``), counted with ``torch.utils.flop_counter``'s formulas (2 FLOP
per multiply-add; matmuls, convolutions and attention; elementwise ops are not counted):

* training: one forward + backward in ``train()`` mode, as the pipeline's training step runs it;
* evaluation: one forward in ``eval()`` mode, as the pipeline's per-epoch evaluation runs it.

Both are measured on a batch of 2 and divided by 2. The stage-I/II teacher is the ViT-B/16-384
block recipe with random weights (the count does not depend on the weights, and nothing is
downloaded). Prints one line per recipe; ``--write`` stores the figures in the recipe files.

    python scripts/recipe_flops.py              # print
    python scripts/recipe_flops.py --write      # update act_zoo/recipes/*.yaml
    python scripts/recipe_flops.py modelnet40   # one recipe
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from act_zoo.recipes import load_recipes
from act_zoo.train.config import load_config

BATCH = 2


class _FlopCount(TorchDispatchMode):
    """torch's FLOP formulas applied at dispatch level (``FlopCounterMode`` also hooks modules,
    which fails on the frozen teacher's inputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func._overloadpacket in flop_registry:
            self.flops += flop_registry[func._overloadpacket](*args, **kwargs, out_val=out)
        return out


def _count(fn) -> float:
    with _FlopCount() as counter:
        fn()
    return counter.flops / BATCH / 1e9


def _cloud(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(BATCH, n, 3, generator=g)
    return pts / pts.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True)


def _stage1(cfg) -> tuple[float, float]:
    from act_zoo.models import PromptedDiscreteVAE

    model = PromptedDiscreteVAE(dataclasses.replace(cfg.model, npoints=cfg.npoints), pretrained_teacher=False)
    model.set_fast_path(False)
    x = _cloud(cfg.npoints)

    def train():
        model.train()
        out = model(x, temperature=1.0, hard=False)
        (out.recon + 0.1 * out.kl).backward()

    def evaluate():
        model.eval()
        with torch.no_grad():
            out = model(x, temperature=1.0, hard=True)
            model.validation_metrics(x, out)

    return _count(train), _count(evaluate)


def _stage2(cfg) -> tuple[float, float]:
    from act_zoo.models import ACTDistillation, PromptedDiscreteVAE
    from act_zoo.models.dvae import DVAEConfig

    dvae = DVAEConfig(npoints=cfg.npoints)  # the official stage-I config (= act_dvae_vit_base.shapenet55)
    teacher = PromptedDiscreteVAE(dvae, pretrained_teacher=False)
    model = ACTDistillation(dataclasses.replace(cfg.model, dvae=dvae), teacher=teacher)
    model.set_fast_path(False)
    x = _cloud(cfg.npoints)

    def train():
        model.train()
        model(x).loss.backward()

    def evaluate():
        model.eval()
        with torch.no_grad():
            model.forward_loss(x, generator=torch.Generator().manual_seed(0))

    return _count(train), _count(evaluate)


def _forward_model(model: torch.nn.Module, *inputs: torch.Tensor) -> tuple[float, float]:
    """Train / evaluate counts of a model whose ``forward(*inputs)`` is its prediction (the
    reference path: the official computation)."""
    model.set_fast_path(False)

    def train():
        model.train()
        model(*inputs).sum().backward()

    def evaluate():
        model.eval()
        with torch.no_grad():
            model(*inputs)

    return _count(train), _count(evaluate)


def _finetune(cfg) -> tuple[float, float]:
    from act_zoo.models import ACTClassifier

    model_cfg = cfg.model
    if hasattr(cfg, "way"):  # few-shot: a way-logit head
        model_cfg = dataclasses.replace(model_cfg, cls_dim=cfg.way)
    return _forward_model(ACTClassifier(dataclasses.replace(model_cfg, npoints=cfg.npoints)), _cloud(cfg.npoints))


def _partseg(cfg) -> tuple[float, float]:
    from act_zoo.models import ACTPartSeg

    model = ACTPartSeg(dataclasses.replace(cfg.model, npoints=cfg.npoints))
    return _forward_model(model, _cloud(cfg.npoints), torch.tensor([0, 4]))


def _semseg(cfg) -> tuple[float, float]:
    from act_zoo.models import ACTSemSeg

    return _forward_model(ACTSemSeg(dataclasses.replace(cfg.model, npoints=cfg.npoints)), _cloud(cfg.npoints))


COUNTERS = {"stage1": _stage1, "stage2": _stage2, "finetune": _finetune, "fewshot": _finetune, "partseg": _partseg,
            "semseg": _semseg}


def recipe_flops(name: str) -> tuple[float, float]:
    """(training GFLOP, evaluation GFLOP) per sample of recipe ``name``'s full-size model."""
    recipe = load_recipes()[name]
    cfg = load_config(recipe.pipeline, f"recipe:{name}")
    torch.manual_seed(0)
    return COUNTERS[recipe.pipeline](cfg)


def _write(path: Path, train: float, evaluate: float) -> None:
    text = path.read_text(encoding="utf-8")
    text, n1 = re.subn(r"(train_gflop_per_sample: )\S+", rf"\g<1>{train:.2f}", text, count=1)
    text, n2 = re.subn(r"(eval_gflop_per_sample: )\S+", rf"\g<1>{evaluate:.2f}", text, count=1)
    if n1 != 1 or n2 != 1:
        raise SystemExit(f"{path}: compute fields not found")
    path.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="recipes (default: all)")
    ap.add_argument("--write", action="store_true", help="store the figures in the recipe files")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    recipes = load_recipes()
    folder = Path(__file__).resolve().parents[1] / "act_zoo" / "recipes"
    for name in args.names or list(recipes):
        train, evaluate = recipe_flops(name)
        print(f"{name:24s} train {train:8.2f} GFLOP/sample   eval {evaluate:8.2f} GFLOP/sample")
        if args.write:
            _write(folder / f"{name}.yaml", train, evaluate)


if __name__ == "__main__":
    main()
