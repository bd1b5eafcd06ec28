"""BatchNorm statistics under DDP: W ranks x A micro-batches composed = one process, sequentially."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
from torch import nn

from act_zoo.train.distributed import DistInfo, RunningStatsSync


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
def test_composed_running_stats_equal_one_process(monkeypatch, momentum):
    W, A = 3, 2
    base = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, momentum=momentum), nn.Linear(6, 6),
                         nn.BatchNorm1d(6, momentum=momentum)).double()
    unused = nn.BatchNorm1d(6, momentum=momentum).double()  # a module no micro-batch runs
    base.add_module("unused", unused)
    ref = copy.deepcopy(base).train()
    ranks = [copy.deepcopy(base).train() for _ in range(W)]

    def forward(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return m[3](m[2](m[1](m[0](x))))

    syncs = [RunningStatsSync(m, DistInfo(rank=i, world_size=W)) for i, m in enumerate(ranks)]
    for step in range(3):
        batches = [torch.randn(5, 4, dtype=torch.float64) * (step + 1) + step for _ in range(W * A)]
        for b in batches:  # one process, gradient accumulation order
            forward(ref, b)
        for s in syncs:
            s.begin_step()
        for i, m in enumerate(ranks):  # rank i runs micro-batches i*A .. i*A+A-1
            for a in range(A):
                forward(m, batches[i * A + a])
        flats = [s._flat() for s in syncs]
        monkeypatch.setattr(dist, "all_gather", lambda out, t, flats=flats: [o.copy_(f) for o, f in zip(out, flats)])
        for s in syncs:
            s._compose()
        for m in ranks:
            for (name, a), b in zip(m.named_buffers(), ref.buffers()):
                torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12, msg=f"step {step} {name}")
    assert int(ranks[0].unused.num_batches_tracked) == 0 and torch.equal(ranks[0].unused.running_var, torch.ones(6).double())
