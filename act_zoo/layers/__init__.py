"""Building blocks of the ACT networks (parts know no wholes: no imports from ``models``)."""

from .attention import Attention, Block, Mlp, set_fused_attention
from .dgcnn import DGCNN
from .drop import DropPath
from .folding import FoldingDecoder
from .pointnet import MiniPointNet, fold_batchnorm
from .propagation import PointNetFeaturePropagation
from .teacher import TeacherSpec, build_teacher, resolve_teacher, run_block
from .transformer import TransformerDecoder, TransformerEncoder, drop_path_schedule, trunc_normal_init

__all__ = [
    "DGCNN",
    "Attention",
    "Block",
    "DropPath",
    "FoldingDecoder",
    "MiniPointNet",
    "Mlp",
    "PointNetFeaturePropagation",
    "TeacherSpec",
    "TransformerDecoder",
    "TransformerEncoder",
    "build_teacher",
    "drop_path_schedule",
    "fold_batchnorm",
    "resolve_teacher",
    "run_block",
    "set_fused_attention",
    "trunc_normal_init",
]
