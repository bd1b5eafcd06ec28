"""Untrusted checkpoints and configs: checked before anything is built, clear errors naming the file.

Issue 12 items 7 (meta build, bounded by the checkpoint), 8 (dtype kinds) and 9 (clear ValueErrors)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import FIXTURES, TINY_FINETUNE

import act_zoo
from act_zoo.cli import main
from act_zoo.hub.convert import CheckpointMismatchError, from_official, infer_official_config, read_checkpoint
from act_zoo.hub.io import load_pretrained

REPO_ROOT = Path(__file__).resolve().parents[2]
PTH = FIXTURES / "tiny" / "tiny_ckpt_official_format.pth"


@pytest.fixture(autouse=True)
def _home(online_home: Path) -> Path:
    return online_home


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("saved") / "tiny"
    act_zoo.from_official(PTH, TINY_FINETUNE).save_pretrained(out)
    return out


def _copy_with_config(saved: Path, dest: Path, edit) -> Path:
    dest.mkdir()
    (dest / "model.safetensors").write_bytes((saved / "model.safetensors").read_bytes())
    spec = json.loads((saved / "config.json").read_text())
    spec = edit(spec)
    (dest / "config.json").write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return dest


def _set(field: str, value):
    def edit(spec):
        spec["config"][field] = value
        return spec

    return edit


# --------------------------------------------------------------------------------------------------
# item 7: huge configs fail fast, before anything is allocated
# --------------------------------------------------------------------------------------------------
_HUGE_CHILD = textwrap.dedent(
    """
    import resource, sys, time
    import torch
    import act_zoo
    # after the imports: whatever a case allocates must fit in 3 GiB more
    vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 30), vm + (3 << 30)))
    for path in sys.argv[1:]:
        t = time.perf_counter()
        try:
            act_zoo.from_pretrained(path)
        except ValueError as exc:
            line = f"ValueError {time.perf_counter() - t:.2f}s: {exc}"
        except BaseException as exc:
            line = f"{type(exc).__name__} {time.perf_counter() - t:.2f}s: {exc}"
        else:
            line = "loaded"
        print(line.replace("\\n", " "), flush=True)
    """
)
HUGE_CASES = ("pth", "depth", "mlp_ratio", "embed_dim")


@pytest.fixture(scope="module")
def huge_results(saved: Path, tmp_path_factory) -> dict[str, str]:
    """Every huge case loaded in ONE child process with a 3 GiB allocation limit (one torch import)."""
    root = tmp_path_factory.mktemp("huge")
    sd = torch.load(PTH, weights_only=True)
    sd["base_model"]["blocks.blocks.1000000.norm1.weight"] = torch.ones(48)
    torch.save(sd, root / "extra.pth")
    paths = {"pth": root / "extra.pth"}
    for field, value in (("depth", 1_000_000), ("mlp_ratio", 1e9)):
        paths[field] = _copy_with_config(saved, root / field, _set(field, value))
    paths["embed_dim"] = _copy_with_config(saved, root / "embed_dim", lambda s: {**s, "config": {
        **s["config"], "embed_dim": 48_000_000, "encoder_dims": 48_000_000, "num_heads": 1}})
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _HUGE_CHILD, *(str(paths[c]) for c in HUGE_CASES)], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == len(HUGE_CASES), out.stdout + out.stderr[-2000:]
    return {case: line for case, line in zip(HUGE_CASES, lines)} | {f"{c}:path": str(paths[c]) for c in HUGE_CASES}


@pytest.mark.parametrize("case", HUGE_CASES)
def test_huge_checkpoint_or_config_fails_fast(huge_results: dict[str, str], case: str) -> None:
    """A .pth with one extra key ``blocks.blocks.1000000.norm1.weight`` (config inferred), or a
    config.json with depth 1e6 / mlp_ratio 1e9 / embed_dim 48e6: before, each allocated until
    memory ran out (RuntimeError after ~60 s at the 3 GiB limit); now a ValueError in < 2 s."""
    out = huge_results[case]
    assert out.startswith("ValueError"), out
    assert float(out.split()[1].rstrip("s:")) < 2, out
    if case == "pth":
        assert "blocks.blocks.1000000" in out and "extra.pth" in out
    else:
        assert "config.json" in out


def test_inferred_depth_must_be_held_by_the_checkpoint() -> None:
    sd, _, _ = read_checkpoint(PTH)
    sd = dict(sd)
    sd["blocks.blocks.7.norm1.weight"] = torch.ones(48)  # blocks 0, 1 and 7: not a depth-8 model
    with pytest.raises(ValueError, match=r"blocks\.blocks\.7"):
        infer_official_config(sd)


def test_explicit_config_larger_than_the_checkpoint_fails_before_building(monkeypatch) -> None:
    built = []
    from act_zoo.models import ACTClassifier

    real_init = ACTClassifier.__init__

    def spy(self, config=None):
        built.append(torch.get_default_device().type)
        real_init(self, config)

    monkeypatch.setattr(ACTClassifier, "__init__", spy)
    with pytest.raises(ValueError, match="depth|parameters|elements"):
        from_official(PTH, dict(TINY_FINETUNE, depth=400))
    assert "cpu" not in built  # only ever built on the meta device


def test_meta_first_build_still_loads_the_same_weights() -> None:
    model = from_official(PTH, TINY_FINETUNE)
    sd, _, _ = read_checkpoint(PTH)
    for k, v in model.state_dict().items():
        assert v.device.type == "cpu" and torch.equal(v, sd[k]), k


# --------------------------------------------------------------------------------------------------
# item 8: dtype kinds must match
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.int32])
def test_integer_or_bool_tensor_into_a_float_parameter_is_an_error(saved: Path, tmp_path: Path, dtype) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(saved / "model.safetensors"))
    state["cls_token"] = state["cls_token"].to(dtype)
    folder = tmp_path / "m"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text((saved / "config.json").read_text())
    with pytest.raises(CheckpointMismatchError, match=r"cls_token.*dtype") as info:
        load_pretrained(folder)  # before: report.ok was True and the integers became floats
    assert str(dtype).replace("torch.", "") in str(info.value)
    with pytest.raises(CheckpointMismatchError):
        load_pretrained(folder, strict=False)  # a kind mismatch is never loaded


def test_float_casts_are_allowed_and_reported(saved: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(saved / "model.safetensors"))
    state = {k: (v.double() if v.is_floating_point() else v) for k, v in state.items()}
    folder = tmp_path / "m"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text((saved / "config.json").read_text())
    model = load_pretrained(folder)
    report = model.load_report
    assert report.ok and report.cast["cls_token"] == "float64 -> float32"
    assert "cast" in report.format() and model.cls_token.dtype == torch.float32


# --------------------------------------------------------------------------------------------------
# item 9: clear ValueErrors naming the file
# --------------------------------------------------------------------------------------------------
def _assert_clear(exc: BaseException, needle: str) -> None:
    assert isinstance(exc, ValueError), type(exc)
    assert not isinstance(exc, (json.JSONDecodeError, KeyError, UnicodeDecodeError)), type(exc)
    assert needle in str(exc), str(exc)


_BAD_CONFIGS = {
    "null": lambda s: "null",
    "list": lambda s: "[1, 2]",
    "not json": lambda s: "{broken",
    "deeply nested": lambda s: "[" * 100_000 + "]" * 100_000,
    "config null": lambda s: {**s, "config": None},
    "config list": lambda s: {**s, "config": [1]},
    "no model_class": lambda s: {"config": s["config"]},
    "model_class list": lambda s: {**s, "model_class": ["ACTClassifier"]},
    "depth str": _set("depth", "2"),
    "depth float": _set("depth", 2.5),
    "depth bool": _set("depth", True),
    "depth null": _set("depth", None),
    "mlp_ratio str": _set("mlp_ratio", "4"),
    "transfer_type int": _set("transfer_type", 3),
    "unknown key": _set("depht", 2),
}


@pytest.mark.parametrize("case", list(_BAD_CONFIGS))
def test_bad_config_json_is_a_clear_value_error(saved: Path, tmp_path: Path, case: str) -> None:
    folder = _copy_with_config(saved, tmp_path / "m", _BAD_CONFIGS[case])
    with pytest.raises(Exception) as info:
        act_zoo.from_pretrained(folder)
    _assert_clear(info.value, "config.json")


@pytest.mark.parametrize("meta", ["{broken", "[1]", "null", '{"model_class": "ACTClassifier", "config": {"depth": "2"}}'])
def test_bad_act_zoo_config_metadata_is_a_clear_value_error(saved: Path, tmp_path: Path, meta: str) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(saved / "model.safetensors"))
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata={"format": "pt", "act_zoo_config": meta})
    with pytest.raises(Exception) as info:
        act_zoo.from_pretrained(bad)
    _assert_clear(info.value, "bad.safetensors")


@pytest.mark.parametrize("drop", ["encoder.second_conv.3.weight", "cls_token", "cls_head_finetune.8.weight"])
def test_incomplete_official_checkpoint_is_a_clear_value_error(tmp_path: Path, drop: str) -> None:
    sd = torch.load(PTH, weights_only=True)
    inner = sd.get("base_model", sd)
    inner.pop("module." + drop)
    bad = tmp_path / "incomplete.pth"
    torch.save(sd, bad)
    with pytest.raises(Exception) as info:
        act_zoo.from_pretrained(bad)
    _assert_clear(info.value, "incomplete.pth")


@pytest.mark.parametrize("section", [{"NAME": "PointTransformer", "depth": "2"}, {"NAME": 3}, {"NAME": None},
                                     {"NAME": "PointTransformer", "depth": [2]}])
def test_bad_official_config_is_a_clear_value_error(section) -> None:
    with pytest.raises(Exception) as info:
        from_official(PTH, {**TINY_FINETUNE, **section})
    assert isinstance(info.value, ValueError) and not isinstance(info.value, KeyError), type(info.value)


def test_convert_prints_one_line_not_a_traceback(tmp_path: Path, capsys) -> None:
    sd = torch.load(PTH, weights_only=True)
    inner = sd.get("base_model", sd)
    inner.pop("module.encoder.second_conv.3.weight")
    bad = tmp_path / "incomplete.pth"
    torch.save(sd, bad)
    assert main(["convert", str(bad), "--out", str(tmp_path / "out")]) == 1  # before: a KeyError traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("act-zoo convert: error:") and "incomplete.pth" in err[0], err
    assert not (tmp_path / "out").exists()


def test_one_prefix_stripping_helper_with_its_collision_check(tmp_path: Path) -> None:
    """A bare safetensors holding ``module.cls_token`` and ``cls_token``: before, the registry's own
    copy of the prefix stripping silently kept one of the two."""
    from safetensors.torch import save_file

    sd, _, _ = read_checkpoint(PTH)
    state = {k: v.contiguous() for k, v in sd.items()}
    state["module.cls_token"] = state["cls_token"] + 1
    bad = tmp_path / "both.safetensors"
    save_file(state, str(bad))
    with pytest.raises(ValueError, match=r"both\.safetensors.*'cls_token' appears both"):
        act_zoo.from_pretrained(bad, config=TINY_FINETUNE)
