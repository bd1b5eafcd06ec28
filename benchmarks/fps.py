"""Furthest point sampling: act_zoo's batched pure-torch FPS vs ``fpsample`` (the fastest CPU
FPS package; it loops over clouds), with identical indices, side by side in one run.

    python benchmarks/fps.py            # 32x2048 -> 128 and 8x8192 -> 512, 2 threads
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from act_zoo.ops import furthest_point_sample


def _time(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import fpsample
    except ImportError:
        raise SystemExit("this benchmark compares against fpsample: pip install fpsample") from None
    print(f"torch {torch.__version__}, {args.threads} threads, fpsample {getattr(fpsample, '__version__', '?')}")
    for B, N, n in ((32, 2048, 128), (8, 8192, 512)):
        g = torch.Generator().manual_seed(0)
        xyz = torch.randn(B, N, 3, generator=g)
        arr = xyz.numpy()
        ours = furthest_point_sample(xyz, n).numpy()
        # fpsample.fps_sampling is the exact (vanilla) algorithm; it returns the picked set
        theirs = [fpsample.fps_sampling(arr[b], n, start_idx=0) for b in range(B)]
        identical = all(np.array_equal(np.sort(ours[b]), np.sort(theirs[b])) for b in range(B))
        t_ours, t_theirs = [], []
        for _ in range(args.repeats):  # interleaved
            t_ours.append(_time(lambda: furthest_point_sample(xyz, n), 1))
            t_theirs.append(_time(lambda: [fpsample.fps_sampling(arr[b], n, start_idx=0) for b in range(B)], 1))
        a, b_ = statistics.median(t_ours), statistics.median(t_theirs)
        print(f"  {B}x{N} -> {n}: act_zoo {a * 1e3:7.2f} ms   fpsample {b_ * 1e3:7.2f} ms   "
              f"speed-up {b_ / a:4.2f}x   identical indices: {identical}")


if __name__ == "__main__":
    main()
