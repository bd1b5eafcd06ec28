"""Loading the official ModelNet pickles (``*.dat``, few-shot ``*.pkl``) as safely as pickle allows.

Only ever called after an explicit opt-in (``allow_pickle=True`` or the converter). Even
then the unpickler resolves only the handful of numpy globals that arrays need (no
arbitrary callables), and every read is capped at the bytes the file really holds, so a
length field larger than the file is a "truncated" error instead of a huge allocation.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from ._common import nonempty_file
from .errors import DatasetError

# (module, name) pairs an array pickle needs; numpy 1.x pickles say numpy.core, 2.x numpy._core
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # protocol 2 writes bytes this way
}


class _BoundedReader(io.RawIOBase):
    """A read-only view of a file that never reads (or asks to allocate) past its end."""

    def __init__(self, fp: io.BufferedReader, size: int) -> None:
        super().__init__()
        self._fp = fp
        self._left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._fp.read(n)
        self._left -= len(data)
        return data

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        n = min(len(view), self._left)
        got = self._fp.readinto(view[:n])
        self._left -= got
        return got

    def readline(self, limit: int | None = -1) -> bytes:
        cap = self._left if limit is None or limit < 0 else min(limit, self._left)
        line = self._fp.readline(cap)
        self._left -= len(line)
        return line


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data pickle")
        if module.startswith("numpy.core"):
            try:  # numpy >= 2 moved numpy.core to numpy._core; avoid its deprecation shim
                return super().find_class("numpy._core" + module[len("numpy.core") :], name)
            except (ImportError, AttributeError):
                pass
        return super().find_class(module, name)


def load_data_pickle(path: str | Path) -> Any:
    """Unpickle an official ModelNet data pickle, allowing numpy arrays and plain containers only.

    Raises:
        DatasetError: missing, empty, truncated or garbage file, or a disallowed global.
    """
    p, size = nonempty_file(path)
    try:
        with open(p, "rb") as fp:
            return _ArrayUnpickler(_BoundedReader(fp, size)).load()
    except Exception as exc:  # pickle raises almost anything on garbage (MemoryError, RecursionError too)
        raise DatasetError(p, f"is not a readable data pickle ({type(exc).__name__}: {exc})") from exc
