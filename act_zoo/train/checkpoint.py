"""Training checkpoints: model as safetensors + optimizer/scaler/RNG/data-position state.

Layout of a run directory::

    checkpoints/step-00000120/model.safetensors
    checkpoints/step-00000120/trainer_state.pt
    checkpoints/step-00000120/checkpoint.json   # run id, step, sha256 and size of both files
    checkpoints/latest                           # the name of the newest complete checkpoint

A checkpoint is written into a temporary directory (its record last) and renamed into place,
and only then is ``latest`` replaced (atomically), so a process killed at any moment leaves the
previous checkpoint intact. Every file is hashed as it is written; resuming verifies the bytes
it loads against the record, and falls back to the newest intact checkpoint (saying which)
when ``latest`` is missing or names a truncated or altered one. Pruning removes only older
checkpoints of the same run (its id is in every record). ``trainer_state.pt`` holds only
tensors and plain Python values and is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
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

logger = logging.getLogger(__name__)

LATEST = "latest"
RECORD = "checkpoint.json"
MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
TMP_PREFIX = ".tmp-"
_FORMAT = 1
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or no intact checkpoint is left to resume from."""


class DamagedCheckpoint(ValueError):
    """A checkpoint directory whose files do not match its record (or that has no record)."""


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


@dataclass(frozen=True)
class CheckpointRef:
    """A verified checkpoint directory and the run it belongs to."""

    path: Path
    step: int
    run_id: str


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


# -- writing ---------------------------------------------------------------------------------------
def _write_file(path: Path, data: bytes) -> dict[str, Any]:
    """Write ``data`` to a new file (mode from the umask), flush it to disk; its sha256 and size.

    Plain Python I/O on purpose: a full disk raises ``OSError(ENOSPC)`` here (torch's and
    safetensors' own writers report it as ``enforce fail at inline_container.cc`` or a
    SafetensorError), so the trainer can say what happened."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _model_bytes(model: nn.Module) -> bytes:
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in unwrap(model).state_dict().items()}
    return save(tensors, metadata={"format": "pt"})


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    *,
    run_id: str,
    scaler: Any = None,
    keep: int = 2,
) -> Path:
    """Write ``checkpoints/step-<global_step>``, point ``latest`` at it, prune this run's older ones.

    A full disk raises :class:`CheckpointError` naming the file being written and the last
    intact checkpoint (the temporary directory is removed; ``latest`` is left as it was)."""
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step-{state.global_step:08d}"
    final = ckpt_root / name
    tmp = ckpt_root / f"{TMP_PREFIX}{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    writing = tmp
    try:
        tmp.mkdir()
        payload = {
            "state": asdict(state),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        files = {}
        for fname, data in ((MODEL_FILE, _model_bytes(model)), (STATE_FILE, buf.getvalue())):
            writing = tmp / fname
            files[fname] = _write_file(writing, data)
        record = {"format": _FORMAT, "run_id": run_id, "step": state.global_step, "epoch": state.epoch,
                  "files": files}
        writing = tmp / RECORD
        _write_file(writing, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
        if final.exists():
            writing = final
            shutil.rmtree(final)
        os.replace(tmp, final)
        writing = ckpt_root / LATEST
        with atomic_path(writing) as t:
            t.write_text(name + "\n", encoding="utf-8")
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno in _NO_SPACE:
            last = newest_intact(run_dir)
            where = f"the last intact checkpoint is {last.path.name}" if last else "no intact checkpoint was written yet"
            raise CheckpointError(f"no space left on device while writing {writing}; {where}") from exc
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune_checkpoints(run_dir, run_id=run_id, newest_step=state.global_step, keep=keep)
    logger.info("checkpoint %s", final)
    return final


def prune_checkpoints(run_dir: Path, *, run_id: str, newest_step: int, keep: int) -> list[Path]:
    """Remove checkpoints of run ``run_id`` older than ``newest_step``, keeping the ``keep``
    newest in all (the one at ``newest_step`` included). Checkpoints of another run, newer
    ones, and directories without a readable record are never touched."""
    mine = []
    for path in _step_dirs(Path(run_dir) / "checkpoints"):
        record = _read_record(path)
        if record is not None and record.get("run_id") == run_id and record.get("step", newest_step) < newest_step:
            mine.append((record["step"], path))
    mine.sort()
    doomed = [p for _, p in mine[: max(0, len(mine) - (max(1, keep) - 1))]]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete what an interrupted save left in ``checkpoints/`` (``.tmp-step-*`` directories,
    ``.latest.*.tmp`` files). Call only while holding the run directory's lock."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    stale = [p for p in root.iterdir() if p.name.startswith(TMP_PREFIX) or
             (p.name.startswith(f".{LATEST}.") and p.name.endswith(".tmp"))]
    for p in stale:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if stale:
        logger.warning("removed %d leftover temporary file(s) of an interrupted checkpoint save in %s: %s",
                       len(stale), root, ", ".join(p.name for p in stale))
    return stale


# -- reading ---------------------------------------------------------------------------------------
def _step_dirs(root: Path) -> list[Path]:
    """``step-*`` directories, newest step first."""
    if not root.is_dir():
        return []
    dirs = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit():
            dirs.append((int(p.name[5:]), p))
    return [p for _, p in sorted(dirs, reverse=True)]


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((path / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _verified(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The record of checkpoint ``path`` and its files' bytes, each checked against the record."""
    record = _read_record(path)
    if record is None:
        reason = "missing" if not (path / RECORD).exists() else "unreadable"
        raise DamagedCheckpoint(f"{path}: its record {RECORD} is {reason} (interrupted save, damaged, or written "
                                f"by an older act_zoo that recorded no hashes)")
    files = record.get("files")
    if not isinstance(files, dict) or set(files) != {MODEL_FILE, STATE_FILE} or not isinstance(record.get("step"), int):
        raise DamagedCheckpoint(f"{path}: {RECORD} does not describe {MODEL_FILE} and {STATE_FILE}")
    blobs = {}
    for fname, want in files.items():
        try:
            data = (path / fname).read_bytes()
        except OSError as exc:
            raise DamagedCheckpoint(f"{path / fname}: cannot be read ({exc.strerror or exc})") from exc
        if len(data) != want.get("size"):
            raise DamagedCheckpoint(f"{path / fname}: {len(data)} bytes, {want.get('size')} recorded (truncated?)")
        if hashlib.sha256(data).hexdigest() != want.get("sha256"):
            raise DamagedCheckpoint(f"{path / fname}: sha256 differs from the one recorded at save time (altered)")
        blobs[fname] = data
    return record, blobs


def verify_checkpoint(path: Path) -> CheckpointRef:
    """Check every file of a checkpoint against its record; :class:`DamagedCheckpoint` if not."""
    record, _ = _verified(Path(path))
    return CheckpointRef(Path(path), int(record["step"]), str(record.get("run_id", "")))


def newest_intact(run_dir: Path) -> CheckpointRef | None:
    """The newest verified checkpoint (by step), whatever ``latest`` says; ``None`` if none."""
    for path in _step_dirs(Path(run_dir) / "checkpoints"):
        try:
            return verify_checkpoint(path)
        except DamagedCheckpoint:
            continue
    return None


def select_checkpoint(run_dir: Path) -> CheckpointRef | None:
    """The checkpoint to resume from: the one ``latest`` names when it is intact, otherwise the
    newest intact one (with a warning saying why and which). ``None`` when the run directory
    has no checkpoint at all; :class:`CheckpointError` when it has some but none is intact."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / LATEST
    named = None
    if pointer.is_file():
        text = pointer.read_text(encoding="utf-8", errors="replace").strip()
        named = root / text if text.startswith("step-") and "/" not in text else None
    candidates = _step_dirs(root)
    if named is not None:
        candidates = [named] + [p for p in candidates if p != named]
    problems = []
    for path in candidates:
        try:
            ref = verify_checkpoint(path)
        except DamagedCheckpoint as exc:
            problems.append(str(exc))
            continue
        if path != named:
            why = f"{pointer} is missing or unreadable" if named is None else f"{named.name}, named by {pointer}, is damaged"
            logger.warning("%s; resuming from the newest intact checkpoint %s%s", why, ref.path.name,
                           "".join(f"\n  skipped: {p}" for p in problems))
        return ref
    if problems:
        raise CheckpointError(f"--resume: no intact checkpoint in {root}:\n" + "\n".join(problems)
                              + "\nstart a new run with --overwrite, or restore a checkpoint")
    return None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """Path of the checkpoint a resume would load (see :func:`select_checkpoint`), or ``None``."""
    ref = select_checkpoint(run_dir)
    return ref.path if ref is not None else None


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, *, scaler: Any = None, restore_rng: bool = True
) -> TrainState:
    """Load a checkpoint into ``model``/``optimizer`` (and ``scaler``, the RNGs), from bytes that
    were verified against its record."""
    from safetensors.torch import load

    path = Path(path)
    try:
        _, blobs = _verified(path)
    except DamagedCheckpoint as exc:
        raise CheckpointError(f"cannot resume from {path}: {exc}") from exc
    weights = load(blobs[MODEL_FILE])
    unwrap(model).load_state_dict(weights, strict=True)
    try:
        payload = torch.load(io.BytesIO(blobs[STATE_FILE]), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path / STATE_FILE} is not a readable trainer state ({exc})") from exc
    optimizer.load_state_dict(payload["optimizer"])
    if scaler is not None and payload.get("scaler") is not None:
        scaler.load_state_dict(payload["scaler"])
    if restore_rng:
        set_rng_state(payload["rng"])
    return TrainState(**payload["state"])
