"""The embedded model's manifest accuracy, re-measured the way the manifest says it was measured.

``weights_manifest/embedded.json``: act_tiny.synthetic10, ``overall_accuracy`` on "a held-out
split of 500 procedural shapes", last epoch, no voting, measured by
``examples/pretrain_pipeline.py`` (full preset) and copied by ``scripts/package_embedded.py``
from stage III's ``summary.json``. That number is ``FinetuneTask.evaluate`` on the stage-III
test split; the same task, config and split are rebuilt here and the shipped weights evaluated.
"""

from __future__ import annotations

import act_zoo
from act_zoo.hub.registry import get_record
from act_zoo.train import load_config
from act_zoo.train.tasks.finetune import FinetuneTask

NAME = "act_tiny.synthetic10"


def _stage3_config(record):
    """Stage III of ``examples/pretrain_pipeline.py`` (full preset, seed 0): what decides the split."""
    c = record.config
    return load_config("finetune", None, [
        "data.dataset=synthetic", f"npoints={c['npoints']}", "run.batch_size=32", "run.progress=false",
        "scheduler.warmup_epochs=0", "run.seed=0", f"data.num_classes={c['cls_dim']}", "data.num_samples=2000",
        "data.test_samples=500", "vote=0",
        f"model={{embed_dim: {c['embed_dim']}, depth: {c['depth']}, num_heads: {c['num_heads']}, "
        f"num_group: {c['num_group']}, group_size: {c['group_size']}, encoder_dims: {c['encoder_dims']}, "
        f"cls_dim: {c['cls_dim']}}}"])


def test_embedded_model_accuracy_matches_its_manifest_within_one_point():
    record = get_record(NAME)
    claimed = record.metrics["overall_accuracy"]
    assert "500 procedural shapes" in record.metrics_note and "no voting" in record.metrics_note
    task = FinetuneTask(_stage3_config(record))
    assert len(task.test_dataset()) == 500
    model = act_zoo.from_pretrained(NAME).eval()
    measured = task.evaluate(model, -1)["acc"]
    assert abs(measured - claimed) <= 1.0, f"{NAME}: manifest says {claimed} %, measured {measured:.2f} %"
