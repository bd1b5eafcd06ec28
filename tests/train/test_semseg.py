"""S3DIS semantic segmentation: metrics as main_test.py computes them, the whole-room voting
evaluation against a line-by-line rewrite of the official loops, and the training pipeline end
to end on tiny rooms in the official format (``act-zoo train semseg``)."""

import json

import numpy as np
import pytest
import torch

import act_zoo
from act_zoo._s3dis import S3DIS_CLASSES
from act_zoo.cli import main
from act_zoo.data.s3dis import read_room, split_rooms
from act_zoo.data.synthetic_scene import synthetic_room, write_s3dis_room
from act_zoo.models.semseg import ACTSemSeg, SemSegConfig
from act_zoo.train import load_config, train
from act_zoo.train.metrics import SemSegMeter, confusion_matrix, semseg_scores
from act_zoo.train.tasks.semseg import evaluate_rooms

TINY = SemSegConfig(embed_dim=32, depth=4, num_heads=2, group_size=8, num_group=16, encoder_dims=32,
                    drop_path_rate=0.0, fp_dims=(64, 32), head_dims=(32, 16), fetch_idx=(1, 2, 3), npoints=128)
MODEL_SET = ("model={embed_dim: 32, depth: 4, num_heads: 2, group_size: 8, num_group: 16, encoder_dims: 32, "
             "drop_path_rate: 0.0, fp_dims: [64, 32], head_dims: [32, 16], fetch_idx: [1, 2, 3]}")


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    """Tiny rooms in the official format: Areas 1 and 2 for training, two Area-5 rooms for testing."""
    root = tmp_path_factory.mktemp("s3dis") / "stanford_indoor3d"
    root.mkdir()
    for k, name in enumerate(["Area_1_office_1", "Area_2_office_1", "Area_5_office_1", "Area_5_hallway_1"]):
        xyz, labels = synthetic_room(2500, size=(2.6, 2.2, 2.4), chairs=2, seed=k)
        write_s3dis_room(root / f"{name}.npy", xyz, labels, seed=k)
    return root


# ------------------------------------------------------------------------------ metrics
def test_scores_are_the_official_formulas():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 13, 5000)
    pred = np.where(rng.random(5000) < 0.6, target, rng.integers(0, 13, 5000))
    pred[pred == 3] = 4  # class 3 never predicted
    scores = semseg_scores(torch.from_numpy(pred), torch.from_numpy(target), S3DIS_CLASSES)
    tp = np.array([np.sum((pred == c) & (target == c)) for c in range(13)])
    union = np.array([np.sum((pred == c) | (target == c)) for c in range(13)])
    seen = np.array([np.sum(target == c) for c in range(13)])
    # main_test.py, with its 1e-6 guards (they move the values by ~1e-9 here)
    assert scores.miou == pytest.approx(np.mean(tp / (union.astype(np.float64) + 1e-6)), abs=1e-7)
    assert scores.macc == pytest.approx(np.mean(tp / (seen.astype(np.float64) + 1e-6)), abs=1e-7)
    assert scores.oa == pytest.approx(np.sum(tp) / float(np.sum(seen) + 1e-6), abs=1e-7)
    d = scores.to_dict()
    assert set(d) == {"miou", "macc", "oa"} | {f"iou/{n}" for n in S3DIS_CLASSES}
    assert d["iou/beam"] == 0.0 and d["miou"] == pytest.approx(100 * scores.miou)
    assert "mIoU" in scores.format() and "ceiling" in scores.format()


def test_meter_sums_counts_over_rooms_and_names_absent_classes(caplog):
    meter = SemSegMeter(("a", "b", "c"))
    meter.update(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]))
    meter.update(torch.tensor([1, 1]), torch.tensor([1, 0]))
    with caplog.at_level("WARNING"):
        s = meter.compute()
    # summed counts: TP a=1 b=2; union a=3 b=4; a room-wise mean would differ
    assert s.tp.tolist() == [1, 2, 0] and s.union.tolist() == [3, 4, 0] and s.gt.tolist() == [2, 3, 0]
    assert s.miou == pytest.approx((1 / 3 + 2 / 4 + 0) / 3) and s.absent == ("c",) and "c" in caplog.text
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        meter.update(torch.tensor([3]), torch.tensor([0]))
    assert confusion_matrix(torch.tensor([0, 2]), torch.tensor([-1, 2]), 3, ignore_index=-1).sum() == 1


# ------------------------------------------------------------------------------ whole-room voting
def _official_main_test(model, path, *, votes, npoints, seed):
    """main_test.py + ScannetDatasetWholeScene, loop for loop (rows outer, one block at a
    time, add_vote point by point), with np.random replaced by the per-block generators."""
    room = read_room(path)
    points, labels = room.xyz, room.labels
    lo, hi = points.min(0), points.max(0)
    gx = max(1, int(np.ceil(float(hi[0] - lo[0] - 1.0) / 0.5) + 1))
    gy = max(1, int(np.ceil(float(hi[1] - lo[1] - 1.0) / 0.5) + 1))
    pool = np.zeros((len(labels), 13))
    for vote in range(votes):
        for iy in range(gy):
            for ix in range(gx):
                s_x = lo[0] + ix * 0.5
                e_x = min(s_x + 1.0, hi[0])
                s_x = e_x - 1.0
                s_y = lo[1] + iy * 0.5
                e_y = min(s_y + 1.0, hi[1])
                s_y = e_y - 1.0
                idx = np.where((points[:, 0] >= s_x - 0.001) & (points[:, 0] <= e_x + 0.001)
                               & (points[:, 1] >= s_y - 0.001) & (points[:, 1] <= e_y + 0.001))[0]
                if idx.size == 0:
                    continue
                rng = np.random.default_rng([seed, vote, ix, iy])
                size = int(np.ceil(idx.size / npoints)) * npoints
                rep = rng.choice(idx, size - idx.size, replace=(size - idx.size) > idx.size)
                idx = np.concatenate((idx, rep))
                rng.shuffle(idx)
                data = points[idx].copy()
                data[:, 0] -= s_x + 0.5
                data[:, 1] -= s_y + 0.5
                for chunk, chunk_idx in zip(data.reshape(-1, npoints, 3), idx.reshape(-1, npoints)):
                    with torch.no_grad():
                        lp = model(torch.from_numpy(chunk.astype(np.float32))[None])
                    for n, p in zip(chunk_idx, lp[0].argmax(-1).tolist()):
                        pool[n, p] += 1
    return np.argmax(pool, 1), labels


def test_evaluate_rooms_is_the_official_whole_room_vote(rooms):
    torch.manual_seed(0)
    model = ACTSemSeg(TINY).double().eval()  # float64: batching cannot move an argmax
    test = split_rooms(rooms, "test")
    preds, targets = [], []
    for r in test:
        p, t = _official_main_test(model, r.path, votes=2, npoints=256, seed=7)
        preds.append(p)
        targets.append(t)
    want = semseg_scores(torch.from_numpy(np.concatenate(preds)), torch.from_numpy(np.concatenate(targets)),
                         S3DIS_CLASSES)
    got = evaluate_rooms(model, rooms, votes=2, npoints=256, batch_size=5, seed=7)
    assert torch.equal(got.tp, want.tp) and torch.equal(got.union, want.union) and torch.equal(got.gt, want.gt)
    assert got.gt.sum() == sum(len(t) for t in targets)  # every point of every Area-5 room
    assert torch.equal(evaluate_rooms(model, [r.path for r in test], votes=2, npoints=256, batch_size=64, seed=7).tp,
                       want.tp)



def test_evaluate_rooms_moves_the_model_to_the_device_it_is_given(rooms):
    """``device=`` moves the model too, not only its inputs (a CPU model with ``device="cuda"``
    used to get cuda inputs); checked on the CPU with a spy on ``model.to``."""
    torch.manual_seed(0)
    model = ACTSemSeg(TINY).double().eval()
    test = split_rooms(rooms, "test")[:1]
    want = evaluate_rooms(model, [r.path for r in test], votes=1, npoints=128, seed=3)
    moved_to, to = [], model.to

    def spy(*args, **kwargs):
        moved_to.append(args)
        return to(*args, **kwargs)

    model.to = spy
    seen = []
    model.register_forward_pre_hook(lambda m, inputs: seen.append(
        (inputs[0].device, next(m.parameters()).device)))
    got = evaluate_rooms(model, [r.path for r in test], votes=1, npoints=128, seed=3, device="cpu")
    assert moved_to == [("cpu",)]
    assert seen and all(x == p == torch.device("cpu") for x, p in seen)
    assert torch.equal(got.tp, want.tp) and torch.equal(got.union, want.union)


# ------------------------------------------------------------------------------ training pipeline
def test_semseg_pipeline_end_to_end(rooms, tmp_path):
    out = tmp_path / "run"
    cfg = load_config("semseg", None, [
        f"data.root={rooms}", "npoints=128", "min_block_points=100", "run.batch_size=4",
        "run.max_epoch=1", "run.max_steps=3", "run.progress=false", "run.tensorboard=false", "eval_batch_size=8",
        "votes=1", f"run.out_dir={out}", MODEL_SET])
    assert cfg.optim.lr == 2e-4 and cfg.double_step and cfg.run.grad_clip == 10.0 and cfg.scheduler.lr_min == 1e-6
    summary = train("semseg", cfg)
    final = summary["final (last epoch, whole rooms)"]
    assert summary["steps"] == 3 and 0 <= final["miou"] <= 100 and "iou/chair" in final
    assert (out / "final_scores.txt").read_text().count("\n") >= 15
    model = act_zoo.from_pretrained(out)
    assert isinstance(model, ACTSemSeg) and model.config.npoints == 128 and model.class_names == S3DIS_CLASSES
    import csv

    with open(out / "eval_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and "miou" in rows[-1] and "iou/floor" in rows[-1]


def test_act_zoo_train_semseg_cli(rooms, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "semseg", "--out", str(out), "--set", f"data.root={rooms}", "--set", "npoints=128",
                 "--set", "min_block_points=100", "--set", "run.batch_size=4", "--set", "run.max_epoch=0",
                 "--set", "run.max_steps=1", "--set", "run.progress=false", "--set", "run.tensorboard=false",
                 "--set", "votes=1", "--set", "eval_protocol=rooms", "--set", "double_step=false", "--set", MODEL_SET])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == "semseg" and "miou" in summary["final (last epoch, whole rooms)"]
    assert (out / "best" / "model.safetensors").is_file()


def test_semseg_needs_s3dis_root(tmp_path):
    out = f"run.out_dir={tmp_path / 'run'}"
    cfg = load_config("semseg", None, ["run.progress=false", out, MODEL_SET])
    with pytest.raises(ValueError, match="data.root is required"):
        train("semseg", cfg)
    with pytest.raises(ValueError, match="eval_protocol"):
        train("semseg", load_config("semseg", None, ["eval_protocol=whole", "data.root=x", out, MODEL_SET]))


# ------------------------------------------------------------------------------ act-zoo evaluate
def test_act_zoo_evaluate_a_semseg_model_on_s3dis_rooms(rooms, tmp_path, capsys):
    torch.manual_seed(0)
    model = ACTSemSeg(TINY).eval()
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    direct = evaluate_rooms(model, rooms, votes=1, npoints=128, seed=0)
    result = act_zoo.evaluate(model, dataset="s3dis", root=rooms, votes=1, progress=False)
    assert result.rooms == 2 and torch.equal(result.scores.tp, direct.tp) and result.votes == 1
    assert result.miou == pytest.approx(100 * direct.miou) and result.report().splitlines()[-1].startswith("miou: ")
    # a folder of room files of your own (every .npy in it), and the command as a user types it
    own = tmp_path / "my_rooms"
    own.mkdir()
    for r in split_rooms(rooms, "test"):
        (own / r.path.name.replace("Area_5_", "")).write_bytes(r.path.read_bytes())
    mine = act_zoo.evaluate(model, str(own), votes=1, progress=False)
    assert torch.equal(mine.scores.tp, direct.tp)
    png = tmp_path / "cm.png"
    assert main(["evaluate", str(model_dir), "--dataset", "s3dis", "--root", str(rooms), "--votes", "1",
                 "--confusion", str(png), "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"miou: {100 * direct.miou:.2f}" and any("ceiling" in line for line in out)
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="S3DIS format"):
        act_zoo.evaluate(model, dataset="modelnet40", root=rooms)
    with pytest.raises(FileNotFoundError, match="no .npy room files"):
        act_zoo.evaluate(model, str(tmp_path / "model"))


def test_the_recipe_is_the_official_run():
    cfg = load_config("semseg", "recipe:s3dis_semseg", ["data.root=ROOT"])
    assert cfg.model == SemSegConfig() and cfg.npoints == 2048 and cfg.test_area == 5 and cfg.votes == 3
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adamw", 2e-4, 0.05)
    assert (cfg.scheduler.warmup_epochs, cfg.scheduler.warmup_lr_init, cfg.scheduler.lr_min) == (10, 1e-6, 1e-6)
    assert (cfg.run.max_epoch, cfg.run.batch_size, cfg.run.grad_clip) == (60, 32, 10.0)
    assert cfg.double_step and cfg.min_block_points == 1024 and cfg.block_size == 1.0 and cfg.stride == 0.5
    assert cfg.init == "act_base.pretrain" and cfg.class_weights
    from act_zoo.recipes import get_recipe

    recipe = get_recipe("s3dis_semseg")
    assert recipe.produces == ("act_base.s3dis_semseg",) and recipe.results[0].value == 61.2
    assert recipe.data_check_command == "act-zoo data check s3dis ROOT"
