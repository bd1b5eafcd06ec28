"""Whole-scene semantic segmentation (``act_zoo.segment``): throughput and peak memory.

Each case runs in a fresh subprocess so its peak RSS (``ru_maxrss``) is its own: the process
imports act_zoo, builds the model (random weights), generates a procedural room
(:func:`act_zoo.data.synthetic_room`), records the RSS, segments the room, and reports the
points per second and the peak RSS, plus the RSS before segmenting (imports + model + the
room itself) so the segmentation's own share is visible::

    python benchmarks/segment.py                      # tiny model, 200k and 1M points
    python benchmarks/segment.py --full --points 200000 --threads 2   # the full-size S3DIS model
    python benchmarks/segment.py --nearest            # 3-nearest selection: full sort vs smallest3

The accumulator grows with the scene (N x 13 float32); everything else is bounded by
``--batch-size`` chunks of 2048 points.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CASE = r"""
import json, resource, sys, time
import torch
torch.set_num_threads({threads})
import act_zoo
from act_zoo.data import synthetic_room
from act_zoo.models.semseg import ACTSemSeg, SemSegConfig

def rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

torch.manual_seed(0)
cfg = SemSegConfig() if {full} else SemSegConfig(embed_dim=32, depth=4, num_heads=2, group_size=16, num_group=32,
                                                 encoder_dims=32, fp_dims=(64, 32), head_dims=(32, 16),
                                                 fetch_idx=(1, 2, 3))
model = ACTSemSeg(cfg).eval()
side = (({points} / 200_000) ** 0.5)
xyz, _ = synthetic_room({points}, size=(6.0 * side, 5.0 * side, 3.0), chairs=4, seed=0)
xyz = xyz.astype("float32")
before = rss_mb()
t = time.perf_counter()
result = act_zoo.segment(model, xyz, batch_size={batch})
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(dict(points=len(xyz), seconds=dt, points_per_s=len(xyz) / dt, rss_before_mb=before,
                      peak_rss_mb=peak, classes=len(result.counts()))))
"""


def run(points: int, *, full: bool, batch: int, threads: int) -> dict:
    code = CASE.format(points=points, full=full, batch=batch, threads=threads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def nearest_selection(repeats: int = 5) -> None:
    """The 3 nearest centres of feature propagation: the official full sort vs the fast path's
    three argmin passes (same indices), side by side on one batch of 16 chunks of 2048 points."""
    import torch
    from _common import timed

    from act_zoo.layers.propagation import smallest3

    for groups in (32, 128):
        d = torch.rand(16, 2048, groups)
        assert torch.equal(smallest3(d), d.sort(dim=-1, stable=True).indices[..., :3])
        sort = min(timed(lambda d=d: d.sort(dim=-1, stable=True)) for _ in range(repeats))
        select = min(timed(lambda d=d: smallest3(d)) for _ in range(repeats))
        print(f"G={groups:>3}: full sort {1e3 * sort:7.1f} ms, smallest3 {1e3 * select:6.1f} ms "
              f"({sort / select:.1f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nearest", action="store_true", help="only time the 3-nearest selection of feature propagation")
    ap.add_argument("--points", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--full", action="store_true", help="the full-size S3DIS model (default: a tiny one)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.nearest:
        nearest_selection()
        return
    model = "full-size ACTSemSeg (27.0 M params)" if args.full else "tiny ACTSemSeg"
    print(f"{model}, batch {args.batch_size} chunks of 2048 points, {args.threads} thread(s), random weights")
    for n in args.points:
        r = run(n, full=args.full, batch=args.batch_size, threads=args.threads)
        print(f"{r['points']:>9,} points: {r['seconds']:7.1f} s  {r['points_per_s']:>9,.0f} points/s  "
              f"RSS before {r['rss_before_mb']:6.0f} MB, peak {r['peak_rss_mb']:6.0f} MB "
              f"(+{r['peak_rss_mb'] - r['rss_before_mb']:.0f} MB while segmenting)")


if __name__ == "__main__":
    main()
