"""Point Transformer encoder/decoder stacks: the position embedding is re-added before every block."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention, Block
from .gemm import linear, residual_linear_


def drop_path_schedule(rate: float, depth: int) -> list[float]:
    """Official stochastic-depth rates: ``linspace(0, rate, depth)``."""
    return [x.item() for x in torch.linspace(0, rate, depth, device="cpu")] if depth else []


class TransformerEncoder(nn.Module):
    """``blocks`` of pre-norm :class:`Block`; each block sees ``x + pos`` (official layout)."""

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        drop_path_rate: float | list[float] = 0.0,
        scale_before_matmul: bool = False,
        fused_attn: bool = True,
    ) -> None:
        super().__init__()
        rates = drop_path_rate if isinstance(drop_path_rate, list) else [drop_path_rate] * depth
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                drop_path=rates[i],
                scale_before_matmul=scale_before_matmul,
                fused_attn=fused_attn,
            )
            for i in range(depth)
        )

        self.fast = True

    def _inference_ok(self, x: torch.Tensor) -> bool:
        return (self.fast and not self.training and not torch.is_grad_enabled()
                and not torch.is_autocast_enabled(x.device.type))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for _, x in self.iter_blocks(x, pos):
            pass
        return x

    def iter_blocks(self, x: torch.Tensor, pos: torch.Tensor, *, depth: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """Run the first ``depth`` blocks (all by default), each on ``x + pos``, yielding
        ``(index, output [B, N, C])`` after every block.

        On the eval/no-grad fast path the yielded tensor is the in-place residual stream:
        use it (or copy it) before advancing the iterator."""
        blocks = self.blocks if depth is None else self.blocks[:depth]
        if self._inference_ok(x):
            yield from self._iter_inference(blocks, x, pos)
            return
        for i, block in enumerate(blocks):
            x = block(x + pos)  # B N C
            yield i, x

    @torch.no_grad()
    def forward_inference(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for _, x in self._iter_inference(self.blocks, x, pos):
            pass
        return x

    @staticmethod
    @torch.no_grad()
    def _iter_inference(blocks: nn.ModuleList, x: torch.Tensor, pos: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
        """Eval/no-grad path: the same blocks on one residual stream updated in place.

        The residual adds are fused into the output GEMMs (``x.addmm_``), GELU runs in place
        and the qkv/MLP activations live in two scratch buffers reused by every block, so a
        forward makes no large allocation per block."""
        B, N, C = x.shape
        T = B * N
        stream = x.reshape(T, C).clone()  # T C, the residual stream (owned)
        pos = pos.reshape(T, C)  # T C
        qkv = stream.new_empty(T, 3 * C)  # T 3C
        hidden = stream.new_empty(T, blocks[0].mlp.fc1.out_features) if len(blocks) else None
        for i, blk in enumerate(blocks):
            attn: Attention = blk.attn
            stream.add_(pos)
            h = F.layer_norm(stream, (C,), blk.norm1.weight, blk.norm1.bias, blk.norm1.eps)  # T C
            qkv_ = linear(h, attn.qkv, out=qkv)  # T 3C
            q, k, v = qkv_.view(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # B H N D
            o = attn.attend(q, k, v).transpose(1, 2).reshape(T, C)  # T C
            residual_linear_(stream, o, attn.proj)
            h = F.layer_norm(stream, (C,), blk.norm2.weight, blk.norm2.bias, blk.norm2.eps)  # T C
            act = linear(h, blk.mlp.fc1, gelu=True, out=hidden)  # T 4C
            residual_linear_(stream, act, blk.mlp.fc2)
            yield i, stream.view(B, N, C)


class TransformerDecoder(TransformerEncoder):
    """Stage-II decoder: the encoder stack, then a LayerNorm on the last ``return_token_num`` tokens."""

    def __init__(self, embed_dim: int, depth: int, num_heads: int, **kwargs) -> None:
        super().__init__(embed_dim, depth, num_heads, **kwargs)
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Identity()
        self.apply(_xavier_init)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, return_token_num: int) -> torch.Tensor:  # type: ignore[override]
        x = super().forward(x, pos)  # B N C
        return self.head(self.norm(x[:, -return_token_num:]))  # B M C


def _xavier_init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def trunc_normal_init(m: nn.Module) -> None:
    """The official ``_init_weights``: trunc_normal(0.02) Linear/Conv1d, zero bias, LayerNorm 1/0."""
    if isinstance(m, (nn.Linear, nn.Conv1d)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
