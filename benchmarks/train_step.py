"""Stage-II training step time: the default (fast) path vs the official-order reference path.

One step = ``forward_loss`` + ``backward`` + ``AdamW.step`` with the model in ``train()`` mode
exactly as in official pretraining: the frozen teacher is in train mode too (BatchNorm batch
statistics and running-stat updates, prompt dropout p=0.1), a fresh random mask and fresh
Gumbel noise at every step, drop-path active in the student.

Printed side by side in one run, the two paths interleaved (so machine drift hits both alike):
ms per step and the speed-up, the GFLOP each path executes per step (counted at dispatch) and
the share of this machine's fp32 matmul peak it reaches, then the max abs difference between
the paths with all randomness fixed (same mask, same Gumbel noise, the torch RNG re-seeded
before each path so prompt dropout and drop-path draw the same) of the loss, of every
gradient, of the BatchNorm running statistics and of the parameters after the AdamW step.
``--breakdown`` adds the time per component.

    python benchmarks/train_step.py                        # official DistillConfig(), batch 16, 2 threads
    python benchmarks/train_step.py --batch 4 --breakdown
    python benchmarks/train_step.py --config small         # ViT-S/16 teacher instead of ViT-B/16

The speed-up grows with the batch on a small CPU: the fast path's time is linear in the batch
(plus the AdamW step), the reference path's grows faster (its large intermediates). The FLOP
ratio (~1.74x) bounds it at small batches: the frozen ViT-B (~13 GFLOP per cloud even with
its prompt rows cut down to keys and values) and the 2304 -> 8192 tokenizer head are needed
as they are, and the serial random draws (Gumbel noise, prompt dropout) and the AdamW step
cost both paths the same.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import argparse
import copy
import statistics
import time
from collections import defaultdict

import torch
from _common import matmul_peak_gflops, timed  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from act_zoo.models.distill import ACTDistillation, DistillConfig
from act_zoo.models.dvae import DVAEConfig

CONFIGS = {
    "official": DistillConfig(),  # 384-d depth-12 student, ViT-B/16-384 teacher, 64 deep prompts
    "small": DistillConfig(dvae=DVAEConfig(teacher="vit_small_patch16_384")),  # ViT-S/16 (384-d) teacher
}


class FlopCount(TorchDispatchMode):
    """Matmul FLOPs at dispatch level (no module hooks, so every fast path stays active)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if packet in flop_registry:
            self.flops += flop_registry[packet](*args, **kwargs, out_val=out)
        elif packet is torch.ops.aten.addmm_:  # residual GEMMs of the in-place streams
            self.flops += 2 * args[1].shape[0] * args[1].shape[1] * args[2].shape[1]
        elif packet is torch.ops.mkldnn._linear_pointwise:  # oneDNN packed linears (act_zoo.layers.gemm)
            x = args[0]
            self.flops += 2 * x.numel() * out.shape[-1]
        elif packet is torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
            q, k = args[0], args[1]
            self.flops += 4 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3]
        elif packet is torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
            q, k = args[1], args[2]
            self.flops += 8 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3]
        return out


def make_points(batch: int, n: int, generator: torch.Generator) -> torch.Tensor:
    pts = torch.randn(batch, n, 3, generator=generator)
    return pts / pts.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True)


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The official AdamW: no weight decay on 1-D parameters, biases and ``*token*``."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.dim() == 1 or name.endswith(".bias") or "token" in name else decay).append(p)
    return torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.05}],
                             lr=5e-4)


def train_step(model: ACTDistillation, opt: torch.optim.Optimizer, points: torch.Tensor, **kwargs) -> torch.Tensor:
    opt.zero_grad(set_to_none=True)
    loss = model.forward_loss(points, **kwargs).loss
    loss.backward()
    opt.step()
    return loss.detach()


def max_diff(a, b) -> float:
    return max(((x.double() - y.double()).abs().max().item() for x, y in zip(a, b) if x.numel()), default=0.0)


def equivalence(model: ACTDistillation, points: torch.Tensor, *, dtype: torch.dtype = torch.float32,
                seed: int = 1234) -> dict[str, float]:
    """One training step of each path from the same weights (copies of ``model`` in ``dtype``),
    every random draw fixed: the same mask and Gumbel noise are passed in, and the torch RNG
    is re-seeded before each path so prompt dropout and drop-path draw the same."""
    B, G = points.shape[0], model.config.dvae.num_group
    mask = model.make_mask(torch.zeros(B, G, 3), generator=torch.Generator().manual_seed(seed))
    noise = torch.empty(B, G, model.config.dvae.num_tokens, dtype=dtype)
    noise = -noise.exponential_(generator=torch.Generator().manual_seed(seed)).log()
    res = {}
    for fast in (False, True):
        m = copy.deepcopy(model).to(dtype).set_fast_path(fast)
        opt = make_optimizer(m)
        opt.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        loss = m.forward_loss(points.to(dtype), mask=mask, gumbel_noise=noise).loss
        loss.backward()
        params = [p for p in m.parameters() if p.requires_grad]
        # lm_head and cls_head get no gradient (the loss does not use them), on both paths
        grads = [p.grad.clone() if p.grad is not None else torch.zeros(0) for p in params]
        opt.step()
        res[fast] = {"loss": loss.item(), "grads": grads, "params": [p.detach().clone() for p in params],
                     "stats": [b.clone() for n, b in m.named_buffers() if "running" in n]}
        del m, opt
    r, f = res[False], res[True]
    if [g.numel() for g in r["grads"]] != [g.numel() for g in f["grads"]]:
        raise AssertionError("the two paths give gradients to different parameters")
    # Gradients that are identically zero in exact arithmetic (the biases right in front of a
    # batch-statistics BatchNorm: conv1, conv2 and conv3 of the student's mini-PointNet) come
    # out as rounding noise on both paths; the relative figures leave them out (Adam turns
    # such noise into steps of +-lr, so the parameter figure leaves them out too).
    top = max(g.abs().max().item() for g in r["grads"] if g.numel())
    live = [i for i, g in enumerate(r["grads"]) if g.numel() and g.abs().max().item() > 1e-4 * top]
    rel = [((r["grads"][i] - f["grads"][i]).abs().max() / r["grads"][i].abs().max()).item() for i in live]
    return {"loss": r["loss"], "loss_diff": abs(r["loss"] - f["loss"]),
            "grad_diff": max_diff(r["grads"], f["grads"]), "grad_max": top, "grad_rel": max(rel, default=0.0),
            "n_grads": sum(g.numel() > 0 for g in r["grads"]), "n_zero": sum(g.numel() > 0 for g in r["grads"]) - len(live),
            "stats_diff": max_diff(r["stats"], f["stats"]), "n_stats": len(r["stats"]),
            "param_diff": max_diff([r["params"][i] for i in live], [f["params"][i] for i in live])}


class Breakdown:
    """Wall time per component, by wrapping the components' methods on the instances (no
    hooks, so the fast paths stay active)."""

    def __init__(self, model: ACTDistillation) -> None:
        self.t: dict[str, float] = defaultdict(float)
        t, s = model.dvae_tokenizer, model.ACT_encoder
        for obj, name, label in [(s, "forward_visible", "student encoder fwd"),
                                 (model.ACT_decoder, "forward", "student decoder fwd"),
                                 (t, "tokenizer_features", "teacher (no grad)"),
                                 (t.encoder, "forward", "  mini-PointNet"),
                                 (t.dgcnn_1, "forward", "  dgcnn_1 (8192 logits)"),
                                 (t, "teacher_features", "  ViT teacher + prompts"),
                                 (t.dgcnn_2, "forward", "  dgcnn_2")]:
            self._wrap(obj, name, label)

    def _wrap(self, obj, name: str, label: str) -> None:
        fn = getattr(obj, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            self.t[label] += time.perf_counter() - t0
            return out

        setattr(obj, name, timed)

    def step(self, model, opt, points) -> dict[str, float]:
        self.t.clear()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model.forward_loss(points).loss
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        out = dict(self.t)
        named = ("  mini-PointNet", "  dgcnn_1 (8192 logits)", "  ViT teacher + prompts", "  dgcnn_2")
        out["  Gumbel draw + rest"] = out["teacher (no grad)"] - sum(out[k] for k in named)
        out["rest of forward (grouping, loss)"] = (t1 - t0) - out["student encoder fwd"] - out["student decoder fwd"] \
            - out["teacher (no grad)"]
        out["backward (student)"] = t2 - t1
        out["AdamW step"] = t3 - t2
        out["total"] = t3 - t0
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=sorted(CONFIGS), default="official")
    ap.add_argument("--batch", type=int, default=16,
                    help="clouds per step (default 16: the per-GPU batch of the official 128-cloud, 8-GPU step)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--breakdown", action="store_true", help="also time each component (interleaved)")
    ap.add_argument("--no-check", action="store_true", help="skip the fixed-randomness difference check")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = CONFIGS[args.config]
    model = ACTDistillation(cfg).train()
    gen = torch.Generator().manual_seed(0)
    points = make_points(args.batch, cfg.npoints, gen)

    opt = make_optimizer(model)
    paths = {"reference": False, "fast": True}

    def step(fast: bool) -> float:
        model.set_fast_path(fast)
        return timed(lambda: train_step(model, opt, points))

    flops = {}
    for name, fast in paths.items():
        model.set_fast_path(fast)
        step(fast)  # warm-up (allocator, optimizer state)
        with FlopCount() as fc:
            train_step(model, opt, points)
        flops[name] = fc.flops / 1e9
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeats):  # interleaved
        for name, fast in paths.items():
            times[name].append(step(fast))

    peak = matmul_peak_gflops()
    parts: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in paths}
    if args.breakdown:
        bd = Breakdown(model)
        for _ in range(max(2, args.repeats // 2)):
            for name, fast in paths.items():
                model.set_fast_path(fast)
                for k, v in bd.step(model, opt, points).items():
                    parts[name][k].append(v)
    # Last, on the initial weights (same seed): the check's model copies leave a large free
    # heap behind, which spares later large allocations their page faults and would distort
    # the timings above (the reference path's most).
    checks = {}
    if not args.no_check:
        del opt, model
        torch.manual_seed(0)
        model = ACTDistillation(cfg).train()
        checks = {dt: equivalence(model, points, dtype=dt) for dt in (torch.float32, torch.float64)}
    d = cfg.dvae
    print(f"config {args.config}: student {cfg.embed_dim}-d depth {cfg.depth}, decoder depth {cfg.decoder_depth}; "
          f"teacher {d.spec.name} ({d.spec.embed_dim}-d, depth {d.spec.depth}) with {d.num_prompt_token} deep prompts, "
          f"{d.num_tokens} tokens; {d.num_group} groups x {d.group_size} points of {d.npoints}; mask ratio {cfg.mask_ratio}")
    print(f"batch {args.batch}; {args.threads} threads; torch {torch.__version__}; train() mode, teacher in train mode "
          f"(BN batch stats, prompt dropout {d.prompt_dropout}); step = forward + backward + AdamW; "
          f"fp32 matmul peak {peak:.0f} GFLOP/s")
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name in paths:
        share = flops[name] / med[name] / peak
        print(f"  {name:<10} {med[name] * 1e3:8.1f} ms/step  ({args.batch / med[name]:5.2f} clouds/s; "
              f"{flops[name]:6.1f} GFLOP/step, {share:5.1%} of matmul peak)   runs: "
              + " ".join(f"{t * 1e3:.0f}" for t in times[name]))
    print(f"  speed-up fast/reference: {med['reference'] / med['fast']:.2f}x   "
          f"(FLOP ratio {flops['reference'] / flops['fast']:.2f}x)")
    for dt, c in checks.items():
        print(f"  paths compared, all randomness fixed (same mask, Gumbel noise, seed), {str(dt)[6:]}: "
              f"loss {c['loss']:.10f}, |diff| {c['loss_diff']:.1e}; {c['n_grads']} gradients: max |diff| "
              f"{c['grad_diff']:.1e} (max |grad| {c['grad_max']:.1e}), worst relative to the tensor's largest "
              f"{c['grad_rel']:.1e} (leaving out the {c['n_zero']} that are exactly 0 in exact arithmetic); "
              f"{c['n_stats']} BN running stats {c['stats_diff']:.1e}; params after AdamW {c['param_diff']:.1e}")
    if checks:
        print("  (float64 shows both paths compute the same function. In float32 a pre-activation within rounding "
              "of a ReLU kink or a max-pool near-tie can route a gradient differently, and AdamW's first step "
              "lr*g/(|g|+eps) turns rounding in near-zero gradient entries into parameter differences up to lr)")

    if args.breakdown:
        print("  time per component (ms, median, interleaved):")
        print(f"    {'':<34} {'reference':>10} {'fast':>10} {'ratio':>7}")
        for k in parts["fast"]:
            r, f = statistics.median(parts["reference"][k]), statistics.median(parts["fast"][k])
            print(f"    {k:<34} {r * 1e3:10.1f} {f * 1e3:10.1f} {r / f if f > 0 else float('nan'):7.2f}")


if __name__ == "__main__":
    main()
