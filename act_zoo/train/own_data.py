"""Fine-tune on your own files in one call: ``act-zoo train finetune --data DIR --init NAME``.

:func:`plan_finetune` does everything that can fail before a training step: it resolves the
init model (its architecture is inherited: width, depth, heads, patches, points), reads and
checks every file, holds out the validation split, sizes the head from the data (one output
per class, the class names stored with the model) and picks small-data defaults from the
training-set size; :meth:`FinetunePlan.describe` says all of it. :func:`run_plan` trains the
planned run through the ordinary fine-tuning pipeline; :func:`finetune` is both.

Small-data defaults (each one overridable with ``--set``, and reported as set when it is):

* batch: the largest power of two <= a quarter of the training files, within 8..32;
* epochs: about 1000 optimizer steps, within 20..300 (``--epochs E`` runs exactly E);
* lr: the official 5e-4 at batch 32, scaled linearly with the batch;
* warm-up: the official 10 of 300 epochs, in proportion (at least 1);
* nothing frozen (``model.transfer_type: full``, official); official augmentation and voting.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from .config import (
    RECIPE_PREFIX,
    FinetuneConfig,
    _deep_merge,
    dump_config,
    from_dict,
    parse_overrides,
    read_config_file,
)
from .tasks.common import ENCODER_FIELDS, WEIGHT_ARCH_FIELDS, init_encoder
from .tasks.files import DEFAULT_VAL_SPLIT, FileSplits, build_file_splits

logger = logging.getLogger(__name__)

TARGET_STEPS = 1000
EPOCH_RANGE = (20, 300)
BATCH_RANGE = (8, 32)
OFFICIAL_LR, OFFICIAL_BATCH = 5e-4, 32
FROZEN = {
    "full": "nothing frozen (transfer_type full: encoder and head train)",
    "linear": "encoder frozen; a linear head, cls_token and cls_pos train (transfer_type linear)",
    "mlp-3": "encoder frozen; the mlp-3 head, cls_token and cls_pos train (transfer_type mlp-3)",
    "bit-fit": "encoder weights frozen; biases, head and cls tokens train (transfer_type bit-fit)",
    "side": "encoder frozen; the side branch, head and cls tokens train (transfer_type side)",
}
_CLASS_TYPES = ("ACTEncoder", "ACTClassifier", "ACTDistillation")


@dataclass
class FinetunePlan:
    """A checked fine-tuning run, ready to train: the full config, the data splits, the loaded
    init model, what was chosen and why (``settings``) and what deserves a warning (``notes``)."""

    config: FinetuneConfig
    splits: FileSplits
    init: str | None
    init_model: nn.Module | None
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """The plan as printed at the start of a run."""
        cfg, s, sp = self.config, self.settings, self.splits
        m = cfg.model
        mark = {k: " (set)" if k in s["user_set"] else "" for k in ("epochs", "batch", "lr", "warmup")}
        arch = (f"embed_dim {m.embed_dim}, depth {m.depth}, heads {m.num_heads}, {m.num_group} groups x "
                f"{m.group_size} points, {cfg.npoints} points per cloud")
        lines = [
            f"fine-tuning {self.init or 'from scratch (no pretrained weights)'} -> {cfg.run.out_dir}",
            f"  model: {arch}" + (" (inherited from the init model)" if self.init else ""),
            f"  data: {sp.root}: {len(sp.classes)} classes ({', '.join(sp.classes)})",
            f"  split: {sp.split_text()}",
            f"  head: {s['head']}",
            (f"  epochs {s['epochs']}{mark['epochs']}, batch {cfg.run.batch_size}{mark['batch']}, "
             f"lr {cfg.optim.lr:.3g}{mark['lr']} ({cfg.optim.name}, weight decay {cfg.optim.weight_decay:g}), "
             f"warm-up {cfg.scheduler.warmup_epochs} epochs{mark['warmup']}, {cfg.scheduler.name} schedule"),
            f"  frozen: {FROZEN.get(m.transfer_type, m.transfer_type)}",
            (f"  evaluation: every {cfg.run.val_every} epoch(s) on the {sp.eval_name} split; final report with and "
             f"without {cfg.vote}-vote averaging"),
            "  change any value with --set KEY=VALUE (e.g. --set optim.lr=1e-4); --print-config shows them all",
        ]
        if sp.skipped:
            lines.insert(4, f"  skipped {len(sp.skipped)} unreadable files (--skip-bad): "
                            + ", ".join(Path(p).name for p, _ in sp.skipped[:5])
                            + (" ..." if len(sp.skipped) > 5 else ""))
        return "\n".join(lines + [f"  ! {n}" for n in self.notes])


def init_choices() -> list[str]:
    """Registered models with weights that can start a fine-tuning run (encoders, classifiers,
    stage-II models), offline-embedded ones first."""
    from ..hub.registry import _all_records

    recs = [r for r in _all_records().values() if r.has_weights and r.model_class in _CLASS_TYPES]
    return [r.name for r in sorted(recs, key=lambda r: (r.sources[0].get("type") != "package", r.name))]


def _no_init_error() -> ValueError:
    names = init_choices()
    return ValueError(
        "--init is required: the pretrained model to start from. Choose a registered model ("
        + ", ".join(names) + "; act_tiny.* are embedded and work offline), a run directory, "
        "hf-hub:org/repo, a .safetensors or official .pth file, or 'none' to train from scratch"
    )


def small_data_defaults(n_train: int, *, batch_size: int | None = None, epochs: int | None = None) -> dict[str, Any]:
    """Batch, epochs, lr and warm-up for ``n_train`` training files (see the module docstring);
    a given ``batch_size`` / ``epochs`` is kept and the rest follows from it."""
    if batch_size is None:
        quarter = max(1, n_train // 4)
        batch_size = min(BATCH_RANGE[1], max(BATCH_RANGE[0], 1 << (quarter.bit_length() - 1)))
    batch_size = max(1, min(batch_size, n_train))
    steps = max(1, n_train // batch_size)
    if epochs is None:
        epochs = min(EPOCH_RANGE[1], max(EPOCH_RANGE[0], math.ceil(TARGET_STEPS / steps)))
    warmup = max(1, math.ceil(epochs * 10 / 300)) if epochs > 1 else 0
    return {"batch": batch_size, "epochs": epochs, "lr": OFFICIAL_LR * batch_size / OFFICIAL_BATCH,
            "warmup": warmup, "steps_per_epoch": steps}


def _get(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _is_set(tree: Mapping[str, Any], dotted: str) -> bool:
    *head, last = dotted.split(".")
    node = _get(tree, ".".join(head)) if head else tree
    return isinstance(node, Mapping) and last in node


def _user_values(overrides: Sequence[str] | Mapping[str, Any], config: str | Path | None) -> dict[str, Any]:
    base: dict[str, Any] = {}
    if config is not None and str(config).startswith(RECIPE_PREFIX):
        raise ValueError(f"--config {config}: a recipe is an official run on an official dataset (its own data and "
                         "architecture); with --data DIR the architecture comes from --init, so give changes with "
                         "--set KEY=VALUE or a YAML file of overrides")
    if config is not None:
        base = read_config_file(config)
    if isinstance(overrides, Mapping):
        over = dict(overrides)
    else:
        if isinstance(overrides, str):
            raise TypeError("overrides must be a list of 'key=value' strings or a mapping, not one string")
        over = parse_overrides(list(overrides))
    return _deep_merge(base, over)


def plan_finetune(
    data: str | Path,
    init: str | Path | nn.Module | None,
    out: str | Path,
    *,
    epochs: int | None = None,
    val_split: float = DEFAULT_VAL_SPLIT,
    test_data: str | Path | None = None,
    skip_bad: bool = False,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    config: str | Path | None = None,
    progress: bool = True,
) -> FinetunePlan:
    """Resolve and check a fine-tuning run on your own files; nothing is trained.

    Args: as :func:`finetune`.

    Raises:
        ValueError: no ``init``; an init that is not an ACT encoder; an architecture override
            that contradicts the init weights; data with fewer than 2 classes, an empty class,
            a class with too few files for the split, unreadable files (all listed, unless
            ``skip_bad``), train/test overlap; a ``model.cls_dim`` that is not the number of
            classes; conflicting arguments and overrides.
    """
    if init is None or (isinstance(init, str) and not init.strip()):
        raise _no_init_error()
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    user = _user_values(overrides, config)
    for key, flag in (("run.out_dir", "out"), ("data.root", "data"), ("data.test_root", "test_data"),
                      ("data.val_split", "val_split"), ("data.skip_bad", "skip_bad"), ("data.dataset", "data")):
        if _is_set(user, key):
            raise ValueError(f"{key} is given by the {flag} argument (--{flag.replace('_', '-')}); remove it from the overrides")
    if epochs is not None and _is_set(user, "run.max_epoch"):
        raise ValueError("give either --epochs E (E epochs) or --set run.max_epoch=M (official meaning: M + 1 "
                         "epochs), not both")
    notes: list[str] = []

    # -- the init model: its architecture is the run's --------------------------------------------
    init_name: str | None
    init_model: nn.Module | None
    if isinstance(init, nn.Module):
        init_name, init_model = type(init).__name__, init
    elif str(init).strip().lower() == "none":
        init_name, init_model = None, None
    else:
        from ..hub.registry import from_pretrained

        init_name = str(init)
        init_model = from_pretrained(init_name)
    user_model = dict(_get(user, "model") or {})
    arch: dict[str, Any] = {}
    if init_model is not None:
        encoder = init_encoder(init_model)
        arch = {f: getattr(encoder.config, f) for f in ENCODER_FIELDS}
        clash = {f: (user_model[f], arch[f]) for f in WEIGHT_ARCH_FIELDS if f in user_model and user_model[f] != arch[f]}
        if clash:
            listed = ", ".join(f"model.{f}={a} (init: {b})" for f, (a, b) in clash.items())
            raise ValueError(f"{listed}: the architecture comes from the init model {init_name}; remove these "
                             "overrides, or use --init none to train another architecture from scratch")
        if isinstance(init_model, nn.Module) and type(init_model).__name__ == "ACTClassifier" \
                and "transfer_type" not in user_model:
            arch["transfer_type"] = init_model.config.transfer_type
    else:
        notes.append("training FROM SCRATCH (--init none): no pretrained weights. Expect far lower accuracy than "
                     "fine-tuning on small data; the architecture is the default ACT-Base unless set with "
                     "--set model.embed_dim=... etc.")
    npoints = user.get("npoints", arch.get("npoints", FinetuneConfig().npoints))

    # -- the data: read, checked, split ------------------------------------------------------------
    data_path = Path(data).expanduser()
    kind = "folder" if data_path.is_dir() else "list"
    data_cfg = {**dict(_get(user, "data") or {}), "dataset": kind, "root": str(data_path),
                "test_root": None if test_data is None else str(Path(test_data).expanduser()),
                "val_split": float(val_split), "skip_bad": bool(skip_bad)}
    probe = from_dict(FinetuneConfig, {"data": data_cfg, "npoints": npoints, "run": dict(_get(user, "run") or {})})
    splits = build_file_splits(probe.data, npoints=probe.npoints, seed=probe.run.seed, progress=progress)
    classes = splits.classes
    if "cls_dim" in user_model and user_model["cls_dim"] != len(classes):
        raise ValueError(f"model.cls_dim={user_model['cls_dim']} but the data have {len(classes)} classes "
                         f"({', '.join(classes)}); the head is sized from the data: remove --set model.cls_dim")
    if "class_names" in user_model and list(user_model["class_names"]) != classes:
        raise ValueError(f"model.class_names {user_model['class_names']} are not the data's classes {classes}")

    # -- defaults for this much data, then the user's values on top ------------------------------
    n_train = len(splits.train)
    user_batch = _get(user, "run.batch_size")
    if user_batch is not None and int(user_batch) > n_train:
        raise ValueError(f"run.batch_size={user_batch} is larger than the {n_train} training files")
    user_max_epoch = _get(user, "run.max_epoch")
    d = small_data_defaults(n_train, batch_size=None if user_batch is None else int(user_batch),
                            epochs=epochs if epochs is not None else
                            (None if user_max_epoch is None else int(user_max_epoch) + 1))
    n_epochs = d["epochs"]
    ours: dict[str, Any] = {
        "init": init_name,
        "npoints": npoints,
        "model": {**arch, "cls_dim": len(classes), "class_names": list(classes)},
        "data": data_cfg,
        "run": {"out_dir": str(out), "batch_size": d["batch"], "max_epoch": n_epochs - 1, "progress": bool(progress),
                "val_every": 1},
        "optim": {"lr": d["lr"]},
        "scheduler": {"warmup_epochs": d["warmup"]},
    }
    merged = _deep_merge(ours, user)
    cfg: FinetuneConfig = from_dict(FinetuneConfig, merged)
    user_set = {k for k, key in (("batch", "run.batch_size"), ("lr", "optim.lr"), ("warmup", "scheduler.warmup_epochs"),
                                 ("epochs", "run.max_epoch")) if _is_set(user, key)}
    if epochs is not None:
        user_set.add("epochs")
    run_epochs = cfg.run.max_epoch + 1
    if cfg.scheduler.warmup_epochs >= run_epochs and cfg.scheduler.name == "cosine":
        notes.append(f"the warm-up ({cfg.scheduler.warmup_epochs} epochs) is not shorter than the run "
                     f"({run_epochs} epochs): the learning rate never reaches {cfg.optim.lr:.3g}")

    # -- the head -----------------------------------------------------------------------------------
    from .tasks.finetune import resolve_keep_head

    keep = False
    if init_model is not None:
        keep, head_note = resolve_keep_head(cfg.keep_head, init_encoder(init_model),
                                            dataclasses.replace(cfg.model, npoints=cfg.npoints), init_name or "init")
        if head_note:
            notes.append(head_note)
        cfg = dataclasses.replace(cfg, keep_head=keep)
    head = (f"the init classifier's {len(classes)}-way head, kept (same classes)" if keep else
            f"new {len(classes)}-way head (cls_dim {len(classes)}), class names stored with the model")
    settings = {
        "epochs": run_epochs, "batch": cfg.run.batch_size, "lr": cfg.optim.lr,
        "warmup": cfg.scheduler.warmup_epochs, "frozen": FROZEN.get(cfg.model.transfer_type, cfg.model.transfer_type),
        "head": head, "steps_per_epoch": n_train // cfg.run.batch_size, "user_set": sorted(user_set),
        "defaults_rule": f"small-data defaults for {n_train} training files (see act_zoo.train.own_data)",
    }
    return FinetunePlan(config=cfg, splits=splits, init=init_name, init_model=init_model, settings=settings,
                        notes=notes)


def run_plan(plan: FinetunePlan, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train a planned run; returns the summary (also ``RUN/summary.json``). ``resume`` /
    ``overwrite`` are the trainer's run-directory options (passed on only when set)."""
    from .api import train

    run_dir = {"overwrite": True} if overwrite else {}
    return train("finetune", plan.config, resume=resume, init_model=plan.init_model, file_splits=plan.splits,
                 run_info={"settings": plan.settings, "notes": plan.notes}, **run_dir)


def finetune(
    data: str | Path,
    init: str | Path | nn.Module | None,
    out: str | Path,
    *,
    epochs: int | None = None,
    val_split: float = DEFAULT_VAL_SPLIT,
    test_data: str | Path | None = None,
    skip_bad: bool = False,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    config: str | Path | None = None,
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fine-tune an ACT classifier on your own files; returns the run summary.

    Args:
        data: a class-per-folder tree (``DIR/<class>/<files>``, any supported format) or a
            ``.csv`` / ``.json`` list of ``(path, label)``.
        init: the pretrained model to start from (registry name such as ``act_tiny.pretrain``,
            run directory, ``hf-hub:org/repo``, file, or a loaded model); ``"none"`` trains from
            scratch (said loudly). Its architecture is the run's.
        out: the run directory; ``act_zoo.from_pretrained(out)`` loads the result, with
            ``model.class_names``.
        epochs: exactly this many epochs (default: scaled to the data, printed).
        val_split: share of each class held out from ``data`` as the validation split (seeded
            by ``data.data_seed``, stratified, file-level); 0 needs ``test_data``.
        test_data: a separate test set (same classes, by name); a file also in ``data`` is an error.
        skip_bad: train without unreadable files instead of stopping (they are reported).
        overrides: ``["optim.lr=1e-4", ...]`` or a nested mapping, on top of the defaults.
        config: a YAML file of overrides (below ``overrides``).
        progress: progress bars (tqdm; silent when not a terminal).
        resume: continue the run in ``out`` from its last checkpoint.
        overwrite: replace a previous run in ``out`` (the trainer's run-directory option).

    The plan (defaults, split, head) is logged at INFO; training from scratch and the fate of
    an init classifier's head are logged as warnings. :func:`plan_finetune` returns the plan
    without training.
    """
    from .rundir import check_run_directory

    check_run_directory(out, resume=resume, overwrite=overwrite)  # before the data is read
    plan = plan_finetune(data, init, out, epochs=epochs, val_split=val_split, test_data=test_data, skip_bad=skip_bad,
                         overrides=overrides, config=config, progress=progress)
    for note in plan.notes:
        logger.warning(note)
    logger.info("%s", plan.describe())
    logger.debug("resolved config:\n%s", dump_config(plan.config))
    return run_plan(plan, resume=resume, overwrite=overwrite)


__all__ = ["FinetunePlan", "finetune", "init_choices", "plan_finetune", "run_plan", "small_data_defaults"]
