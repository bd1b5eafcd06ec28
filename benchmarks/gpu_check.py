"""One prepared run for a CUDA machine: Triton tests on the real device, then figures.

    python benchmarks/gpu_check.py OUT_DIR        # at most 10 min (the step limits add up to 600 s)

Steps (each in its own process, with its own time limit, output in ``OUT_DIR/<step>.txt``;
``OUT_DIR/summary.txt`` lists each step's exit status and time):

1. ``env``      torch / triton versions and the GPU;
2. ``tests``    ``tests/ops/test_triton.py`` (the interpreter run and the real-device run of
                ``tests/ops/triton_cases.py``: indices identical to the torch backend);
3. ``triton``   triton vs torch backend on CUDA, side by side: first call (compile), median
                time, ratio, identical indices;
4. ``ops``      ``benchmarks/ops.py``;
5. ``encoder``  ``benchmarks/encoder.py``.

The two benchmark scripts get ``--device cuda`` when their ``--help`` offers it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# FPS at the four sizes (B, N, n); kNN (B, refs, queries, k); Chamfer (B, N, M)
FPS_SIZES = [(32, 2048, 128), (8, 8192, 512), (1, 10000, 1024), (1, 100000, 4096)]
KNN_SIZES = [(32, 2048, 128, 32), (8, 8192, 512, 32)]
CHAMFER_SIZES = [(32, 2048, 2048), (8, 8192, 8192)]
VERSIONS = "import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name())"


def _timings() -> None:
    """Step 3 (runs in a child process): triton vs torch on CUDA, same inputs."""
    import statistics

    import torch

    from act_zoo.ops import _torch, _triton

    _triton.load()
    dev = torch.device("cuda")

    def clock(fn, repeats: int = 5) -> tuple[float, float, object]:
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        first = time.perf_counter() - t
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        return first, statistics.median(times), out

    def row(label: str, make_torch, make_triton, same) -> None:
        _, t_ref, ref = clock(make_torch)
        first, t_tri, got = clock(make_triton)
        print(f"{label:<34} torch {t_ref * 1e3:9.2f} ms   triton {t_tri * 1e3:9.2f} ms   "
              f"torch/triton x{t_ref / t_tri:6.1f}   first call {first:6.2f} s   identical={same(ref, got)}", flush=True)

    g = torch.Generator(device=dev).manual_seed(0)
    print(torch.cuda.get_device_name(), flush=True)
    for B, N, n in FPS_SIZES:
        xyz = torch.randn(B, N, 3, device=dev, generator=g)
        row(f"fps {B}x{N} -> {n}", lambda xyz=xyz, n=n: _torch.furthest_point_sample(xyz, n),
            lambda xyz=xyz, n=n: _triton.furthest_point_sample(xyz, n), torch.equal)
    for B, N, M, k in KNN_SIZES:
        ref, query = torch.randn(B, N, 3, device=dev, generator=g), torch.randn(B, M, 3, device=dev, generator=g)
        row(f"knn {B}x{N} refs, {M} queries, k={k}", lambda r=ref, q=query, k=k: _torch.knn(r, q, k),
            lambda r=ref, q=query, k=k: _triton.knn(r, q, k), lambda a, b: all(map(torch.equal, a, b)))
    for B, N, M in CHAMFER_SIZES:
        x, y = torch.randn(B, N, 3, device=dev, generator=g), torch.randn(B, M, 3, device=dev, generator=g)
        row(f"chamfer nearest {B}x{N} vs {M}", lambda x=x, y=y: _torch.chamfer_nearest(x, y),
            lambda x=x, y=y: _triton.chamfer_nearest(x, y), lambda a, b: all(map(torch.equal, a, b)))
    print(f"peak memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB", flush=True)


def _bench_cmd(script: str, env: dict[str, str]) -> list[str]:
    cmd = [sys.executable, script]
    try:
        helptext = subprocess.run(cmd + ["--help"], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=60).stdout
    except subprocess.TimeoutExpired:
        helptext = ""
    return cmd + (["--device", "cuda"] if "--device" in helptext else [])


def main() -> None:
    if len(sys.argv) == 2 and sys.argv[1] == "--timings":
        return _timings()
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the real kernels
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"  # a step stopped at its limit still leaves what it printed
    py = sys.executable
    steps = [
        ("env", [py, "-c", VERSIONS], 60),
        ("tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/ops/test_triton.py"], 150),
        ("triton", [py, str(Path(__file__).resolve()), "--timings"], 120),
        ("ops", _bench_cmd("benchmarks/ops.py", env), 150),
        ("encoder", _bench_cmd("benchmarks/encoder.py", env), 120),
    ]
    with open(out / "summary.txt", "w") as summary:
        for name, cmd, limit in steps:
            t = time.perf_counter()
            with open(out / f"{name}.txt", "w") as log:
                try:
                    rc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        timeout=limit).returncode
                except subprocess.TimeoutExpired:
                    rc = f"timeout after {limit}s"
            line = f"{name:<8} rc={rc}  {time.perf_counter() - t:6.1f}s  {' '.join(cmd[1:])}"
            print(line, flush=True)
            summary.write(line + "\n")
            summary.flush()


if __name__ == "__main__":
    main()
