"""act-zoo show / act_zoo.viz: patch tokens -> PCA -> colours, a PNG, the user's backend untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

import act_zoo
from act_zoo.cli import main
from act_zoo.data import SyntheticShapes
from act_zoo.viz import nearest_patch, patch_pca_colors, patch_pca_figure

ROOT = Path(__file__).resolve().parents[1]


def _tiny_encoder() -> act_zoo.ACTEncoder:
    torch.manual_seed(0)
    return act_zoo.ACTEncoder(act_zoo.PointTransformerConfig(embed_dim=32, depth=1, num_heads=2, num_group=8,
                                                             group_size=8, encoder_dims=32, npoints=128)).eval()


def _cloud(n: int = 300, cls: str = "table") -> np.ndarray:
    return SyntheticShapes(1, num_points=n, classes=[cls], seed=1, rotate=False).generate(0)[0]


def test_pca_colours_follow_the_token_structure():
    rng = np.random.default_rng(0)
    # two clusters of tokens along one direction, small noise elsewhere: PC1 separates them
    direction = rng.standard_normal(16)
    labels = np.array([0, 1] * 6)
    tokens = np.outer(labels * 2.0 - 1.0, direction) * 5 + 0.01 * rng.standard_normal((12, 16))
    colors, explained = patch_pca_colors(tokens)
    assert colors.shape == (12, 3) and colors.min() >= 0 and colors.max() <= 1
    red = colors[:, 0]
    assert {tuple(np.round(red[labels == k], 2)) for k in (0, 1)} != set()
    assert np.ptp(red[labels == 0]) < 0.05 and np.ptp(red[labels == 1]) < 0.05  # one colour per cluster
    assert abs(red[labels == 0].mean() - red[labels == 1].mean()) > 0.9  # the two clusters at both ends
    assert explained[0] > 0.99 and explained.sum() <= 1 + 1e-9
    # the colours are a function of the tokens, not of their order
    perm = rng.permutation(12)
    colors_p, _ = patch_pca_colors(tokens[perm])
    np.testing.assert_allclose(colors_p, colors[perm], atol=1e-9)


def test_pca_colours_of_few_or_identical_tokens_and_bad_input():
    colors, explained = patch_pca_colors(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]))
    assert colors.shape == (2, 3) and explained[1] == 0 and explained[2] == 0
    assert sorted(colors[:, 0]) == [0.0, 1.0] and (colors[:, 1:] == 0.5).all()  # missing components: grey
    flat, explained = patch_pca_colors(np.ones((5, 4)))
    assert (flat == 0.5).all() and (explained == 0).all()
    with pytest.raises(ValueError, match=r"\[G, C\]"):
        patch_pca_colors(np.ones(5))
    with pytest.raises(ValueError, match="NaN"):
        patch_pca_colors(np.array([[0.0, np.nan], [1.0, 1.0]]))


def test_nearest_patch():
    pts = np.array([[0.0, 0, 0], [0.9, 0, 0], [2.1, 0, 0]])
    centers = np.array([[0.0, 0, 0], [2.0, 0, 0]])
    assert nearest_patch(pts, centers).tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="centers"):
        nearest_patch(pts, np.zeros((0, 3)))


def test_figure_colours_each_point_by_its_patch():
    enc = _tiny_encoder()
    cloud = _cloud()
    fig = patch_pca_figure(enc, cloud, title="t")
    feats = act_zoo.extract_features(enc, cloud)
    colors, _ = patch_pca_colors(feats.tokens)
    used = np.unique(nearest_patch(cloud, feats.centers))
    fig.canvas.draw()  # matplotlib 3D collections report their colours correctly only once drawn
    points, centres = fig.axes[0].collections[:2]  # the first view: the cloud, then the patch centres
    assert len(points.get_offsets()) == len(cloud) and len(centres.get_offsets()) == len(colors)
    rows = lambda a: np.unique(np.round(a[:, :3], 5), axis=0)
    np.testing.assert_allclose(rows(centres.get_facecolors()), rows(colors), atol=1e-5)
    # every point has its own patch's colour: the drawn colours are exactly those of the patches in use
    np.testing.assert_allclose(rows(points.get_facecolors()), rows(colors[used]), atol=1e-5)
    assert len(fig.axes) == 2 and fig.texts and fig._suptitle.get_text() == "t"
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        patch_pca_figure(enc, np.zeros((10, 2)))
    with pytest.raises(TypeError, match="ACT encoder"):
        patch_pca_figure(torch.nn.Linear(3, 3), cloud)


def test_library_leaves_the_backend_and_pyplot_alone(tmp_path):
    """In a fresh process with a non-Agg backend chosen by the user: no pyplot import, same backend."""
    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('svg')\n"
        "import numpy as np, torch, act_zoo\n"
        "from act_zoo.viz import patch_pca_figure\n"
        "torch.manual_seed(0)\n"
        "enc = act_zoo.ACTEncoder(act_zoo.PointTransformerConfig(embed_dim=32, depth=1, num_heads=2, num_group=8,"
        " group_size=8, encoder_dims=32, npoints=64))\n"
        "fig = patch_pca_figure(enc, np.random.default_rng(0).standard_normal((200, 3)))\n"
        f"fig.savefig({str(tmp_path / 'a.png')!r})\n"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["svg", "False"]
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_show_writes_a_png_with_the_embedded_model(tmp_path, monkeypatch, capsys):
    import matplotlib
    from matplotlib.image import imread

    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")  # the embedded weights need no network
    backend = matplotlib.get_backend()
    src = tmp_path / "table.npy"
    np.save(src, _cloud(600))
    out = tmp_path / "pic.png"
    assert main(["show", "act_tiny.synthetic10", str(src), "--out", str(out), "--dpi", "50"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    img = imread(out)
    assert img.shape[:2] == (230, 420) and img[..., :3].std() > 0.05  # 8.4 x 4.6 in at 50 dpi, not blank
    assert matplotlib.get_backend() == backend
    assert not list(tmp_path.glob(".pic.png.*"))  # written atomically, no temporary left


@pytest.mark.parametrize("args,message", [
    (["act_tiny.synthetic10", "{tmp}/missing.ply", "--out", "{tmp}/a.png"], "file not found"),
    (["act_tiny.synthetic10", "{src}", "--out", "{tmp}/a.jpg"], "--out must end in .png"),
    (["act_tiny.synthetic10", "{src}", "--out", "{tmp}/a.png", "--max-points", "0"], "--max-points must be >= 1"),
    (["act_tiny.synthetic1", "{src}", "--out", "{tmp}/a.png"], "unknown model"),
    (["act_tiny.synthetic10", "{bad}", "--out", "{tmp}/a.png"], "bad.npy"),
])
def test_cli_show_bad_inputs_are_one_clear_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    src, bad = tmp_path / "ok.npy", tmp_path / "bad.npy"
    np.save(src, _cloud(200))
    np.save(bad, np.zeros((20, 2), dtype=np.float32))  # not [N, 3]
    argv = [a.format(tmp=tmp_path, src=src, bad=bad) for a in args]
    assert main(["show", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("act-zoo show: error:") and message in err, err
    assert not (tmp_path / "a.png").exists()


def _readme_show_command() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## What an encoder separates", 1)[1].split("\n## ", 1)[0]
    body = section.split("```bash", 1)[1].split("```", 1)[0]
    (line,) = [ln.strip() for ln in body.strip().splitlines()]
    return line


def test_readme_show_command_as_typed(tmp_path, monkeypatch, capsys):
    """The README's command, run as typed from a directory holding its input, writes the picture
    the README shows (the committed one is small and has the same size)."""
    import shlex
    import shutil

    from matplotlib.image import imread

    line = _readme_show_command()
    assert line == "act-zoo show act_tiny.synthetic10 docs/table.npy --out docs/show_table.png"
    assert "![" in (ROOT / "README.md").read_text() and "(docs/show_table.png)" in (ROOT / "README.md").read_text()
    (tmp_path / "docs").mkdir()
    shutil.copyfile(ROOT / "docs" / "table.npy", tmp_path / "docs" / "table.npy")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACT_ZOO_OFFLINE", "1")
    argv = shlex.split(line)
    assert argv[0] == "act-zoo" and main(argv[1:]) == 0
    assert "wrote docs/show_table.png" in capsys.readouterr().out
    committed = ROOT / "docs" / "show_table.png"
    assert committed.stat().st_size < 300_000
    assert imread(tmp_path / "docs" / "show_table.png").shape == imread(committed).shape
