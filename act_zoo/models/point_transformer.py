"""The ACT point Transformer: encoder (``forward_features``) and classifier (fine-tuning model).

One file, read top to bottom: patchify (FPS + kNN) -> mini-PointNet patch embedding ->
``cls`` + patch tokens, each block sees ``x + pos`` -> final LayerNorm -> pooled feature
``cat(cls, max over tokens)`` -> head. Module names are the official ones
(``PointTransformer`` in ``models/act.py``), so an official state dict loads as is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..layers import MiniPointNet, TransformerEncoder, drop_path_schedule, trunc_normal_init
from ..ops import Patches, group_points
from .common import PretrainedMixin, PointFeatures, prepare_points, set_fast_path

TRANSFER_TYPES = ("full", "linear", "mlp-3", "bit-fit", "side")


@dataclass(frozen=True)
class PointTransformerConfig:
    """The ACT encoder. Defaults are the official ModelNet40 fine-tuning values."""

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    group_size: int = 32
    num_group: int = 64
    encoder_dims: int = 384
    drop_path_rate: float = 0.1
    npoints: int = 1024
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        for name in ("embed_dim", "depth", "num_heads", "group_size", "num_group", "encoder_dims", "npoints"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{type(self).__name__}.{name} must be >= 1, got {getattr(self, name)}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")


@dataclass(frozen=True)
class ClassifierConfig(PointTransformerConfig):
    """The fine-tuning classifier: the encoder plus a head on the pooled feature.

    ``transfer_type``: ``full`` (everything trains, mlp-3 head), ``mlp-3`` / ``linear``
    (only the head, ``cls_token`` and ``cls_pos`` train; head mlp-3 / linear), ``bit-fit``
    (biases + cls), ``side`` (side-tuning branch + cls).

    ``class_names``: the name of each output, in logit order (``()`` or None: unknown, as in the
    official checkpoints); when given there is exactly one per output. Not a weight: it
    travels in ``config.json`` and is exposed as ``model.class_names``."""

    cls_dim: int = 40
    transfer_type: str = "full"
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cls_dim < 1:
            raise ValueError(f"cls_dim must be >= 1, got {self.cls_dim}")
        if self.transfer_type not in TRANSFER_TYPES:
            raise ValueError(f"transfer_type must be one of {TRANSFER_TYPES}, got {self.transfer_type!r}")
        names = self.class_names
        if names is None:  # what ``model.class_names`` is for a model without names
            names = ()
            object.__setattr__(self, "class_names", names)
        if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"class_names must be a sequence of non-empty strings, got {names!r}")
        if names and len(names) != self.cls_dim:
            raise ValueError(f"class_names has {len(names)} names for cls_dim={self.cls_dim} outputs; "
                             "give one name per output (or none)")
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"class_names must be distinct; repeated: {dup}")
        if not isinstance(names, tuple):  # a list from JSON/YAML: keep the config hashable
            object.__setattr__(self, "class_names", tuple(names))


# The official fine-tuning configurations.
MODELNET40 = ClassifierConfig(num_group=64, npoints=1024, cls_dim=40)
SCANOBJECTNN = ClassifierConfig(num_group=128, npoints=2048, cls_dim=15)


class ACTEncoder(PretrainedMixin, nn.Module):
    """The ACT 3D Transformer backbone (no head)."""

    def __init__(self, config: PointTransformerConfig | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else PointTransformerConfig()
        C = config.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, C))
        self.encoder = MiniPointNet(config.encoder_dims)
        self.reduce_dim = nn.Linear(config.encoder_dims, C) if config.encoder_dims != C else nn.Identity()
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, C))
        self.blocks = TransformerEncoder(
            C,
            config.depth,
            config.num_heads,
            mlp_ratio=config.mlp_ratio,
            drop_path_rate=drop_path_schedule(config.drop_path_rate, config.depth),
        )
        self.norm = nn.LayerNorm(C)
        self.init_weights()

    # -- construction ------------------------------------------------------------------------
    def init_weights(self) -> None:
        """The official from-scratch recipe: trunc_normal(0.02) tokens, Linear and Conv1d."""
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.cls_pos, std=0.02)
        self.apply(trunc_normal_init)

    def set_fast_path(self, enabled: bool = True) -> "ACTEncoder":
        """Fused attention + fast mini-PointNet (default) or the official reference ops."""
        return set_fast_path(self, enabled)

    @property
    def dtype(self) -> torch.dtype:
        return self.cls_token.dtype

    # -- the one path for a cloud ---------------------------------------------------------------
    def patchify(self, points: torch.Tensor) -> Patches:
        """``points [B, N, 3]`` -> FPS centres and kNN neighbourhoods (official ``Group``)."""
        return group_points(points, self.config.num_group, self.config.group_size)

    def embed_patches(self, neighborhood: torch.Tensor) -> torch.Tensor:
        """``neighborhood [B, G, M, 3]`` -> patch tokens ``[B, G, C]``."""
        return self.reduce_dim(self.encoder(neighborhood))  # B G C

    def forward_tokens(self, tokens: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        """Transformer over ``[cls] + tokens``; returns the normed sequence ``[B, 1+G, C]``."""
        B = tokens.shape[0]
        pos = self.pos_embed(centers)  # B G C
        x = torch.cat((self.cls_token.expand(B, -1, -1), tokens), dim=1)  # B 1+G C
        pos = torch.cat((self.cls_pos.expand(B, -1, -1), pos), dim=1)  # B 1+G C
        return self.norm(self.blocks(x, pos))  # B 1+G C

    def _pool(self, x: torch.Tensor, patches: Patches) -> torch.Tensor:
        return torch.cat([x[:, 0], x[:, 1:].amax(dim=1)], dim=-1)  # B 2C

    def forward_features(self, points: torch.Tensor) -> PointFeatures:
        """``points [B, N, 3]`` (or ``[N, 3]``) -> :class:`PointFeatures`."""
        points, unbatched = prepare_points(
            points, num_group=self.config.num_group, group_size=self.config.group_size, dtype=self.dtype
        )
        patches = self.patchify(points)
        x = self.forward_tokens(self.embed_patches(patches.neighborhood), patches.center)  # B 1+G C
        feats = PointFeatures(self._pool(x, patches), x[:, 1:], patches.center, x[:, 0])
        return feats.squeeze_batch() if unbatched else feats

    def forward(self, points: torch.Tensor) -> PointFeatures:
        return self.forward_features(points)


class ACTClassifier(ACTEncoder):
    """The official fine-tuning model (``PointTransformer``): encoder + ``cls_head_finetune``."""

    def __init__(self, config: ClassifierConfig | None = None) -> None:
        config = config if config is not None else ClassifierConfig()
        super().__init__(config)
        self.config: ClassifierConfig = config
        C2 = 2 * config.embed_dim
        if config.transfer_type == "linear":
            self.cls_head_finetune = nn.Sequential(nn.Linear(C2, config.cls_dim))
        else:
            self.cls_head_finetune = nn.Sequential(
                nn.Linear(C2, 256),
                nn.BatchNorm1d(256),
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
                nn.Linear(256, 256),
                nn.BatchNorm1d(256),
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
                nn.Linear(256, config.cls_dim),
            )
        if config.transfer_type == "side":
            self.side_alpha = nn.Parameter(torch.zeros(1))
            self.side = MiniPointNet(config.embed_dim)
            self.side_projection = nn.Linear(config.embed_dim, config.embed_dim, bias=False)
        else:
            self.side = None
        self.init_weights()
        self.apply_transfer_freeze()

    @property
    def class_names(self) -> list[str] | None:
        """The name of each logit (from ``config.class_names``), or None when unknown."""
        return list(self.config.class_names) or None

    def reset_head(self) -> None:
        """Fresh PyTorch-default head, as the official loader leaves it after a pretrained load."""
        for m in self.cls_head_finetune.modules():
            if hasattr(m, "reset_parameters") and m is not self.cls_head_finetune:
                m.reset_parameters()

    def apply_transfer_freeze(self) -> None:
        """Set ``requires_grad`` per ``transfer_type`` exactly as the official model does."""
        kind = self.config.transfer_type
        for name, p in self.named_parameters():
            if kind in ("mlp-3", "linear"):
                p.requires_grad = "cls" in name
            elif kind == "side":
                p.requires_grad = "side" in name or "cls" in name
            elif kind == "bit-fit":
                p.requires_grad = "bias" in name or "cls" in name
            else:
                p.requires_grad = True

    def _pool(self, x: torch.Tensor, patches: Patches) -> torch.Tensor:
        if self.side is None:
            return super()._pool(x, patches)
        side = self.side_projection(self.side(patches.neighborhood))  # B G C
        alpha = torch.sigmoid(self.side_alpha)
        mixed = alpha * x[:, 1:] + (1 - alpha) * side  # B G C
        return torch.cat([x[:, 0], mixed.amax(dim=1)], dim=-1)  # B 2C

    def forward_head(self, features: PointFeatures | torch.Tensor) -> torch.Tensor:
        """Pooled feature (``[B, 2C]`` or :class:`PointFeatures`) -> logits ``[B, cls_dim]``."""
        g = features.global_feature if isinstance(features, PointFeatures) else features
        if g.dim() == 1:
            return self.cls_head_finetune(g.unsqueeze(0))[0]
        return self.cls_head_finetune(g)

    def forward(self, points: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``points [B, N, 3]`` -> logits ``[B, cls_dim]``."""
        return self.forward_head(self.forward_features(points))
