"""Fine-tuning on your own files: every error comes before a training step, and says what to do."""

import json

import numpy as np
import pytest
import torch

import act_zoo
from act_zoo.cli import main
from act_zoo.data.splits import SplitError
from act_zoo.models import ACTClassifier, ClassifierConfig
from act_zoo.train import finetune, load_config, plan_finetune, train
from act_zoo.train.own_data import small_data_defaults
from act_zoo.train.tasks.finetune import FinetuneTask

from .own_data_builders import TINY_ENCODER, save_tiny_encoder, write_shapes

FAST = ["run.tensorboard=false", "vote=0"]
TINY_MODEL = "model={embed_dim: 32, depth: 1, num_heads: 2, encoder_dims: 32, group_size: 8, num_group: 8"


@pytest.fixture(scope="module")
def tiny_init(tmp_path_factory):
    return str(save_tiny_encoder(tmp_path_factory.mktemp("init") / "enc"))


@pytest.fixture(scope="module")
def shapes3(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "shapes"
    write_shapes(root, per_class=6, classes=3, points=80)
    return root


def _plan(data, init, tmp_path, **kw):
    return plan_finetune(data, init, tmp_path / "run", progress=False, **kw)


# -- the init model --------------------------------------------------------------------------------
def test_no_init_is_an_error_listing_the_choices(shapes3, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"--init is required.*act_tiny\.pretrain.*'none' to train from scratch"):
        _plan(shapes3, None, tmp_path)
    assert main(["train", "finetune", "--data", str(shapes3), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "--init is required" in err and "act_tiny.pretrain" in err
    assert not (tmp_path / "r").exists()


def test_architecture_is_inherited_and_a_contradicting_override_refused(shapes3, tiny_init, tmp_path):
    plan = _plan(shapes3, tiny_init, tmp_path)
    m = plan.config.model
    assert (m.embed_dim, m.depth, m.num_heads, m.group_size, m.num_group, m.encoder_dims, plan.config.npoints) == \
        (32, 1, 2, 8, 8, 32, 64)
    assert m.cls_dim == 3 and m.class_names == ("box", "cylinder", "sphere")
    with pytest.raises(ValueError, match=r"model\.embed_dim=64 \(init: 32\).*comes from the init model"):
        _plan(shapes3, tiny_init, tmp_path, overrides=["model.embed_dim=64"])
    plan = _plan(shapes3, tiny_init, tmp_path, overrides=["model.num_group=4", "npoints=48"])  # not in the weights
    assert plan.config.model.num_group == 4 and plan.config.npoints == 48


def test_init_none_trains_from_scratch_only_when_asked_and_says_so(shapes3, tmp_path, capsys):
    small = ["model.embed_dim=32", "model.depth=1", "model.num_heads=2", "model.encoder_dims=32",
             "model.group_size=8", "model.num_group=8", "npoints=64"]
    plan = _plan(shapes3, "none", tmp_path, overrides=small)
    assert plan.init is None and plan.init_model is None and plan.config.init is None
    assert any("FROM SCRATCH" in n for n in plan.notes) and "from scratch" in plan.describe()
    args = ["train", "finetune", "--data", str(shapes3), "--init", "none", "--out", str(tmp_path / "r"), "-q",
            "--print-config"]
    for s in small:
        args += ["--set", s]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "init: null" in out.out and "embed_dim: 32" in out.out
    assert out.err.startswith("warning: training FROM SCRATCH (--init none)")


def test_generic_trainer_names_the_architecture_fields_to_match(tiny_init, tmp_path):
    cfg = load_config("finetune", None, ["data.dataset=synthetic", "data.num_classes=2", "data.num_samples=8",
                                         "npoints=64", f"init={tiny_init}", f"run.out_dir={tmp_path}",
                                         "model={embed_dim: 48, depth: 1, num_heads: 2, encoder_dims: 48, cls_dim: 2}"])
    with pytest.raises(ValueError, match=r"(?s)embed_dim: model 48, init 32.*--set model\.embed_dim=32 "
                                         r"--set model\.encoder_dims=32"):
        train("finetune", cfg)
    assert not (tmp_path / "checkpoints").exists()


# -- the data -------------------------------------------------------------------------------------
def test_fewer_than_two_classes(tmp_path, tiny_init):
    write_shapes(tmp_path / "one", per_class=5, classes=1, points=80)
    with pytest.raises(ValueError, match=r"at least 2 classes, found 1 \(\['sphere'\]\)"):
        _plan(tmp_path / "one", tiny_init, tmp_path)


def test_a_class_with_too_few_files_for_the_split(tmp_path, tiny_init):
    root = tmp_path / "d"
    write_shapes(root, per_class=4, classes=2, points=80)
    (root / "cone").mkdir()
    np.save(root / "cone" / "only.npy", np.random.default_rng(0).normal(size=(80, 3)).astype(np.float32))
    with pytest.raises(SplitError, match=r"class 'cone' \(1 file\) need"):
        _plan(root, tiny_init, tmp_path)
    (root / "cone" / "only.npy").unlink()
    with pytest.raises(ValueError, match=r"class.*\['cone'\] has no readable files"):
        _plan(root, tiny_init, tmp_path)


def test_nothing_to_evaluate_on_is_an_error(shapes3, tiny_init, tmp_path):
    with pytest.raises(ValueError, match="nothing to evaluate on"):
        _plan(shapes3, tiny_init, tmp_path, val_split=0.0)


def test_unreadable_files_are_all_listed_before_training(tmp_path, tiny_init, capsys):
    root = tmp_path / "d"
    write_shapes(root, per_class=6, classes=2, points=80)
    (root / "box" / "broken.ply").write_text("ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nend_header\n1\n")
    (root / "sphere" / "empty.npy").write_bytes(b"")
    with pytest.raises(ValueError, match=r"2 of 14 training files cannot be read; .*--skip-bad") as exc:
        _plan(root, tiny_init, tmp_path)
    assert "broken.ply" in str(exc.value) and "empty.npy" in str(exc.value)
    assert main(["train", "finetune", "--data", str(root), "--init", tiny_init, "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "--skip-bad" in err.splitlines()[0] and "broken.ply" in err and "empty.npy" in err
    plan = _plan(root, tiny_init, tmp_path, skip_bad=True)
    assert sorted(p.rsplit("/", 1)[1] for p, _ in plan.splits.skipped) == ["broken.ply", "empty.npy"]
    assert len(plan.splits.train) + len(plan.splits.val) == 12


def test_test_set_overlap_and_foreign_classes_are_errors(shapes3, tiny_init, tmp_path):
    with pytest.raises(SplitError, match=r"18 test files are also in the training set"):
        _plan(shapes3, tiny_init, tmp_path, test_data=shapes3)
    other = tmp_path / "test"
    write_shapes(other, per_class=2, classes=["cone"], points=80, seed=5)
    with pytest.raises(SplitError, match=r"classes \['cone'\] that the training data"):
        _plan(shapes3, tiny_init, tmp_path, test_data=other)


def test_test_labels_follow_the_training_classes_by_name(shapes3, tiny_init, tmp_path):
    other = tmp_path / "test"
    write_shapes(other, per_class=2, classes=["sphere", "cylinder"], points=80, seed=5)  # folders: cylinder, sphere
    plan = _plan(shapes3, tiny_init, tmp_path, test_data=other, val_split=0.0)
    sp = plan.splits
    assert sp.val is None and sp.eval_name == "test" and len(sp.train) == 18
    names = [p.parent.name for p, _ in sp.test.samples]
    assert [sp.classes[lab] for lab in sp.test.labels] == names and set(names) == {"cylinder", "sphere"}
    assert all(sp.test[i][1] == sp.classes.index(names[i]) for i in range(len(sp.test)))


def test_cls_dim_smaller_than_the_labels_is_an_error_before_any_step(shapes3, tiny_init, tmp_path):
    with pytest.raises(ValueError, match=r"model\.cls_dim=2 but the data have 3 classes"):
        _plan(shapes3, tiny_init, tmp_path, overrides=["model.cls_dim=2"])
    for data in (["data.dataset=synthetic", "data.num_classes=4", "data.num_samples=8"],
                 ["data.dataset=folder", f"data.root={shapes3}"]):
        cfg = load_config("finetune", None, data + [
            "npoints=64", f"run.out_dir={tmp_path / 'g'}", TINY_MODEL + ", cls_dim: 2}"])
        with pytest.raises(ValueError, match=r"model\.cls_dim=2 is smaller than the [34] classes"):
            train("finetune", cfg)
    assert not (tmp_path / "g" / "checkpoints").exists()


def test_a_label_beyond_the_head_is_a_clear_error_not_an_index_error(tmp_path):
    class Labelled(torch.utils.data.Dataset):  # no .classes: only the step can see the labels
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.randn(80, 3), 3

    cfg = load_config("finetune", None, ["npoints=64", f"run.out_dir={tmp_path}", "run.batch_size=4", *FAST,
                                         "run.progress=false", TINY_MODEL + ", cls_dim: 3}"])
    with pytest.raises(ValueError, match=r"label 3 is out of range for a head with model\.cls_dim=3"):
        train("finetune", cfg, train_set=Labelled(), test_set=Labelled())


def test_arguments_and_overrides_do_not_contradict(shapes3, tiny_init, tmp_path, capsys):
    with pytest.raises(ValueError, match="either --epochs E"):
        _plan(shapes3, tiny_init, tmp_path, epochs=3, overrides=["run.max_epoch=2"])
    with pytest.raises(ValueError, match="data.root is given by the data argument"):
        _plan(shapes3, tiny_init, tmp_path, overrides=["data.root=/x"])
    with pytest.raises(ValueError, match="a recipe is an official run"):
        _plan(shapes3, tiny_init, tmp_path, config="recipe:finetune_modelnet")
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        _plan(shapes3, tiny_init, tmp_path, epochs=0)
    assert main(["train", "finetune", "--epochs", "3"]) == 1
    assert "--epochs only apply to `act-zoo train finetune --data DIR`" in capsys.readouterr().err


# -- defaults -------------------------------------------------------------------------------------
def test_small_data_defaults_scale_with_the_training_set():
    d = small_data_defaults(96)
    assert (d["batch"], d["epochs"], d["warmup"]) == (16, 167, 6) and d["lr"] == pytest.approx(2.5e-4)
    assert small_data_defaults(8)["batch"] == 8 and small_data_defaults(8)["epochs"] == 300
    big = small_data_defaults(10_000)
    assert (big["batch"], big["epochs"], big["lr"]) == (32, 20, 5e-4)  # the official batch and lr
    assert small_data_defaults(5)["batch"] == 5  # never more than the training files
    assert small_data_defaults(96, epochs=5)["warmup"] == 1 and small_data_defaults(96, epochs=1)["warmup"] == 0


def test_defaults_are_printed_and_user_values_marked(shapes3, tiny_init, tmp_path):
    plan = _plan(shapes3, tiny_init, tmp_path, epochs=3, overrides=["optim.lr=1e-3"])
    text = plan.describe()
    assert "epochs 3 (set), batch 8, lr 0.001 (set)" in text and "warm-up 1 epochs," in text
    assert "frozen: nothing frozen" in text and "15 training files, 3 validation files" in text
    assert plan.config.run.max_epoch == 2  # E epochs = official max_epoch E - 1


# -- the head of a classifier init ----------------------------------------------------------------
def test_an_init_classifier_head_is_kept_only_for_the_same_classes(shapes3, tmp_path):
    fields = {f: getattr(TINY_ENCODER, f) for f in ("embed_dim", "depth", "num_heads", "group_size", "num_group",
                                                   "encoder_dims", "npoints")}
    same = ACTClassifier(ClassifierConfig(**fields, cls_dim=3, class_names=("box", "cylinder", "sphere")))
    same.save_pretrained(tmp_path / "same")
    other = ACTClassifier(ClassifierConfig(**fields, cls_dim=3, class_names=("a", "b", "c")))
    other.save_pretrained(tmp_path / "other")
    plan = _plan(shapes3, str(tmp_path / "same"), tmp_path)
    assert plan.config.keep_head is True and "kept (same classes)" in plan.describe()
    assert any("keeping the classifier head" in n for n in plan.notes)
    task = FinetuneTask(plan.config, init_model=plan.init_model, file_splits=plan.splits)
    assert torch.equal(task.model.cls_head_finetune[-1].weight, same.cls_head_finetune[-1].weight)
    plan = _plan(shapes3, str(tmp_path / "other"), tmp_path)
    assert plan.config.keep_head is False and any("head is discarded" in n for n in plan.notes)
    task = FinetuneTask(plan.config, init_model=plan.init_model, file_splits=plan.splits)
    assert not torch.equal(task.model.cls_head_finetune[-1].weight, other.cls_head_finetune[-1].weight)
    with pytest.raises(ValueError, match="keep_head=true: the head of .* cannot be kept"):
        _plan(shapes3, str(tmp_path / "other"), tmp_path, overrides=["keep_head=true"])


# -- a short run: exactly E epochs, skipped files reported, the split named everywhere ---------------
def test_a_short_run_reports_its_split_and_skipped_files(tmp_path, tiny_init, capsys):
    root = tmp_path / "d"
    write_shapes(root, per_class=6, classes=3, points=80)
    (root / "box" / "broken.npy").write_bytes(b"not an array")
    out = tmp_path / "run"
    args = ["train", "finetune", "--data", str(root), "--init", tiny_init, "--out", str(out), "--epochs", "2",
            "--skip-bad", "-q", "--set", "run.tensorboard=false", "--set", "vote=2"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "step/s" not in captured.err and "it/s" not in captured.err  # --quiet: no progress bars
    assert captured.out.strip().splitlines()[-1].startswith("validation accuracy: ")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 2
    assert sorted({int(r.split(",")[1]) for r in (out / "train_log.csv").read_text().splitlines()[1:]}) == [0, 1]
    assert "test (last epoch)" not in summary and "final (last epoch)" not in summary
    val = summary["validation (last epoch)"]
    assert val["files"] == 3 and {"acc", "acc_avg", "acc_vote2"} <= set(val)
    assert summary["data"]["files"] == {"train": 15, "validation": 3}
    assert [s["path"].rsplit("/", 1)[1] for s in summary["data"]["skipped_files"]] == ["broken.npy"]
    splits = json.loads((out / "splits.json").read_text())
    train_files = {p for p, _ in splits["files"]["train"]}
    assert train_files.isdisjoint(p for p, _ in splits["files"]["validation"])
    card = (out / "README.md").read_text()
    assert "15 training files, 3 validation files" in card and "it is not a test set" in card
    assert "validation_acc" in card and "test_acc" not in card
    model = act_zoo.from_pretrained(out)
    assert model.class_names == ["box", "cylinder", "sphere"] and model.cls_head_finetune[-1].out_features == 3


def test_the_generic_trainer_never_evaluates_on_its_training_files(shapes3, tmp_path):
    cfg = load_config("finetune", None, [
        "data.dataset=folder", f"data.root={shapes3}", "npoints=64", f"run.out_dir={tmp_path}", "run.batch_size=4",
        "run.max_epoch=0", "run.progress=false", *FAST,
        "model={embed_dim: 32, depth: 1, num_heads: 2, encoder_dims: 32, group_size: 8, num_group: 8, cls_dim: 3}"])
    summary = train("finetune", cfg)
    assert summary["validation (last epoch)"]["files"] == 3 and "final (last epoch)" not in summary
    splits = json.loads((tmp_path / "splits.json").read_text())["files"]
    assert {p for p, _ in splits["train"]}.isdisjoint(p for p, _ in splits["validation"])
    assert act_zoo.from_pretrained(tmp_path).class_names == ["box", "cylinder", "sphere"]


def test_python_finetune_returns_the_summary(shapes3, tiny_init, tmp_path):
    summary = finetune(data=shapes3, init=tiny_init, out=tmp_path / "r", epochs=1, progress=False,
                       overrides={"run": {"tensorboard": False}, "vote": 0})
    assert summary["epochs_run"] == 1 and summary["settings"]["epochs"] == 1
    assert summary["init"].startswith(tiny_init)


def test_a_csv_list_and_a_json_test_list_work_like_folders(shapes3, tiny_init, tmp_path):
    files = sorted(shapes3.rglob("*.*"))
    (tmp_path / "train.csv").write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in files))
    test = write_shapes(tmp_path / "t", per_class=1, classes=3, points=80, seed=9)
    (tmp_path / "test.json").write_text(json.dumps([[str(p), p.parent.name] for p in test]))
    plan = _plan(tmp_path / "train.csv", tiny_init, tmp_path, test_data=tmp_path / "test.json")
    sp = plan.splits
    assert plan.config.data.dataset == "list" and sp.classes == ["box", "cylinder", "sphere"]
    assert (len(sp.train), len(sp.val), len(sp.test)) == (15, 3, 3)
    assert [sp.classes[lab] for lab in sp.test.labels] == [p.parent.name for p, _ in sp.test.samples]
    (tmp_path / "leak.json").write_text(json.dumps([[str(files[0]), files[0].parent.name]]))
    with pytest.raises(SplitError, match="1 test file is also in the training set"):
        _plan(tmp_path / "train.csv", tiny_init, tmp_path, test_data=tmp_path / "leak.json")


def test_pretraining_on_a_folder_needs_no_classes(tmp_path):
    from act_zoo.train.config import DataConfig
    from act_zoo.train.tasks.files import build_file_splits

    write_shapes(tmp_path / "scans", per_class=5, classes=1, points=80)
    sp = build_file_splits(DataConfig(dataset="folder", root=str(tmp_path / "scans")), npoints=64, seed=0,
                           labelled=False)
    assert (len(sp.train), len(sp.val)) == (4, 1)


def test_quiet_turns_the_trainers_progress_bars_off(capsys):
    assert main(["train", "finetune", "--print-config", "-q"]) == 0
    assert "progress: false" in capsys.readouterr().out
    assert main(["train", "finetune", "--print-config"]) == 0
    assert "progress: true" in capsys.readouterr().out
