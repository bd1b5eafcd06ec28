"""Compressed .npz members: the declared size is never trusted (issue 12, item 15).

A deflated member's central-directory size (and its .npy header) can claim anything; the reader
used to allocate what they claimed before reading a byte (a 192-byte archive -> 400 MB). Memory
must follow the bytes that really inflate, bounded by what the archive's real size allows.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from act_zoo.data import DatasetError, read_points
from act_zoo.data._common import load_npz


def _npy_header(shape: tuple[int, ...]) -> bytes:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + repr(shape) + ", }"
    header += " " * (63 - len(header) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()


def lying_npz(declared: int, *, compressed: int | None = None, method: int = zipfile.ZIP_DEFLATED,
              body: bytes = b"\0" * 24) -> bytes:
    """A tiny archive whose single member declares ``declared`` uncompressed bytes and
    ``compressed`` compressed bytes (zip fields; a plausible ratio passes a ratio check), with a
    .npy header whose shape fills exactly ``declared`` bytes, but that holds only ``body``."""
    header = _npy_header((declared // 4,))
    header = _npy_header(((declared - len(header)) // 4,))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        zf.writestr("points.npy", header + body)
    data = bytearray(buf.getvalue())
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, declared)  # local header: uncompressed size
    struct.pack_into("<I", data, central + 24, declared)  # central directory: uncompressed size
    if compressed is not None:
        struct.pack_into("<I", data, local + 18, compressed)
        struct.pack_into("<I", data, central + 20, compressed)
    return bytes(data)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("declared,compressed", [(250_000_128, None), (400_000_128, 500_000),
                                                 (2**32 - 1, 2**32 // 999)])
def test_a_tiny_archive_cannot_make_the_reader_allocate_its_declared_size(tmp_path: Path, declared: int,
                                                                           compressed: int | None):
    """Under the old bomb rule's thresholds (< 256 MB, or a ratio <= 1000 from a forged
    compressed size) the declared size was allocated up front."""
    path = tmp_path / "bomb.npz"
    path.write_bytes(lying_npz(declared, compressed=compressed))
    assert path.stat().st_size < 400

    def load():
        with pytest.raises(DatasetError) as info:
            load_npz(path)
        assert str(path) in str(info.value)

    assert _peak_bytes(load) < 4 * 2**20  # not the 400 MB / 4 GB the fields declare


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_memory_follows_the_bytes_that_really_inflate(tmp_path: Path, method: int):
    """No ratio bound is sound for bzip2/lzma: the read is streamed, so a member that declares
    (fields and .npy header) 400 MB but inflates to 24 bytes costs kilobytes, not 400 MB."""
    path = tmp_path / "lying.npz"
    path.write_bytes(lying_npz(200_000_128, method=method))

    def load():
        with pytest.raises(DatasetError, match="truncated|inflate|at most"):
            load_npz(path)

    assert _peak_bytes(load) < 16 * 2**20  # kilobytes of data; the LZMA decoder's own state is ~8 MB


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_honest_compressed_archives_still_load(tmp_path: Path, method: int):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(5000, 3)).astype(np.float32)
    labels = np.arange(7, dtype=np.int64)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, arr in (("points", pts), ("labels", labels)):
            member = io.BytesIO()
            np.save(member, arr)
            zf.writestr(f"{name}.npy", member.getvalue())
    path = tmp_path / "ok.npz"
    path.write_bytes(buf.getvalue())
    out = load_npz(path)
    np.testing.assert_array_equal(out["points"], pts)
    np.testing.assert_array_equal(out["labels"], labels)
    np.savez_compressed(tmp_path / "numpy.npz", points=pts)  # numpy's own writer
    np.testing.assert_array_equal(read_points(tmp_path / "numpy.npz"), pts)


def test_highly_compressible_data_within_deflate_bounds_loads(tmp_path: Path):
    """Zeros deflate ~1000:1; that is a real archive, not a lie, and must still load."""
    zeros = np.zeros((200_000, 3), np.float32)  # 2.4 MB -> ~2.4 KB
    np.savez_compressed(tmp_path / "zeros.npz", points=zeros)
    assert (tmp_path / "zeros.npz").stat().st_size < 10_000
    np.testing.assert_array_equal(load_npz(tmp_path / "zeros.npz")["points"], zeros)
