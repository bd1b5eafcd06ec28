"""Plots are drawn without touching the user's matplotlib backend (issue 12, dead code / global state)."""

from __future__ import annotations

import numpy as np
import pytest

from act_zoo.train.monitor import Monitor, plot_reconstructions

matplotlib = pytest.importorskip("matplotlib")


@pytest.fixture
def user_backend():
    """A user who chose a non-Agg backend (svg: non-interactive, available everywhere)."""
    before = matplotlib.get_backend()
    matplotlib.use("svg", force=True)
    yield "svg"
    matplotlib.use(before, force=True)


def test_plots_leave_the_users_backend_and_pyplot_alone(tmp_path, user_backend):
    import matplotlib.pyplot as plt

    figures = plt.get_fignums()
    mon = Monitor(tmp_path, tensorboard=False)
    for step in range(1, 6):
        mon.log_train({"step": step, "epoch": 0, "loss": 1.0 / step})
    mon.log_eval({"step": 5, "epoch": 0, "acc": 50.0})
    paths = mon.plot_curves(["loss"], ["acc"])
    rng = np.random.default_rng(0)
    clouds = [rng.normal(size=(64, 3)) for _ in range(2)]
    recon = plot_reconstructions(tmp_path / "plots" / "recon.png", clouds, clouds, title="t")
    assert [p.name for p in paths] == ["train.png", "eval.png"] and recon is not None
    for p in [*paths, recon]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # PNG files (drawn by Agg), not svg
    assert matplotlib.get_backend().lower() == user_backend
    assert plt.get_fignums() == figures  # no pyplot figure created, none left open


def test_no_library_module_switches_the_matplotlib_backend():
    from pathlib import Path

    import act_zoo

    offenders = [str(p) for p in Path(act_zoo.__file__).parent.rglob("*.py") if "matplotlib.use(" in p.read_text()]
    assert offenders == []
