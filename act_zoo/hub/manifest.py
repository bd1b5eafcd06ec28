"""The weights manifest: one JSON record per published weight file (data, not code).

Records live in ``weights_manifest/*.json`` (packaged into the wheel as
``act_zoo/_weights_manifest``). Extra manifest directories can be added with the
``ACT_ZOO_MANIFEST_PATH`` environment variable (``os.pathsep``-separated). Every record is
validated against :data:`SCHEMA` when read; a malformed record is an error naming its
file, record and field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z0-9][a-z0-9_]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
SOURCE_TYPES = {
    "gdrive": {"id"},  # + optional filename
    "url": {"url"},
    "hf": {"repo"},  # + optional revision, filename
    "package": {"path"},  # a file shipped inside the act_zoo package
}
FORMATS = ("official-pth", "safetensors")
CONVERTS = ("none", "finetune", "encoder_from_pretrain", "official")
MODEL_CLASSES = ("ACTEncoder", "ACTClassifier", "PromptedDiscreteVAE", "ACTDistillation", "ACTPartSeg", "ACTSemSeg")

# field -> (type(s), required)
SCHEMA: dict[str, tuple[tuple[type, ...], bool]] = {
    "name": ((str,), True),
    "architecture": ((str,), True),
    "model_class": ((str,), True),
    "description": ((str,), True),
    "task": ((str,), True),
    "dataset": ((str,), True),
    "config": ((dict,), True),
    "official_config": ((dict, type(None)), False),
    "convert": ((str,), True),
    "sources": ((list,), True),
    "format": ((str,), True),
    "sha256": ((str, type(None)), True),
    "sha256_note": ((str,), False),
    "size_bytes": ((int, type(None)), True),
    "num_params": ((int,), True),
    "metrics": ((dict,), True),
    "metrics_source": ((str,), True),
    "metrics_note": ((str,), False),
    "license": ((str,), True),
    "citation": ((str,), True),
    "provenance": ((dict, type(None)), False),  # the run that made the weights (see PROVENANCE_SCHEMA)
}

# provenance field -> (type(s), required): how a weight file was made, for weights act_zoo trained
PROVENANCE_SCHEMA: dict[str, tuple[tuple[type, ...], bool]] = {
    "command": ((str,), True),  # the command that trained it, as typed
    "commit": ((str, type(None)), True),  # the act_zoo commit it ran (None: unknown, say why in note)
    "worktree": ((str, type(None)), False),  # "clean" | "modified" (uncommitted changes) | None unknown
    "teacher": ((str,), True),  # the stage-I teacher, and whether it was pretrained
    "seed": ((int,), False),
    "data_seed": ((int,), True),
    "wall_time_s": ((int, float, type(None)), True),  # None: not recorded (say why in note)
    "final_metrics": ((dict,), True),  # the run's own final figures, stage by stage
    "recorded": ((str,), True),  # how this record was made (from the run directory, or reconstructed)
    "note": ((str,), False),
}
COMMIT_RE = re.compile(r"^[0-9a-f]{7,40}$")


class ManifestError(ValueError):
    """A weights manifest file or record does not follow the schema."""


@dataclass(frozen=True)
class WeightsRecord:
    name: str
    architecture: str
    model_class: str
    description: str
    task: str
    dataset: str
    config: Mapping[str, Any]
    convert: str
    sources: tuple[Mapping[str, Any], ...]
    format: str
    sha256: str | None
    size_bytes: int | None
    num_params: int
    metrics: Mapping[str, Any]
    metrics_source: str
    license: str
    citation: str
    official_config: Mapping[str, Any] | None = None
    sha256_note: str = ""
    metrics_note: str = ""
    provenance: Mapping[str, Any] | None = None
    origin: str = field(default="", compare=False)

    @property
    def has_weights(self) -> bool:
        return bool(self.sources)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in SCHEMA}
        d["sources"] = [dict(s) for s in self.sources]
        return d


def validate_record(data: Any, *, where: str = "<record>") -> WeightsRecord:
    """Check one manifest record and return it as a :class:`WeightsRecord`."""
    if not isinstance(data, Mapping):
        raise ManifestError(f"{where}: a record must be an object, got {type(data).__name__}")
    name = data.get("name", "?")
    where = f"{where} record {name!r}"
    unknown = set(data) - set(SCHEMA)
    if unknown:
        raise ManifestError(f"{where}: unknown fields {sorted(unknown)}")
    for key, (types, required) in SCHEMA.items():
        if key not in data:
            if required:
                raise ManifestError(f"{where}: missing field {key!r}")
            continue
        value = data[key]
        if isinstance(value, bool) and bool not in types:
            raise ManifestError(f"{where}: field {key!r} must be {types}, got a bool")
        if not isinstance(value, types):
            raise ManifestError(f"{where}: field {key!r} must be {' or '.join(t.__name__ for t in types)}, "
                                f"got {type(value).__name__}")
    if not NAME_RE.match(data["name"]):
        raise ManifestError(f"{where}: name must look like 'arch.tag' (lowercase, digits, '_')")
    if data["name"].split(".")[0] != data["architecture"]:
        raise ManifestError(f"{where}: architecture {data['architecture']!r} is not the name's prefix")
    if data["model_class"] not in MODEL_CLASSES:
        raise ManifestError(f"{where}: model_class must be one of {MODEL_CLASSES}")
    if data["format"] not in FORMATS:
        raise ManifestError(f"{where}: format must be one of {FORMATS}")
    if data["convert"] not in CONVERTS:
        raise ManifestError(f"{where}: convert must be one of {CONVERTS}")
    if data["format"] == "official-pth" and (data["convert"] == "none" or not data.get("official_config")):
        raise ManifestError(f"{where}: official-pth weights need a convert rule and official_config")
    sha = data["sha256"]
    if sha is not None and not SHA256_RE.match(sha):
        raise ManifestError(f"{where}: sha256 must be 64 lowercase hex digits or null")
    if sha is None and not data.get("sha256_note"):
        raise ManifestError(f"{where}: an unknown sha256 (null) must be explained in sha256_note")
    if data["size_bytes"] is not None and data["size_bytes"] <= 0:
        raise ManifestError(f"{where}: size_bytes must be positive")
    if data["num_params"] <= 0:
        raise ManifestError(f"{where}: num_params must be positive")
    for i, src in enumerate(data["sources"]):
        if not isinstance(src, Mapping) or src.get("type") not in SOURCE_TYPES:
            raise ManifestError(f"{where}: source {i} must be an object with type in {sorted(SOURCE_TYPES)}")
        missing = SOURCE_TYPES[src["type"]] - set(src)
        if missing:
            raise ManifestError(f"{where}: {src['type']} source {i} is missing {sorted(missing)}")
        if src["type"] == "url" and not str(src["url"]).startswith(("https://", "http://")):
            raise ManifestError(f"{where}: url source {i} must be http(s)")
    for k, v in data["metrics"].items():
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ManifestError(f"{where}: metric {k!r} must be a number")
    if data["metrics"] and not data["metrics_source"]:
        raise ManifestError(f"{where}: metrics need a metrics_source")
    if data.get("provenance") is not None:
        validate_provenance(data["provenance"], where=where)
    fields = dict(data)
    fields["sources"] = tuple(dict(s) for s in data["sources"])
    return WeightsRecord(**fields, origin=where)


def validate_provenance(prov: Mapping[str, Any], *, where: str = "<record>") -> None:
    """Check a record's ``provenance`` against :data:`PROVENANCE_SCHEMA`; an unknown value
    (commit or wall time None) must be explained in ``note``."""
    unknown = set(prov) - set(PROVENANCE_SCHEMA)
    if unknown:
        raise ManifestError(f"{where}: unknown provenance fields {sorted(unknown)}")
    for key, (types, required) in PROVENANCE_SCHEMA.items():
        if key not in prov:
            if required:
                raise ManifestError(f"{where}: provenance is missing {key!r}")
            continue
        value = prov[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ManifestError(f"{where}: provenance {key!r} must be {' or '.join(t.__name__ for t in types)}, "
                                f"got {type(value).__name__}")
    if not prov["command"].strip():
        raise ManifestError(f"{where}: provenance command is empty")
    if prov["commit"] is not None and not COMMIT_RE.match(prov["commit"]):
        raise ManifestError(f"{where}: provenance commit must be a lowercase hex git hash or null")
    if prov.get("worktree") not in (None, "clean", "modified"):
        raise ManifestError(f"{where}: provenance worktree must be 'clean', 'modified' or null")
    if (prov["commit"] is None or prov["wall_time_s"] is None) and not prov.get("note"):
        raise ManifestError(f"{where}: an unknown provenance commit or wall time must be explained in note")
    if prov["wall_time_s"] is not None and prov["wall_time_s"] <= 0:
        raise ManifestError(f"{where}: provenance wall_time_s must be positive")
    for stage, metrics in prov["final_metrics"].items():
        values = metrics.values() if isinstance(metrics, Mapping) else [metrics]
        if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
            raise ManifestError(f"{where}: provenance final_metrics[{stage!r}] must be a number or "
                                "an object of numbers")


def manifest_dirs() -> list[Path]:
    """Where manifests are read from: the packaged copy (or the repository's
    ``weights_manifest/`` in a source checkout) plus ``$ACT_ZOO_MANIFEST_PATH``."""
    here = Path(__file__).resolve().parent.parent
    dirs = []
    for candidate in (here / "_weights_manifest", here.parent / "weights_manifest"):
        if candidate.is_dir():
            dirs.append(candidate)
            break
    extra = os.environ.get("ACT_ZOO_MANIFEST_PATH", "")
    dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    return dirs


def read_manifest_file(path: Path) -> list[WeightsRecord]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc})") from exc
    if not isinstance(doc, Mapping) or doc.get("schema_version") != 1 or not isinstance(doc.get("weights"), list):
        raise ManifestError(f"{path}: expected {{'schema_version': 1, 'weights': [...]}}")
    return [validate_record(r, where=str(path)) for r in doc["weights"]]


def load_records(dirs: Iterable[Path] | None = None) -> dict[str, WeightsRecord]:
    """Every record of every manifest, by name; a name defined twice is an error."""
    records: dict[str, WeightsRecord] = {}
    for d in manifest_dirs() if dirs is None else dirs:
        if not Path(d).is_dir():
            raise ManifestError(f"manifest directory {d} does not exist")
        for path in sorted(Path(d).glob("*.json")):
            for rec in read_manifest_file(path):
                if rec.name in records:
                    raise ManifestError(f"{rec.origin}: name already defined by {records[rec.name].origin}")
                records[rec.name] = rec
    return records
