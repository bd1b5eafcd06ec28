"""Multi-head self-attention, MLP and the pre-norm Transformer block of ACT.

Parameter names follow the official code (``qkv``, ``proj``, ``fc1``, ``fc2``, ``norm1``,
``norm2``) so official checkpoints load without renaming. Attention has two paths:

* the manual path -- the numeric reference, written as the official code computes it
  (``(q @ k^T) * scale``, or ``(q * scale) @ k^T`` for the part-segmentation variant);
* the fused path -- ``torch.nn.functional.scaled_dot_product_attention`` (the default),
  tested to agree with the manual path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module

from .drop import DropPath


class Attention(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        scale_before_matmul: bool = False,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.scale_before_matmul = scale_before_matmul
        self.fused = fused
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 B H N D
        q, k, v = qkv.unbind(0)  # B H N D
        x = self.attend(q, k, v).transpose(1, 2).reshape(B, N, C)  # B N C
        return self.proj_drop(self.proj(x))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T * scale) v for ``[B, H, N, D]`` inputs, fused or manual."""
        if self.fused:
            p = self.attn_drop.p if self.training else 0.0
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p, scale=self.scale)  # B H N D
        if self.scale_before_matmul:
            attn = (q * self.scale) @ k.transpose(-2, -1)  # B H N N
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale  # B H N N
        attn = self.attn_drop(attn.softmax(dim=-1))
        return attn @ v  # B H N D

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, fused={self.fused}"


class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, *, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm block: ``x + attn(LN(x))`` then ``x + mlp(LN(x))`` (LayerNorm eps 1e-5, exact GELU)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-5,
        scale_before_matmul: bool = False,
        fused_attn: bool = True,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.attn = Attention(
            dim,
            num_heads,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=drop,
            scale_before_matmul=scale_before_matmul,
            fused=fused_attn,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def set_fused_attention(module: nn.Module, enabled: bool) -> nn.Module:
    """Switch every :class:`Attention` inside ``module`` to the fused (True) or manual path."""
    for m in module.modules():
        if isinstance(m, Attention):
            m.fused = bool(enabled)
    return module


def has_hooks(module: nn.Module, *, include_self: bool = True) -> bool:
    """Whether a forward (pre-)hook is registered on ``module`` (unless ``include_self`` is
    False) or any module inside it, or globally: fast paths that skip module calls or compute
    only some rows fall back to the module calls when someone observes them."""
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules() if include_self or m is not module)
