"""Maintainer script: ship a pipeline run as the embedded offline models, with its provenance.

    python examples/pretrain_pipeline.py --out runs/embedded      # train (stage I -> II -> III)
    python scripts/package_embedded.py runs/embedded               # copy + write weights_manifest/embedded.json

Writes ``act_zoo/_weights/act_tiny_synthetic10.safetensors`` (the stage-III classifier) and
``act_zoo/_weights/act_tiny_pretrain.safetensors`` (the stage-II student encoder) with their
manifest records: sha256, size, parameter count, the measured held-out accuracy, and the
``provenance`` of the run, read from the run directory itself -- the command, the act_zoo
commit (and whether the tree had uncommitted changes), the teacher, the seeds, the wall time
(stage I's start to stage III's end) and every stage's final metrics -- as the trainer records
them in each stage's ``summary.json`` and ``train_config.yaml``. A run without that record
(trained before act_zoo recorded it) is refused: retrain it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("stage1", "stage2", "stage3")
CITATION = ("@inproceedings{dong2023act, title={Autoencoders as Cross-Modal Teachers: Can Pretrained 2D Image "
            "Transformers Help 3D Representation Learning?}, author={Dong, Runpei and Qi, Zekun and Zhang, Linfeng "
            "and Zhang, Junbo and Sun, Jianjian and Ge, Zheng and Yi, Li and Ma, Kaisheng}, booktitle={ICLR}, year={2023}}")


def _read(path: Path) -> Any:
    if not path.is_file():
        raise SystemExit(f"{path} is missing: is {path.parents[1]} the --out directory of a finished "
                         "examples/pretrain_pipeline.py run?")
    text = path.read_text(encoding="utf-8")
    return yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)


def run_provenance(run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the manifest ``provenance``, the stage-III train config) of a pipeline run directory."""
    summaries = {s: _read(run / s / "summary.json") for s in STAGES}
    configs = {s: _read(run / s / "train_config.yaml") for s in STAGES}
    recorded = {s: summaries[s].get("provenance") for s in STAGES}
    missing = [s for s, p in recorded.items() if not p]
    if missing:
        raise SystemExit(f"{run}: {', '.join(missing)} recorded no provenance (summary.json has no 'provenance'; "
                         "the run predates it): retrain with examples/pretrain_pipeline.py")
    commands = list(dict.fromkeys(recorded[s]["command"] for s in STAGES))
    commits = list(dict.fromkeys(recorded[s]["commit"] for s in STAGES))
    trees = {recorded[s].get("worktree") for s in STAGES}
    notes = []
    if len(commits) > 1:
        notes.append(f"the stages ran at different commits: {', '.join(str(c) for c in commits)}")
    if commits[-1] is None:
        notes.append("act_zoo did not run from a git checkout, so the run has no commit")
    if "modified" in trees:
        notes.append("the checkout had uncommitted changes when it ran")
    s1 = configs["stage1"]
    teacher = s1["model"]["teacher"]
    teacher = teacher if isinstance(teacher, str) else json.dumps(teacher, sort_keys=True)
    teacher = (f"{teacher} ({'pretrained' if s1['pretrained_teacher'] else 'randomly initialised'}, frozen, "
               f"{s1['model']['num_prompt_token']} prompt tokens)")
    seeds = {configs[s]["run"]["seed"] for s in STAGES}
    data_seeds = {configs[s]["data"]["data_seed"] for s in STAGES}
    if len(seeds) > 1 or len(data_seeds) > 1:
        notes.append(f"the stages used seeds {sorted(seeds)} and data seeds {sorted(data_seeds)}")
    started = dt.datetime.fromisoformat(recorded["stage1"]["started"])
    finished = dt.datetime.fromisoformat(recorded["stage3"]["finished"])
    final = {
        "stage1": summaries["stage1"]["final (last epoch), Chamfer x1000"],
        "stage2": summaries["stage2"]["final (last epoch)"],
        "stage3": {k: v for k, v in summaries["stage3"]["final (last epoch)"].items() if isinstance(v, (int, float))},
    }
    prov = {
        "command": " ; ".join(commands), "commit": commits[-1],
        "worktree": "modified" if "modified" in trees else (None if None in trees else "clean"),
        "teacher": teacher, "seed": configs["stage3"]["run"]["seed"], "data_seed": configs["stage3"]["data"]["data_seed"],
        "wall_time_s": round((finished - started).total_seconds(), 1),
        "final_metrics": {stage: {k: round(float(v), 4) for k, v in m.items()} for stage, m in final.items()},
        "recorded": "from the run directory (each stage's summary.json and train_config.yaml) by "
                    "scripts/package_embedded.py; wall time from stage I's start to stage III's end",
    }
    if notes:
        prov["note"] = "; ".join(notes)
    return prov, configs["stage3"]


def _record(name: str, src_dir: Path, dest: Path, *, model_class: str, task: str, description: str, dataset: str,
            metrics: dict, note: str, provenance: dict, config_extra: dict | None = None) -> dict:
    spec = _read(src_dir / "config.json")
    if spec["model_class"] != model_class:
        raise SystemExit(f"{src_dir}: expected a {model_class}, found {spec['model_class']}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src_dir / "model.safetensors", dest)
    import act_zoo

    model = act_zoo.from_pretrained(src_dir)
    config = {**spec["config"], **(config_extra or {})}
    return dict(
        name=name, architecture=name.split(".")[0], model_class=model_class, description=description, task=task,
        dataset=dataset, config=config, convert="none",
        sources=[{"type": "package", "path": f"_weights/{dest.name}"}], format="safetensors",
        sha256=hashlib.sha256(dest.read_bytes()).hexdigest(), size_bytes=dest.stat().st_size,
        num_params=sum(p.numel() for p in model.parameters()), metrics=metrics,
        metrics_source="measured by act_zoo: examples/pretrain_pipeline.py, held-out procedural split", metrics_note=note,
        license="MIT", citation=CITATION, provenance=provenance)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="the --out directory of examples/pretrain_pipeline.py")
    ap.add_argument("--weights-dir", type=Path, default=ROOT / "act_zoo" / "_weights",
                    help="where the weight files go (default: the package's)")
    ap.add_argument("--manifest", type=Path, default=ROOT / "weights_manifest" / "embedded.json",
                    help="the manifest file to write (default: the repository's)")
    args = ap.parse_args(argv)
    from act_zoo.data import SHAPE_CLASSES
    from act_zoo.hub.manifest import validate_record

    provenance, cfg3 = run_provenance(args.run)
    data = cfg3["data"]
    if data["dataset"] != "synthetic":
        raise SystemExit(f"{args.run}: the embedded models are trained on procedural shapes, not {data['dataset']!r}")
    acc = provenance["final_metrics"]["stage3"]["acc"]
    classes = int(data["num_classes"])
    dataset = f"act_zoo SyntheticShapes (procedural, {classes} classes)"
    records = [
        _record("act_tiny.synthetic10", args.run / "stage3", args.weights_dir / "act_tiny_synthetic10.safetensors",
                model_class="ACTClassifier", task="classification", dataset=dataset,
                description="Small ACT classifier trained offline by act_zoo's full pipeline on procedural shapes "
                            "(stage-I teacher: all-MiniLM-L6-v2); a ready offline model for examples and tests",
                metrics={"overall_accuracy": round(acc, 2)},
                note=f"last epoch, no voting, on a held-out split of {data['test_samples']} procedural shapes; not "
                     "comparable to ACT's published figures",
                provenance=provenance, config_extra={"class_names": list(SHAPE_CLASSES[:classes])}),
        _record("act_tiny.pretrain", args.run / "stage2" / "encoder", args.weights_dir / "act_tiny_pretrain.safetensors",
                model_class="ACTEncoder", task="feature-extraction", dataset=dataset,
                description="The stage-II student encoder of the same run (before fine-tuning)", metrics={},
                note="self-supervised encoder; no metric of its own", provenance=provenance),
    ]
    for r in records:
        validate_record(r, where=str(args.manifest))
    args.manifest.parent.mkdir(parents=True, exist_ok=True)
    args.manifest.write_text(json.dumps({"schema_version": 1, "description": "Small models trained by act_zoo, shipped "
                                                                            "in the wheel so everything works offline.",
                                         "weights": records}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.manifest} and {len(records)} weight files to {args.weights_dir} (accuracy {acc:.2f} %, "
          f"commit {provenance['commit']}, {provenance['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
