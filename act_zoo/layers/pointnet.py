"""The mini-PointNet patch embedding (official ``Encoder``).

``first_conv``: Conv1d(3,128) BN ReLU Conv1d(128,256), max-pool over the patch;
``second_conv``: Conv1d(512,512) BN ReLU Conv1d(512,C) on ``cat([global, local])``
(global first), max-pool. The canonical weights are the official Conv1d/BN modules.

Two paths compute the same function:

* reference: exactly the official sequence of ops (channels-first Conv1d, an explicit
  broadcast of the global feature, BN as a separate op);
* fast (default): channels-last matmuls; in eval mode each BatchNorm is folded into the
  preceding layer on the fly; the second stage splits its weight into global and local
  halves so the global half runs once per patch instead of once per point, and the local
  half is composed with ``conv2`` so it reads the 128-d activations directly; the last bias
  is added after the max-pool (exact, since rounding is monotone). Derived weights are
  recomputed from the canonical ones at every call (a few hundred kFLOP), so they can
  never go stale and gradients reach the canonical parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _autocast_on(x: torch.Tensor) -> bool:
    return torch.is_autocast_enabled(x.device.type)


def fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm into the preceding affine layer ``y = x @ W^T + b``."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # C
    b = bias if bias is not None else torch.zeros_like(bn.running_mean)
    return weight * scale[:, None], (b - bn.running_mean) * scale + bn.bias


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
        if not self.training and not torch.is_grad_enabled() and not _autocast_on(point_groups):
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

    def _stage_weights(self) -> dict[str, torch.Tensor | bool]:
        """Linear-layout weights derived from the canonical Conv1d/BN parameters.

        In eval mode both BatchNorms are folded. The second stage's weight is split into its
        global half (applied once per patch) and its local half, and the local half is
        composed with ``conv2`` (``W3l @ W2``): the local term is computed straight from the
        128-d first-stage activations, skipping a 256->512 product per point."""
        conv1, bn1, _, conv2 = self.first_conv
        conv3, bn3, _, conv4 = self.second_conv
        w1, b1 = conv1.weight[:, :, 0], conv1.bias
        w3, b3 = conv3.weight[:, :, 0], conv3.bias
        folded = not self.training
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
        """Eval/no-grad path: the fast-path maths on chunks of patches through scratch
        buffers allocated once per call (large fresh allocations cost page faults)."""
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
