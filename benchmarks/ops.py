"""Point ops, every available backend side by side in one run: FPS at four sizes against
``fpsample`` (vanilla = exact, ``bucket_fps_kdline`` = its fastest, inexact), kNN (k=32) and
Chamfer nearest at two sizes each; min-of-N times with the methods interleaved, peak memory of
one call, identical indices, and the first-use cost of every backend.

    python benchmarks/ops.py              # ~1-2 minutes on 2 cores
    python benchmarks/ops.py --quick      # fewer repeats, skips the cold-compile measurement
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import timed  # noqa: E402

import act_zoo.ops as ops  # noqa: E402
from act_zoo.ops._backend import backend_info, dispatch  # noqa: E402

FPS_SIZES = ((32, 2048, 128), (8, 8192, 512), (1, 10000, 1024), (1, 100000, 4096))
KNN_SIZES = ((32, 1024, 64), (8, 8192, 512))  # B, reference points, queries (k = 32)
CHAMFER_SIZES = ((8, 2048, 2048), (4096, 32, 32))  # B, N, M
KNN_K = 32


# ----------------------------------------------------------------------------- measuring
def _first_call(fn: Callable[[], object]) -> tuple[object, float | None]:
    """``fn()`` (the warm-up call) and the peak resident memory it added in MB (Linux: VmHWM
    after resetting it; ``None`` elsewhere)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS to the current RSS
        base = _status_kb("VmRSS")
    except OSError:
        return fn(), None
    out = fn()
    return out, (_status_kb("VmHWM") - base) / 1024


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(key)


def _interleaved(fns: dict[str, Callable[[], object]], repeats: dict[str, int]) -> dict[str, float]:
    """Min-of-``repeats[name]`` seconds per method, the methods interleaved (after their first call)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(max(repeats.values())):
        for k, fn in fns.items():
            if r < repeats[k]:
                times[k].append(timed(fn))
    return {k: min(v) for k, v in times.items()}


def _backends(device: str) -> list[str]:
    """Backends that run on ``device`` here: torch, plus those auto may pick there and that load."""
    return ["torch"] + [b.name for b in backend_info()
                        if b.name != "torch" and b.unavailable is None and (b.devices is None or device in b.devices)]


def _op(op: str, backend: str, device: torch.device) -> Callable:
    with ops.use_backend(backend):
        return dispatch(op, device)


def _synced(out: object, device: torch.device) -> object:
    """``out`` once the device has finished computing it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f}"


def _mb(peaks: list[float | None]) -> str:
    return ", ".join("n/a" if p is None else f"{p:.1f}" for p in peaks)


# ----------------------------------------------------------------------------- first use
_FIRST_USE = """
import time, sys
t = time.perf_counter()
import act_zoo.ops as ops
from act_zoo.ops._backend import _load
t_import = time.perf_counter() - t
t = time.perf_counter()
_load(sys.argv[1])
print(t_import, time.perf_counter() - t)
"""


def first_use(backend: str, cold: bool) -> str:
    """Load time of a backend in a fresh process: with an empty numba cache (cold: the compile
    a user pays once per machine) and with the cache filled (every later process)."""
    if backend == "torch":
        return "none (pure torch)"
    env = dict(os.environ)
    runs = ["first"]
    if backend == "compiled":  # cold: an empty numba cache; cached: the same cache, now filled
        runs = ["cold", "cached"] if cold else ["cached"]
    out = []
    with tempfile.TemporaryDirectory() as cache:
        if cold:
            env["NUMBA_CACHE_DIR"] = cache
        for label in runs:
            res = subprocess.run([sys.executable, "-c", _FIRST_USE, backend], env=env, capture_output=True,
                                 text=True, check=True)
            out.append(f"{label} {float(res.stdout.split()[1]):.2f} s")
    return ", ".join(out)


# ----------------------------------------------------------------------------- benchmarks
def bench_fps(device: torch.device, repeats: int) -> None:
    try:
        import fpsample
    except ImportError:
        fpsample = None
        print("fpsample is not installed (pip install fpsample): no comparison against it")
    backends = _backends(device.type)
    print(f"\nFPS on {device} (ms, min of {repeats}; ratios = fpsample time / {backends[-1]} time; "
          "identical = same indices as torch)")
    cols = [*backends] + (["fps vanilla", "fps kdline"] if fpsample else [])
    print(f"{'size':>20} " + " ".join(f"{c:>11}" for c in cols)
          + ("   vs vanilla  vs kdline" if fpsample else "") + "  identical  peak MB (" + ", ".join(backends) + ")")
    g = torch.Generator().manual_seed(0)
    for B, N, n in FPS_SIZES:
        xyz = torch.randn(B, N, 3, generator=g).to(device)
        arr = xyz.cpu().numpy()
        fns: dict[str, Callable[[], object]] = {}
        for b in backends:
            fn = _op("furthest_point_sample", b, device)
            fns[b] = lambda fn=fn: _synced(fn(xyz, n), device)
        first = {b: _first_call(fns[b]) for b in backends}
        same = all(torch.equal(first[b][0], first["torch"][0]) for b in backends)
        if fpsample:
            vanilla = [fpsample.fps_sampling(arr[b], n, start_idx=0) for b in range(B)]
            ref = first["torch"][0].cpu().numpy()
            same &= all(np.array_equal(np.sort(v), np.sort(ref[b])) for b, v in enumerate(vanilla))
            # kdline's tree height: the fastest of the paper's suggestions for this size
            h = min((3, 5, 7, 9), key=lambda h: timed(lambda: fpsample.bucket_fps_kdline_sampling(arr[0], n, h, 0)))
            fns["fps vanilla"] = lambda: [fpsample.fps_sampling(arr[b], n, start_idx=0) for b in range(B)]
            fns["fps kdline"] = lambda h=h: [fpsample.bucket_fps_kdline_sampling(arr[b], n, h, 0) for b in range(B)]
        # the torch loop on 100k points takes ~1 s a call on a quiet machine: fewer repeats for it
        t = _interleaved(fns, {k: 2 if k == "torch" and N >= 50000 else repeats for k in fns})
        line = f"{f'{B}x{N}->{n}':>20} " + " ".join(f"{_fmt(t[c]):>11}" for c in cols)
        if fpsample:
            best = backends[-1]
            line += f"   {t['fps vanilla'] / t[best]:9.1f}x {t['fps kdline'] / t[best]:8.1f}x"
        print(line + f"  {str(same):>9}  " + _mb([first[b][1] for b in backends]), flush=True)


def bench_pairs(device: torch.device, repeats: int) -> None:
    backends = _backends(device.type)
    print(f"\nkNN (k={KNN_K}) and Chamfer nearest on {device} (ms, min of {repeats}; ratio = torch / "
          f"{backends[-1]}; identical = same indices as torch)")
    print(f"{'op and size':>28} " + " ".join(f"{b:>11}" for b in backends)
          + "     ratio  identical  peak MB (" + ", ".join(backends) + ")")
    g = torch.Generator().manual_seed(1)
    cases = [("knn", f"knn {B}x{N} refs {M} q", (B, N, M)) for B, N, M in KNN_SIZES]
    cases += [("chamfer_nearest", f"chamfer {B}x{N} vs {M}", (B, N, M)) for B, N, M in CHAMFER_SIZES]
    for op, label, (B, N, M) in cases:
        a = torch.randn(B, N, 3, generator=g).to(device)
        q = torch.randn(B, M, 3, generator=g).to(device)
        args = (a, q, KNN_K) if op == "knn" else (a, q)
        fns = {}
        for b in backends:
            fn = _op(op, b, device)
            fns[b] = lambda fn=fn: _synced(fn(*args), device)
        first = {b: _first_call(fns[b]) for b in backends}
        want = first["torch"][0]
        same = all(torch.equal(first[b][0][1], want[1]) and torch.equal(first[b][0][0], want[0]) for b in backends)
        t = _interleaved(fns, dict.fromkeys(fns, repeats))
        print(f"{label:>28} " + " ".join(f"{_fmt(t[b]):>11}" for b in backends)
              + f"  {t['torch'] / t[backends[-1]]:7.1f}x  {str(same):>9}  " + _mb([first[b][1] for b in backends]),
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch (and compiled) threads (default 2)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="2 repeats, no cold-compile measurement")
    args = ap.parse_args()
    repeats = 2 if args.quick else args.repeats
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} cores, load average {load:.1f} "
          "(a loaded machine inflates and scatters times; compare the ratios, measured side by side)")
    print("backends: " + "; ".join(f"{b.name} ({'ok' if b.unavailable is None else b.unavailable})"
                                   for b in backend_info()))
    for b in backend_info():
        if b.unavailable is None:
            print(f"first use of {b.name}: {first_use(b.name, cold=not args.quick)}")
    for device in devices:
        bench_fps(device, repeats)
        bench_pairs(device, repeats)


if __name__ == "__main__":
    main()
