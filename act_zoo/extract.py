"""Feature extraction for user code: any cloud(s) in, ACT features out.

``extract_features(model_or_name, clouds)`` prepares every cloud with the one preparation
path (:mod:`act_zoo.data.prepare`: read -> validate -> centre and scale in float64 ->
resample to the model's ``npoints`` with per-cloud seeded randomness), batches them, runs
``forward_features`` and returns one :class:`~act_zoo.models.PointFeatures` record, with the
patch centres mapped back into each input cloud's own coordinates. A cloud's features do not
depend on the batch size, on the order of the list or on its neighbours.

``extract_files(model_or_name, inputs)`` does the same for files, directories and glob
patterns at folder scale: it keeps the file list, can skip unreadable files
(``skip_bad=True``) and saves ``.npz`` / ``.safetensors`` / a directory of ``.npy`` files
(:func:`check_output` validates the destination before any work).

``extract_to(model_or_name, inputs, out)`` is the folder-scale job itself (``act-zoo
extract``): threads read and prepare the next chunks of files while the network runs on
this one, rows are streamed to ``out`` (memory does not grow with the number of files; see
:mod:`act_zoo._feature_store`), ``resume=True`` continues an interrupted run, and
``shard=(rank, world)`` (what ``act-zoo extract`` under ``torchrun`` passes) does one
contiguous block of the file list and writes ``out`` with a rank suffix (:func:`shard_path`).
:func:`load_features` reads an output, or all shards of one, back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ._feature_store import FIELDS as _FIELDS
from ._feature_store import FeatureStore, OutputFormat, Record, inputs_digest, read_output, write_output
from ._inference import (
    CloudLike,
    as_sources,
    autocast_dtype,
    check_num_points,
    check_workers,
    device_of,
    eval_mode,
    finite_rows,
    non_finite_error,
    prepared_batches,
    resolve_model,
)
from ._version import __version__
from .data.prepare import CloudPreparer, CloudSource
from .models import ACTDistillation, ACTEncoder, PointFeatures

logger = logging.getLogger(__name__)


def _encoder_of(model: nn.Module) -> ACTEncoder:
    if isinstance(model, ACTDistillation):
        model = model.encoder
    if not isinstance(model, ACTEncoder):
        raise TypeError(f"extract_features needs an ACT encoder/classifier (or a stage-II model), got {type(model).__name__}")
    return model


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _feature_batches(
    encoder: ACTEncoder,
    preparer: CloudPreparer,
    sources: Sequence[CloudSource],
    names: Sequence[str],
    *,
    batch_size: int,
    amp: bool | torch.dtype,
    skip_bad: bool,
    progress: bool | None,
    workers: int | None,
    positions: Sequence[int] | None = None,
) -> Iterator[tuple[PointFeatures | None, list[int], list[tuple[int, str]]]]:
    """Per batch: the features (``centers`` float64, in each input's frame), the positions of
    the inputs they belong to, and ``(position, reason)`` of inputs skipped since the last
    batch (a last ``(None, [], skipped)`` carries those after the final batch)."""
    dev = device_of(encoder)
    amp_dtype = autocast_dtype(amp)
    skipped: list[tuple[str, str]] = []
    skipped_at: list[int] = []

    def drain() -> list[tuple[int, str]]:
        """``(position, reason)`` of the inputs skipped since the last call (emptied in place:
        prepared_batches keeps appending to these lists)."""
        done = [(i, reason) for i, (_, reason) in zip(skipped_at, skipped)]
        skipped.clear()
        skipped_at.clear()
        return done

    batches = prepared_batches(preparer, sources, names, batch_size=batch_size, skip_bad=skip_bad, skipped=skipped,
                               skipped_at=skipped_at, progress=progress, desc="extract", workers=workers,
                               positions=positions)
    for batch, kept in batches:
        points = batch.points.to(dev, encoder.dtype)  # b n 3
        with torch.autocast(dev.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            f = encoder.forward_features(points)
        f = PointFeatures(*(getattr(f, k).float().cpu() for k in _FIELDS))
        centers, scales = batch.centers, batch.scales  # b 3, b (float64)
        finite = finite_rows(torch.cat([f.global_feature, f.tokens.flatten(1)], dim=1))  # b
        if not bool(finite.all()):
            if not skip_bad:
                raise non_finite_error(batch.names, finite, "features")
            for j in (~finite).nonzero().flatten().tolist():
                logger.warning("skipping %s: the network produced non-finite features", batch.names[j])
                skipped.append((batch.names[j], "the network produced non-finite features"))
                skipped_at.append(kept[j])
            keep = finite.nonzero().flatten()
            f = PointFeatures(*(getattr(f, k)[keep] for k in _FIELDS))
            kept = [kept[j] for j in keep.tolist()]
            centers, scales = centers[keep], scales[keep]
        f.centers = f.centers.double() * scales.view(-1, 1, 1) + centers.unsqueeze(1)  # back in each input's frame
        yield (f if kept else None), kept, drain()
    if skipped:
        yield None, [], drain()


def _collect(batches: Iterator[tuple[PointFeatures | None, list[int], list[tuple[int, str]]]],
             names: Sequence[str]) -> tuple[PointFeatures, list[int], list[tuple[str, str]]]:
    """All batches in memory: ``(features, positions kept, (name, reason) skipped)``."""
    outs: list[PointFeatures] = []
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    for f, positions, skips in batches:
        skipped += [(names[i], reason) for i, reason in skips]
        if f is not None:
            outs.append(f)
            kept += positions
    if not outs:
        raise ValueError(f"none of the {len(names)} inputs could be prepared: "
                         + "; ".join(f"{n}: {r}" for n, r in skipped[:5]))
    return PointFeatures(*(torch.cat([getattr(o, k) for o in outs]) for k in _FIELDS)), kept, skipped


@torch.no_grad()  # not inference_mode: the returned tensors must be usable in user autograd code
def extract_features(
    model_or_name: nn.Module | str,
    clouds: CloudLike | Sequence[CloudLike],
    *,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    amp: bool | torch.dtype = False,
    normalize: bool = True,
    sample: Literal["fps", "random"] = "fps",
    num_points: int | None = None,
    seed: int = 0,
    mesh_samples: int = 8192,
    progress: bool | None = None,
    workers: int | None = None,
) -> PointFeatures:
    """ACT features of one or many clouds.

    Args:
        model_or_name: an ACT encoder/classifier, a stage-II model (its student is used) or a
            name/source for :func:`act_zoo.from_pretrained`.
        clouds: a ``[N, 3]`` or ``[B, N, 3]`` tensor/array, a file path (.ply .pcd .npy .npz
            .txt .xyz .csv .off .obj .stl; meshes are sampled by area), a directory (its
            supported files, recursively, sorted) or glob pattern, or a list of any of them
            (clouds may differ in size). For a file list with names, see :func:`extract_files`.
        batch_size: clouds per forward pass (results do not depend on it).
        device: where to run (default: the model's device; cuda when loading by name and
            available).
        amp: ``True`` (bfloat16) or a dtype for autocast; fp32 otherwise.
        normalize: centre and scale each cloud to the unit sphere first (in float64), as the
            official pipeline.
        sample: ``"fps"`` or ``"random"`` resampling to ``num_points`` (default: the model's
            ``npoints``); smaller clouds are padded with random repeats. Random draws are
            seeded per cloud by ``seed`` and the cloud's own values.
        seed: see ``sample``; also the seed of mesh sampling.
        mesh_samples: points sampled (by area) from mesh files before resampling.
        progress: a progress bar over the clouds (None: only on a terminal).
        workers: threads that read and prepare the next batches while the network runs
            (default: one per core, at most 4; 0: all in the calling thread). Results do not
            depend on it.

    Returns:
        :class:`PointFeatures` on the CPU: ``global_feature [B, 2C]``, ``tokens [B, G, C]``,
        ``centers [B, G, 3]`` (in each input's coordinates; float64 when an in-memory input is
        float64, else float32), ``cls [B, C]``; without the batch axis when a single cloud
        (``[N, 3]`` or one file) was given.

    Raises:
        ValueError: a bad cloud or file (named), an empty input, ``num_points < 1``, a cloud on
            the meta device, or non-finite features (naming the cloud).
    """
    _check_batch_size(batch_size)
    workers = check_workers(workers)
    sources, names, single = as_sources(clouds)
    encoder = _encoder_of(resolve_model(model_or_name, device))
    preparer = CloudPreparer(check_num_points(num_points, encoder.config.npoints), sample, seed, normalize, mesh_samples)
    with eval_mode(encoder):
        feats, _, _ = _collect(_feature_batches(encoder, preparer, sources, names, batch_size=batch_size, amp=amp,
                                                skip_bad=False, progress=progress, workers=workers), names)
    wide = any((isinstance(s, np.ndarray) and s.dtype == np.float64)
               or (isinstance(s, torch.Tensor) and s.dtype == torch.float64) for s in sources)
    feats.centers = feats.centers if wide else feats.centers.float()
    return feats.squeeze_batch() if single else feats


# ----------------------------------------------------------------------------------------------
# folder scale: files, directories and globs in; a file of features out
# ----------------------------------------------------------------------------------------------
@dataclass
class FileFeatures:
    """Features of files, with the file list.

    Attributes:
        features: :class:`PointFeatures` of the files read (row ``i`` is ``files[i]``).
        files: the files read, in order.
        skipped: ``(file, reason)`` of the files left out (``skip_bad=True``).
        meta: the extraction record of a file written by :func:`extract_to` (model
            fingerprint, preparation settings, inputs digest, shard), when read back from one.
    """

    features: PointFeatures
    files: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    meta: dict[str, Any] | None = None

    def arrays(self, *, tokens: bool = True) -> dict[str, np.ndarray]:
        """The numeric fields as float32 arrays (``centers`` float32 too)."""
        out = {k: getattr(self.features, k).float().numpy() for k in _FIELDS if tokens or k != "tokens"}
        return out

    def save(self, out: str | os.PathLike, *, tokens: bool = True) -> Path:
        """Write to ``out``: ``.npz`` (arrays + ``files`` + ``skipped``), ``.safetensors``
        (arrays; the file lists as JSON metadata) or a directory (one ``.npy`` per field,
        ``files.json``, ``skipped.json``), with ``meta`` when there is one. Written
        atomically. Returns the path."""
        path, fmt = check_output(out)
        arrays = self.arrays(tokens=tokens)
        write_output(path, fmt, {k: v.shape for k, v in arrays.items()}, lambda k: [arrays[k]],
                     Record(self.files, self.skipped, self.meta))
        return path


def check_output(out: str | os.PathLike) -> tuple[Path, OutputFormat]:
    """Validate an output destination before any work: ``(path, format)``.

    ``*.npz`` and ``*.safetensors`` are files; an existing directory, or a path ending in
    ``/`` or without a suffix, is a directory of ``.npy`` files. The parent folder is created
    and must be writable; anything else is a ``ValueError`` that says what to do.
    """
    text = os.fspath(out)
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if path.is_dir() or text.endswith(("/", os.sep)) or (not suffix and not path.exists()):
        fmt: OutputFormat = "dir"
        folder = path
    elif suffix in (".npz", ".safetensors"):
        fmt = "npz" if suffix == ".npz" else "safetensors"
        folder = path.parent
    elif path.exists() and not suffix:
        raise ValueError(f"{path}: exists and is not a directory; give a .npz, a .safetensors or a directory")
    else:
        raise ValueError(f"output {path} must end in .npz or .safetensors, or name a directory (ending in /)")
    if fmt == "dir" and path.exists() and not path.is_dir():
        raise ValueError(f"{path}: exists and is not a directory")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the output folder {folder}: {exc.strerror or exc}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"the output folder {folder} is not writable")
    return path, fmt


def shard_path(out: str | os.PathLike, rank: int, world: int) -> Path:
    """The output of rank ``rank`` of ``world``: a rank suffix before the extension
    (``feats.npz`` -> ``feats.rank0-of-2.npz``, ``feats/`` -> ``feats.rank0-of-2/``; ranks
    zero-padded, so that sorted names are in rank order)."""
    path = Path(os.fspath(out)).expanduser()
    tag = f"rank{rank:0{len(str(world - 1))}d}-of-{world}"
    suffix = path.suffix.lower()
    if suffix in (".npz", ".safetensors") and not path.is_dir():
        return path.with_name(f"{path.stem}.{tag}{path.suffix}")
    return path.with_name(f"{path.name}.{tag}")


def shard_of(n: int, rank: int, world: int) -> range:
    """The positions rank ``rank`` of ``world`` does among ``n`` inputs: a contiguous block (sizes
    differ by at most one), so the shards in rank order are the whole list in order."""
    return range(rank * n // world, (rank + 1) * n // world)


def _check_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    ok = (isinstance(shard, (tuple, list)) and len(shard) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shard))
    if not ok or not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard must be (rank, world size) with 0 <= rank < world size, got {shard!r}")
    return int(shard[0]), int(shard[1])


def model_fingerprint(model: nn.Module) -> str:
    """sha256 of a model's class, config and every parameter and buffer (names, dtypes,
    shapes, bytes): what a resumed extraction checks it runs the same network with."""
    h = hashlib.sha256()
    h.update(f"{type(model).__qualname__}\n{getattr(model, 'config', None)!r}\n".encode())
    for key, value in model.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(f"{key} {t.dtype} {tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _row_shapes(encoder: ACTEncoder, tokens: bool) -> dict[str, tuple[int, ...]]:
    C, G = encoder.config.embed_dim, encoder.config.num_group
    shapes = {"global_feature": (2 * C,), "tokens": (G, C), "centers": (G, 3), "cls": (C,)}
    return {k: v for k, v in shapes.items() if tokens or k != "tokens"}


@dataclass(frozen=True)
class ExtractSummary:
    """What :func:`extract_to` wrote.

    Attributes:
        path: the output (with its rank suffix under a shard).
        files: the files with features, in order (row ``i`` is ``files[i]``).
        skipped: ``(file, reason)`` of the files left out.
        shapes: ``{field: shape}`` of the arrays written.
        computed: files read and run by this call; ``resumed``: files an earlier run had done.
        shard: ``(rank, world size)``.
    """

    path: Path
    files: list[str]
    skipped: list[tuple[str, str]]
    shapes: dict[str, tuple[int, ...]]
    computed: int
    resumed: int
    shard: tuple[int, int] = (0, 1)


@torch.no_grad()
def extract_to(
    model_or_name: nn.Module | str,
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    tokens: bool = True,
    skip_bad: bool = False,
    batch_size: int = 32,
    workers: int | None = None,
    device: torch.device | str | None = None,
    amp: bool | torch.dtype = False,
    normalize: bool = True,
    sample: Literal["fps", "random"] = "fps",
    num_points: int | None = None,
    seed: int = 0,
    mesh_samples: int = 8192,
    progress: bool | None = None,
) -> ExtractSummary:
    """Features of files, streamed to ``out``: the folder-scale job (``act-zoo extract``).

    ``workers`` threads read and prepare the next chunks of ``batch_size`` files (one batched
    FPS per group of same-sized clouds) while the network runs on the current one; rows go to
    ``out`` as they come, so memory does not grow with the number of files. The features are
    those :func:`extract_features` gives each file alone, whatever ``batch_size`` / ``workers``.

    Args:
        inputs: files, directories (every supported file below, recursively, sorted) and glob
            patterns, in the order given (duplicates once).
        out: a ``.npz``, a ``.safetensors`` or a directory (one ``.npy`` per field), as
            :meth:`FileFeatures.save` writes them, plus the run's ``meta`` record; checked
            before any work. While the run lasts, ``<out>.partial/`` holds the rows so far.
        resume: continue the interrupted run that wrote ``<out>.partial/`` (or find ``out``
            complete), computing only the files not done yet. The file list, the model (a
            fingerprint of its weights) and every setting that changes features must be the
            same, else a ``ValueError`` says what differs. Files skipped before stay skipped.
            Without ``resume`` an earlier run's rows are discarded (with a warning).
        shard: ``(rank, world_size)``: do only this rank's contiguous block of the file list
            (:func:`shard_of`) and write to :func:`shard_path` ``(out, rank, world_size)``.
            ``act-zoo extract`` under ``torchrun`` passes it from ``RANK`` / ``WORLD_SIZE``.
        tokens: keep the per-patch tokens (the largest field).
        skip_bad: leave out files that cannot be read or prepared (listed in ``skipped``)
            instead of stopping at the first.
        workers: preparation threads (default: one per core, at most 4; 0: none).
        Other arguments: as :func:`extract_features`.

    Returns:
        :class:`ExtractSummary`.

    Raises:
        FileNotFoundError: an input that does not exist (named).
        ValueError: a bad file (named; unless ``skip_bad``), a directory without supported
            files, a bad output path, a resume that does not match, no file with features.
    """
    from .data.io import collect_files

    _check_batch_size(batch_size)
    workers = check_workers(workers)
    rank, world = _check_shard(shard)
    path, fmt = check_output(out)
    if world > 1:
        path = shard_path(path, rank, world)
    files = [str(f) for f in collect_files(inputs)]
    mine = [files[i] for i in shard_of(len(files), rank, world)]
    encoder = _encoder_of(resolve_model(model_or_name, device))
    preparer = CloudPreparer(check_num_points(num_points, encoder.config.npoints), sample, seed, normalize, mesh_samples)
    amp_dtype = autocast_dtype(amp)
    shapes = _row_shapes(encoder, tokens)
    meta = {
        "model": {"class": type(encoder).__name__, "sha256": model_fingerprint(encoder)},
        "source": os.fspath(model_or_name) if isinstance(model_or_name, (str, os.PathLike)) else None,
        "prepare": dataclasses.asdict(preparer),
        "amp": None if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
        "fields": list(shapes),
        "inputs": inputs_digest(mine),
        "shard": {"rank": rank, "world": world, "inputs": inputs_digest(files)},
        "act_zoo": __version__,
    }
    with FeatureStore(path, fmt, mine, meta, shapes, resume=resume) as store:
        computed = len(store.todo)
        if store.todo:
            try:
                with eval_mode(encoder):
                    batches = _feature_batches(encoder, preparer, mine, mine, batch_size=batch_size, amp=amp,
                                               skip_bad=skip_bad, progress=progress, workers=workers,
                                               positions=store.todo)
                    for feats, kept, skips in batches:
                        for i, reason in skips:
                            store.skip(i, reason)
                        if feats is not None:
                            feats.centers = feats.centers.float()
                            store.add({k: getattr(feats, k).numpy() for k in shapes}, kept)
            except BaseException:
                with contextlib.suppress(Exception):  # keep the rows computed so far (all before the failure):
                    store.flush()  # resume continues after them; the original error is the one to see
                raise
        record = store.finish()
    return ExtractSummary(path, record.files, record.skipped, {k: (len(record.files), *v) for k, v in shapes.items()},
                          computed, store.resumed, (rank, world))


def load_features(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> FileFeatures:
    """Read back what :func:`extract_to` / ``act-zoo extract`` / :meth:`FileFeatures.save` wrote.

    Args:
        paths: one output (``.npz``, ``.safetensors`` or directory), or every shard of a
            sharded run (any order, e.g. ``glob("feats.rank*-of-4.npz")``): they are put in rank
            order after checking that they are all the shards of one run (same model, settings
            and file list), so the result is what one process would have written.

    Raises:
        ValueError: a missing shard, shards of different runs, an unreadable output.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ValueError("no feature files given")
    loaded = []
    for item in items:
        path = Path(os.fspath(item)).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        fmt: OutputFormat = "dir" if path.is_dir() else ("npz" if path.suffix.lower() == ".npz" else "safetensors")
        if fmt == "safetensors" and path.suffix.lower() != ".safetensors":
            raise ValueError(f"{path}: not a .npz, .safetensors or feature directory")
        loaded.append((path, read_output(path, fmt)))
    if len(loaded) > 1:
        loaded = _order_shards(loaded)
    keys = [k for k in _FIELDS if k in loaded[0][1].arrays]
    if any([k for k in _FIELDS if k in s.arrays] != keys for _, s in loaded):
        raise ValueError("the outputs hold different fields (tokens in some, not in others)")
    arrays = {k: np.concatenate([s.arrays[k] for _, s in loaded]) for k in keys}
    if "tokens" not in arrays:  # written without tokens: none per cloud
        arrays["tokens"] = np.zeros((len(arrays["cls"]), 0, arrays["cls"].shape[1]), np.float32)
    feats = PointFeatures(*(torch.from_numpy(arrays[k]) for k in _FIELDS))
    files = [f for _, s in loaded for f in s.record.files]
    skipped = [x for _, s in loaded for x in s.record.skipped]
    meta = loaded[0][1].record.meta
    if meta is not None and len(loaded) > 1:
        meta = {**meta, "inputs": meta["shard"]["inputs"], "shard": None}
    return FileFeatures(feats, files, skipped, meta)


def _order_shards(loaded: list[tuple[Path, Any]]) -> list[tuple[Path, Any]]:
    metas = []
    for path, stored in loaded:
        meta = stored.record.meta
        if not meta or not isinstance(meta.get("shard"), dict):
            raise ValueError(f"{path}: holds no shard record; give one output, or all shards of one run")
        metas.append(meta)
    world = metas[0]["shard"]["world"]
    same = {k: metas[0].get(k) for k in ("model", "prepare", "amp", "fields", "act_zoo")}
    for (path, _), meta in zip(loaded, metas):
        if meta["shard"]["world"] != world or meta["shard"]["inputs"] != metas[0]["shard"]["inputs"]:
            raise ValueError(f"{path}: a shard of another run (other world size or file list) than {loaded[0][0]}")
        if {k: meta.get(k) for k in same} != same:
            raise ValueError(f"{path}: written with another model or settings than {loaded[0][0]}")
    ranks = sorted(m["shard"]["rank"] for m in metas)
    if ranks != list(range(world)):
        problems = [f"rank {r} given twice" for r in sorted({r for r in ranks if ranks.count(r) > 1})]
        missing = sorted(set(range(world)) - set(ranks))
        problems += [f"rank(s) {missing} missing"] if missing else []
        raise ValueError(f"got shards {ranks} of a {world}-rank run: {'; '.join(problems)}")
    return [x for _, x in sorted(zip([m["shard"]["rank"] for m in metas], loaded), key=lambda t: t[0])]


@torch.no_grad()
def extract_files(
    model_or_name: nn.Module | str,
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike | None = None,
    tokens: bool = True,
    skip_bad: bool = False,
    batch_size: int = 32,
    workers: int | None = None,
    device: torch.device | str | None = None,
    amp: bool | torch.dtype = False,
    normalize: bool = True,
    sample: Literal["fps", "random"] = "fps",
    num_points: int | None = None,
    seed: int = 0,
    mesh_samples: int = 8192,
    progress: bool | None = None,
) -> FileFeatures:
    """Features of files at folder scale, in memory.

    Args:
        inputs: files, directories (every supported file below, recursively, sorted) and glob
            patterns (``"scans/**/*.ply"``), in the order given (duplicates once).
        out: also save the result there: the run is then :func:`extract_to` (streamed to
            ``out``, checked before any file is read) and the result is ``out`` read back.
        tokens: keep the per-patch tokens in the saved file (with ``out`` and ``tokens=False``
            the result's ``tokens`` are empty, ``[F, 0, C]``).
        skip_bad: leave out files that cannot be read or prepared (listed in ``skipped`` and
            logged) instead of stopping at the first.
        Other arguments: as :func:`extract_features`.

    Raises:
        FileNotFoundError: an input that does not exist (named).
        ValueError: a bad file (named; unless ``skip_bad``), a directory without supported
            files, a bad output path.
    """
    from .data.io import collect_files

    _check_batch_size(batch_size)
    workers = check_workers(workers)
    if out is not None:  # check_output runs in extract_to before any work
        summary = extract_to(model_or_name, inputs, out, tokens=tokens, skip_bad=skip_bad, batch_size=batch_size,
                             workers=workers, device=device, amp=amp, normalize=normalize, sample=sample,
                             num_points=num_points, seed=seed, mesh_samples=mesh_samples, progress=progress)
        return load_features(summary.path)
    files = collect_files(inputs)
    encoder = _encoder_of(resolve_model(model_or_name, device))
    preparer = CloudPreparer(check_num_points(num_points, encoder.config.npoints), sample, seed, normalize, mesh_samples)
    names = [str(f) for f in files]
    with eval_mode(encoder):
        feats, kept, skipped = _collect(
            _feature_batches(encoder, preparer, files, names, batch_size=batch_size, amp=amp, skip_bad=skip_bad,
                             progress=progress, workers=workers), names)
    feats.centers = feats.centers.float()
    return FileFeatures(feats, [names[i] for i in kept], skipped)
