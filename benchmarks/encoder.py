"""Encoder inference throughput: the default (fast) path vs the official-style reference path.

Prints, side by side in one run: clouds/s of both paths, their ratio and max abs difference,
the measured fp32 matmul peak of this machine and the share of it each path reaches, plus
bf16/fp16 autocast figures (reported separately: they matter on GPUs, not on this CPU).

    python benchmarks/encoder.py                 # ModelNet40 config, batch 8, 2 threads
    python benchmarks/encoder.py --config scanobjectnn --batch 16 --threads 4
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import argparse
import statistics

import torch
from _common import matmul_peak_gflops, timed  # noqa: E402

from act_zoo.models.point_transformer import MODELNET40, SCANOBJECTNN, ACTClassifier, ClassifierConfig


def network_gflop(cfg: ClassifierConfig, *, fast: bool = False) -> float:
    """Forward FLOPs of one cloud (2 per multiply-add): as the official code computes it, or
    (``fast``) as the default path does (second mini-PointNet stage split into a per-patch
    global half and a per-point local half composed with ``conv2``)."""
    pts = cfg.num_group * cfg.group_size
    if fast:
        pointnet = pts * (3 * 128 + 128 * 256 + 128 * 512 + 512 * cfg.encoder_dims) + cfg.num_group * 256 * 512
    else:
        pointnet = pts * (3 * 128 + 128 * 256 + 512 * 512 + 512 * cfg.encoder_dims)
    n, C = cfg.num_group + 1, cfg.embed_dim
    hidden = int(C * cfg.mlp_ratio)
    blocks = cfg.depth * (n * (3 * C * C + C * C + 2 * C * hidden) + 2 * n * n * C)
    pos = cfg.num_group * (3 * 128 + 128 * C)
    head = 2 * C * 256 + 256 * 256 + 256 * cfg.cls_dim
    return 2 * (pointnet + blocks + pos + head) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=["modelnet40", "scanobjectnn"], default="modelnet40")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = MODELNET40 if args.config == "modelnet40" else SCANOBJECTNN
    model = ACTClassifier(cfg).eval()
    points = torch.randn(args.batch, cfg.npoints, 3)
    points /= points.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True)

    def run(fast: bool, autocast: torch.dtype | None = None) -> torch.Tensor:
        model.set_fast_path(fast)
        with torch.inference_mode(), torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            return model(points)

    variants = {"reference": (False, None), "default": (True, None)}
    outputs = {name: run(*v) for name, v in variants.items()}  # warm-up + outputs
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):  # interleaved so drift hits both paths alike
        for name, v in variants.items():
            run(*v)
            times[name].append(timed(lambda v=v: run(*v)))

    peak = matmul_peak_gflops()
    gflop = network_gflop(cfg)
    executed = {"reference": gflop, "default": network_gflop(cfg, fast=True)}
    print(f"config {args.config}: N={cfg.npoints} G={cfg.num_group} M={cfg.group_size} C={cfg.embed_dim} "
          f"depth={cfg.depth}; batch {args.batch}; {args.threads} threads; torch {torch.__version__}")
    print(f"network: {gflop:.2f} GFLOP per cloud as the official code computes it, {executed['default']:.2f} as the "
          f"default path does; fp32 matmul peak {peak:.0f} GFLOP/s")
    rate = {}
    for name in variants:
        t = statistics.median(times[name])
        rate[name] = args.batch / t
        share = rate[name] * executed[name] / peak
        nominal = rate[name] * gflop / peak
        print(f"  {name:<10} {rate[name]:7.1f} clouds/s  ({t * 1e3:6.1f} ms/batch; {share:5.1%} of matmul peak on the "
              f"FLOPs it executes, {nominal:5.1%} on the official {gflop:.2f} GFLOP count)")
    diff = (outputs["default"] - outputs["reference"]).abs().max().item()
    print(f"  speed-up default/reference: {rate['default'] / rate['reference']:.2f}x   max |diff| {diff:.2e}")
    for dt in (torch.bfloat16, torch.float16):
        try:
            out = run(True, dt)
            t = statistics.median(timed(lambda: run(True, dt)) for _ in range(3))
        except RuntimeError as exc:  # autocast dtype unsupported on this build
            print(f"  autocast {dt}: unavailable ({exc})")
            continue
        print(f"  autocast {str(dt).replace('torch.', ''):<8} {args.batch / t:7.1f} clouds/s  "
              f"max |diff| vs fp32 {(out.float() - outputs['reference']).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
