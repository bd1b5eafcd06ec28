"""Feature files written while extraction runs: bounded memory, resumable, one per rank.

While a run is in progress its results live next to the output ``OUT`` (a ``.npz``, a
``.safetensors`` or a directory of ``.npy`` files)::

    OUT.partial/
        manifest.json      the inputs in order, and the record (model fingerprint, settings)
        part-000000.npz    features of consecutive inputs (their ``positions`` in the list)
        part-000001.npz    and the inputs skipped among them, with the reasons
        ...

A part is written (to a temporary name, then renamed) once :data:`PART_ROWS` rows or
:data:`PART_BYTES` bytes are buffered, so memory never holds more than one part and an
interrupted run loses at most one part of work. At the end the parts are assembled into
``OUT`` field by field, streaming (each part read once per field: ``.npz`` members and
``.npy`` files are written header first, then row blocks; ``.safetensors`` -- which its library
can only write from arrays held in memory -- by writing its simple layout here), and the
folder is removed. ``OUT`` therefore has the layout of :meth:`FileFeatures.save`, plus a
``meta`` record (model fingerprint, preparation settings, the inputs' count and digest,
the shard) that ``resume`` checks.

One run at a time writes ``OUT``: a second one fails at once (a lock file ``OUT.lock`` is held
while a store is open and removed by :meth:`FeatureStore.close`).

``resume=True`` continues an interrupted run from its parts, or finds ``OUT`` complete; in
both cases only when the inputs (same files, same order) and the record are the same, else a
``ValueError`` says what differs. Inputs skipped as unreadable stay skipped. Without
``resume`` an earlier run's parts are discarded (with a warning) and ``OUT`` is replaced.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
import shutil
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from filelock import FileLock, Timeout

logger = logging.getLogger("act_zoo")

OutputFormat = Literal["npz", "safetensors", "dir"]
FIELDS = ("global_feature", "tokens", "centers", "cls")
#: a part is written once this many rows, or this many bytes, are buffered
PART_ROWS = 1024
PART_BYTES = 64 << 20
#: the safetensors library refuses headers above 100 MB; the file list lives in the header
SAFETENSORS_MAX_HEADER = 100_000_000
MANIFEST = "manifest.json"
_PART = re.compile(r"part-(\d{6,})\.npz")


def partial_dir(path: Path) -> Path:
    """Where a run writing ``path`` keeps its parts."""
    return path.with_name(path.name + ".partial")


def inputs_digest(inputs: Sequence[str]) -> dict[str, Any]:
    """``{"count", "sha256"}`` of an ordered input list (what the record keeps of it)."""
    return {"count": len(inputs), "sha256": hashlib.sha256("\n".join(inputs).encode()).hexdigest()}


@dataclass
class Record:
    """What an output says about itself: the inputs read (in order), those skipped, its meta."""

    files: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    meta: dict[str, Any] | None = None


@dataclass
class StoredFeatures:
    """An output read back: ``arrays`` (float32, one row per file) and its :class:`Record`."""

    arrays: dict[str, np.ndarray]
    record: Record


class FeatureStore:
    """Streams feature rows to ``path`` (see the module docstring).

    Args:
        path, fmt: the output and its format (validated by the caller).
        inputs: every input of this run, in order (row positions refer to it).
        meta: the record of this run (JSON-able); ``resume`` requires it to be equal.
        row_shapes: ``{field: shape of one row}``: the fields written, in order.
        resume: continue an earlier run (see the module docstring).

    Attributes:
        todo: positions still to compute, in order (empty when the output is complete).
        resumed: how many inputs an earlier run already did (features or skipped).
    """

    def __init__(self, path: Path, fmt: OutputFormat, inputs: Sequence[str], meta: dict[str, Any],
                 row_shapes: dict[str, tuple[int, ...]], *, resume: bool) -> None:
        self.path, self.fmt, self.inputs, self.meta = path, fmt, list(inputs), meta
        self.row_shapes = dict(row_shapes)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = path.with_name(path.name + ".lock")
        self._lock: FileLock | None = FileLock(str(self._lock_path), timeout=0)
        try:
            self._lock.acquire()
        except Timeout:
            self._lock = None
            raise ValueError(f"{path}: another extraction is writing this output right now (lock {self._lock_path}); "
                             "wait for it, or choose another --out") from None
        try:
            self._open(resume)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the output's lock (and remove the lock file); the store is done."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
            self._lock_path.unlink(missing_ok=True)

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self, resume: bool) -> None:
        path, fmt = self.path, self.fmt
        self.work = partial_dir(path)
        self.complete: Record | None = None
        self._buffer: dict[str, list[np.ndarray]] = {k: [] for k in self.row_shapes}
        self._positions: list[int] = []
        self._skipped: list[tuple[int, str]] = []
        self._bytes = 0
        self._seq = 0
        if fmt == "safetensors":
            _check_safetensors_header(path, self.inputs)
        done: set[int] = set()
        if resume:
            done = self._open_resumed()
        else:
            self._discard_earlier_run()
        self.resumed = len(self.inputs) if self.complete is not None else len(done)
        self.todo = [] if self.complete is not None else [i for i in range(len(self.inputs)) if i not in done]
        if self.complete is None and not (self.work / MANIFEST).is_file():
            self.work.mkdir(parents=True, exist_ok=True)
            _write_json(self.work / MANIFEST, {"inputs": self.inputs, "meta": self.meta})

    # ------------------------------------------------------------------ opening
    def _open_resumed(self) -> set[int]:
        manifest_path = self.work / MANIFEST
        if manifest_path.is_file():
            manifest = json.loads(manifest_path.read_text())
            _check_same_inputs(manifest["inputs"], self.inputs, self.work)
            _check_same_meta(manifest["meta"], self.meta, self.work)
            for stale in self.work.glob(".part-*.tmp"):  # a part being written when the run stopped
                stale.unlink(missing_ok=True)
            done: set[int] = set()
            for seq, part in self._parts():
                with np.load(part) as z:
                    done.update(z["positions"].tolist())
                    done.update(z["skipped_positions"].tolist())
                self._seq = max(self._seq, seq + 1)
            logger.info("resuming %s: %d of %d inputs already done", self.path, len(done), len(self.inputs))
            return done
        if self.work.exists():
            raise ValueError(f"{self.work}: exists but holds no {MANIFEST}: not an interrupted extraction; remove it")
        if self.path.exists():
            record = read_record(self.path, self.fmt)
            if record.meta is None:
                raise ValueError(f"{self.path}: holds no extraction record (meta), so it cannot be checked for "
                                 "resuming; run without resume to replace it")
            if record.meta.get("inputs") != self.meta.get("inputs"):
                _check_same_inputs(record.files + [f for f, _ in record.skipped], self.inputs, self.path,
                                   ordered=False)
            _check_same_meta(record.meta, self.meta, self.path)
            self.complete = record
            logger.info("%s: already complete (%d files), nothing to resume", self.path, len(record.files))
            return set()
        logger.info("nothing to resume at %s: starting", self.path)
        return set()

    def _discard_earlier_run(self) -> None:
        if not self.work.exists():
            return
        if not (self.work / MANIFEST).is_file():
            raise ValueError(f"{self.work}: exists but holds no {MANIFEST}: not an interrupted extraction; remove it")
        parts = len(self._parts())
        if parts:
            logger.warning("discarding the %d part(s) an earlier, unfinished run left in %s (resume would continue "
                           "it)", parts, self.work)
        else:  # a run that stopped before its first row (e.g. on an unreadable file): nothing is lost
            logger.info("removing %s, left without any rows by an earlier run", self.work)
        shutil.rmtree(self.work)

    def _parts(self) -> list[tuple[int, Path]]:
        found = []
        for p in self.work.iterdir():
            m = _PART.fullmatch(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    # ------------------------------------------------------------------ writing
    def add(self, arrays: dict[str, np.ndarray], positions: Sequence[int]) -> None:
        """Rows for the inputs at ``positions`` (``arrays[field]`` is ``[len(positions), *row]``)."""
        for key, shape in self.row_shapes.items():
            value = np.ascontiguousarray(arrays[key], dtype=np.float32)
            if value.shape != (len(positions), *shape):
                raise ValueError(f"{key}: expected rows of shape {shape} for {len(positions)} inputs, got {value.shape}")
            self._buffer[key].append(value)
            self._bytes += value.nbytes
        self._positions.extend(int(p) for p in positions)
        if len(self._positions) >= PART_ROWS or self._bytes >= PART_BYTES:
            self.flush()

    def skip(self, position: int, reason: str) -> None:
        """Record an input left out (unreadable, or non-finite features)."""
        self._skipped.append((int(position), reason))

    def flush(self) -> None:
        """Write the buffered rows as the next part."""
        if not self._positions and not self._skipped:
            return
        from .hub.cache import atomic_path

        arrays = {k: (np.concatenate(v) if v else np.zeros((0, *self.row_shapes[k]), np.float32))
                  for k, v in self._buffer.items()}
        part = self.work / f"part-{self._seq:06d}.npz"
        with atomic_path(part) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, positions=np.asarray(self._positions, dtype=np.int64),
                     skipped_positions=np.asarray([p for p, _ in self._skipped], dtype=np.int64),
                     skipped_reasons=np.array([r for _, r in self._skipped], dtype=str), **arrays)
        self._seq += 1
        self._buffer = {k: [] for k in self.row_shapes}
        self._positions, self._skipped, self._bytes = [], [], 0

    def finish(self) -> Record:
        """Assemble the output from the parts, remove them, and return its record.

        Raises:
            ValueError: not one input gave features (the output is not written).
        """
        if self.complete is not None:
            return self.complete
        self.flush()
        parts: list[tuple[Path, np.ndarray, int]] = []
        kept: list[int] = []
        skipped: list[tuple[int, str]] = []
        for _, part in self._parts():
            with np.load(part) as z:
                positions = z["positions"]
                skipped += list(zip(z["skipped_positions"].tolist(), z["skipped_reasons"].tolist()))
            parts.append((part, positions, len(positions)))
            kept += positions.tolist()
        if any(b <= a for a, b in itertools.pairwise(kept)):
            raise ValueError(f"{self.work}: its parts are not in input order (edited by hand?); remove it and start over")
        skipped.sort()
        record = Record([self.inputs[i] for i in kept], [(self.inputs[i], r) for i, r in skipped], self.meta)
        if len(kept) + len(skipped) != len(self.inputs):
            raise RuntimeError(f"{self.work}: {len(self.inputs) - len(kept) - len(skipped)} inputs were never done")
        if not kept and self.inputs:
            shutil.rmtree(self.work, ignore_errors=True)
            raise ValueError(f"none of the {len(self.inputs)} inputs could be prepared: "
                             + "; ".join(f"{n}: {r}" for n, r in record.skipped[:5]))

        def blocks(key: str) -> Iterator[np.ndarray]:
            for part, _, rows in parts:
                if rows:
                    with np.load(part) as z:
                        yield z[key]

        shapes = {k: (len(kept), *s) for k, s in self.row_shapes.items()}
        write_output(self.path, self.fmt, shapes, blocks, record)
        shutil.rmtree(self.work)
        return record


# ---------------------------------------------------------------------------------- output files
def write_output(path: Path, fmt: OutputFormat, shapes: dict[str, tuple[int, ...]],
                 blocks: Any, record: Record) -> None:
    """Write an output: ``shapes[field]`` is the full float32 shape, ``blocks(field)`` yields its
    row blocks in order. Each file is written to a temporary name, then renamed."""
    from .hub.cache import atomic_path

    names = np.array(record.files, dtype=str)
    skipped = np.array([f for f, _ in record.skipped], dtype=str)
    reasons = np.array([r for _, r in record.skipped], dtype=str)
    meta = json.dumps(record.meta, sort_keys=True)
    extra = [] if record.meta is None else [("meta", np.array(meta))]
    if fmt == "npz":  # the layout np.savez writes (stored members), one member streamed at a time
        import zipfile

        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, shape in shapes.items():
                with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                    _write_npy(fh, shape, blocks(key))
            for key, value in [("files", names), ("skipped", skipped), ("skipped_reasons", reasons), *extra]:
                with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, value, allow_pickle=False)
    elif fmt == "safetensors":
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            _write_safetensors(fh, shapes, blocks, _safetensors_metadata(record.files, record.skipped, None if record.meta is None else meta))
    else:
        path.mkdir(parents=True, exist_ok=True)
        for key, shape in shapes.items():
            with atomic_path(path / f"{key}.npy") as tmp, open(tmp, "wb") as fh:
                _write_npy(fh, shape, blocks(key))
        for key, value in (("files", record.files), ("skipped", [list(s) for s in record.skipped]),
                           ("meta", record.meta)):
            if value is None:
                continue
            with atomic_path(path / f"{key}.json") as tmp:
                Path(tmp).write_text(json.dumps(value, indent=1) + "\n")


def _write_npy(fh: Any, shape: tuple[int, ...], blocks: Iterable[np.ndarray]) -> None:
    """A float32 ``.npy``: the header, then the row blocks as they come."""
    np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": tuple(shape)})
    _write_rows(fh, shape[0], blocks)


def _safetensors_metadata(files: list[str], skipped: list[tuple[str, str]], meta: str | None) -> dict[str, str]:
    out = {"files": json.dumps(files), "skipped": json.dumps([list(s) for s in skipped])}
    return out if meta is None else {**out, "meta": meta}


def _check_safetensors_header(path: Path, inputs: list[str]) -> None:
    size = len(json.dumps(inputs)) * 2 + 4096  # the file lists, escaped, plus the tensor entries
    if size > SAFETENSORS_MAX_HEADER:
        raise ValueError(f"{path}: {len(inputs)} file names do not fit in a safetensors header (the library "
                         f"reads at most {SAFETENSORS_MAX_HEADER // 10**6} MB); write a .npz or a directory")


def _write_safetensors(fh: Any, shapes: dict[str, tuple[int, ...]], blocks: Any, metadata: dict[str, str]) -> None:
    """The safetensors layout (little-endian u64 header size, JSON header with each tensor's
    dtype, shape and byte range, then the bytes), streamed block by block. Hand-written because
    the library only serialises arrays held in memory whole."""
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for key, shape in shapes.items():
        nbytes = 4 * int(np.prod(shape))
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as the library writes it
    if len(raw) > SAFETENSORS_MAX_HEADER:
        raise ValueError(f"the safetensors header would be {len(raw)} bytes, above the library's limit")
    fh.write(struct.pack("<Q", len(raw)))
    fh.write(raw)
    for key, shape in shapes.items():
        _write_rows(fh, shape[0], blocks(key))


def _write_rows(fh: Any, rows: int, blocks: Iterable[np.ndarray]) -> None:
    done = 0
    for block in blocks:
        block = np.ascontiguousarray(block, dtype="<f4")
        fh.write(memoryview(block).cast("B"))
        done += block.shape[0]
    if done != rows:
        raise RuntimeError(f"wrote {done} rows of a {rows}-row array")


# ---------------------------------------------------------------------------------- reading back
def read_record(path: Path, fmt: OutputFormat) -> Record:
    """The file list, skipped files and meta of an output, without its arrays."""
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as z:
            files = [str(f) for f in z["files"]]
            skipped = list(zip(map(str, z["skipped"]), map(str, z["skipped_reasons"]))) if "skipped" in z.files else []
            meta = json.loads(str(z["meta"])) if "meta" in z.files else None
        return Record(files, skipped, meta)
    if fmt == "safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "np") as fh:
            md = fh.metadata() or {}
        return Record(json.loads(md.get("files", "[]")), [tuple(s) for s in json.loads(md.get("skipped", "[]"))],
                      json.loads(md["meta"]) if "meta" in md else None)
    files = json.loads((path / "files.json").read_text())
    skipped_file = path / "skipped.json"
    skipped = [tuple(s) for s in json.loads(skipped_file.read_text())] if skipped_file.is_file() else []
    meta_file = path / "meta.json"
    return Record(files, skipped, json.loads(meta_file.read_text()) if meta_file.is_file() else None)


def read_output(path: Path, fmt: OutputFormat) -> StoredFeatures:
    """An output's arrays (in memory) and record."""
    record = read_record(path, fmt)
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in FIELDS if k in z.files}
    elif fmt == "safetensors":
        from safetensors.numpy import load_file

        arrays = {k: v for k, v in load_file(str(path)).items() if k in FIELDS}
    else:
        arrays = {k: np.load(path / f"{k}.npy") for k in FIELDS if (path / f"{k}.npy").is_file()}
    return StoredFeatures({k: arrays[k] for k in FIELDS if k in arrays}, record)


# ---------------------------------------------------------------------------------- checks
def _check_same_inputs(recorded: list[str], now: list[str], where: Path, *, ordered: bool = True) -> None:
    if recorded == now:
        return
    hint = "use another output, or run without resume to start over"
    if not ordered:
        missing = sorted(set(now) - set(recorded))
        extra = sorted(set(recorded) - set(now))
        if not missing and not extra:
            raise ValueError(f"{where}: was written for the same files in another order; {hint}")
        what = (f"{len(missing)} new (e.g. {missing[0]})" if missing else "") + \
            ("; " if missing and extra else "") + (f"{len(extra)} gone (e.g. {extra[0]})" if extra else "")
        raise ValueError(f"{where}: was written for another file list ({len(recorded)} files, now {len(now)}: "
                         f"{what}); {hint}")
    first = next((i for i, (a, b) in enumerate(zip(recorded, now)) if a != b), min(len(recorded), len(now)))
    at = (f"first difference at #{first}: {recorded[first] if first < len(recorded) else '(end)'} was recorded, "
          f"{now[first] if first < len(now) else '(end)'} now")
    raise ValueError(f"{where}: was started for another file list ({len(recorded)} files, now {len(now)}; {at}); "
                     f"{hint}")


_WHAT = {"model": "the model (weights fingerprint)", "prepare": "the preparation settings", "amp": "amp",
         "inputs": "the file list", "shard": "the shard (rank, world size)",
         "fields": "the fields written (tokens on/off)", "act_zoo": "the act_zoo version"}


#: record entries that do not change features: informative only
_NOT_COMPARED = frozenset({"source"})


def _check_same_meta(recorded: dict[str, Any], now: dict[str, Any], where: Path) -> None:
    keys = sorted((set(recorded) | set(now)) - _NOT_COMPARED)
    differ = [k for k in keys if recorded.get(k) != now.get(k)]
    if differ:
        detail = "; ".join(f"{_WHAT.get(k, k)}: {_short(recorded.get(k))} recorded, {_short(now.get(k))} now"
                           for k in differ)
        raise ValueError(f"{where}: was written with other settings ({detail}); features would not match: use "
                         "another output, or run without resume to start over")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def _write_json(path: Path, value: Any) -> None:
    from .hub.cache import atomic_path

    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(value) + "\n")

