"""Training checkpoints: model as safetensors + optimizer/scaler/RNG/data-position state.

Layout of a run directory::

    checkpoints/step-00000120/{model.safetensors, trainer_state.pt}
    checkpoints/latest            # the name of the newest complete checkpoint

A checkpoint is written into a temporary directory and renamed into place, and only then is
``latest`` replaced (atomically), so a process killed at any moment leaves the previous
checkpoint intact. ``trainer_state.pt`` holds only tensors and plain Python values and is read
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..hub.cache import atomic_path
from ..hub.io import read_safetensors, save_safetensors

logger = logging.getLogger(__name__)

LATEST = "latest"


@dataclass
class TrainState:
    """Where a run is: the next epoch/step to run and what the epoch has accumulated so far."""

    epoch: int = 0
    step_in_epoch: int = 0  # optimizer steps already done in ``epoch``
    global_step: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    epoch_sums: dict[str, float] = field(default_factory=dict)
    epoch_count: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    *,
    scaler: Any = None,
    keep: int = 2,
) -> Path:
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step-{state.global_step:08d}"
    final = ckpt_root / name
    tmp = ckpt_root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_safetensors(unwrap(model).state_dict(), tmp / "model.safetensors", {"format": "pt"})
        payload = {
            "state": asdict(state),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
        }
        torch.save(payload, tmp / "trainer_state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with atomic_path(ckpt_root / LATEST) as t:
        t.write_text(name + "\n", encoding="utf-8")
    old = sorted(p for p in ckpt_root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name != name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    logger.info("checkpoint %s", final)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / LATEST
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text(encoding="utf-8").strip()
    if not (path / "model.safetensors").is_file() or not (path / "trainer_state.pt").is_file():
        raise ValueError(f"checkpoint {path} named by {pointer} is incomplete")
    return path


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, *, scaler: Any = None, restore_rng: bool = True
) -> TrainState:
    weights, _ = read_safetensors(Path(path) / "model.safetensors")
    unwrap(model).load_state_dict(weights, strict=True)
    try:
        payload = torch.load(Path(path) / "trainer_state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}/trainer_state.pt is not a readable trainer state ({exc})") from exc
    optimizer.load_state_dict(payload["optimizer"])
    if scaler is not None and payload.get("scaler") is not None:
        scaler.load_state_dict(payload["scaler"])
    if restore_rng:
        set_rng_state(payload["rng"])
    return TrainState(**payload["state"])
