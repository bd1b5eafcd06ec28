"""Official ACT checkpoints and configs -> act_zoo models.

``from_official(checkpoint, model_config)`` reads a checkpoint in any layout the official
code writes or reads, builds the model named by ``model_config["NAME"]`` and loads it
strictly: every key is either loaded, or explained by an explicit rule (a fresh head, a
pretraining-only module that fine-tuning drops), or reported as an error.

Layouts handled:

* a path to an official ``.pth`` (read with ``torch.load(weights_only=True)``; no pickle
  code ever runs) or a ``.safetensors`` file, or an in-memory state dict;
* wrappers ``{'base_model': ...}`` (``save_checkpoint``), ``{'model': ...}`` (resume),
  ``{'model_state_dict': ...}`` (part segmentation), ``{'state_dict': ...}``;
* the ``module.`` prefix of single-process (DataParallel) runs, removed everywhere like
  every official loader does (``k.replace('module.', '')``);
* stage-II checkpoints (``ACT_encoder.`` / ``base_model.`` prefixes) loaded into a
  fine-tuning model, exactly as the official ``load_model_from_ckpt``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.point_transformer import ACTClassifier, ClassifierConfig
from .untrusted import EXTRA_ELEMENTS, bounded_meta_build, check_config_types, check_depths, numel

logger = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]

_WRAPPER_KEYS = ("model", "base_model", "model_state_dict", "state_dict")


class CheckpointMismatchError(ValueError):
    """Keys of a checkpoint that no rule explains, or tensors of the wrong shape."""

    def __init__(self, report: "LoadReport") -> None:
        self.report = report
        super().__init__(f"checkpoint does not match {report.model_name}:\n{report.format()}")


@dataclass
class LoadReport:
    """What happened to every key of a checkpoint."""

    model_name: str
    source: str
    layout: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys the checkpoint lacks, unexplained
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys the model lacks, unexplained
    initialized: dict[str, str] = field(default_factory=dict)  # missing on purpose: key -> reason
    dropped: dict[str, str] = field(default_factory=dict)  # unexpected on purpose: key -> reason
    shape_mismatch: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    dtype_mismatch: dict[str, tuple[str, str]] = field(default_factory=dict)  # kinds differ: (model, ckpt)
    cast: dict[str, str] = field(default_factory=dict)  # loaded with a float<->float cast: "float64 -> float32"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch or self.dtype_mismatch)

    def format(self, max_keys: int = 12) -> str:
        def block(title: str, keys: list[str] | Mapping[str, Any], why: bool = False) -> list[str]:
            items = list(keys.items()) if isinstance(keys, Mapping) else [(k, "") for k in keys]
            if not items:
                return []
            out = [f"  {title} ({len(items)}):"]
            for k, v in _summarise(items, max_keys):
                out.append(f"    {k}" + (f"  -- {v}" if why and v else ""))
            return out

        lines = [f"source: {self.source}", f"layout: {'; '.join(self.layout) or 'plain state dict'}",
                 f"loaded: {len(self.loaded)} keys"]
        lines += block("UNEXPLAINED missing keys", self.missing)
        lines += block("UNEXPLAINED unexpected keys", self.unexpected)
        lines += block(
            "shape mismatches (model vs checkpoint)",
            {k: f"{list(a)} vs {list(b)}" for k, (a, b) in self.shape_mismatch.items()},
            why=True,
        )
        lines += block(
            "dtype mismatches (never loaded: an integer or bool tensor is not a float weight)",
            {k: f"dtype {a} in the model, {b} in the checkpoint" for k, (a, b) in self.dtype_mismatch.items()},
            why=True,
        )
        lines += block("cast (float <-> float)", self.cast, why=True)
        lines += block("newly initialised", self.initialized, why=True)
        lines += block("dropped", self.dropped, why=True)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _summarise(items: list[tuple[str, str]], max_keys: int) -> list[tuple[str, str]]:
    """Collapse long key lists by prefix so reports stay readable."""
    if len(items) <= max_keys:
        return items
    groups: dict[tuple[str, str], int] = {}
    for k, v in items:
        key = (k.split(".")[0] + (".*" if "." in k else ""), v)
        groups[key] = groups.get(key, 0) + 1
    return [(f"{p} [{n} keys]" if n > 1 else p, v) for (p, v), n in groups.items()]


# ----------------------------------------------------------------------------------------------
# reading checkpoints
# ----------------------------------------------------------------------------------------------
def read_checkpoint(checkpoint: str | os.PathLike | Mapping[str, Any]) -> tuple[StateDict, list[str], str]:
    """Return ``(state_dict, layout notes, source description)`` of an official checkpoint.

    Paths are read safely: ``.safetensors`` with safetensors, anything else with
    ``torch.load(weights_only=True)``. Corrupt or foreign files raise ``ValueError`` naming
    the file."""
    layout: list[str] = []
    if isinstance(checkpoint, (str, os.PathLike)):
        path = Path(checkpoint)
        source = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        obj = _load_file(path)
    elif isinstance(checkpoint, Mapping):
        source, obj = "<state dict>", checkpoint
    else:
        raise TypeError(f"checkpoint must be a path or a mapping, got {type(checkpoint).__name__}")

    for key in _WRAPPER_KEYS:  # 'model' first: the official resume/test loader prefers it
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            layout.append(f"checkpoint[{key!r}]")
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{source}: no state dict found (expected a mapping of tensors)")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{source}: not a state dict, non-tensor entries {bad[:5]}")
    sd, stripped = strip_module_prefix(obj, source=source)
    if stripped:
        layout.append(f"'module.' prefix removed from {stripped} keys")
    return sd, layout, source


def strip_module_prefix(state: Mapping[str, torch.Tensor], *, source: str) -> tuple[StateDict, int]:
    """Remove ``module.`` everywhere in the keys, like every official loader
    (``k.replace('module.', '')``); two keys that become one raise ``ValueError``.
    Returns the new dict and how many keys changed. The one prefix-stripping helper of act_zoo."""
    sd: StateDict = {}
    stripped = 0
    for k, v in state.items():
        nk = k.replace("module.", "")
        stripped += nk != k
        if nk in sd:
            raise ValueError(f"{source}: key {nk!r} appears both with and without the 'module.' prefix")
        sd[nk] = v
    return sd, stripped


def _load_file(path: Path) -> Any:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt / unsafe pickles
        raise ValueError(
            f"{path}: cannot read as a PyTorch checkpoint with weights_only=True ({type(exc).__name__}: {exc})"
        ) from exc


# ----------------------------------------------------------------------------------------------
# loading with rules
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyRule:
    """A regular expression over keys and the reason a key matching it is allowed to differ."""

    pattern: str
    reason: str

    def match(self, key: str) -> bool:
        return re.fullmatch(self.pattern, key) is not None


def _explain(key: str, rules: tuple[KeyRule, ...]) -> str | None:
    for rule in rules:
        if rule.match(key):
            return rule.reason
    return None


def load_with_rules(
    model: nn.Module,
    state_dict: StateDict,
    *,
    report: LoadReport,
    may_be_missing: tuple[KeyRule, ...] = (),
    may_be_unexpected: tuple[KeyRule, ...] = (),
    strict: bool = True,
) -> LoadReport:
    """Copy ``state_dict`` into ``model``; fill ``report``; raise unless every difference is
    explained (or ``strict=False``). Shape mismatches always raise."""
    own = model.state_dict()
    for k, v in state_dict.items():
        if k in own:
            if tuple(own[k].shape) != tuple(v.shape):
                report.shape_mismatch[k] = (tuple(own[k].shape), tuple(v.shape))
            elif not _castable(v, own[k].dtype):
                report.dtype_mismatch[k] = (_dtype_name(own[k].dtype), _dtype_name(v.dtype))
            else:
                if own[k].dtype != v.dtype:
                    report.cast[k] = f"{_dtype_name(v.dtype)} -> {_dtype_name(own[k].dtype)}"
                report.loaded.append(k)
        else:
            reason = _explain(k, may_be_unexpected)
            if reason is None:
                report.unexpected.append(k)
            else:
                report.dropped[k] = reason
    for k in own:
        if k not in state_dict:
            reason = _explain(k, may_be_missing)
            if reason is None:
                report.missing.append(k)
            else:
                report.initialized[k] = reason
    if report.shape_mismatch or report.dtype_mismatch or (strict and not report.ok):
        raise CheckpointMismatchError(report)
    if any(t.is_meta for t in own.values()):
        return report  # a dry run on the meta device: keys, shapes and dtypes checked, nothing to copy
    with torch.no_grad():
        for k in report.loaded:
            own[k].copy_(state_dict[k])
    if not report.ok:
        logger.warning("loaded with strict=False; differences:\n%s", report.format())
    return report


def _castable(value: torch.Tensor, target: torch.dtype) -> bool:
    """May ``value`` be loaded into a tensor of dtype ``target``? Float <-> float always; an
    integer or bool tensor never into a float (or complex) weight; a float into an integer
    buffer (``num_batches_tracked`` of a checkpoint cast with ``.float()``) only when exact."""
    have, want = _dtype_kind(value.dtype), _dtype_kind(target)
    if have == want or (have, want) in (("bool", "integer"), ("integer", "bool"), ("float", "complex")):
        return True
    if have == "float" and want in ("integer", "bool"):
        if value.is_meta:  # a shape-only checkpoint: no values to check
            return True
        return bool(torch.isfinite(value).all()) and bool((value == value.round()).all())
    return False


def _dtype_kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "float" if dtype.is_floating_point else "integer"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


# ----------------------------------------------------------------------------------------------
# official configs -> act_zoo configs, one builder per official NAME
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OfficialBuilder:
    build: Callable[[Mapping[str, Any]], nn.Module]
    load: Callable[[nn.Module, StateDict, LoadReport, bool], None]
    fresh: Callable[[nn.Module, LoadReport], None] | None = None


_BUILDERS: dict[str, OfficialBuilder] = {}


def register_official(name: str, *, build: Callable, load: Callable, fresh: Callable | None = None) -> None:
    """Register how an official ``NAME`` is built and loaded (used by each model family).
    ``fresh(model, report)`` runs when no checkpoint is given (e.g. to load a teacher)."""
    if name in _BUILDERS:
        raise ValueError(f"official model {name!r} is already registered")
    _BUILDERS[name] = OfficialBuilder(build, load, fresh)


def official_names() -> list[str]:
    return sorted(_BUILDERS)


def split_official_config(config: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """Accept the ``model:`` section, a whole official yaml dict, or a path to a yaml file.
    A top-level ``npoints`` is carried into the model section."""
    if isinstance(config, (str, os.PathLike)):
        import yaml

        with open(config, encoding="utf-8") as fh:
            config = yaml.safe_load(fh)
    if not isinstance(config, Mapping):
        raise TypeError(f"model_config must be a mapping or a yaml path, got {type(config).__name__}")
    if "NAME" not in config and isinstance(config.get("model"), Mapping):
        section = dict(config["model"])
        if "npoints" in config and "npoints" not in section:
            section["npoints"] = config["npoints"]
        return section
    if "NAME" not in config:
        raise ValueError("model_config has no NAME (pass the 'model:' section of an official yaml)")
    if not isinstance(config["NAME"], str):
        raise ValueError(f"model_config NAME must be a string, got {config['NAME']!r}")  # noqa: TRY004
    return dict(config)


def config_from_official(cls: type, section: Mapping[str, Any], *, renames: Mapping[str, str] = {},
                         ignore: tuple[str, ...] = ("NAME",), defaults: Mapping[str, Any] = {}) -> Any:
    """Build the dataclass ``cls`` from official keys; unknown keys raise ``ValueError``."""
    names = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = dict(defaults)
    unknown = []
    for k, v in section.items():
        if k in ignore:
            continue
        k2 = renames.get(k, k)
        if k2 not in names:
            unknown.append(k)
        else:
            kwargs[k2] = v
    where = f"official config {section.get('NAME', cls.__name__)}"
    if unknown:
        raise ValueError(f"{where}: unknown config keys {sorted(unknown)}")
    check_config_types(cls, kwargs, where=where)
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def from_official(
    checkpoint: str | os.PathLike | Mapping[str, Any] | None,
    model_config: Mapping[str, Any] | str | os.PathLike,
    *,
    strict: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    return_report: bool = False,
    source: str | None = None,
) -> nn.Module | tuple[nn.Module, LoadReport]:
    """Build the model an official config names and load an official checkpoint into it.

    Args:
        checkpoint: path to an official ``.pth``/``.safetensors`` or a state dict, in any
            official layout (see module docstring); ``None`` builds with fresh weights.
        model_config: the ``model:`` section of an official yaml as a dict (official key
            names: ``NAME``, ``embed_dim``, ``depth``, ...), a whole yaml dict, or a yaml path.
        strict: raise :class:`CheckpointMismatchError` on any key no rule explains.
        source: how to name an in-memory checkpoint in messages (default ``<state dict>``).

    With a checkpoint, the model is first built on the ``meta`` device, bounded by the number of
    elements the checkpoint holds (:func:`~act_zoo.hub.untrusted.bounded_meta_build`), and the
    checkpoint is checked against it (keys, shapes, dtypes); only then is it built for real.

    Returns:
        The model in eval mode (its :class:`LoadReport` is ``model.load_report``), or
        ``(model, report)`` with ``return_report=True``.
    """
    section = split_official_config(model_config)
    name = section["NAME"]
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"unknown official model NAME {name!r}; known: {', '.join(official_names())}")
    report = LoadReport(model_name=name, source="<fresh weights>")
    if checkpoint is not None:
        sd, layout, where = read_checkpoint(checkpoint)
        where = source or where
        meta = _bounded_build(builder, section, sd, where)
        builder.load(meta, dict(sd), LoadReport(model_name=name, source=where, layout=list(layout)), strict)
        del meta
        model = builder.build(section)
        report.source, report.layout = where, layout
        builder.load(model, sd, report, strict)
        logger.info("loaded %s from %s (%d keys)", name, where, len(report.loaded))
    else:
        model = builder.build(section)
        if builder.fresh is not None:
            builder.fresh(model, report)
    model.load_report = report  # type: ignore[attr-defined]
    model.eval()
    if device is not None or dtype is not None:
        model.to(device=device, dtype=dtype)
    return (model, report) if return_report else model


def _referenced_files(section: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``(key, path)`` of the files an official config points to (``dvae_config.ckpt``: a teacher
    loaded beside the checkpoint, so the model may hold that much more than the checkpoint)."""
    out = []
    for key, value in section.items():
        if isinstance(value, Mapping):
            out += _referenced_files(value, f"{prefix}{key}.")
        elif key == "ckpt" and isinstance(value, str) and value:
            out.append((f"{prefix}{key}", value))
    return out


def _bounded_build(builder: OfficialBuilder, section: Mapping[str, Any], sd: StateDict, where: str) -> nn.Module:
    """The meta-device build of ``section``, bounded by ``sd`` plus the files the config names."""
    check_depths(section, tensors=len(sd), where=where)
    files = _referenced_files(section)
    extra = EXTRA_ELEMENTS + sum(os.path.getsize(p) // 2 for _, p in files if os.path.isfile(p))
    try:
        return bounded_meta_build(lambda: builder.build(section), holds=numel(sd), tensors=len(sd), extra=extra,
                                  where=where)
    except ValueError as exc:
        missing = [f"{key} {p!r}" for key, p in files if not os.path.isfile(p)]
        if missing:  # the weights beyond the checkpoint were to come from a file that is not there
            raise FileNotFoundError(f"{exc}; the config's {', '.join(missing)} does not exist") from None
        raise


# ----------------------------------------------------------------------------------------------
# PointTransformer (fine-tuning classifier)
# ----------------------------------------------------------------------------------------------
PRETRAIN_PREFIXES = ("ACT_encoder.", "base_model.")

# Keys of a stage-II checkpoint that fine-tuning drops (official load_model_from_ckpt, strict=False).
PRETRAIN_ONLY = (
    KeyRule(r"ACT_decoder\..*", "stage-II decoder, not used for fine-tuning"),
    KeyRule(r"decoder_pos_embed\..*", "stage-II decoder position embedding"),
    KeyRule(r"mask_token", "stage-II mask token"),
    KeyRule(r"proj_head\..*", "stage-II projection to the teacher width"),
    KeyRule(r"dvae_tokenizer\..*", "frozen stage-I teacher"),
    KeyRule(r"lm_head\..*", "unused stage-II token head"),
    KeyRule(r"cls_head\..*", "stage-II contrast head (noaug path)"),
)


def strip_pretrain_prefix(sd: StateDict, report: LoadReport) -> tuple[StateDict, bool]:
    """Official ``load_model_from_ckpt``: strip a leading ``ACT_encoder.`` or ``base_model.``;
    two keys that become one raise ``ValueError``."""
    out: StateDict = {}
    renamed = 0
    for k, v in sd.items():
        for p in PRETRAIN_PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
                renamed += 1
                break
        if k in out:
            raise ValueError(f"{report.source}: key {k!r} appears both with and without a stage-II prefix "
                             f"{PRETRAIN_PREFIXES}")
        out[k] = v
    if renamed:
        report.layout.append(f"stage-II checkpoint: 'ACT_encoder.'/'base_model.' stripped from {renamed} keys")
    return out, bool(renamed)


def _build_point_transformer(section: Mapping[str, Any]) -> ACTClassifier:
    section = dict(section)
    defaults = {"encoder_dims": section.get("embed_dim", 384)}
    if "npoints" not in section:  # the official pairs: 64 groups <-> 1024 points, 128 <-> 2048
        defaults["npoints"] = 16 * int(section.get("num_group", 64))
    cfg = config_from_official(ClassifierConfig, section, defaults=defaults)
    return ACTClassifier(cfg)


def _load_point_transformer(model: nn.Module, sd: StateDict, report: LoadReport, strict: bool) -> None:
    sd, from_pretrain = strip_pretrain_prefix(sd, report)
    if from_pretrain:
        fresh = (
            KeyRule(r"cls_head_finetune\..*", "fine-tuning head, freshly initialised"),
            KeyRule(r"side(_alpha|_projection\..*|\..*)", "side-tuning branch, freshly initialised"),
        )
        load_with_rules(model, sd, report=report, may_be_missing=fresh, may_be_unexpected=PRETRAIN_ONLY,
                        strict=strict)
        assert isinstance(model, ACTClassifier)
        model.reset_head()  # the official head keeps PyTorch's default init after this load
    else:
        load_with_rules(model, sd, report=report, strict=strict)


register_official("PointTransformer", build=_build_point_transformer, load=_load_point_transformer)


def infer_official_config(sd: Mapping[str, torch.Tensor], *, source: str = "<state dict>") -> dict[str, Any]:
    """Guess the official ``model:`` section of an (unwrapped, ``module.``-free) checkpoint.

    Widths, depths, head type and codebook come from tensor shapes; what shapes cannot
    tell is filled with the official values: 64-d attention heads, 32-point groups, and
    128 groups / 2048 points for 15 classes (ScanObjectNN) else 64 groups / 1024 points.
    Pass an explicit config when a checkpoint departs from these.

    Every inferred value is bounded by what the checkpoint holds: a depth is the number of
    blocks present, numbered 0..depth-1 (one stray ``blocks.blocks.1000000.*`` key is an error,
    not a million-block model). A checkpoint that lacks a tensor the inference needs raises
    ``ValueError`` naming ``source`` and the key."""
    try:
        return _infer_official_config(sd, source)
    except KeyError as exc:
        raise ValueError(f"{source}: incomplete ACT checkpoint: tensor {exc.args[0]!r} is missing, so its "
                         "config cannot be inferred (pass the official config explicitly)") from None
    except (IndexError, AttributeError, TypeError) as exc:
        raise ValueError(f"{source}: cannot infer the config from this checkpoint ({exc}); pass the "
                         "official config explicitly") from None


def _infer_official_config(sd: Mapping[str, torch.Tensor], source: str) -> dict[str, Any]:
    def depth(prefix: str) -> int:
        idx = sorted({int(k[len(prefix):].split(".")[0]) for k in sd
                      if k.startswith(prefix) and k[len(prefix):].split(".")[0].isdigit()})
        if idx and idx != list(range(len(idx))):
            stray = next(i for n, i in enumerate(idx) if i != n)
            raise ValueError(f"{source}: the checkpoint holds {len(idx)} blocks under {prefix!r} but they are "
                             f"numbered up to {idx[-1]} (e.g. {prefix}{stray}.*): not a contiguous stack of "
                             "blocks, so no depth can be inferred")
        return len(idx)

    if "cls_token" in sd and any(k.startswith("cls_head_finetune.") for k in sd):
        C = sd["cls_token"].shape[-1]
        head = sorted(k for k in sd if k.startswith("cls_head_finetune.") and k.endswith(".weight"))
        last = max(head, key=lambda k: int(k.split(".")[1]))
        cls_dim = sd[last].shape[0]
        transfer = "side" if "side_alpha" in sd else ("linear" if len(head) == 1 else "full")
        groups = 128 if cls_dim == 15 else 64
        return dict(NAME="PointTransformer", embed_dim=C, depth=depth("blocks.blocks."), num_heads=max(1, C // 64),
                    group_size=32, num_group=groups, encoder_dims=sd["encoder.second_conv.3.weight"].shape[0],
                    cls_dim=cls_dim, drop_path_rate=0.1, transfer_type=transfer, npoints=16 * groups)
    if "codebook" in sd or any(k.startswith("dvae_tokenizer.") for k in sd):
        t = "dvae_tokenizer." if "codebook" not in sd else ""
        D = sd[t + "proj_pre.weight"].shape[0]
        P = sd[t + "visual_prompt_token"].shape[1] if t + "visual_prompt_token" in sd else 0
        teacher = {"embed_dim": D, "depth": depth(t + "visual_embed.0."), "num_heads": max(1, D // 64)}
        known = {(768, 12): "vit_base_patch16_384", (384, 12): "vit_small_patch16_224", (192, 12): "vit_tiny_patch16_224"}
        teacher_name = known.get((D, teacher["depth"]))
        dvae = dict(visual_embed_type=teacher_name or f"tinyvit_e{D}_d{teacher['depth']}_h{teacher['num_heads']}",
                    visual_embed_dim=D, freeze_visual_embed=True, num_prompt_token=P,
                    use_deep_prompt=t + "deep_prompt_tokens" in sd, num_group=64, group_size=32,
                    num_tokens=sd[t + "codebook"].shape[0], encoder_dims=sd[t + "encoder.second_conv.3.weight"].shape[0],
                    tokens_dims=sd[t + "codebook"].shape[1], decoder_dims=sd[t + "dgcnn_2.layer5.0.weight"].shape[0])
        dvae["group_size"] = 4 * sd[t + "decoder.mlp.4.weight"].shape[0] // 3
        if not t:
            return dict(NAME="ACTPromptedDiscreteVAEwithVIT", npoints=1024, **dvae)
        C = sd["ACT_encoder.cls_token"].shape[-1]
        tcfg = dict(mask_ratio=0.8, mask_type="rand", proj="linear" if "proj_head.weight" in sd else "none",
                    embed_dim=C, depth=depth("ACT_encoder.blocks.blocks."), drop_path_rate=0.1,
                    cls_dim=sd["ACT_encoder.cls_head.2.weight"].shape[0], num_heads=max(1, C // 64),
                    decoder_depth=depth("ACT_decoder.blocks."), decoder_num_heads=max(1, C // 64),
                    cls_loss="cls_pos" in sd, register_shallow_hook=9)
        return dict(NAME="ACT_PointDistillation", loss="cosine", npoints=1024, transformer_config=tcfg, dvae_config=dvae)
    raise ValueError(f"{source}: cannot recognise the checkpoint layout (neither a fine-tuning, stage-I nor "
                     "stage-II ACT checkpoint, or an incomplete one); pass its official config explicitly")


# the other model families register their official names
from . import _official_partseg, _official_pretrain  # noqa: E402,F401
