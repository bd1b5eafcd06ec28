"""How a run was made, recorded in its ``summary.json``: the command, the code's commit, versions, times.

``scripts/package_embedded.py`` turns this (with the run's ``train_config.yaml``: teacher, seeds)
into the ``provenance`` of a weights manifest record. Every value is a string or None, so
numeric summaries (e.g. :func:`~act_zoo.train.api.sweep_seeds`) never mistake one for a metric.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

__all__ = ["code_commit", "command_line", "run_provenance"]

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # .../act_zoo


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_commit() -> tuple[str | None, str | None]:
    """(commit, ``"clean"`` | ``"modified"``) of the git checkout act_zoo runs from (modified:
    changed or untracked files, not ignored ones), or
    (None, None) when it does not run from one (an installed wheel, even one inside a
    repository's virtual environment, has no commit of its own)."""
    top = _git("rev-parse", "--show-toplevel", cwd=_PACKAGE_DIR)
    if top is None or Path(top).resolve() != _PACKAGE_DIR.parent:
        return None, None
    commit = _git("rev-parse", "HEAD", cwd=_PACKAGE_DIR)
    status = _git("status", "--porcelain", cwd=_PACKAGE_DIR)  # untracked files count: they may be code that ran
    return commit, None if status is None else ("modified" if status else "clean")


def command_line(argv: list[str] | None = None) -> str:
    """The command as a user would type it: ``python examples/x.py ...`` or ``act-zoo train ...``."""
    argv = list(sys.argv if argv is None else argv)
    if not argv or not argv[0]:
        return ""
    prog = argv[0]
    if prog.endswith(".py"):
        return shlex.join(["python", prog, *argv[1:]])
    if prog == "-c" or prog == "-m":
        return shlex.join(["python", prog, *argv[1:]])
    return shlex.join([os.path.basename(prog), *argv[1:]])


def _utc(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat(timespec="seconds")


def run_provenance(*, started: float, finished: float) -> dict[str, str | None]:
    """The record a trainer adds to ``summary.json`` (times are POSIX seconds)."""
    import torch

    from .._version import __version__

    commit, tree = code_commit()
    return {"command": command_line(), "commit": commit, "worktree": tree, "act_zoo_version": __version__,
            "torch_version": torch.__version__, "python_version": platform.python_version(),
            "started": _utc(started), "finished": _utc(finished)}
