"""Provenance of the embedded weights: every shipped weight says which run made it, and the
figures it states agree with the weight files and with the repository's history.

(The embedded classifier's accuracy itself is re-measured on its held-out split by
tests/train/test_embedded_claim.py.)"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from safetensors import safe_open

from act_zoo.hub.manifest import PROVENANCE_SCHEMA, ManifestError, read_manifest_file, validate_record

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED = ROOT / "weights_manifest" / "embedded.json"
PACKAGE = ROOT / "act_zoo"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _full_history() -> bool:
    """The repository is a git checkout with its history (not an sdist, not a shallow clone)."""
    return _git("rev-parse", "--show-toplevel") == str(ROOT) and _git("rev-parse", "--is-shallow-repository") == "false"


def test_every_embedded_weight_records_the_run_that_made_it():
    records = read_manifest_file(EMBEDDED)
    assert {r.name for r in records} == {"act_tiny.synthetic10", "act_tiny.pretrain"}
    for rec in records:
        assert all(s["type"] == "package" for s in rec.sources), rec.name
        prov = rec.provenance
        assert prov is not None, f"{rec.name}: no provenance"
        assert {k for k, (_, required) in PROVENANCE_SCHEMA.items() if required} <= set(prov)
        assert prov["command"].startswith("python examples/pretrain_pipeline.py"), prov["command"]
        assert "minilm" in prov["teacher"] and "pretrained" in prov["teacher"]
        assert isinstance(prov["data_seed"], int) and prov["commit"]
        # the file is the one the record describes
        path = PACKAGE / rec.sources[0]["path"]
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == rec.sha256 and len(data) == rec.size_bytes


def test_embedded_figures_agree_with_the_run_and_the_weight_files():
    """The manifest's accuracy is the run's final stage-III accuracy, which the weight file
    also carries in its own metadata (written by save_pretrained at the end of the run)."""
    records = {r.name: r for r in read_manifest_file(EMBEDDED)}
    clf = records["act_tiny.synthetic10"]
    final = clf.provenance["final_metrics"]["stage3"]
    assert round(final["acc"], 2) == clf.metrics["overall_accuracy"]
    with safe_open(str(PACKAGE / clf.sources[0]["path"]), "pt") as fh:
        saved = json.loads(fh.metadata()["act_zoo_config"])
    assert saved["model_class"] == "ACTClassifier"
    assert abs(saved["metrics"]["acc"] - final["acc"]) < 5e-3 and abs(saved["metrics"]["acc_avg"] - final["acc_avg"]) < 5e-3
    # both weights come from the same run
    enc = records["act_tiny.pretrain"].provenance
    for key in ("command", "commit", "teacher", "seed", "data_seed"):
        assert enc.get(key) == clf.provenance.get(key), key


def test_embedded_provenance_commit_is_in_the_history():
    """A recorded commit is an ancestor of HEAD; a reconstructed one is the commit that added the
    weight file (what the record says it is). Checked wherever the history is present."""
    for rec in read_manifest_file(EMBEDDED):
        prov = rec.provenance
        assert len(prov["commit"]) == 40
        if not _full_history():  # an sdist or a shallow clone: nothing more to compare with
            continue
        assert _git("merge-base", "--is-ancestor", prov["commit"], "HEAD") is not None, prov["commit"]
        if prov["recorded"].startswith("reconstructed"):
            path = f"act_zoo/{rec.sources[0]['path']}"
            added = _git("log", "--diff-filter=A", "--format=%H", "--", path)
            assert added is not None and added.splitlines()[-1] == prov["commit"], (rec.name, added)
            assert prov["wall_time_s"] is None and "not recorded" in prov["note"]


def _prov(**over):
    prov = {"command": "python examples/pretrain_pipeline.py --out runs/x", "commit": "a" * 40, "worktree": "clean",
            "teacher": "minilm (pretrained, frozen, 4 prompt tokens)", "seed": 0, "data_seed": 0,
            "wall_time_s": 12.5, "final_metrics": {"stage3": {"acc": 90.0}}, "recorded": "from the run directory"}
    prov.update(over)
    return prov


@pytest.mark.parametrize("change,match", [
    ({"command": ""}, "command is empty"),
    ({"commit": "HEAD"}, "hex git hash"),
    ({"commit": None}, "explained in note"),
    ({"wall_time_s": None}, "explained in note"),
    ({"wall_time_s": -1.0}, "positive"),
    ({"worktree": "dirty"}, "worktree"),
    ({"data_seed": "0"}, "data_seed"),
    ({"seed": True}, "seed"),
    ({"final_metrics": {"stage3": {"acc": "high"}}}, "final_metrics"),
    ({"surprise": 1}, "unknown provenance fields"),
])
def test_provenance_schema_rejects_bad_records(change, match):
    rec = json.loads(EMBEDDED.read_text())["weights"][0]
    rec["provenance"] = _prov(**change)
    with pytest.raises(ManifestError, match=match):
        validate_record(rec)
    for key in ("command", "teacher", "final_metrics", "recorded"):
        bad = copy.deepcopy(rec)
        bad["provenance"] = _prov()
        del bad["provenance"][key]
        with pytest.raises(ManifestError, match=f"missing '{key}'"):
            validate_record(bad)
    ok = copy.deepcopy(rec)
    ok["provenance"] = _prov(commit=None, wall_time_s=None, note="installed from a wheel; time not kept")
    assert validate_record(ok).provenance["note"].startswith("installed")


def test_a_record_round_trips_through_to_dict_with_or_without_provenance():
    for rec in read_manifest_file(EMBEDDED):
        assert validate_record(rec.to_dict()).provenance == rec.provenance
    bare = json.loads(EMBEDDED.read_text())["weights"][0]
    del bare["provenance"]
    rec = validate_record(bare)
    assert rec.provenance is None and validate_record(rec.to_dict()).provenance is None


def test_record_and_provenance_schema_messages_keep_their_wording():
    """Both go through one schema check; each keeps its own wording."""
    rec = json.loads(EMBEDDED.read_text())["weights"][0]
    rec["provenance"] = _prov()
    where = f"<record> record {rec['name']!r}"
    cases = [
        (lambda r: r.update(surprise=1), "unknown fields ['surprise']"),
        (lambda r: r.pop("license"), "missing field 'license'"),
        (lambda r: r.update(license=3), "field 'license' must be str, got int"),
        (lambda r: r.update(num_params=True), "field 'num_params' must be (<class 'int'>,), got a bool"),
        (lambda r: r["provenance"].update(surprise=1), "unknown provenance fields ['surprise']"),
        (lambda r: r["provenance"].pop("teacher"), "provenance is missing 'teacher'"),
        (lambda r: r["provenance"].update(teacher=3), "provenance 'teacher' must be str, got int"),
        (lambda r: r["provenance"].update(seed=True), "provenance 'seed' must be int, got bool"),
    ]
    for change, message in cases:
        bad = copy.deepcopy(rec)
        change(bad)
        with pytest.raises(ManifestError) as info:
            validate_record(bad)
        assert str(info.value) == f"{where}: {message}"
