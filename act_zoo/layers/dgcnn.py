"""The DGCNN used by the ACT dVAE as tokenizer (``dgcnn_1``) and before the decoder (``dgcnn_2``).

``input_trans`` Conv1d(C_in, 128) on the per-group features, then four EdgeConv layers over
the k = 4 nearest centres (the centre itself included): the edge feature
``cat(neighbour - self, self)`` -> Conv2d 1x1 (no bias) -> GroupNorm(4) -> LeakyReLU(0.2)
-> max over neighbours; widths 256, 512, 512, 1024; their concatenation (2304) ->
``layer5`` Conv1d (no bias) -> GroupNorm(4) -> LeakyReLU(0.2).

The fast path (default) uses linearity: ``W [nbr - x; x] = W_a nbr + (W_b - W_a) x`` with
``W = [W_a | W_b]``, so the 1x1 convolution runs once per point and its result is gathered
for the neighbours, instead of running on k times as many edge features. Without gradients
(the frozen tokenizer of stage II) it also runs channels-last: plain GEMMs instead of 1x1
convolutions, GroupNorm and LeakyReLU in place, no transposes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import knn
from .attention import has_hooks

K_NEIGHBOURS = 4
_WIDTHS = ((256, 256), (512, 512), (1024, 512), (1024, 1024))  # (edge-feature in, out) per layer


class DGCNN(nn.Module):
    def __init__(self, encoder_channel: int, output_channel: int, *, fast: bool = True) -> None:
        super().__init__()
        self.fast = fast
        self.input_trans = nn.Conv1d(encoder_channel, 128, 1)
        for i, (cin, cout) in enumerate(_WIDTHS, start=1):
            layer = nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=1, bias=False),
                nn.GroupNorm(4, cout),
                nn.LeakyReLU(negative_slope=0.2),
            )
            self.add_module(f"layer{i}", layer)
        self.layer5 = nn.Sequential(
            nn.Conv1d(sum(c for _, c in _WIDTHS), output_channel, kernel_size=1, bias=False),
            nn.GroupNorm(4, output_channel),
            nn.LeakyReLU(negative_slope=0.2),
        )

    @staticmethod
    def neighbours(coor: torch.Tensor) -> torch.Tensor:
        """``coor [B, G, 3]`` -> indices of the k=4 nearest centres ``[B, G, k]`` (self first)."""
        return knn(coor, coor, K_NEIGHBOURS)[1]

    def forward(self, f: torch.Tensor, coor: torch.Tensor) -> torch.Tensor:
        """``f [B, G, C_in]``, ``coor [B, G, 3]`` -> ``[B, G, C_out]``."""
        if (self.fast and not torch.is_grad_enabled() and not torch.is_autocast_enabled(f.device.type)
                and not has_hooks(self, include_self=False)):
            return self.forward_inference(f, coor)
        idx = self.neighbours(coor)  # B G k
        x = self.input_trans(f.transpose(1, 2))  # B 128 G
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = self._edge_conv(layer, x, idx)  # B C' G
            features.append(x)
        x = self.layer5(torch.cat(features, dim=1))  # B C_out G
        return x.transpose(1, 2)  # B G C_out

    def _edge_conv(self, layer: nn.Sequential, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        conv, norm, act = layer
        B, C, G = x.shape
        k = idx.shape[-1]
        flat = (idx + torch.arange(B, device=idx.device).view(B, 1, 1) * G).reshape(-1)  # B*G*k
        w = conv.weight[:, :, 0, 0]  # C' 2C
        if self.fast:
            w_nbr, w_self = w[:, :C], w[:, C:] - w[:, :C]
            xt = x.transpose(1, 2).reshape(B * G, C)  # BG C
            a = F.linear(xt, w_nbr)  # BG C'  (neighbour term, once per point)
            b = F.linear(xt, w_self)  # BG C'  (self term)
            y = a[flat].view(B, G, k, -1) + b.view(B, G, 1, -1)  # B G k C'
            y = y.permute(0, 3, 1, 2)  # B C' G k
        else:
            nbr = x.transpose(1, 2).reshape(B * G, C)[flat].view(B, G, k, C).permute(0, 3, 1, 2)  # B C G k
            centre = x.unsqueeze(-1).expand(-1, -1, -1, k)  # B C G k
            y = conv(torch.cat((nbr - centre, centre), dim=1))  # B C' G k
        return act(norm(y)).max(dim=-1).values  # B C' G

    @torch.no_grad()
    def forward_inference(self, f: torch.Tensor, coor: torch.Tensor) -> torch.Tensor:
        """No-grad fast path, channels-last: ``f [B, G, C_in]`` -> ``[B, G, C_out]``."""
        idx = self.neighbours(coor)  # B G k
        B, G, _ = f.shape
        k = idx.shape[-1]
        flat = (idx + torch.arange(B, device=idx.device).view(B, 1, 1) * G).reshape(-1)  # B*G*k
        x = F.linear(f.reshape(B * G, -1), self.input_trans.weight[:, :, 0], self.input_trans.bias)  # BG 128
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            conv, norm, act = layer
            C = x.shape[-1]
            w = conv.weight[:, :, 0, 0]  # C' 2C
            y = F.linear(x, w[:, :C])[flat].view(B, G * k, -1)  # B Gk C' (neighbour term, gathered)
            y.view(B, G, k, -1).add_(F.linear(x, w[:, C:] - w[:, :C]).view(B, G, 1, -1))  # + self term
            _group_norm_leaky_relu_(y, norm, act)
            x = y.view(B * G, k, -1).amax(dim=1)  # BG C'
            features.append(x)
        conv, norm, act = self.layer5
        y = _linear_blocked(torch.cat(features, dim=-1), conv.weight[:, :, 0]).view(B, G, -1)  # B G C_out
        _group_norm_leaky_relu_(y, norm, act)
        return y

    def extra_repr(self) -> str:
        return f"k={K_NEIGHBOURS}, fast={self.fast}"


def _linear_blocked(x: torch.Tensor, weight: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """``x @ weight^T`` written block of output columns by block (the 2304 -> 8192 tokenizer
    head runs ~10 % faster this way on CPU; each block is the same dot products, same bits)."""
    n = weight.shape[0]
    if n <= 2 * block:
        return F.linear(x, weight)
    out = x.new_empty(x.shape[0], n)
    for s in range(0, n, block):
        torch.mm(x, weight[s:s + block].t(), out=out[:, s:s + block])
    return out


def _group_norm_leaky_relu_(y: torch.Tensor, norm: nn.GroupNorm, act: nn.LeakyReLU) -> None:
    """``act(norm(.))`` in place on a channels-last ``y [B, S, C]`` (GroupNorm statistics over
    the positions and the group's channels, per sample; biased variance, taken after
    centring). Reductions run over the position axis first, which vectorises across channels."""
    B, S, C = y.shape
    g = norm.num_groups
    mean = y.mean(1).view(B, g, C // g).mean(-1)  # B g
    y.view(B, S, g, C // g).sub_(mean.view(B, 1, g, 1))  # centred
    step = max(1, (1 << 18) // max(1, B * C))  # squares through a small scratch, not a copy of y
    sq = y.new_zeros(B, C)
    scratch = y.new_empty(B, min(S, step), C)
    for s in range(0, S, step):
        part = y[:, s:s + step]
        sq += torch.mul(part, part, out=scratch[:, : part.shape[1]]).sum(1)
    var = (sq / S).view(B, g, C // g).mean(-1)  # B g
    scale = torch.rsqrt(var + norm.eps).unsqueeze(-1).expand(B, g, C // g).reshape(B, 1, C)  # B 1 C
    if norm.weight is not None:
        scale = scale * norm.weight
    y.mul_(scale)
    if norm.bias is not None:
        y.add_(norm.bias)
    F.leaky_relu_(y, act.negative_slope)
