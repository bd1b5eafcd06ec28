"""Building blocks of the ACT networks (parts know no wholes: no imports from ``models``)."""

from .attention import Attention, Block, Mlp, set_fused_attention
from .drop import DropPath
from .pointnet import MiniPointNet, fold_batchnorm
from .transformer import TransformerDecoder, TransformerEncoder, drop_path_schedule, trunc_normal_init

__all__ = [
    "Attention",
    "Block",
    "DropPath",
    "MiniPointNet",
    "Mlp",
    "TransformerDecoder",
    "TransformerEncoder",
    "drop_path_schedule",
    "fold_batchnorm",
    "set_fused_attention",
    "trunc_normal_init",
]
