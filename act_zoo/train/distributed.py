"""torch.distributed helpers: ``torchrun`` (single or multi node), gloo on CPU, nccl on GPU."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device(f"cuda:{local_rank}")
    return dev


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group ``torchrun`` set up (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``);
    a plain ``python`` run is a world of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
        logger.info("rank %d/%d joined the %s process group on %s", rank, world, backend, dev)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


def broadcast_object(obj, info: DistInfo):
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class RunningStatsSync:
    """BatchNorm running statistics under DDP equal to one process running the same
    micro-batches one after another (the order gradient accumulation uses).

    Plain DDP (``broadcast_buffers=True``) overwrites every rank's statistics with rank 0's at
    each forward, so they only ever see rank 0's micro-batches. Instead, DDP is built with
    ``broadcast_buffers=False``, each rank updates its statistics from its own ``A``
    micro-batches, and after the step the ranks' results are composed in rank order. One
    momentum update is affine, ``r <- (1-m) r + m x``, so rank ``k``'s ``n_k`` updates (``A``,
    or 0 for a module its micro-batches did not use) from the common start ``r`` give
    ``e_k = d_k r + c_k`` with ``d_k = (1-m)^n_k``, and applying those maps in rank order gives
    what one process would have; the cumulative average (``momentum=None``) composes as sums.
    Other buffers are broadcast from rank 0, as DDP would.
    """

    def __init__(self, model: nn.Module, info: DistInfo) -> None:
        self.info = info
        self.bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                    and m.track_running_stats and m.running_mean is not None]
        stats = {id(t) for m in self.bns for t in (m.running_mean, m.running_var, m.num_batches_tracked)}
        self.others = [b for b in model.buffers() if id(b) not in stats]
        self._start: torch.Tensor | None = None

    def _flat(self) -> torch.Tensor:
        stats = [t.detach().double().flatten().cpu() for m in self.bns for t in (m.running_mean, m.running_var)]
        counts = torch.tensor([float(m.num_batches_tracked) for m in self.bns], dtype=torch.float64)
        return torch.cat([*stats, counts])

    def begin_step(self) -> None:
        if self.bns:
            self._start = self._flat()

    def end_step(self) -> None:
        if not self.info.enabled:
            return
        if self.bns:
            self._compose()
        for b in self.others:
            dist.broadcast(b.data, src=0)

    def _compose(self) -> None:
        local = self._flat().to(self.info.device)  # nccl gathers CUDA tensors, gloo CPU ones
        ends = [torch.empty_like(local) for _ in range(self.info.world_size)]
        dist.all_gather(ends, local)
        ends = [e.cpu() for e in ends]
        start, nb = self._start, len(self.bns)
        n0s = start[-nb:].tolist()
        steps = [[e - n0 for e, n0 in zip(end[-nb:].tolist(), n0s)] for end in ends]  # updates per rank and module
        offset = 0
        for j, (m, n0) in enumerate(zip(self.bns, n0s)):
            done = [round(s[j]) for s in steps]
            for t in (m.running_mean, m.running_var):
                k = t.numel()
                r = start[offset:offset + k]
                e = [x[offset:offset + k] for x in ends]
                if not any(done):
                    out = r
                elif m.momentum is None:  # cumulative average: rank i ends at (n0 r + S_i) / (n0 + done_i)
                    total = n0 * r + sum((n0 + di) * ei - n0 * r for di, ei in zip(done, e))
                    out = total / (n0 + sum(done))
                else:  # rank i ends at d_i r + c_i with d_i = (1-m)^done_i: apply the ranks in order
                    out = r
                    for di, ei in zip(done, e):
                        d = (1.0 - m.momentum) ** di
                        out = d * out + (ei - d * r)
                t.data.copy_(out.view_as(t).to(t.dtype))
                offset += k
            m.num_batches_tracked.fill_(int(n0) + sum(done))


def cleanup() -> None:
    """Leave the process group :func:`init_distributed` joined (at the end of a torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
