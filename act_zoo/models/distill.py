"""Stage II: masked distillation of the frozen stage-I autoencoder (official ``ACT_PointDistillation``).

A 3D Transformer student (``ACT_encoder``, the fine-tuning encoder class) sees ``[cls] +`` the
visible ~20 % of the patches; a light decoder with its own position embedding and mask
tokens predicts features for the masked patches (LayerNorm on those tokens only);
``proj_head`` maps them to the teacher width; the loss is ``1 - cos`` against the frozen
teacher's ``forward_tokenizer_features`` of the masked groups, averaged per sample and then
over the batch (one division by the batch size).

The official run leaves the frozen teacher in train mode (BatchNorm batch statistics and
running-stat updates, prompt dropout, fresh Gumbel noise at every call). That is the default
here too (``teacher_train_mode=True``); ``False`` keeps the teacher in eval mode.

Training step on the fast path (``set_fast_path(True)``, the default; ``False`` runs the
official sequence of ops): the student's mini-PointNet runs its 512-wide second stage on the
visible groups only, its BatchNorm statistics (and their gradients and running-stat updates)
still taken over all groups (:meth:`~act_zoo.layers.MiniPointNet.forward_subset`); the frozen
teacher runs without gradients through its no-grad paths (see :mod:`act_zoo.models.dvae`).
The loss, every gradient and every running statistic equal the reference path's up to float
rounding, with the same random draws in the same order (``tests/models/test_train_equivalence.py``;
``benchmarks/train_step.py`` measures the step).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..layers import TransformerDecoder, drop_path_schedule
from ..layers.attention import has_hooks
from ..ops import Patches, group_points
from .common import PretrainedMixin, prepare_points, set_fast_path
from .dvae import DVAEConfig, PromptedDiscreteVAE
from .point_transformer import ACTEncoder, PointTransformerConfig

logger = logging.getLogger(__name__)

LOSSES = ("cosine", "l2", "smoothl1")
MASK_TYPES = ("rand", "block")


@dataclass(frozen=True)
class DistillConfig:
    """Stage-II model. Defaults: the official ``pretrain_act_distill.yaml`` (``transformer_config``);
    the student's patch sizes and ``encoder_dims`` come from the teacher's ``dvae`` config."""

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    drop_path_rate: float = 0.1
    cls_dim: int = 512
    mask_ratio: float = 0.8
    mask_type: str = "rand"
    proj: str = "linear"
    decoder_depth: int = 2
    decoder_num_heads: int = 6
    loss: str = "cosine"
    cls_loss: bool = False
    register_shallow_hook: int = 9
    teacher_train_mode: bool = True
    dvae: DVAEConfig = DVAEConfig()

    def __post_init__(self) -> None:
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {self.mask_type!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.proj not in ("linear", "none"):
            raise ValueError(f"proj must be 'linear' or 'none', got {self.proj!r}")
        if self.proj == "none" and self.embed_dim != self.dvae.tokens_dims:
            raise ValueError("proj='none' needs embed_dim == dvae.tokens_dims")
        if self.cls_loss and not 0 < self.register_shallow_hook < self.depth:
            raise ValueError(f"register_shallow_hook must be in (0, depth) with cls_loss, got {self.register_shallow_hook}")

    @property
    def npoints(self) -> int:
        return self.dvae.npoints

    def encoder_config(self) -> PointTransformerConfig:
        d = self.dvae
        return PointTransformerConfig(
            embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads, group_size=d.group_size,
            num_group=d.num_group, encoder_dims=d.encoder_dims, drop_path_rate=self.drop_path_rate, npoints=d.npoints,
        )


@dataclass
class DistillOutput:
    loss: torch.Tensor  # 0-dim
    student_feat: torch.Tensor  # B Gm D
    teacher_feat: torch.Tensor  # B Gm D (targets)
    mask: torch.Tensor  # B G bool, True = masked


class ACTMaskedEncoder(ACTEncoder):
    """The student: the fine-tuning encoder plus the official (unused by the loss) ``lm_head``
    and the ``cls_head`` of the ``noaug`` path, so official checkpoints load strictly."""

    def __init__(self, config: PointTransformerConfig, *, num_tokens: int, cls_dim: int) -> None:
        super().__init__(config)
        C = config.embed_dim
        self.lm_head = nn.Linear(C, num_tokens)
        self.cls_head = nn.Sequential(nn.Linear(C, cls_dim), nn.GELU(), nn.Linear(cls_dim, cls_dim))
        self.init_weights()

    def forward_visible(
        self, neighborhood: torch.Tensor, center: torch.Tensor, mask: torch.Tensor, *, shallow_block: int = -1
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Encode ``[cls] +`` the visible groups (ascending group order).

        Returns the normed visible tokens ``[B, Gv, C]``, the normed cls ``[B, C]`` and, when
        ``shallow_block >= 0``, that block's (un-normed) visible tokens."""
        B = neighborhood.shape[0]
        if self.encoder.fast and not (has_hooks(self.encoder) or has_hooks(self.reduce_dim)):
            # the patch embedding only for the visible groups; in train mode its BatchNorm
            # statistics (and their gradients, and the running stats) are still those of all
            # groups, as in the official model (MiniPointNet.forward_subset)
            x = self.reduce_dim(self.encoder.forward_subset(neighborhood, ~mask))  # B Gv C
        else:
            tokens = self.embed_patches(neighborhood)  # B G C
            x = tokens[~mask].reshape(B, -1, tokens.shape[-1])  # B Gv C
        pos = self.pos_embed(center[~mask].reshape(B, -1, 3))  # B Gv C
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)  # B 1+Gv C
        pos = torch.cat((self.cls_pos.expand(B, -1, -1), pos), dim=1)  # B 1+Gv C
        shallow = None
        for i, x in self.blocks.iter_blocks(x, pos):
            if i == shallow_block:
                shallow = x[:, 1:].clone()  # B Gv C (the inference path updates x in place)
        x = self.norm(x)  # B 1+Gv C
        return x[:, 1:], x[:, 0], shallow


def random_mask(
    batch: int,
    num_group: int,
    ratio: float,
    *,
    generator: torch.Generator | np.random.RandomState | np.random.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Official ``rand`` masking: per sample, ``M = int(ratio * G)`` masked groups chosen by
    shuffling ``[0]*(G-M) + [1]*M``. ``generator=None`` uses numpy's global RNG exactly as
    the official code (seed it with ``np.random.seed``); a numpy RandomState/Generator or a
    torch Generator can be given instead. Returns bool ``[B, G]``, True = masked."""
    num_mask = int(ratio * num_group)
    base = np.hstack([np.zeros(num_group - num_mask), np.ones(num_mask)])
    if isinstance(generator, torch.Generator):
        rows = [torch.randperm(num_group, generator=generator) < num_mask for _ in range(batch)]
        out = torch.stack(rows) if rows else torch.zeros(0, num_group, dtype=torch.bool)
        return out.to(device)
    shuffle = np.random.shuffle if generator is None else generator.shuffle
    out = np.zeros((batch, num_group))
    for i in range(batch):
        row = base.copy()
        shuffle(row)
        out[i] = row
    return torch.from_numpy(out).to(torch.bool).to(device)


def block_mask(center: torch.Tensor, ratio: float, *, rng: random.Random | None = None) -> torch.Tensor:
    """Official ``block`` masking: per sample, a random centre and its ``int(ratio*G)``
    nearest centres (Python's ``random`` module by default, as the official code)."""
    randint = (rng or random).randint
    masks = []
    for pts in center:
        idx = randint(0, pts.shape[0] - 1)
        order = torch.argsort(torch.norm(pts[idx].reshape(1, 3) - pts, p=2, dim=-1))
        m = torch.zeros(pts.shape[0], dtype=torch.bool, device=center.device)
        m[order[: int(ratio * len(order))]] = True
        masks.append(m)
    return torch.stack(masks)


class ACTDistillation(PretrainedMixin, nn.Module):
    """The ACT stage-II model (official ``ACT_PointDistillation``)."""

    def __init__(self, config: DistillConfig | None = None, *, teacher: PromptedDiscreteVAE | None = None) -> None:
        super().__init__()
        self.config = config = config if config is not None else DistillConfig()
        d = config.dvae
        C = config.embed_dim
        self.ACT_encoder = ACTMaskedEncoder(config.encoder_config(), num_tokens=d.num_tokens, cls_dim=config.cls_dim)
        if config.cls_loss:
            self.cls_pos = nn.Parameter(torch.zeros(1, 1, C))
            nn.init.trunc_normal_(self.cls_pos, std=0.02)
        if teacher is not None and teacher.config != d:
            raise ValueError("the given teacher's config differs from config.dvae")
        self.dvae_tokenizer = teacher if teacher is not None else PromptedDiscreteVAE(d)
        self.dvae_tokenizer.requires_grad_(False)
        self.proj_head = nn.Linear(C, d.tokens_dims) if config.proj == "linear" else nn.Identity()
        if config.mask_ratio > 0:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, C))
            self.decoder_pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, C))
            self.ACT_decoder = TransformerDecoder(
                C, config.decoder_depth, config.decoder_num_heads,
                drop_path_rate=drop_path_schedule(config.drop_path_rate, config.decoder_depth),
            )
            nn.init.trunc_normal_(self.mask_token, std=0.02)
        else:
            self.mask_token = None
            self.ACT_decoder = None

    @property
    def encoder(self) -> ACTMaskedEncoder:
        """The student encoder (an :class:`ACTEncoder`: ``forward_features`` works on it)."""
        return self.ACT_encoder

    @property
    def teacher(self) -> PromptedDiscreteVAE:
        return self.dvae_tokenizer

    def set_fast_path(self, enabled: bool = True) -> "ACTDistillation":
        return set_fast_path(self, enabled)

    def train(self, mode: bool = True) -> "ACTDistillation":
        super().train(mode)
        if mode and not self.config.teacher_train_mode:
            self.dvae_tokenizer.eval()
        return self

    def patchify(self, points: torch.Tensor) -> Patches:
        d = self.config.dvae
        points, _ = prepare_points(points, num_group=d.num_group, group_size=d.group_size,
                                   dtype=self.ACT_encoder.dtype)
        return group_points(points, d.num_group, d.group_size)

    def make_mask(self, center: torch.Tensor, *, generator=None) -> torch.Tensor:
        cfg = self.config
        if cfg.mask_ratio == 0:
            return torch.zeros(center.shape[:2], dtype=torch.bool, device=center.device)
        if cfg.mask_type == "block":
            return block_mask(center, cfg.mask_ratio, rng=generator)
        return random_mask(center.shape[0], center.shape[1], cfg.mask_ratio, generator=generator,
                           device=center.device)

    def forward_loss(
        self,
        points: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        gumbel_noise: torch.Tensor | None = None,
        generator=None,
    ) -> DistillOutput:
        """One stage-II pass. ``mask [B, G]`` (True = masked) replaces the random mask and
        ``gumbel_noise [B, G, num_tokens]`` the teacher's Gumbel draw."""
        cfg = self.config
        p = self.patchify(points)
        neighborhood, center = p.neighborhood, p.center
        B, G = center.shape[:2]
        if mask is None:
            mask = self.make_mask(center, generator=generator)
        else:
            mask = mask.to(device=center.device, dtype=torch.bool)
            if mask.shape != (B, G):
                raise ValueError(f"mask must have shape [{B}, {G}], got {list(mask.shape)}")
            if len(set(mask.sum(1).tolist())) > 1:
                raise ValueError("every sample must mask the same number of groups")
        x_vis, cls, shallow = self.ACT_encoder.forward_visible(
            neighborhood, center, mask, shallow_block=cfg.register_shallow_hook if cfg.cls_loss else -1)
        C = x_vis.shape[-1]
        with torch.no_grad():
            teacher_feat = self.dvae_tokenizer.tokenizer_features(neighborhood, center, gumbel_noise=gumbel_noise)

        global_feat = None
        if self.ACT_decoder is not None:
            pos_vis = self.decoder_pos_embed(center[~mask]).reshape(B, -1, C)  # B Gv C
            pos_mask = self.decoder_pos_embed(center[mask]).reshape(B, -1, C)  # B Gm C
            num_mask = pos_mask.shape[1]
            mask_token = self.mask_token.expand(B, num_mask, -1)  # B Gm C
            pos_full = torch.cat([pos_vis, pos_mask], dim=1)  # B G C
            decoded = self.ACT_decoder(torch.cat([x_vis, mask_token], dim=1), pos_full, num_mask)  # B Gm C
            student = self.proj_head(decoded)  # B Gm D
            target = teacher_feat[mask].reshape(B, -1, student.shape[-1])  # B Gm D
            if cfg.cls_loss:
                x_shallow = torch.cat([cls.unsqueeze(1), shallow, mask_token], dim=1)
                pos_shallow = torch.cat([self.cls_pos.expand(B, -1, -1), pos_full], dim=1)
                global_feat = self.proj_head(self.ACT_decoder(x_shallow, pos_shallow, num_mask))
        else:
            num_mask = 1
            student = self.proj_head(x_vis)
            target = teacher_feat
        if target.shape != student.shape:
            raise RuntimeError(f"student {list(student.shape)} and teacher {list(target.shape)} features differ")
        loss = self._loss(student, target, num_mask)
        if global_feat is not None:
            loss = loss + self._loss(global_feat, target, num_mask)
        return DistillOutput(loss=loss, student_feat=student, teacher_feat=target, mask=mask)

    def _loss(self, student: torch.Tensor, target: torch.Tensor, num_mask: int) -> torch.Tensor:
        kind = self.config.loss
        if kind == "cosine":  # per sample 1 + lightly's NegativeCosineSimilarity, summed, / B once
            per_sample = 1 - F.cosine_similarity(student, target, dim=-1, eps=1e-8).mean(dim=1)  # B
            return per_sample.sum() / student.shape[0]
        if kind == "l2":
            return F.mse_loss(student, target)
        return F.smooth_l1_loss(student, target)

    @torch.no_grad()
    def forward_cls_feature(self, points: torch.Tensor) -> torch.Tensor:
        """Official ``forward(pts, noaug=True)``: no mask, ``cls_head`` on the normed cls ``[B, cls_dim]``."""
        p = self.patchify(points)
        mask = torch.zeros(p.center.shape[:2], dtype=torch.bool, device=p.center.device)
        _, cls, _ = self.ACT_encoder.forward_visible(p.neighborhood, p.center, mask)
        return self.ACT_encoder.cls_head(cls)

    def forward(self, points: torch.Tensor, **kwargs) -> DistillOutput:
        return self.forward_loss(points, **kwargs)
