"""FoldingNet decoder of the ACT dVAE: a coarse set per group, folded into the fine set."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .pointnet import fold_batchnorm


class FoldingDecoder(nn.Module):
    """``coarse = MLP(feature)`` reshaped to ``[K/4, 3]``; each coarse point is repeated 4
    times (coarse-major) with a 2x2 seed grid; ``fine = final_conv([feature, seed, coarse]) +
    coarse``. Official module names (``mlp``, ``final_conv``).

    The fast path splits the first ``final_conv`` weight so the feature term is computed
    once per group instead of once per fine point (eval: BatchNorms folded)."""

    def __init__(self, encoder_channel: int, num_fine: int, *, fast: bool = True) -> None:
        super().__init__()
        if num_fine % 4:
            raise ValueError(f"num_fine (the group size) must be a multiple of 4, got {num_fine}")
        self.fast = fast
        self.num_fine = num_fine
        self.grid_size = 2
        self.num_coarse = num_fine // 4
        self.mlp = nn.Sequential(
            nn.Linear(encoder_channel, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 3 * self.num_coarse),
        )
        self.final_conv = nn.Sequential(
            nn.Conv1d(encoder_channel + 3 + 2, 512, 1),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Conv1d(512, 512, 1),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Conv1d(512, 3, 1),
        )
        # seed s = 0..3: (-.05,-.05), (.05,-.05), (-.05,.05), (.05,.05)
        a = torch.tensor([-0.05, 0.05, -0.05, 0.05])
        b = torch.tensor([-0.05, -0.05, 0.05, 0.05])
        self.register_buffer("folding_seed", torch.stack([a, b]).view(1, 2, 4), persistent=False)  # 1 2 S

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feature [B, G, C]`` -> ``(coarse [B, G, K/4, 3], fine [B, G, K, 3])`` (group-local)."""
        bs, g, c = feature.shape
        feature = feature.reshape(bs * g, c)  # BG C
        coarse = self.mlp(feature).reshape(bs * g, self.num_coarse, 3)  # BG M 3
        repeated = coarse.unsqueeze(2).expand(-1, -1, 4, -1).reshape(bs * g, self.num_fine, 3)  # BG K 3
        seed = self.folding_seed.to(feature.dtype).unsqueeze(2).expand(1, 2, self.num_coarse, 4)
        seed = seed.reshape(1, 2, self.num_fine)  # 1 2 K
        if self.fast:
            offset = self._final_conv_fast(feature, seed, repeated)  # BG K 3
        else:
            feat = torch.cat(
                [feature.unsqueeze(2).expand(-1, -1, self.num_fine), seed.expand(bs * g, -1, -1),
                 repeated.transpose(1, 2)], dim=1)  # BG C+5 K
            offset = self.final_conv(feat).transpose(1, 2)  # BG K 3
        fine = offset + repeated  # BG K 3
        return coarse.reshape(bs, g, self.num_coarse, 3), fine.reshape(bs, g, self.num_fine, 3)

    def _final_conv_fast(self, feature: torch.Tensor, seed: torch.Tensor, repeated: torch.Tensor) -> torch.Tensor:
        conv1, bn1, _, conv2, bn2, _, conv3 = self.final_conv
        C = feature.shape[1]
        w1, b1 = conv1.weight[:, :, 0], conv1.bias
        w2, b2 = conv2.weight[:, :, 0], conv2.bias
        if not self.training:
            w1, b1 = fold_batchnorm(w1, b1, bn1)
            w2, b2 = fold_batchnorm(w2, b2, bn2)
        per_group = F.linear(feature, w1[:, :C], b1)  # BG 512 (feature term, once per group)
        per_point = F.linear(seed[0].t(), w1[:, C:C + 2])  # K 512 (seed term, shared by all groups)
        h = per_group.unsqueeze(1) + per_point + F.linear(repeated, w1[:, C + 2:])  # BG K 512
        if self.training:
            h = bn1(h.reshape(-1, h.shape[-1])).view_as(h)
        h = F.linear(F.relu(h), w2, b2)  # BG K 512
        if self.training:
            h = bn2(h.reshape(-1, h.shape[-1])).view_as(h)
        return F.linear(F.relu(h), conv3.weight[:, :, 0], conv3.bias)  # BG K 3
