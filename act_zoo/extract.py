"""Feature extraction for user code: any cloud(s) in, ACT features out.

``extract_features(model_or_name, clouds)`` follows the one path for a cloud: read (files)
-> validate -> normalise as the official pipeline (centre, unit sphere) -> resample to the
model's ``npoints`` (FPS, or seeded random) -> batch -> ``forward_features`` -> the same
:class:`~act_zoo.models.PointFeatures` record, with the patch centres mapped back into each
input cloud's own coordinates.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
import torch
from torch import nn

from .models import ACTDistillation, ACTEncoder, PointFeatures
from .ops import furthest_point_sample, gather_points

logger = logging.getLogger(__name__)

CloudLike = Union[torch.Tensor, np.ndarray, str, os.PathLike]


def _encoder_of(model_or_name: nn.Module | str, device: torch.device | str | None) -> ACTEncoder:
    if isinstance(model_or_name, (str, os.PathLike)):
        from .hub.registry import from_pretrained

        model = from_pretrained(model_or_name)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        model = model_or_name
    if isinstance(model, ACTDistillation):
        model = model.encoder
    if not isinstance(model, ACTEncoder):
        raise TypeError(f"extract_features needs an ACT encoder/classifier (or a stage-II model), got {type(model).__name__}")
    if device is not None:
        model = model.to(device)
    return model


def _as_clouds(clouds: CloudLike | Sequence[CloudLike], *, read_kwargs: dict[str, Any]) -> tuple[list[torch.Tensor], bool]:
    """-> (list of float32 [N_i, 3] tensors, single-cloud input?)."""
    if isinstance(clouds, (str, os.PathLike)):
        return [_read(clouds, read_kwargs)], True
    if isinstance(clouds, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(clouds)
        if t.dim() == 2:
            return [_check(t, "cloud")], True
        if t.dim() == 3:
            return [_check(c, f"cloud {i}") for i, c in enumerate(t)], False
        raise ValueError(f"clouds must be [N, 3] or [B, N, 3], got shape {list(t.shape)}")
    if isinstance(clouds, Sequence):
        if len(clouds) == 0:
            raise ValueError("clouds is an empty list")
        out = []
        for i, c in enumerate(clouds):
            if isinstance(c, (str, os.PathLike)):
                out.append(_read(c, read_kwargs))
            elif isinstance(c, (torch.Tensor, np.ndarray)):
                out.append(_check(torch.as_tensor(c), f"cloud {i}"))
            else:
                raise TypeError(f"cloud {i}: expected a tensor, array or path, got {type(c).__name__}")
        return out, False
    raise TypeError(f"clouds must be a tensor, array, path or a list of them, got {type(clouds).__name__}")


def _read(path: str | os.PathLike, read_kwargs: dict[str, Any]) -> torch.Tensor:
    from .data.io import MESH_EXTENSIONS, read_points

    p = Path(path)
    n = read_kwargs["mesh_samples"] if p.suffix.lower() in MESH_EXTENSIONS else None
    return _check(torch.from_numpy(read_points(p, num_points=n, seed=read_kwargs["seed"])), str(path))


def _check(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.dim() != 2 or t.shape[-1] != 3:
        raise ValueError(f"{name}: a cloud must have shape [N, 3], got {list(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name}: empty cloud")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name}: unsupported dtype {t.dtype}")
    t = t.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: contains NaN or inf values")
    return t


def _normalise(cloud: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Official ``pc_normalize``: subtract the centroid, divide by the max radius."""
    centroid = cloud.mean(dim=0)  # 3
    centred = cloud - centroid
    scale = centred.norm(dim=1).max()
    if scale <= 0:
        scale = torch.ones(())
    return centred / scale, centroid, scale


def _resample(cloud: torch.Tensor, n: int, method: str, gen: torch.Generator) -> torch.Tensor:
    N = cloud.shape[0]
    if N == n:
        return cloud
    if N > n:
        if method == "fps":
            idx = furthest_point_sample(cloud.unsqueeze(0), n)  # 1 n
            return gather_points(cloud.unsqueeze(0), idx)[0]
        return cloud[torch.randperm(N, generator=gen)[:n]]
    extra = torch.randint(0, N, (n - N,), generator=gen)  # pad with seeded random repeats
    return torch.cat([cloud, cloud[extra]], dim=0)


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
) -> PointFeatures:
    """ACT features of one or many clouds.

    Args:
        model_or_name: an ACT encoder/classifier, a stage-II model (its student is used) or a
            name/source for :func:`act_zoo.from_pretrained`.
        clouds: a ``[N, 3]`` or ``[B, N, 3]`` tensor/array, a file path (.ply .pcd .npy .npz
            .txt .xyz .csv .off .obj .stl; meshes are sampled by area with a fixed seed), or a
            list of clouds and paths of different sizes.
        batch_size: clouds per forward pass.
        device: where to run (default: the model's device; cuda when loading by name and
            available).
        amp: ``True`` (bfloat16) or a dtype for autocast; fp32 otherwise.
        normalize: centre and scale to the unit sphere first, as the official pipeline.
        sample: ``"fps"`` or ``"random"`` (seeded) to reach ``num_points`` (default: the
            model's ``npoints``); smaller clouds are padded with seeded random repeats.
        seed: seed of random resampling/padding and mesh sampling.
        mesh_samples: points sampled (by area) from mesh files before resampling.

    Returns:
        :class:`PointFeatures` on the CPU: ``global_feature [B, 2C]``, ``tokens [B, G, C]``,
        ``centers [B, G, 3]`` (in each input's coordinates), ``cls [B, C]``; without the batch
        axis when a single cloud (``[N, 3]`` or one path) was given.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if sample not in ("fps", "random"):
        raise ValueError(f"sample must be 'fps' or 'random', got {sample!r}")
    encoder = _encoder_of(model_or_name, device)
    encoder.eval()
    dev = next(encoder.parameters()).device
    n = num_points or encoder.config.npoints
    # files are read whole (meshes sampled by area with ``mesh_samples`` points), then resampled below
    items, single = _as_clouds(clouds, read_kwargs={"seed": seed, "mesh_samples": mesh_samples})
    gen = torch.Generator().manual_seed(seed)
    prepared, frames = [], []
    for cloud in items:
        if normalize:
            cloud, centroid, scale = _normalise(cloud)
        else:
            centroid, scale = torch.zeros(3), torch.ones(())
        prepared.append(_resample(cloud, n, sample, gen))
        frames.append((centroid, scale))
    amp_dtype = torch.bfloat16 if amp is True else (amp if isinstance(amp, torch.dtype) else None)
    outs: list[PointFeatures] = []
    for s in range(0, len(prepared), batch_size):
        batch = torch.stack(prepared[s:s + batch_size]).to(dev, encoder.dtype)  # b n 3
        with torch.autocast(dev.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            f = encoder.forward_features(batch)
        outs.append(PointFeatures(*(t.float().cpu() for t in (f.global_feature, f.tokens, f.centers, f.cls))))
    feats = PointFeatures(*(torch.cat([getattr(o, k) for o in outs]) for k in ("global_feature", "tokens", "centers", "cls")))
    centroids = torch.stack([c for c, _ in frames])  # B 3
    scales = torch.stack([sc for _, sc in frames]).view(-1, 1, 1)  # B 1 1
    feats.centers = feats.centers * scales + centroids.unsqueeze(1)
    return feats.squeeze_batch() if single else feats
