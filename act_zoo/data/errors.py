"""The one error type raised for a bad file or a bad dataset layout."""

from __future__ import annotations

import os

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A file is missing, unreadable, truncated, of the wrong shape, or a layout is wrong.

    Every message names the offending file (or folder) and says what is wrong with it.

    Attributes:
        path: the offending file or folder, or ``None`` where there is none.
        problem: the problem, without the path.
    """

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(problem if self.path is None else f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[type[DatasetError], tuple[str | None, str]]:
        # keep the two-argument constructor across pickling (DataLoader workers re-raise it)
        return (type(self), (self.path, self.problem))
