"""Metrics out of a run: CSV files, TensorBoard (when installed) and matplotlib plots.

``train_log.csv``: one row per logged optimizer step (step, epoch, lr, losses ...);
``eval_log.csv``: one row per evaluation (epoch, step, metrics ...). On resume, rows past the
checkpoint are dropped so the files read as if the run had never stopped.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class CSVLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as fh:
                self.rows = [dict(r) for r in csv.DictReader(fh)]

    def truncate_after(self, step: int) -> None:
        self.rows = [r for r in self.rows if float(r.get("step", 0)) <= step]
        self._write()

    def append(self, row: Mapping[str, Any]) -> None:
        self.rows.append({k: _fmt(v) for k, v in row.items()})
        self._write()

    def _write(self) -> None:
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(self.path)

    def column(self, key: str) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for r in self.rows:
            if r.get(key) not in (None, ""):
                xs.append(float(r.get("step", 0)))
                ys.append(float(r[key]))
        return xs, ys


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


class Monitor:
    """CSV (always), TensorBoard (when installed and enabled); rank 0 only."""

    def __init__(self, run_dir: Path, *, tensorboard: bool = True, enabled: bool = True) -> None:
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.train = CSVLog(self.run_dir / "train_log.csv") if enabled else None
        self.eval = CSVLog(self.run_dir / "eval_log.csv") if enabled else None
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except Exception:  # tensorboard not installed: CSV only
                logger.debug("tensorboard unavailable; metrics go to CSV only")

    def resume_at(self, step: int) -> None:
        if self.enabled:
            self.train.truncate_after(step)
            self.eval.truncate_after(step)

    def log_train(self, row: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        self.train.append(row)
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}", v, row["step"])

    def log_eval(self, row: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        self.eval.append(row)
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"eval/{k}", v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

    def plot_curves(self, train_keys: Sequence[str], eval_keys: Sequence[str]) -> list[Path]:
        """``plots/train.png`` and ``plots/eval.png`` (loss / metric curves)."""
        if not self.enabled:
            return []
        if not _have_matplotlib():
            logger.info("matplotlib not installed: no plots")
            return []
        out = []
        for log, keys, name in ((self.train, train_keys, "train"), (self.eval, eval_keys, "eval")):
            series = [(k, *log.column(k)) for k in keys]
            series = [s for s in series if s[1]]
            if not series:
                continue
            fig = _agg_figure(figsize=(4.5 * len(series), 3.5))
            axes = fig.subplots(1, len(series), squeeze=False)
            for ax, (k, xs, ys) in zip(axes[0], series):
                ax.plot(xs, ys, marker="." if len(xs) < 50 else None)
                ax.set_title(k)
                ax.set_xlabel("step")
                ax.grid(alpha=0.3)
            fig.tight_layout()
            path = self.run_dir / "plots" / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=90)
            out.append(path)
        return out


def _have_matplotlib() -> bool:
    """matplotlib is optional (the ``train`` extra) and imported only when plotting."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:  # pragma: no cover - exercised only without the extra
        return False
    return True


def _agg_figure(**kwargs: Any) -> Any:
    """A matplotlib ``Figure`` drawn by the Agg canvas, outside pyplot: the user's backend and
    pyplot's figure list are never touched (no ``matplotlib.use``, nothing to close)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def plot_reconstructions(path: Path, inputs: Sequence[Any], recons: Sequence[Any], title: str = "") -> Path | None:
    """Side-by-side 3-D scatter plots of input clouds and their stage-I reconstructions."""
    if not _have_matplotlib():
        return None
    n = len(inputs)
    fig = _agg_figure(figsize=(4 * n, 8))
    for i, (a, b) in enumerate(zip(inputs, recons)):
        for row, (pts, label) in enumerate(((a, "input"), (b, "reconstruction"))):
            ax = fig.add_subplot(2, n, row * n + i + 1, projection="3d")
            pts = pts[:: max(1, math.ceil(len(pts) / 2048))]
            ax.scatter(pts[:, 0], pts[:, 2], pts[:, 1], s=1, c=pts[:, 1], cmap="viridis")
            ax.set_title(f"{label} {i}")
            ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return Path(path)
