"""The mini-PointNet patch embedding (official ``Encoder``).

``first_conv``: Conv1d(3,128) BN ReLU Conv1d(128,256), max-pool over the patch;
``second_conv``: Conv1d(512,512) BN ReLU Conv1d(512,C) on ``cat([global, local])``
(global first), max-pool. The canonical weights are the official Conv1d/BN modules.

Two paths compute the same function:

* reference: exactly the official sequence of ops (channels-first Conv1d, an explicit
  broadcast of the global feature, BN as a separate op);
* fast (default): channels-last matmuls; each BatchNorm is folded into the preceding layer
  on the fly (with its running statistics in eval mode, with the batch statistics in train
  mode when no gradient is needed); the second stage splits its weight into global and
  local halves so the global half runs once per patch instead of once per point, and the
  local half is composed with ``conv2`` so it reads the 128-d activations directly; the last
  bias is added after the max-pool (exact, since rounding is monotone). Derived weights are
  recomputed from the canonical ones at every call (a few hundred kFLOP), so they can
  never go stale and gradients reach the canonical parameters.

Train-mode BatchNorm statistics without the full activations: the second stage's
pre-BN activation of point ``p`` in patch ``g`` is ``y_p = u_g + L r_p`` (``u_g`` the
per-patch global term, ``r_p`` the 128-d first-stage activation, ``L = W3_local @ W2``), so
its batch mean and variance follow from the patches' ``u``, the patch means of ``r`` and
the 128x128 covariance of ``r`` (:func:`affine_sum_moments`) -- exact, and differentiable.
:meth:`MiniPointNet.forward_subset` uses this to run the 512-wide second stage only on the
patches whose features are wanted (stage II: the ~20 % visible ones) while the BatchNorm
statistics, their gradients and the running-stat updates stay those of all patches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _autocast_on(x: torch.Tensor) -> bool:
    return torch.is_autocast_enabled(x.device.type)


def _bn_scale(var: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """``weight / sqrt(var + eps)``: ``bn(y) = (y - mean) * scale + bias``."""
    scale = torch.rsqrt(var + bn.eps)  # C
    return scale if bn.weight is None else bn.weight * scale


def _fold(weight: torch.Tensor, bias: torch.Tensor | None, mean: torch.Tensor, var: torch.Tensor,
          bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``bn(x @ W^T + b)`` with statistics ``mean``/``var`` as one affine layer."""
    scale = _bn_scale(var, bn)
    b = bias if bias is not None else torch.zeros_like(mean)
    shift = (b - mean) * scale
    return weight * scale[:, None], shift if bn.bias is None else shift + bn.bias


def fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the preceding affine layer ``y = x @ W^T + b``."""
    return _fold(weight, bias, bn.running_mean, bn.running_var, bn)


def uses_batch_stats(bn: nn.modules.batchnorm._BatchNorm) -> bool:
    """Whether ``bn`` normalises with the batch statistics (train mode, or no running stats)."""
    return bn.training or bn.running_mean is None or bn.running_var is None


@torch.no_grad()
def update_running_stats(bn: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """What a batch-statistics forward of ``bn`` does to its buffers, given the batch mean and
    the biased variance over ``count`` samples (``nn.BatchNorm`` semantics: the running
    variance takes the unbiased estimate; ``momentum=None`` is the cumulative average)."""
    if count <= 1:  # the message of nn.BatchNorm's own check
        raise ValueError(f"Expected more than 1 value per channel when training, got {count}")
    if not (bn.training and bn.track_running_stats):
        return
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            factor = 1.0 / float(bn.num_batches_tracked)
    if bn.running_mean is not None:
        bn.running_mean.mul_(1 - factor).add_(mean.detach().to(bn.running_mean.dtype), alpha=factor)
    if bn.running_var is not None:
        unbiased = var.detach().to(bn.running_var.dtype) * (count / (count - 1))
        bn.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)


def linear_moments(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch mean and biased variance of ``x @ W^T + b`` over the rows of ``x [N, I]``,
    from the mean and (centred) covariance of ``x``: exact, without forming the product."""
    mean_x = x.mean(0)  # I
    c = x - mean_x  # N I
    cov = c.t() @ c / x.shape[0]  # I I
    mean = weight @ mean_x
    if bias is not None:
        mean = mean + bias
    return mean, ((weight @ cov) * weight).sum(1)


def affine_sum_moments(u: torch.Tensor, r: torch.Tensor, L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch mean and biased variance over all points of ``y[g, p] = u[g] + L @ r[g, p]``.

    ``u [G, O]`` (one row per patch), ``r [G, n, I]`` (equal-sized patches), ``L [O, I]``.
    With ``r̄`` the mean of ``r``, ``r̄_g`` the patch means, ``Σ`` the centred covariance of ``r``
    and ``d = u - mean(u)``:  ``mean = mean(u) + L r̄`` and
    ``var = mean_g d² + 2 mean_g d ∘ L(r̄_g - r̄) + diag(L Σ Lᵀ)`` -- every term centred, so
    there is no cancellation; ``y`` (``G·n x O``) is never formed. Differentiable."""
    G, n, I = r.shape
    r_g = r.mean(1)  # G I
    r_bar = r_g.mean(0)  # I
    if torch.is_grad_enabled() and (r.requires_grad or L.requires_grad or u.requires_grad):
        c = (r - r_bar).reshape(G * n, I)  # Gn I
        cov = c.t() @ c / (G * n)  # I I
    else:  # no graph: accumulate the covariance over chunks through one scratch buffer
        flat = r.reshape(G * n, I)
        cov = r.new_zeros(I, I)
        rows = min(G * n, 8192)
        scratch = r.new_empty(rows, I)
        for s in range(0, G * n, rows):
            e = min(G * n, s + rows)
            c = torch.sub(flat[s:e], r_bar, out=scratch[: e - s])
            cov.addmm_(c.t(), c)
        cov /= G * n
    u_bar = u.mean(0)  # O
    d = u - u_bar  # G O
    e = F.linear(r_g - r_bar, L)  # G O
    mean = u_bar + L @ r_bar
    var = (d * (d + 2 * e)).mean(0) + ((L @ cov) * L).sum(1)
    return mean, var


class MiniPointNet(nn.Module):
    def __init__(self, encoder_channel: int, *, fast: bool = True) -> None:
        super().__init__()
        self.encoder_channel = encoder_channel
        self.fast = fast
        self.first_conv = nn.Sequential(
            nn.Conv1d(3, 128, 1),
            nn.BatchNorm1d(128),
            nn.ReLU(inplace=True),
            nn.Conv1d(128, 256, 1),
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(512, 512, 1),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Conv1d(512, encoder_channel, 1),
        )

    def forward(self, point_groups: torch.Tensor) -> torch.Tensor:
        """``point_groups [B, G, n, 3]`` -> patch features ``[B, G, C]``."""
        if not self.fast:
            return self.forward_reference(point_groups)
        if not torch.is_grad_enabled() and not _autocast_on(point_groups):
            return self.forward_inference(point_groups)
        return self.forward_fast(point_groups)

    def forward_reference(self, point_groups: torch.Tensor) -> torch.Tensor:
        bs, g, n, _ = point_groups.shape
        x = point_groups.reshape(bs * g, n, 3).transpose(2, 1)  # BG 3 n
        feature = self.first_conv(x)  # BG 256 n
        feature_global = torch.max(feature, dim=2, keepdim=True)[0]  # BG 256 1
        feature = torch.cat([feature_global.expand(-1, -1, n), feature], dim=1)  # BG 512 n
        feature = self.second_conv(feature)  # BG C n
        feature_global = torch.max(feature, dim=2, keepdim=False)[0]  # BG C
        return feature_global.reshape(bs, g, self.encoder_channel)

    def forward_subset(self, point_groups: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``self(point_groups)[keep]`` as ``[B, Gk, C]`` (ascending patch order; every sample
        keeps the same number of patches), computing the second stage for the kept patches only.

        With batch-statistics BatchNorm (train mode) the statistics, their gradients and the
        running-stat updates are still those of all patches (:func:`affine_sum_moments`), as
        in the official model, which embeds every patch and then drops the masked ones."""
        bs, _, n, _ = point_groups.shape
        keep = keep.to(device=point_groups.device, dtype=torch.bool)
        if not self.fast or bool(keep.all()):
            return self.forward(point_groups)[keep].reshape(bs, -1, self.encoder_channel)
        _, bn1, _, _ = self.first_conv
        _, bn3, _, _ = self.second_conv
        if not (uses_batch_stats(bn1) or uses_batch_stats(bn3)):  # per-patch function: just the kept patches
            return self.forward(point_groups[keep].reshape(bs, -1, n, 3))
        return self._forward_subset_batch_stats(point_groups, keep)

    def _forward_subset_batch_stats(self, point_groups: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        bs, g, n, _ = point_groups.shape
        BG, N, C = bs * g, bs * g * n, self.encoder_channel
        conv1, bn1, _, conv2 = self.first_conv
        conv3, bn3, _, conv4 = self.second_conv
        x = point_groups.reshape(N, 3)
        r = F.relu(bn1(F.linear(x, conv1.weight[:, :, 0], conv1.bias)))  # N 128 (every patch: feeds the stats)
        w2, b2 = conv2.weight[:, :, 0], conv2.bias  # 256 128
        f_global = F.linear(r, w2, b2).view(BG, n, -1).max(dim=1).values  # BG 256
        w3 = conv3.weight[:, :, 0]
        w3g, w3l = w3[:, : w2.shape[0]], w3[:, w2.shape[0]:]  # 512 256 each
        L = w3l @ w2  # 512 128
        b = conv3.bias
        if b2 is not None:
            b = w3l @ b2 if b is None else b + w3l @ b2
        u = F.linear(f_global, w3g, b)  # BG 512, the pre-BN global term of every patch
        r = r.view(BG, n, -1)  # BG n 128
        if uses_batch_stats(bn3):
            mean, var = affine_sum_moments(u, r, L)  # over all BG*n points
            update_running_stats(bn3, mean, var, N)
        else:
            mean, var = bn3.running_mean, bn3.running_var
        keep = keep.reshape(BG)
        # centred first, then scaled, as BatchNorm itself computes it
        h = F.linear(r[keep], L) + (u[keep] - mean).unsqueeze(1)  # BGk n 512, y - mean
        scale = _bn_scale(var, bn3)
        h = h * scale if bn3.bias is None else torch.addcmul(bn3.bias, h, scale)
        out = F.linear(F.relu(h), conv4.weight[:, :, 0]).max(dim=1).values  # BGk C
        if conv4.bias is not None:
            out = out + conv4.bias
        return out.reshape(bs, -1, C)

    def _stage_weights(self) -> dict[str, torch.Tensor | bool]:
        """Linear-layout weights derived from the canonical Conv1d/BN parameters.

        With running statistics (eval mode) both BatchNorms are folded. The second stage's
        weight is split into its global half (applied once per patch) and its local half, and
        the local half is composed with ``conv2`` (``W3l @ W2``): the local term is computed
        straight from the 128-d first-stage activations, skipping a 256->512 product per point."""
        conv1, bn1, _, conv2 = self.first_conv
        conv3, bn3, _, conv4 = self.second_conv
        w1, b1 = conv1.weight[:, :, 0], conv1.bias
        w3, b3 = conv3.weight[:, :, 0], conv3.bias
        folded = not (uses_batch_stats(bn1) or uses_batch_stats(bn3))
        if folded:
            w1, b1 = fold_batchnorm(w1, b1, bn1)
            w3, b3 = fold_batchnorm(w3, b3, bn3)
        w2, b2 = conv2.weight[:, :, 0], conv2.bias  # 256 128, 256
        w3g, w3l = w3[:, :256], w3[:, 256:]  # 512 256 each
        w_local = w3l @ w2  # 512 128
        b_global = b3 if b3 is not None else torch.zeros(w3.shape[0], dtype=w3.dtype, device=w3.device)
        if b2 is not None:
            b_global = b_global + w3l @ b2  # 512
        else:
            b2 = torch.zeros(w2.shape[0], dtype=w2.dtype, device=w2.device)
        return dict(w1=w1, b1=b1, w2=w2, b2=b2, w3g=w3g, w_local=w_local, b_global=b_global,
                    w4=conv4.weight[:, :, 0], b4=conv4.bias, folded=folded)

    def forward_fast(self, point_groups: torch.Tensor) -> torch.Tensor:
        """Differentiable fast path (training, or eval with gradients)."""
        bs, g, n, _ = point_groups.shape
        W = self._stage_weights()
        _, bn1, _, _ = self.first_conv
        _, bn3, _, _ = self.second_conv
        x = point_groups.reshape(bs * g * n, 3)  # P 3   (P = B*G*n points)
        h = F.linear(x, W["w1"], W["b1"])  # P 128
        if not W["folded"]:
            h = bn1(h)
        h = F.relu(h)
        # max (not amax): on ties the gradient goes to one point, as in the official max-pool
        f_global = F.linear(h, W["w2"], W["b2"]).view(bs * g, n, -1).max(dim=1).values  # BG 256
        h = F.linear(h, W["w_local"]).view(bs * g, n, -1)  # BG n 512 (local half)
        h = h + F.linear(f_global, W["w3g"], W["b_global"]).unsqueeze(1)  # BG n 512 (+ global, once per patch)
        if not W["folded"]:
            h = bn3(h.view(bs * g * n, -1)).view(bs * g, n, -1)
        h = F.relu(h)
        out = F.linear(h, W["w4"]).max(dim=1).values  # BG C
        if W["b4"] is not None:
            out = out + W["b4"]
        return out.reshape(bs, g, self.encoder_channel)

    @torch.no_grad()
    def forward_inference(self, point_groups: torch.Tensor, *, rows_per_chunk: int = 2048) -> torch.Tensor:
        """No-grad path: the fast-path maths with both BatchNorms folded, on chunks of patches
        through scratch buffers allocated once per call (large fresh allocations cost page
        faults). In train mode (batch statistics) the statistics are computed first -- the
        first BatchNorm's from the points' mean and covariance, the second's by
        :func:`affine_sum_moments` -- the running stats are updated as ``nn.BatchNorm``
        does, and the folded second stage then runs per chunk."""
        bs, g, n, _ = point_groups.shape
        P, C = bs * g, self.encoder_channel
        conv1, bn1, _, conv2 = self.first_conv
        conv3, bn3, _, conv4 = self.second_conv
        if not uses_batch_stats(bn3):
            if uses_batch_stats(bn1):  # (a train-mode bn1 next to an eval-mode bn3)
                return self.forward_fast(point_groups)
            return self._inference_folded(point_groups, rows_per_chunk=rows_per_chunk)
        x = point_groups.reshape(P * n, 3)
        w1, b1 = conv1.weight[:, :, 0], conv1.bias
        if uses_batch_stats(bn1):
            mean1, var1 = linear_moments(x, w1, b1)
            update_running_stats(bn1, mean1, var1, P * n)
        else:
            mean1, var1 = bn1.running_mean, bn1.running_var
        w1, b1 = _fold(w1, b1, mean1, var1, bn1)
        r = torch.addmm(b1, x, w1.t()).relu_()  # Pn 128 (kept: the second pass reads it again)
        w2t, b2 = conv2.weight[:, :, 0].t(), conv2.bias
        chunk = max(1, rows_per_chunk // n)
        rows = min(P, chunk) * n
        f_global = r.new_empty(P, w2t.shape[1])  # P 256
        f = r.new_empty(rows, w2t.shape[1])
        for s in range(0, P, chunk):
            e = min(P, s + chunk)
            torch.mm(r[s * n:e * n], w2t, out=f[: (e - s) * n])
            torch.amax(f[: (e - s) * n].view(e - s, n, -1), dim=1, out=f_global[s:e])
        if b2 is not None:
            f_global.add_(b2)
        w3 = conv3.weight[:, :, 0]
        w3g, w3l = w3[:, : w2t.shape[1]], w3[:, w2t.shape[1]:]
        L = w3l @ w2t.t()  # 512 128
        b = conv3.bias
        if b2 is not None:
            b = w3l @ b2 if b is None else b + w3l @ b2
        u = F.linear(f_global, w3g, b)  # P 512
        r3 = r.view(P, n, -1)
        mean3, var3 = affine_sum_moments(u, r3, L)
        update_running_stats(bn3, mean3, var3, P * n)
        scale = _bn_scale(var3, bn3)
        u.sub_(mean3).mul_(scale)  # P 512, the folded per-patch term (centred before scaling)
        if bn3.bias is not None:
            u.add_(bn3.bias)
        lt = (L * scale[:, None]).t()  # 128 512
        w4t = conv4.weight[:, :, 0].t()
        out = r.new_empty(P, C)
        h3, o4 = r.new_empty(rows, lt.shape[1]), r.new_empty(rows, C)
        for s in range(0, P, chunk):
            e = min(P, s + chunk)
            m, p = (e - s) * n, e - s
            torch.mm(r[s * n:e * n], lt, out=h3[:m])
            h3[:m].view(p, n, -1).add_(u[s:e].unsqueeze(1)).relu_()
            torch.mm(h3[:m], w4t, out=o4[:m])
            torch.amax(o4[:m].view(p, n, C), dim=1, out=out[s:e])
        if conv4.bias is not None:
            out.add_(conv4.bias)
        return out.view(bs, g, C)

    @torch.no_grad()
    def _inference_folded(self, point_groups: torch.Tensor, *, rows_per_chunk: int = 2048) -> torch.Tensor:
        bs, g, n, _ = point_groups.shape
        P, C = bs * g, self.encoder_channel
        W = self._stage_weights()
        w1t, w2t, w3gt, wlt, w4t = W["w1"].t(), W["w2"].t(), W["w3g"].t(), W["w_local"].t(), W["w4"].t()
        groups = point_groups.reshape(P, n, 3)
        out = torch.empty(P, C, dtype=w4t.dtype, device=w4t.device)  # BG C
        chunk = max(1, rows_per_chunk // n)
        rows = min(P, chunk) * n
        h1, f, h3, o4 = (out.new_empty(rows, c) for c in (w1t.shape[1], w2t.shape[1], wlt.shape[1], C))
        for s in range(0, P, chunk):
            e = min(P, s + chunk)
            r, p = (e - s) * n, e - s
            torch.addmm(W["b1"], groups[s:e].reshape(r, 3), w1t, out=h1[:r]).relu_()  # r 128
            torch.mm(h1[:r], w2t, out=f[:r])  # r 256 (bias added after the max: exact)
            f_global = f[:r].view(p, n, -1).amax(dim=1).add_(W["b2"])  # p 256
            torch.mm(h1[:r], wlt, out=h3[:r])  # r 512 (local half)
            h3[:r].view(p, n, -1).add_(torch.addmm(W["b_global"], f_global, w3gt).unsqueeze(1)).relu_()
            torch.mm(h3[:r], w4t, out=o4[:r])  # r C
            torch.amax(o4[:r].view(p, n, C), dim=1, out=out[s:e])  # p C
        if W["b4"] is not None:
            out.add_(W["b4"])
        return out.view(bs, g, C)

    def extra_repr(self) -> str:
        return f"encoder_channel={self.encoder_channel}, fast={self.fast}"
