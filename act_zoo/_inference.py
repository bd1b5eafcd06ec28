"""Plumbing shared by ``extract_features``, ``predict`` and ``evaluate``: the model to run
(by name or object, on which device, in eval mode and back), and prepared batches of clouds.

Preparation and the network pass are separate steps: :func:`prepared_batches` prepares
chunks of sources with :class:`~act_zoo.data.prepare.CloudPreparer` in a thread pool, a few
chunks ahead, and yields them in order as batches for the network.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data.prepare import CloudBatch, CloudPreparer, CloudSource, PreparedCloud, batch_clouds

CloudLike = torch.Tensor | np.ndarray | str | os.PathLike

logger = logging.getLogger("act_zoo")


def check_num_points(num_points: int | None, default: int) -> int:
    if num_points is None:
        return default
    if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)) or num_points < 1:
        raise ValueError(f"num_points must be a positive int (or None for the model's npoints={default}), "
                         f"got {num_points!r}")
    return int(num_points)


def as_sources(clouds: CloudLike | Sequence[CloudLike]) -> tuple[list[CloudSource], list[str], bool]:
    """-> (sources, names, single-cloud input?). Directories and glob patterns expand to their
    files (sorted); tensors ``[B, N, 3]`` to their clouds."""
    from .data.io import collect_files

    def paths(p: str | os.PathLike) -> list[Path]:
        path = Path(p)
        return [path] if path.is_file() else collect_files([p])

    if isinstance(clouds, (str, os.PathLike)):
        files = paths(clouds)
        single = Path(clouds).is_file()
        return list(files), [str(f) for f in files], single
    if isinstance(clouds, (torch.Tensor, np.ndarray)):
        if isinstance(clouds, torch.Tensor) and clouds.device.type == "meta":
            raise ValueError("clouds are on the meta device (a shape without values)")
        if clouds.ndim == 2:
            return [clouds], ["cloud"], True
        if clouds.ndim == 3:
            if clouds.shape[0] == 0:
                raise ValueError("clouds is an empty batch ([0, N, 3])")
            return list(clouds), [f"cloud {i}" for i in range(clouds.shape[0])], False
        raise ValueError(f"clouds must be [N, 3] or [B, N, 3], got shape {list(clouds.shape)}")
    if isinstance(clouds, Sequence):
        if len(clouds) == 0:
            raise ValueError("clouds is an empty list")
        sources: list[CloudSource] = []
        names: list[str] = []
        for i, c in enumerate(clouds):
            if isinstance(c, (str, os.PathLike)):
                files = paths(c)
                sources += files
                names += [str(f) for f in files]
            elif isinstance(c, (torch.Tensor, np.ndarray)):
                sources.append(c)
                names.append(f"cloud {i}")
            else:
                raise TypeError(f"cloud {i}: expected a tensor, array or path, got {type(c).__name__}")
        return sources, names, False
    raise TypeError(f"clouds must be a tensor, array, path or a list of them, got {type(clouds).__name__}")


def resolve_model(model_or_name: nn.Module | str | os.PathLike, device: torch.device | str | None) -> nn.Module:
    """The model itself, or :func:`act_zoo.from_pretrained` of a name/run/file (on cuda when
    available, unless ``device`` says otherwise); moved to ``device`` when one is given."""
    if isinstance(model_or_name, (str, os.PathLike)):
        from .hub.registry import from_pretrained

        model = from_pretrained(model_or_name)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
    elif isinstance(model_or_name, nn.Module):
        model = model_or_name
    else:
        raise TypeError(f"expected a model or a name/path for act_zoo.from_pretrained, got {type(model_or_name).__name__}")
    if device is not None:
        model = model.to(device)
    return model


def device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    if param is None:
        return torch.device("cpu")
    if param.device.type == "meta":
        raise ValueError(f"the {type(model).__name__} is on the meta device (no weights): materialise it first")
    return param.device


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` for the block, then the caller's train/eval mode back."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def autocast_dtype(amp: bool | torch.dtype) -> torch.dtype | None:
    """``True`` -> bfloat16, a dtype -> itself, ``False`` -> None (fp32)."""
    if amp is True:
        return torch.bfloat16
    if isinstance(amp, torch.dtype):
        return amp
    if amp is False or amp is None:
        return None
    raise TypeError(f"amp must be a bool or a torch.dtype, got {amp!r}")


def class_names_of(model: nn.Module, num_classes: int, override: Sequence[str] | None = None) -> tuple[list[str], bool]:
    """``(names, known)``: ``override`` (names given by the caller), else the model's
    ``class_names`` (attribute or config field), else ``class_<i>`` placeholders (``known``
    False)."""
    names = override
    if not names:
        names = getattr(model, "class_names", None)
    if not names:
        names = getattr(getattr(model, "config", None), "class_names", None)
    if names:
        if isinstance(names, str):
            raise TypeError("class_names must be a sequence of names, not one string")
        names = [str(n) for n in names]
        if len(names) != num_classes:
            what = "were given" if override else "are stored with the model"
            raise ValueError(f"{len(names)} class names {what} for the model's {num_classes}-way head")
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be distinct, got {names}")
        return names, True
    return [f"class_{i}" for i in range(num_classes)], False


def progress_bar(total: int, desc: str, progress: bool | None, unit: str = "cloud") -> Any:
    """A tqdm bar on stderr: ``progress=None`` shows it only on a terminal, ``False`` never."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None if progress is None else not progress,
                dynamic_ncols=True)


def default_workers() -> int:
    """Preparation threads when the caller does not say: one per core, at most 4 (the
    network keeps the cores busy too; more threads only contend for them)."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def check_workers(workers: int | None) -> int:
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"workers must be an int >= 0 (0: prepare in the calling thread), got {workers!r}")
    return int(workers)


def prepared_batches(
    preparer: CloudPreparer,
    sources: Sequence[CloudSource],
    names: Sequence[str],
    *,
    batch_size: int,
    skip_bad: bool = False,
    skipped: list[tuple[str, str]] | None = None,
    progress: bool | None = None,
    desc: str = "prepare",
    workers: int | None = None,
    positions: Sequence[int] | None = None,
    skipped_at: list[int] | None = None,
) -> Iterator[tuple[CloudBatch, list[int]]]:
    """``(batch, positions)`` for consecutive chunks of ``sources``, in order; ``positions``
    are the indices into ``sources`` of the batch's clouds.

    Each chunk is prepared by :meth:`CloudPreparer.prepare_many` (one FPS call per group of
    same-sized clouds) in a pool of ``workers`` threads (default :func:`default_workers`; 0:
    in the calling thread), up to ``workers + 1`` chunks ahead of the consumer: reading
    (numpy, plyfile) and the point ops spend most of their time outside the GIL, so the
    threads prepare the next chunks while the caller runs the network on this one. Memory is
    bounded by those few chunks, whatever the number of sources. (Threads rather than
    ``DataLoader`` worker processes: the same throughput where measured -- 300 files, chunk
    jobs, 2 workers: 211 vs 204 files/s -- with no pickling of batches and no fork of a process
    that already runs threads.)

    With ``skip_bad`` a source that cannot be read or prepared is appended to ``skipped`` as
    ``(name, reason)`` (and its index to ``skipped_at``) and left out; otherwise the first one
    (in order) raises. ``positions`` restricts the work to those indices (in that order), e.g.
    the files a resumed run has left.
    """
    todo = list(range(len(sources))) if positions is None else list(positions)
    chunks = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    workers = check_workers(workers)

    def prepare(chunk: list[int]) -> list[PreparedCloud | ValueError | OSError]:
        return preparer.prepare_many([sources[i] for i in chunk], [names[i] for i in chunk])

    bar = progress_bar(len(todo), desc, progress)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="act_zoo-prepare") if workers else None
    ahead: collections.deque[Future] = collections.deque()
    try:
        for k, chunk in enumerate(chunks):
            if pool is not None:
                while len(ahead) < workers + 1 and k + len(ahead) < len(chunks):
                    ahead.append(pool.submit(prepare, chunks[k + len(ahead)]))
                results = ahead.popleft().result()
            else:
                results = prepare(chunk)
            ready: list[PreparedCloud] = []
            kept: list[int] = []
            for i, item in zip(chunk, results):
                if isinstance(item, PreparedCloud):
                    ready.append(item)
                    kept.append(i)
                    continue
                if not skip_bad:
                    raise item
                reason = str(item)
                reason = reason[len(names[i]) + 2:] if reason.startswith(f"{names[i]}: ") else reason
                logger.warning("skipping %s: %s", names[i], reason)
                if skipped is not None:
                    skipped.append((names[i], reason))
                if skipped_at is not None:
                    skipped_at.append(i)
            if ready:
                yield batch_clouds(ready), kept
            bar.update(len(chunk))
    finally:
        for future in ahead:
            future.cancel()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def finite_rows(values: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: which rows of ``values [B, ...]`` are all finite."""
    return torch.isfinite(values.reshape(values.shape[0], -1)).all(dim=1)


def non_finite_error(names: Sequence[str], finite: torch.Tensor, what: str) -> ValueError:
    """The error for the first cloud whose outputs are not finite."""
    bad = (~finite).nonzero().flatten().tolist()
    return ValueError(f"{names[bad[0]]}: the network produced non-finite {what} (NaN/inf)"
                      + (f"; {len(bad) - 1} more clouds too" if len(bad) > 1 else ""))
