"""The trainer: exact resume after SIGKILL, torchrun DDP == accumulation, AMP, checkpoints."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from act_zoo.train import load_config, train
from act_zoo.train.checkpoint import latest_checkpoint

TINY = [
    "data.dataset=synthetic", "data.num_samples=96", "data.test_samples=16", "data.num_classes=3", "npoints=128",
    "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.num_group=8", "model.group_size=16",
    "model.encoder_dims=32", "model.cls_dim=3", "model.drop_path_rate=0.1", "scheduler.warmup_epochs=1",
    "run.progress=false", "run.tensorboard=false", "run.threads=1", "vote=2", "optim.lr=1e-3",
]
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}


def _cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "act_zoo.cli", "train", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _sets(items):
    return [a for item in items for a in ("--set", item)]


def _weights(run_dir):
    return load_file(str(Path(run_dir) / "model.safetensors"))


def test_resume_after_sigkill_mid_epoch_is_exact(tmp_path):
    common = TINY + ["run.max_epoch=2", "run.batch_size=8", "run.ckpt_every_steps=2", "run.log_every=1"]
    ref = _cli(["finetune", "--out", str(tmp_path / "ref"), *_sets(common)])
    out_ref = ref.communicate(timeout=600)[0]
    assert ref.returncode == 0, out_ref

    run = tmp_path / "killed"
    proc = _cli(["finetune", "--out", str(run), *_sets(common)])
    deadline = time.time() + 300
    killed_at = None
    while time.time() < deadline:  # kill -9 once a mid-epoch checkpoint exists (12 steps per epoch)
        ckpt = latest_checkpoint(run) if (run / "checkpoints" / "latest").exists() else None
        if ckpt is not None and int(ckpt.name.split("-")[1]) >= 4:
            proc.send_signal(signal.SIGKILL)
            killed_at = ckpt.name
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (run / "summary.json").exists()

    resumed = _cli(["finetune", "--out", str(run), "--resume", *_sets(common)])
    out = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, out
    a, b = _weights(tmp_path / "ref"), _weights(run)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log_ref = (tmp_path / "ref" / "train_log.csv").read_text()
    assert log_ref == (run / "train_log.csv").read_text()  # the same losses at every step
    assert (tmp_path / "ref" / "eval_log.csv").read_text() == (run / "eval_log.csv").read_text()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_match_single_process_accumulation(tmp_path):
    common = TINY + ["run.max_epoch=0", "run.max_steps=3", "run.batch_size=8", "model.drop_path_rate=0.1"]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
                          "-m", "act_zoo.cli", "train", "finetune", "--out", str(tmp_path / "ddp"), *_sets(common)],
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stdout + ddp.stderr
    single = _cli(["finetune", "--out", str(tmp_path / "single"), *_sets(common + ["run.accumulate=2"])])
    out = single.communicate(timeout=600)[0]
    assert single.returncode == 0, out
    a, b = _weights(tmp_path / "ddp"), _weights(tmp_path / "single")
    import json

    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2
    assert a.keys() == b.keys()
    buffers = [k for k in a if "running" in k or "num_batches" in k]
    assert len(buffers) > 10 and len(a) > 60
    for k in a:  # every parameter and every buffer, BatchNorm running statistics included
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], atol=2e-6, rtol=1e-5, msg=k)
        else:
            assert torch.equal(a[k], b[k]), k
    for run in ("ddp", "single"):  # the runs really moved the statistics (not a comparison of defaults)
        w = _weights(tmp_path / run)
        assert any(not torch.equal(w[k], torch.zeros_like(w[k])) for k in buffers if k.endswith("running_mean"))


def test_api_accumulation_amp_and_outputs(tmp_path):
    cfg = load_config("finetune", None, TINY + ["run.max_epoch=1", "run.batch_size=8", "run.accumulate=2",
                                                "run.amp=bf16", f"run.out_dir={tmp_path / 'r'}"])
    summary = train("finetune", cfg)
    run = tmp_path / "r"
    for name in ("config.json", "model.safetensors", "README.md", "train_log.csv", "eval_log.csv", "summary.json",
                 "train_config.yaml", "plots/train.png"):
        assert (run / name).is_file(), name
    assert summary["steps"] == 2 * (96 // 8)
    assert "acc_vote2" in summary["final (last epoch)"]
    import act_zoo

    model = act_zoo.from_pretrained(run)  # a run directory loads straight into the registry API
    assert model.config.cls_dim == 3
    fp16 = train("finetune", load_config("finetune", None, TINY + ["run.max_epoch=0", "run.max_steps=2", "run.batch_size=8",
                                                           "run.amp=fp16", "vote=0", f"run.out_dir={tmp_path / 'h'}"]))
    assert fp16["steps"] == 2  # fp16 autocast with a GradScaler (CPU here, CUDA alike)
    with pytest.raises(ValueError, match="not divisible"):
        train("finetune", load_config("finetune", None, TINY + ["run.batch_size=9", "run.accumulate=2",
                                                                f"run.out_dir={tmp_path / 'x'}"]))


def test_cli_new_run_refuses_a_used_out_directory_unless_overwrite(tmp_path, capsys):
    """``act-zoo train`` into an old run's directory: a one-line refusal naming --resume and
    --overwrite; ``--overwrite`` replaces the old run (issue 12, item 10)."""
    from act_zoo.cli import main

    args = ["train", "finetune", "--out", str(tmp_path / "r"),
            *_sets(TINY + ["run.max_epoch=0", "run.max_steps=1", "run.batch_size=8", "vote=0"])]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("act-zoo train: error: run directory") and "not empty" in err
    assert "--resume" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert main(args + ["--overwrite"]) == 0
    assert main(args + ["--overwrite", "--resume"]) == 1
    assert "exclude each other" in capsys.readouterr().err


def test_run_train_leaves_the_process_group(monkeypatch):
    """``cleanup`` runs at the end of every ``act-zoo train`` (torchrun's group is destroyed),
    even when the command fails."""
    import torch.distributed as dist

    from act_zoo.cli import main

    destroyed = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "destroy_process_group", lambda *a, **k: destroyed.append(1))
    assert main(["train", "finetune", "--print-config"]) == 0
    assert main(["train", "finetune", "--set", "run.nope=1"]) == 1
    assert destroyed == [1, 1]
