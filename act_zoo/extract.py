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
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from ._inference import (
    CloudLike,
    as_sources,
    autocast_dtype,
    check_num_points,
    device_of,
    eval_mode,
    finite_rows,
    non_finite_error,
    prepared_batches,
    resolve_model,
)
from .data.prepare import CloudBatch, CloudPreparer, CloudSource
from .models import ACTDistillation, ACTEncoder, PointFeatures

logger = logging.getLogger(__name__)

OutputFormat = Literal["npz", "safetensors", "dir"]
_FIELDS = ("global_feature", "tokens", "centers", "cls")


def _encoder_of(model: nn.Module) -> ACTEncoder:
    if isinstance(model, ACTDistillation):
        model = model.encoder
    if not isinstance(model, ACTEncoder):
        raise TypeError(f"extract_features needs an ACT encoder/classifier (or a stage-II model), got {type(model).__name__}")
    return model


def _run(
    encoder: ACTEncoder,
    preparer: CloudPreparer,
    sources: Sequence[CloudSource],
    names: Sequence[str],
    *,
    batch_size: int,
    amp: bool | torch.dtype,
    skip_bad: bool,
    progress: bool | None,
) -> tuple[PointFeatures, list[int], list[tuple[str, str]]]:
    """Features of the sources that could be prepared, their positions, and the skipped ones."""
    dev = device_of(encoder)
    amp_dtype = autocast_dtype(amp)
    skipped: list[tuple[str, str]] = []
    outs: list[PointFeatures] = []
    kept: list[int] = []
    frames: list[tuple[torch.Tensor, torch.Tensor]] = []
    batches = prepared_batches(preparer, sources, names, batch_size=batch_size, skip_bad=skip_bad, skipped=skipped,
                               progress=progress, desc="extract")
    for batch, positions in batches:
        points = batch.points.to(dev, encoder.dtype)  # b n 3
        with torch.autocast(dev.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            f = encoder.forward_features(points)
        f = PointFeatures(*(getattr(f, k).float().cpu() for k in _FIELDS))
        finite = finite_rows(torch.cat([f.global_feature, f.tokens.flatten(1)], dim=1))  # b
        if not bool(finite.all()):
            if not skip_bad:
                raise non_finite_error(batch.names, finite, "features")
            keep = finite.nonzero().flatten()
            for j in (~finite).nonzero().flatten().tolist():
                logger.warning("skipping %s: the network produced non-finite features", batch.names[j])
                skipped.append((batch.names[j], "the network produced non-finite features"))
            f = PointFeatures(*(getattr(f, k)[keep] for k in _FIELDS))
            positions = [positions[j] for j in keep.tolist()]
            batch = CloudBatch(batch.points[keep], batch.centers[keep], batch.scales[keep],
                               [batch.names[j] for j in keep.tolist()])
        outs.append(f)
        kept += positions
        frames.append((batch.centers, batch.scales))
    if not outs:
        raise ValueError(f"none of the {len(sources)} inputs could be prepared: "
                         + "; ".join(f"{n}: {r}" for n, r in skipped[:5]))
    feats = PointFeatures(*(torch.cat([getattr(o, k) for o in outs]) for k in _FIELDS))
    centers = torch.cat([c for c, _ in frames])  # B 3, float64
    scales = torch.cat([s for _, s in frames]).view(-1, 1, 1)  # B 1 1
    feats.centers = feats.centers.double() * scales + centers.unsqueeze(1)  # back in each input's frame
    return feats, kept, skipped


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

    Returns:
        :class:`PointFeatures` on the CPU: ``global_feature [B, 2C]``, ``tokens [B, G, C]``,
        ``centers [B, G, 3]`` (in each input's coordinates; float64 when an in-memory input is
        float64, else float32), ``cls [B, C]``; without the batch axis when a single cloud
        (``[N, 3]`` or one file) was given.

    Raises:
        ValueError: a bad cloud or file (named), an empty input, ``num_points < 1``, a cloud on
            the meta device, or non-finite features (naming the cloud).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    sources, names, single = as_sources(clouds)
    encoder = _encoder_of(resolve_model(model_or_name, device))
    preparer = CloudPreparer(check_num_points(num_points, encoder.config.npoints), sample, seed, normalize, mesh_samples)
    with eval_mode(encoder):
        feats, _, _ = _run(encoder, preparer, sources, names, batch_size=batch_size, amp=amp, skip_bad=False,
                           progress=progress)
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
    """

    features: PointFeatures
    files: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def arrays(self, *, tokens: bool = True) -> dict[str, np.ndarray]:
        """The numeric fields as float32 arrays (``centers`` float32 too)."""
        out = {k: getattr(self.features, k).float().numpy() for k in _FIELDS if tokens or k != "tokens"}
        return out

    def save(self, out: str | os.PathLike, *, tokens: bool = True) -> Path:
        """Write to ``out``: ``.npz`` (arrays + ``files`` + ``skipped``), ``.safetensors``
        (arrays; the file lists as JSON metadata) or a directory (one ``.npy`` per field,
        ``files.json``, ``skipped.json``). Written atomically. Returns the path."""
        path, fmt = check_output(out)
        _write(path, fmt, self.arrays(tokens=tokens), self.files, self.skipped)
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


def _write(path: Path, fmt: OutputFormat, arrays: dict[str, np.ndarray], files: list[str],
           skipped: list[tuple[str, str]]) -> None:
    from .hub.cache import atomic_path

    if fmt == "npz":
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays, files=np.array(files, dtype=str),
                     skipped=np.array([f for f, _ in skipped], dtype=str),
                     skipped_reasons=np.array([r for _, r in skipped], dtype=str))
    elif fmt == "safetensors":
        from safetensors.numpy import save_file

        meta = {"files": json.dumps(files), "skipped": json.dumps([list(s) for s in skipped])}
        with atomic_path(path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp), metadata=meta)
    else:
        for key, value in arrays.items():
            with atomic_path(path / f"{key}.npy") as tmp, open(tmp, "wb") as fh:
                np.save(fh, value)
        for key, value in (("files", files), ("skipped", [list(s) for s in skipped])):
            with atomic_path(path / f"{key}.json") as tmp:
                Path(tmp).write_text(json.dumps(value, indent=1) + "\n")


@torch.no_grad()
def extract_files(
    model_or_name: nn.Module | str,
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    out: str | os.PathLike | None = None,
    tokens: bool = True,
    skip_bad: bool = False,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    amp: bool | torch.dtype = False,
    normalize: bool = True,
    sample: Literal["fps", "random"] = "fps",
    num_points: int | None = None,
    seed: int = 0,
    mesh_samples: int = 8192,
    progress: bool | None = None,
) -> FileFeatures:
    """Features of files at folder scale.

    Args:
        inputs: files, directories (every supported file below, recursively, sorted) and glob
            patterns (``"scans/**/*.ply"``), in the order given (duplicates once).
        out: also save the result there (see :meth:`FileFeatures.save`); checked before any
            file is read.
        tokens: keep the per-patch tokens in the saved file.
        skip_bad: leave out files that cannot be read or prepared (listed in ``skipped`` and
            logged) instead of stopping at the first.
        Other arguments: as :func:`extract_features`.

    Raises:
        FileNotFoundError: an input that does not exist (named).
        ValueError: a bad file (named; unless ``skip_bad``), a directory without supported
            files, a bad output path.
    """
    from .data.io import collect_files

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    destination = check_output(out) if out is not None else None
    files = collect_files(inputs)
    encoder = _encoder_of(resolve_model(model_or_name, device))
    preparer = CloudPreparer(check_num_points(num_points, encoder.config.npoints), sample, seed, normalize, mesh_samples)
    names = [str(f) for f in files]
    with eval_mode(encoder):
        feats, kept, skipped = _run(encoder, preparer, files, names, batch_size=batch_size, amp=amp,
                                    skip_bad=skip_bad, progress=progress)
    feats.centers = feats.centers.float()
    result = FileFeatures(feats, [names[i] for i in kept], skipped)
    if destination is not None:
        _write(destination[0], destination[1], result.arrays(tokens=tokens), result.files, result.skipped)
    return result
