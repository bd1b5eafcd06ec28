"""Run directories never lose or mix up checkpoints (issue 12, items 6 and 10-13).

A tiny regression task (a 2-layer MLP with BatchNorm, 4 steps per epoch) runs through the real
:class:`~act_zoo.train.loop.Trainer`, so each test takes a second or two.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import TensorDataset

from act_zoo.train import checkpoint as ckpt_mod
from act_zoo.train.checkpoint import CheckpointError, latest_checkpoint, verify_checkpoint
from act_zoo.train.config import OptimConfig, RunConfig, SchedulerConfig
from act_zoo.train.distributed import DistInfo
from act_zoo.train.loop import Trainer
from act_zoo.train.rundir import RunDirectoryBusy, RunDirectoryError


class TinyTask:
    name = "tiny"

    def __init__(self, gate: threading.Event | None = None, entered: threading.Event | None = None) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(32, 4, generator=g)
        self.y = self.x.sum(1, keepdim=True)
        self.gate, self.entered = gate, entered

    def train_dataset(self):
        return TensorDataset(self.x, self.y)

    def collate(self, items):
        return torch.utils.data.default_collate(items)

    def train_step(self, model, batch, ctx):
        if self.gate is not None and ctx.step == 2:
            self.entered.set()
            assert self.gate.wait(60)
        x, y = batch
        return F.mse_loss(model(x), y), {}

    def evaluate(self, model, epoch):
        return None

    def finalize(self, model, run_dir, summary):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(Path(run_dir) / "final.safetensors"))
        return summary


def fit(out: Path, *, task: TinyTask | None = None, resume: bool = False, overwrite: bool = False, **run) -> dict:
    cfg = RunConfig(**{"out_dir": str(out), "max_epoch": 2, "batch_size": 8, "progress": False, "tensorboard": False,
                       "ckpt_every_steps": 1, "keep_checkpoints": 2, "log_every": 1, **run})
    trainer = Trainer(task or TinyTask(), run=cfg, optim=OptimConfig(lr=1e-2), scheduler=SchedulerConfig(warmup_epochs=1),
                      dist=DistInfo(), resume=resume, overwrite=overwrite)
    return trainer.fit()


def final(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "final.safetensors"))


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), k


def steps(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("step-"))


def digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    """The uninterrupted run (3 epochs x 4 steps) every interrupted one must reproduce exactly."""
    out = tmp_path_factory.mktemp("reference")
    summary = fit(out)
    assert summary["steps"] == 12
    return final(out)


# -- item 10: resume falls back, new runs never mix with old ones ------------------------------------
def test_resume_without_latest_uses_the_newest_intact_checkpoint(tmp_path, reference, caplog):
    run = tmp_path / "run"
    fit(run, max_steps=6)
    (run / "checkpoints" / "latest").unlink()
    with caplog.at_level(logging.WARNING, logger="act_zoo.train"):
        summary = fit(run, resume=True)
    assert "step-00000006" in caplog.text and "starting from scratch" not in caplog.text
    assert summary["steps"] == 12
    assert_same(final(run), reference)


def test_a_new_run_refuses_a_non_empty_run_directory(tmp_path):
    run = tmp_path / "run"
    fit(run, max_steps=6)
    before = digest(run / "checkpoints")
    with pytest.raises(RunDirectoryError, match=r"not empty.*--resume.*--overwrite"):
        fit(run, max_steps=2)
    assert digest(run / "checkpoints") == before  # nothing of the old run was touched


def test_overwrite_deletes_the_previous_run_first(tmp_path):
    run = tmp_path / "run"
    fit(run, max_steps=6)
    (run / "notes.txt").write_text("old run")
    fit(run, max_steps=2, overwrite=True)
    assert steps(run) == ["step-00000001", "step-00000002"]
    assert not (run / "notes.txt").exists()
    assert latest_checkpoint(run).name == "step-00000002"


def test_overwrite_never_empties_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(RunDirectoryError, match="holds no act_zoo run"):
        fit(tmp_path, max_steps=1, overwrite=True)
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_pruning_only_removes_older_checkpoints_of_this_run(tmp_path, reference):
    run = tmp_path / "run"
    fit(run, max_steps=6)
    root = run / "checkpoints"
    foreign = root / "step-00000036"  # another run's checkpoint, newer by name and step
    shutil.copytree(root / "step-00000006", foreign)
    record = json.loads((foreign / "checkpoint.json").read_text())
    (foreign / "checkpoint.json").write_text(json.dumps({**record, "run_id": "another-run", "step": 36}))
    unrecorded = root / "step-00000003"  # no record: unknown origin, never deleted
    unrecorded.mkdir()
    (unrecorded / "model.safetensors").write_bytes(b"?")
    fit(run, resume=True)
    assert steps(run) == ["step-00000003", "step-00000011", "step-00000012", "step-00000036"]
    assert_same(final(run), reference)


# -- item 11: damaged latest checkpoint --------------------------------------------------------------
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip], ids=["truncated", "bit-flipped"])
@pytest.mark.parametrize("name", ["model.safetensors", "trainer_state.pt"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, reference, caplog, damage, name):
    run = tmp_path / "run"
    fit(run, max_steps=6)
    damage(run / "checkpoints" / "step-00000006" / name)
    with pytest.raises(ValueError, match="sha256|bytes"):
        verify_checkpoint(run / "checkpoints" / "step-00000006")
    with caplog.at_level(logging.WARNING, logger="act_zoo.train"):
        summary = fit(run, resume=True)
    assert "step-00000006" in caplog.text and "damaged" in caplog.text and "step-00000005" in caplog.text
    assert summary["steps"] == 12
    assert_same(final(run), reference)


def test_resume_with_no_intact_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    run = tmp_path / "run"
    fit(run, max_steps=6)
    for d in (run / "checkpoints").glob("step-*"):
        _flip(d / "model.safetensors")
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        fit(run, resume=True)


# -- item 12: one trainer per run directory -----------------------------------------------------------
def test_a_second_trainer_on_a_run_directory_in_use_fails_at_once(tmp_path, reference):
    run = tmp_path / "run"
    gate, entered = threading.Event(), threading.Event()
    first: dict = {}
    thread = threading.Thread(target=lambda: first.update(summary=fit(run, task=TinyTask(gate, entered))))
    thread.start()
    try:
        assert entered.wait(60), "the first trainer never reached step 2"
        for kwargs in ({"resume": True}, {}, {"overwrite": True}):
            t0 = time.time()
            with pytest.raises(RunDirectoryBusy, match="in use by another trainer"):
                fit(run, **kwargs)
            assert time.time() - t0 < 5
    finally:
        gate.set()
        thread.join(120)
    assert first["summary"]["steps"] == 12
    assert_same(final(run), reference)  # the first run was not disturbed
    fit(run, resume=True)  # the lock is released when a run ends


# -- item 13: leftovers of an interrupted save, full disk --------------------------------------------
def test_leftover_temporaries_of_an_interrupted_save_are_removed_on_start(tmp_path, reference):
    run = tmp_path / "run"
    fit(run, max_steps=6)
    root = run / "checkpoints"
    (root / ".tmp-step-00000007-99999").mkdir()
    (root / ".tmp-step-00000007-99999" / "model.safetensors").write_bytes(b"half")
    (root / ".latest.abc123.tmp").write_text("step-00000007")
    fit(run, resume=True)
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert_same(final(run), reference)


def test_a_full_disk_ends_in_one_clear_message(tmp_path, reference, monkeypatch):
    run = tmp_path / "run"
    real_write = ckpt_mod._write_file
    saves = []

    def fill_up(path: Path, data: bytes):
        if path.name == "model.safetensors":
            saves.append(path)
        if len(saves) >= 4:  # the fourth checkpoint finds the disk full, half-way through a file
            path.write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(path, data)

    monkeypatch.setattr(ckpt_mod, "_write_file", fill_up)
    with pytest.raises(CheckpointError) as info:
        fit(run)
    message = str(info.value)
    assert message.startswith("no space left on device while writing ")
    assert ".tmp-step-00000004" in message and "model.safetensors" in message
    assert message.endswith("the last intact checkpoint is step-00000003")
    root = run / "checkpoints"
    assert not [p.name for p in root.iterdir() if p.name.startswith(".")]  # no half-written leftovers
    assert latest_checkpoint(run).name == "step-00000003"
    monkeypatch.undo()
    fit(run, resume=True)  # room again: the run continues exactly
    assert_same(final(run), reference)


def test_the_checkpoint_writer_reports_a_real_full_device():
    """``/dev/full`` fails every write with ENOSPC: the writer surfaces it as that OSError
    (torch.save to a path reports ``enforce fail at inline_container.cc`` instead)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with pytest.raises(OSError) as info:
        ckpt_mod._write_file(Path("/dev/full"), b"x" * 100_000)
    assert info.value.errno == errno.ENOSPC


# -- item 6 (run checkpoints): files follow the umask -------------------------------------------------
@pytest.mark.parametrize("mask", [0o002, 0o022])
def test_checkpoint_files_respect_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        fit(tmp_path / "run", max_steps=1)
    finally:
        os.umask(old)
    root = tmp_path / "run" / "checkpoints"
    for p in [root, *root.rglob("*")]:
        want = (0o777 if p.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(p.stat().st_mode) == want, (p, oct(stat.S_IMODE(p.stat().st_mode)), oct(want))
