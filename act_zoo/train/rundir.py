"""One trainer per run directory: a lock held for the run's life, and a claim on what is there.

* A second trainer on a directory in use fails at once (:class:`RunDirectoryBusy`) instead of
  the two deleting each other's checkpoints mid-run.
* A new run refuses a directory that already holds files unless asked to ``overwrite`` it
  (then the previous run's files are removed first; a non-empty directory that is not an
  act_zoo run is never emptied); ``resume`` continues whatever run is there.
* What an interrupted save left behind (``checkpoints/.tmp-step-*``) is removed on start.

Under ``torchrun`` only rank 0 opens the run directory; the other ranks write nothing.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from filelock import FileLock, Timeout

from .checkpoint import remove_stale_temporaries

logger = logging.getLogger(__name__)

LOCK_NAME = ".act_zoo_run.lock"
# entries that mark a directory as an act_zoo run (the trainer writes the first two at start)
_RUN_MARKERS = ("train_config.yaml", "checkpoints", "train_log.csv", "summary.json")


class RunDirectoryError(RuntimeError):
    """The run directory cannot be used as asked (not empty, not a run, ...)."""


class RunDirectoryBusy(RunDirectoryError):
    """Another trainer holds the run directory."""


class RunDirectory:
    """Lock and claim a run directory: ``RunDirectory(path).open(resume=..., overwrite=...)``,
    then :meth:`close` when the run ends."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = FileLock(str(self.path / LOCK_NAME), timeout=0)

    def open(self, *, resume: bool = False, overwrite: bool = False) -> RunDirectory:
        if resume and overwrite:
            raise RunDirectoryError("resume and overwrite exclude each other: resume continues the run in "
                                    f"{self.path}, overwrite deletes it")
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise RunDirectoryBusy(
                f"run directory {self.path} is in use by another trainer (it holds {self.path / LOCK_NAME}); "
                "wait for that run to finish, or choose another --out") from None
        try:
            self._claim(resume=resume, overwrite=overwrite)
        except BaseException:
            self.close()
            raise
        return self

    def _claim(self, *, resume: bool, overwrite: bool) -> None:
        entries = sorted(p for p in self.path.iterdir() if p.name != LOCK_NAME)
        if entries and not resume:
            names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in entries[:6])
            names += ", ..." if len(entries) > 6 else ""
            if not overwrite:
                raise RunDirectoryError(
                    f"run directory {self.path} is not empty ({names}); pass --resume to continue the run in it, "
                    "--overwrite to delete it and start again (overwrite=True in Python), or choose another --out")
            if not any((self.path / m).exists() for m in _RUN_MARKERS):
                raise RunDirectoryError(
                    f"refusing to overwrite {self.path}: it is not empty ({names}) and holds no act_zoo run "
                    "(no train_config.yaml or checkpoints/); choose an empty or new directory")
            logger.warning("--overwrite: deleting the previous run in %s (%s)", self.path, names)
            for p in entries:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
        remove_stale_temporaries(self.path)

    def close(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)
