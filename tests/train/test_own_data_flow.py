"""README "Your own data", walked as a new user would: a folder of 4 classes x 30 files (.ply and
.npy), the README's commands exactly as written (fine-tune, evaluate on new files, predict them by
class name), then its Python reload and predict.

About 40-60 s on 2 CPU cores (10 epochs of 6 steps of the embedded act_tiny model)."""

import contextlib
import io
import json
import re
import shlex
import time
from pathlib import Path

import pytest

from act_zoo.cli import main

from .own_data_builders import write_shapes

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def _blocks(section: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.DOTALL)


@pytest.mark.slow
def test_readme_own_data_flow_finetune_evaluate_predict_reload(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    files = write_shapes(tmp_path / "shapes", per_class=30, classes=["box", "cone", "cylinder", "sphere"])
    assert {p.suffix for p in files} == {".ply", ".npy"} and len(files) == 120
    new = write_shapes(tmp_path / "new_shapes", per_class=5, classes=["box", "cone", "cylinder", "sphere"], seed=99)
    section = _section("Your own data")
    commands = [shlex.split(line.split("#", 1)[0]) for block in _blocks(section, "bash") for line in block.splitlines()
                if line.startswith("act-zoo ")]
    assert [c[1] for c in commands] == ["train", "evaluate", "predict"], commands

    t0 = time.time()
    assert main(commands[0][1:]) == 0  # act-zoo train finetune --data shapes --init act_tiny.pretrain ...
    elapsed = time.time() - t0
    out = capsys.readouterr()
    assert "fine-tuning act_tiny.pretrain -> runs/shapes" in out.err  # the plan, printed first
    assert "96 training files, 24 validation files" in out.err and "epochs 10 (set), batch 16" in out.err
    last = out.out.strip().splitlines()[-1]
    assert last.startswith("validation accuracy: "), out.out
    acc = float(last.split(": ")[1])
    assert acc >= 50.0, out.out  # chance is 25 %; seeds 0-2 give 71-83 %

    assert main(commands[1][1:]) == 0  # act-zoo evaluate runs/shapes --data new_shapes
    report = capsys.readouterr().out.strip().splitlines()
    assert report[-1].startswith("accuracy: ") and float(report[-1].split(": ")[1]) >= 50.0, report
    assert (tmp_path / "confusion_matrix.png").is_file()

    assert main(commands[2][1:]) == 0  # act-zoo predict runs/shapes new_shapes --top-k 2
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 20 and all(len(r) == 5 for r in rows)
    names = {"box", "cone", "cylinder", "sphere"}
    assert all(r[1] in names and r[3] in names and r[1] != r[3] and float(r[2]) >= float(r[4]) for r in rows)
    right = sum(Path(r[0]).parent.name == r[1] for r in rows)
    assert right >= 10, rows  # new files by class name, chance is 5 of 20
    assert {Path(r[0]).resolve() for r in rows} == {p.resolve() for p in new}

    run = tmp_path / "runs" / "shapes"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 10 and summary["validation (last epoch)"]["acc"] == pytest.approx(acc, abs=0.01)
    assert not any(k.startswith(("test", "final")) for k in summary)  # no test set: nothing is called test
    splits = json.loads((run / "splits.json").read_text())["files"]
    train_files = {p for p, _ in splits["train"]}
    val_files = {p for p, _ in splits["validation"]}
    assert len(train_files) == 96 and len(val_files) == 24 and train_files.isdisjoint(val_files)
    assert {c: sum(1 for _, k in splits["validation"] if k == c) for c in summary["data"]["classes"]} == \
        {"box": 6, "cone": 6, "cylinder": 6, "sphere": 6}

    (code,) = _blocks(section, "python")
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        scope: dict = {}
        exec(code, scope)  # noqa: S102 - the README's reload, as written
    model = scope["model"]
    assert printed.getvalue().strip() == "['box', 'cone', 'cylinder', 'sphere']"
    assert [p.label for p in scope["preds"]] == [r[1] for r in rows]  # Python predict = act-zoo predict
    assert model.class_names == ["box", "cone", "cylinder", "sphere"]
    assert model.cls_head_finetune[-1].out_features == 4 and model.config.cls_dim == 4
    assert (model.config.embed_dim, model.config.depth, model.config.npoints) == (96, 4, 512)  # from act_tiny.pretrain
    card = (run / "README.md").read_text()
    assert "96 training files, 24 validation files" in card and "box, cone, cylinder, sphere" in card
    assert elapsed < 180, elapsed
