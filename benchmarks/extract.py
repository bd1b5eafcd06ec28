"""Extraction end to end vs the network alone (issue 13 §4): does the pipeline keep the network busy?

Writes 300 files of 4096 points (a third each .npy, binary .ply and ASCII .xyz) to a temporary
folder, then for each model prints, side by side in one process, with the same batch size and
torch threads:

- network only: ``forward_features`` over the 300 clouds, prepared into batches beforehand;
- end to end: ``act_zoo.extract.extract_to(model, folder, "feats.npz")``: read, prepare
  (threads, batched FPS), network, rows streamed to the output and assembled;

files/s of both (best of ``--repeats`` alternating runs), their ratio and the target
(embedded ``act_tiny.synthetic10``: >= 50 %; ``act_base``, 1024 points, random weights:
>= 80 %), and the process CPU time per file of both. On a machine shared with other jobs the
wall-clock figures move with the load; the CPU-time ratio does not, and it is what the wall
ratio tends to when the network alone already fills every core.

    python benchmarks/extract.py                          # both models, torch's default threads
    python benchmarks/extract.py --threads 1 --repeats 3  # a loaded machine: 1 thread is steadier
    python benchmarks/extract.py --models tiny --workers 0 2 4
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import act_zoo
from act_zoo.data import SyntheticShapes
from act_zoo.data.prepare import CloudPreparer, batch_clouds
from act_zoo.extract import extract_to

MODELS = {  # name -> (how to build it, target ratio)
    "tiny": ("act_tiny.synthetic10 (embedded)", lambda: act_zoo.from_pretrained("act_tiny.synthetic10"), 0.50),
    "base": ("act_base (random weights)", lambda: act_zoo.create_model("act_base", pretrained=False), 0.80),
}


def write_files(root: Path, count: int, points: int, seed: int = 0) -> list[Path]:
    """``count`` procedural clouds, moved and scaled, as .npy / binary .ply / .xyz in turn."""
    import plyfile

    shapes = SyntheticShapes(count, num_points=points, seed=seed)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(count):
        xyz = shapes[i][0].numpy().astype(np.float64) * rng.uniform(0.5, 20) + rng.normal(size=3) * 100
        path = root / f"{i:04d}{('.npy', '.ply', '.xyz')[i % 3]}"
        if path.suffix == ".npy":
            np.save(path, xyz.astype(np.float32))
        elif path.suffix == ".ply":
            v = np.zeros(len(xyz), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
            v["x"], v["y"], v["z"] = xyz.T
            buf = io.BytesIO()
            plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")], text=False).write(buf)
            path.write_bytes(buf.getvalue())
        else:
            np.savetxt(path, xyz, fmt="%.6f")
        files.append(path)
    return files


def clock(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def bench(key: str, files: list[Path], folder: Path, out: Path, args: argparse.Namespace) -> list[str]:
    title, build, target = MODELS[key]
    model = build().eval()
    n = model.config.npoints
    preparer = CloudPreparer(n)
    bs = args.batch_size
    batches = [batch_clouds(preparer.prepare_many(files[i:i + bs])).points for i in range(0, len(files), bs)]

    @torch.no_grad()
    def network() -> None:
        for points in batches:
            model.forward_features(points)

    def end_to_end(workers: int) -> None:
        extract_to(model, folder, out, batch_size=bs, workers=workers, progress=False)

    network()  # warm-up: allocator, kernels, readers' imports, the ops backend
    end_to_end(args.workers[0])
    runs: dict[str, list[tuple[float, float]]] = {"net": []} | {f"w{w}": [] for w in args.workers}
    for _ in range(args.repeats):  # alternating, so that a change of load hits both
        runs["net"].append(clock(network))
        for w in args.workers:
            runs[f"w{w}"].append(clock(lambda w=w: end_to_end(w)))
    net_wall = min(t for t, _ in runs["net"])
    net_cpu = statistics.median(c for _, c in runs["net"])
    F = len(files)
    lines = [f"{title}: npoints {n}, batch {bs}",
             f"  network only          {F / net_wall:8.1f} files/s   {1e3 * net_cpu / F:6.2f} ms CPU/file"]
    for w in args.workers:
        wall = min(t for t, _ in runs[f"w{w}"])
        cpu = statistics.median(c for _, c in runs[f"w{w}"])
        ratio = net_wall / wall
        verdict = "meets" if ratio >= target else "BELOW"
        lines.append(f"  end to end, {w} workers {F / wall:8.1f} files/s   {1e3 * cpu / F:6.2f} ms CPU/file   "
                     f"ratio {100 * ratio:5.1f} % (CPU ratio {100 * net_cpu / cpu:5.1f} %)   target >= "
                     f"{100 * target:.0f} %: {verdict}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["tiny", "base"])
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--points", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[None],
                    help="preparation threads to try (default: extract_to's default)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from act_zoo._inference import default_workers

    args.workers = [default_workers() if w is None else w for w in args.workers]
    torch.manual_seed(0)
    print(f"act_zoo {act_zoo.__version__}, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, ops backend "
          f"{act_zoo.ops.get_backend()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="act_zoo_bench_") as tmp:
        folder = Path(tmp) / "clouds"
        folder.mkdir()
        t = time.perf_counter()
        files = write_files(folder, args.files, args.points)
        print(f"wrote {len(files)} files of {args.points} points (.npy / binary .ply / .xyz) in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        for key in args.models:
            for line in bench(key, files, folder, Path(tmp) / "feats.npz", args):
                print(line, flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
