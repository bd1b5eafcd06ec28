"""``save_pretrained`` / ``load_pretrained`` / ``push_to_hub``: config.json + model.safetensors + card.

A saved directory round-trips bit for bit. Loading is strict by default and never runs a
pickle: configs are JSON, weights are safetensors.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._version import __version__
from ..models import MODEL_CLASSES, config_to_dict
from .cache import atomic_path
from .convert import LoadReport, load_with_rules
from .untrusted import bounded_meta_build, check_depths, config_from_untrusted, numel

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
_META_KEY = "act_zoo_config"


def model_class_name(model: nn.Module) -> str:
    for name, (cls, _) in MODEL_CLASSES.items():
        if type(model) is cls:
            return name
    raise TypeError(f"{type(model).__name__} is not an act_zoo model class")


def model_spec(model: nn.Module, **extra: Any) -> dict[str, Any]:
    """The JSON description of a model: class, config and provenance."""
    spec = {"act_zoo_version": __version__, "model_class": model_class_name(model), "config": config_to_dict(model.config)}
    spec.update({k: v for k, v in extra.items() if v is not None})
    return spec


def spec_to_config(spec: Any, *, where: str) -> tuple[type, Any]:
    """``(model class, config)`` of a saved spec (``config.json`` or the safetensors metadata),
    every field checked; any problem is a ``ValueError`` naming ``where``."""
    if not isinstance(spec, Mapping):
        raise ValueError(  # noqa: TRY004 - a bad file, not a bad argument: ValueError naming the file
            f"{where}: expected a JSON object with 'model_class' and 'config', got {type(spec).__name__}")
    cls_name = spec.get("model_class")
    if not isinstance(cls_name, str) or cls_name not in MODEL_CLASSES:
        raise ValueError(f"{where}: unknown model_class {cls_name!r}; known: {sorted(MODEL_CLASSES)}")
    cls, cfg_cls = MODEL_CLASSES[cls_name]
    return cls, config_from_untrusted(cfg_cls, spec.get("config", {}), where=where)


def build_from_spec(spec: Mapping[str, Any], *, where: str = "<spec>") -> nn.Module:
    cls, config = spec_to_config(spec, where=where)
    return cls(config)


def parse_json(text: str, *, where: str) -> Any:
    """``json.loads`` whose every failure (syntax, absurd nesting) is a plain ``ValueError`` naming ``where``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise ValueError(f"{where}: invalid JSON (nested too deeply)") from None


def save_safetensors(state: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str]) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=dict(metadata))


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            return {k: fh.get_tensor(k) for k in fh.keys()}, meta
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from exc


def read_safetensors_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file, without reading its tensors."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from exc


def save_pretrained(
    model: nn.Module,
    save_directory: str | os.PathLike,
    *,
    name: str | None = None,
    metrics: Mapping[str, float] | None = None,
    source: str | None = None,
    description: str | None = None,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` (the config also in its metadata) and a
    ``README.md`` model card to ``save_directory``; each file is written atomically."""
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    spec = model_spec(model, name=name, metrics=dict(metrics) if metrics else None, source=source,
                      description=description)
    blob = json.dumps(spec, indent=2, sort_keys=True)
    save_safetensors(model.state_dict(), out / WEIGHTS_NAME, {"format": "pt", _META_KEY: blob})
    with atomic_path(out / CONFIG_NAME) as tmp:
        tmp.write_text(blob + "\n", encoding="utf-8")
    with atomic_path(out / CARD_NAME) as tmp:
        tmp.write_text(model_card(model, spec), encoding="utf-8")
    logger.info("saved %s to %s", spec["model_class"], out)
    return out


def model_card(model: nn.Module, spec: Mapping[str, Any]) -> str:
    n_params = sum(p.numel() for p in model.parameters())
    lines = [
        "---",
        "library_name: act_zoo",
        "license: mit",
        "tags: [point-cloud, 3d, act, pytorch]",
        "---",
        "",
        f"# {spec.get('name') or spec['model_class']}",
        "",
        spec.get("description") or "An ACT (Autoencoders as Cross-Modal Teachers) point-cloud model saved with act_zoo.",
        "",
        f"* class: `{spec['model_class']}`, {n_params / 1e6:.2f} M parameters",
        f"* act_zoo version: {spec['act_zoo_version']}",
    ]
    if spec.get("source"):
        lines.append(f"* source: {spec['source']}")
    if spec.get("metrics"):
        lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in spec["metrics"].items()]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import act_zoo",
        "model = act_zoo.from_pretrained('<this directory or hf-hub:org/repo>')",
        "```",
        "",
        "## Config",
        "",
        "```json",
        json.dumps(spec["config"], indent=2, sort_keys=True),
        "```",
        "",
        "## Citation",
        "",
        "```bibtex",
        "@inproceedings{dong2023act,",
        "  title={Autoencoders as Cross-Modal Teachers: Can Pretrained 2D Image Transformers Help 3D Representation Learning?},",
        "  author={Dong, Runpei and Qi, Zekun and Zhang, Linfeng and Zhang, Junbo and Sun, Jianjian and Ge, Zheng and Yi, Li and Ma, Kaisheng},",
        "  booktitle={International Conference on Learning Representations (ICLR)},",
        "  year={2023}",
        "}",
        "```",
        "",
    ]
    return "\n".join(lines)


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str, strict: bool = True) -> LoadReport:
    """Load act_zoo-layout weights; a mismatch raises with a key report unless ``strict=False``."""
    report = LoadReport(model_name=type(model).__name__, source=source)
    return load_with_rules(model, dict(state), report=report, strict=strict)


def read_pretrained(
    path: str | os.PathLike,
) -> tuple[dict[str, Any], dict[str, torch.Tensor], str, tuple[type, Any]]:
    """``(spec, state, where, checked)`` of a directory written by :func:`save_pretrained` or of
    a bare act_zoo safetensors file whose metadata carries the config; nothing is built yet.
    ``checked`` is :func:`spec_to_config`'s ``(model class, config)``, for :func:`build_pretrained`."""
    path = Path(path)
    if path.is_dir():
        cfg_path, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
        if not cfg_path.is_file() or not weights.is_file():
            raise FileNotFoundError(f"{path} is not a saved act_zoo model (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
        try:
            text = cfg_path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{cfg_path}: not UTF-8 text ({exc.reason})") from None
        where = str(cfg_path)
        spec = parse_json(text, where=where)
        state, _ = read_safetensors(weights)
    else:
        state, meta = read_safetensors(path)
        if _META_KEY not in meta:
            raise ValueError(f"{path}: no act_zoo config in the safetensors metadata; pass config=...")
        where = f"{path} (metadata {_META_KEY!r})"
        spec = parse_json(meta[_META_KEY], where=where)
    checked = spec_to_config(spec, where=where)  # checked before anything is built
    return spec, state, where, checked


def build_pretrained(spec: Mapping[str, Any], state: Mapping[str, torch.Tensor], *, where: str,
                     source: str, strict: bool = True, checked: tuple[type, Any] | None = None) -> nn.Module:
    """Build ``spec``'s model and load ``state``: first on the meta device, bounded by what
    ``state`` holds and checked key by key (shapes, dtypes), then for real. Eval mode.
    ``checked``: ``spec_to_config(spec, where=where)`` when the caller already has it."""
    cls, config = checked if checked is not None else spec_to_config(spec, where=where)
    check_depths(config, tensors=len(state), where=where)
    meta = bounded_meta_build(lambda: cls(config), holds=numel(state), tensors=len(state), where=where)
    load_state_strict(meta, state, source=source, strict=strict)
    del meta
    model = cls(config)
    model.load_report = load_state_strict(model, state, source=source, strict=strict)  # type: ignore[attr-defined]
    model.pretrained_spec = dict(spec)  # type: ignore[attr-defined]
    return model.eval()


def load_pretrained(path: str | os.PathLike, *, strict: bool = True) -> nn.Module:
    """Load a directory written by :func:`save_pretrained` (or a bare act_zoo safetensors file
    whose metadata carries the config). Returns the model in eval mode.

    Every problem with the files (bad JSON, a config of the wrong shape or types, a config
    larger than its weights) is a ``ValueError`` naming the file; nothing is allocated before
    the config has been checked against the weights on the meta device."""
    spec, state, where, checked = read_pretrained(path)
    return build_pretrained(spec, state, where=where, source=str(path), strict=strict, checked=checked)


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload act_zoo model",
    **save_kwargs: Any,
) -> Any:
    """Save to a temporary directory and upload it with ``huggingface_hub.HfApi.upload_folder``."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="act_zoo_push_"))
    try:
        save_pretrained(model, tmp, **save_kwargs)
        return api.upload_folder(folder_path=str(tmp), repo_id=repo_id, revision=revision,
                                 commit_message=commit_message)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
