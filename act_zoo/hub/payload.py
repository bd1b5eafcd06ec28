"""Is a downloaded body plausibly the weights file it claims to be? Checked before it is cached.

Cheap structural checks, by the file's name, that catch what servers really send instead of
weights: an HTML page (sign-in, quota, error) and a body cut short.

* ``.safetensors``: the 8-byte header length, a JSON header, and a file exactly as long as the
  header's last tensor says;
* ``.pth`` / ``.pt`` / ``.ckpt`` / ``.bin`` / ``.tar``: a zip archive (``torch.save``'s format
  since 1.6) whose central directory is readable, or a legacy pickle stream (protocol 2-5);
* anything: not an HTML page.

A legacy pickle cut short still passes (its length is not written anywhere): such a file fails
when it is loaded, and the registry then drops it from the cache so the next call fetches it again.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

__all__ = ["PayloadError", "check_payload", "looks_like_html"]

_TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".tar")
_MAX_SAFETENSORS_HEADER = 100 << 20  # the safetensors format's own limit


class PayloadError(ValueError):
    """The bytes are not what the file name says."""


def looks_like_html(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a body) starts an HTML document."""
    text = head[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        text.startswith(b"<!--") and b"<html" in text
    )


def check_payload(path: Path, *, name: str | None = None) -> None:
    """Raise :class:`PayloadError` saying what is wrong when ``path`` is not a plausible ``name``."""
    path = Path(path)
    name = (name or path.name).lower()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(512)
    if looks_like_html(head):
        raise PayloadError("the body is an HTML page, not a weights file")
    if name.endswith(".safetensors"):
        _check_safetensors(path, head, size)
    elif name.endswith(_TORCH_SUFFIXES):
        _check_torch(path, head)


def _check_safetensors(path: Path, head: bytes, size: int) -> None:
    if size < 10:
        raise PayloadError(f"not a safetensors file: only {size} bytes")
    (n,) = struct.unpack("<Q", head[:8])
    if n > _MAX_SAFETENSORS_HEADER or 8 + n > size:
        raise PayloadError(f"not a safetensors file: header length {n} does not fit in {size} bytes")
    with open(path, "rb") as fh:
        fh.seek(8)
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"not a safetensors file: the header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise PayloadError("not a safetensors file: the header is not a JSON object")
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise PayloadError(f"not a safetensors file: tensor {key!r} has no data_offsets")
        end = max(end, offsets[1])
    if 8 + n + end != size:
        raise PayloadError(
            f"safetensors file is {size} bytes but its header describes {8 + n + end} (cut short or padded)"
        )


def _check_torch(path: Path, head: bytes) -> None:
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise PayloadError(f"a zip checkpoint whose archive is unreadable (cut short?): {exc}") from None
        return
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return  # a legacy (pre-1.6) torch.save pickle stream
    raise PayloadError("neither a zip nor a pickle checkpoint (PyTorch files are one of the two)")
