"""Stage I: the ACT cross-modal autoencoder (official ``ACTPromptedDiscreteVAEwithVIT``).

patches (FPS + kNN) -> mini-PointNet -> DGCNN tokenizer (``dgcnn_1``) -> codebook logits ->
Gumbel-softmax -> codebook vectors -> ``proj_pre`` -> frozen pretrained Transformer adapted
by prompt tuning (shallow prompts with their own positions; deep prompts replace the first
P tokens before every later block) -> final norm -> ``proj_post`` -> ``dgcnn_2`` ->
FoldingNet decoder -> Chamfer-L1 of every local group (coarse + fine) and KL to uniform.

Without gradients (the frozen teacher of stage II, validation) the fast path
(``set_fast_path(True)``, the default) skips the prompt rows' discarded outputs in the deep-
prompted ViT (:func:`~act_zoo.layers.teacher.deep_prompt_inference`), looks the hard Gumbel
tokens up in the codebook without forming one-hot tensors (:func:`gumbel_argmax`), and its
mini-PointNet and DGCNNs run their no-grad paths -- in train mode too (BatchNorm batch
statistics and running-stat updates, prompt dropout and Gumbel noise drawn exactly as on the
reference path).

Module and parameter names are the official ones, so official checkpoints load as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import DGCNN, FoldingDecoder, MiniPointNet, TeacherSpec, build_teacher, resolve_teacher, run_block
from ..layers.attention import has_hooks
from ..layers.teacher import deep_prompt_inference, deterministic_vit_block
from ..ops import Patches, chamfer_l1, chamfer_l2, group_points
from .common import PretrainedMixin, prepare_points, set_fast_path


@dataclass(frozen=True)
class DVAEConfig:
    """Stage-I autoencoder. Defaults: the official ``act_dvae_with_pretrained_transformer.yaml``.

    ``teacher``: a timm ViT name (``vit_base_patch16_384``), a ``{"embed_dim", "depth",
    "num_heads"}`` ViT spec, or a BERT-like transformers model (``bert-base-uncased``,
    ``minilm`` for the offline all-MiniLM-L6-v2, a local directory, ``hf:<repo>``).
    ``teacher_dim`` (official ``visual_embed_dim``) must equal the teacher's width when given.
    """

    group_size: int = 32
    num_group: int = 64
    num_tokens: int = 8192
    encoder_dims: int = 384
    tokens_dims: int = 384
    decoder_dims: int = 384
    teacher: Any = "vit_base_patch16_384"
    teacher_dim: int | None = None
    freeze_teacher: bool = True
    num_prompt_token: int = 64
    use_deep_prompt: bool = True
    prompt_dropout: float = 0.1
    npoints: int = 1024
    spec: TeacherSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        teacher = self.teacher
        if isinstance(teacher, Mapping):
            teacher = {k: int(teacher[k]) for k in teacher}
            object.__setattr__(self, "teacher", tuple(sorted(teacher.items())))  # hashable, frozen
        spec = resolve_teacher(dict(self.teacher) if isinstance(self.teacher, tuple) else self.teacher)
        object.__setattr__(self, "spec", spec)
        if self.teacher_dim is not None and int(self.teacher_dim) != spec.embed_dim:
            raise ValueError(f"teacher_dim (visual_embed_dim) {self.teacher_dim} does not match the width "
                             f"{spec.embed_dim} of teacher {spec.name or spec.to_config()}")
        for name in ("group_size", "num_group", "num_tokens", "encoder_dims", "tokens_dims", "decoder_dims", "npoints"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DVAEConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_prompt_token < 0:
            raise ValueError(f"num_prompt_token must be >= 0, got {self.num_prompt_token}")
        if self.group_size % 4:
            raise ValueError(f"group_size must be a multiple of 4 (FoldingNet 2x2 grid), got {self.group_size}")

    def teacher_value(self) -> str | dict[str, int]:
        """The teacher as given (a name or a dict), for serialisation."""
        return dict(self.teacher) if isinstance(self.teacher, tuple) else self.teacher


@dataclass
class DVAEOutput:
    """Everything ``forward_loss`` computes. ``recon`` and ``kl`` are 0-dim (``kl`` unweighted)."""

    recon: torch.Tensor
    kl: torch.Tensor
    loss_coarse: torch.Tensor
    loss_fine: torch.Tensor
    coarse: torch.Tensor  # B G K/4 3, group-local
    fine: torch.Tensor  # B G K 3, group-local
    whole_coarse: torch.Tensor  # B G*K/4 3, centres added back (detached)
    whole_fine: torch.Tensor  # B G*K 3 (detached)
    neighborhood: torch.Tensor  # B G K 3, the targets
    center: torch.Tensor  # B G 3
    logits: torch.Tensor  # B G num_tokens
    soft_one_hot: torch.Tensor  # B G num_tokens


def gumbel_softmax(
    logits: torch.Tensor, *, tau: float = 1.0, hard: bool = False, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """``F.gumbel_softmax`` over the last axis with injectable noise ``g = -log(Exp(1))``.

    Without ``noise`` it draws exactly as torch does, so a seeded run reproduces the official
    draws. Hard mode is straight-through: ``y_hard - y_soft.detach() + y_soft``."""
    if noise is None:
        noise = -torch.empty_like(logits, memory_format=torch.legacy_contiguous_format).exponential_().log()
    elif noise.shape != logits.shape:
        raise ValueError(f"gumbel_noise must have shape {list(logits.shape)}, got {list(noise.shape)}")
    y_soft = ((logits + noise.to(logits.dtype)) / tau).softmax(-1)  # B G T
    if not hard:
        return y_soft
    index = y_soft.argmax(-1, keepdim=True)  # B G 1
    y_hard = torch.zeros_like(logits, memory_format=torch.legacy_contiguous_format).scatter_(-1, index, 1.0)
    return y_hard - y_soft.detach() + y_soft


def gumbel_argmax(logits: torch.Tensor, *, tau: float = 1.0, noise: torch.Tensor | None = None) -> torch.Tensor:
    """The token indices of ``gumbel_softmax(logits, tau=tau, hard=True, noise=noise)`` (the
    same draw, the same ``argmax`` of ``y_soft``) without the one-hot tensors, in place
    where possible. No gradient."""
    with torch.no_grad():
        if noise is None:  # the same draw as gumbel_softmax: -log(Exp(1)), computed in place
            z = torch.empty_like(logits, memory_format=torch.legacy_contiguous_format).exponential_().log_().neg_()
        elif noise.shape != logits.shape:
            raise ValueError(f"gumbel_noise must have shape {list(logits.shape)}, got {list(noise.shape)}")
        else:
            z = noise.to(logits.dtype, copy=True)
        z.add_(logits)  # logits + g (addition commutes exactly)
        if tau != 1.0:
            z.div_(tau)
        rows = z.reshape(-1, z.shape[-1])
        out = torch.empty(rows.shape[0], dtype=torch.long, device=z.device)
        step = max(1, (1 << 18) // max(1, rows.shape[1]))  # y_soft a block of rows at a time
        for s in range(0, rows.shape[0], step):
            out[s:s + step] = rows[s:s + step].softmax(-1).argmax(-1)
        return out.view(z.shape[:-1])


class PromptedDiscreteVAE(PretrainedMixin, nn.Module):
    """The ACT stage-I autoencoder (official ``ACTPromptedDiscreteVAEwithVIT``)."""

    def __init__(self, config: DVAEConfig | None = None, *, pretrained_teacher: bool = False) -> None:
        super().__init__()
        self.config = config = config if config is not None else DVAEConfig()
        spec = config.spec
        D, P = spec.embed_dim, config.num_prompt_token
        self.codebook = nn.Parameter(torch.randn(config.num_tokens, config.tokens_dims))
        if P > 0:
            self.visual_prompt_token = nn.Parameter(torch.zeros(1, P, D))
            self.visual_prompt_pos = nn.Parameter(torch.zeros(1, P, D))
            nn.init.trunc_normal_(self.visual_prompt_token, std=0.02)
            nn.init.trunc_normal_(self.visual_prompt_pos, std=0.02)
            if config.use_deep_prompt:
                self.deep_prompt_tokens = nn.Parameter(torch.zeros(spec.depth - 1, P, D))
                self.deep_prompt_pos = nn.Parameter(torch.zeros(spec.depth - 1, P, D))
                nn.init.trunc_normal_(self.deep_prompt_tokens, std=0.02)
                nn.init.trunc_normal_(self.deep_prompt_pos, std=0.02)
        self.encoder = MiniPointNet(config.encoder_dims)
        self.dgcnn_1 = DGCNN(config.encoder_dims, config.num_tokens)
        self.dgcnn_2 = DGCNN(config.tokens_dims, config.decoder_dims)
        self.decoder = FoldingDecoder(config.decoder_dims, config.group_size)
        self.visual_embed = build_teacher(spec, pretrained=pretrained_teacher)
        self.proj_pre = nn.Linear(config.tokens_dims, D)
        self.visual_pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, D))
        self.proj_post = nn.Linear(D, config.tokens_dims)
        self.prompt_dropout = nn.Dropout(config.prompt_dropout)
        if config.freeze_teacher:
            self.visual_embed.requires_grad_(False)
        self.fast = True  # no-grad teacher passes skip the discarded prompt rows (see teacher_features)

    def set_fast_path(self, enabled: bool = True) -> "PromptedDiscreteVAE":
        return set_fast_path(self, enabled)

    @property
    def dtype(self) -> torch.dtype:
        return self.codebook.dtype

    # -- pieces ------------------------------------------------------------------------------------
    def patchify(self, points: torch.Tensor) -> Patches:
        points, _ = prepare_points(points, num_group=self.config.num_group, group_size=self.config.group_size,
                                   dtype=self.dtype)
        return group_points(points, self.config.num_group, self.config.group_size)

    def token_logits(self, neighborhood: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """Tokenizer logits ``[B, G, num_tokens]`` (after dgcnn_1's LeakyReLU)."""
        return self.dgcnn_1(self.encoder(neighborhood), center)

    def quantize(self, soft_one_hot: torch.Tensor, *, exact_one_hot: bool = False) -> torch.Tensor:
        """``einsum('bgn,nc->bgc', soft_one_hot, codebook)``; a row lookup when the rows are
        known to be one-hot and no gradient is needed."""
        if exact_one_hot and not (torch.is_grad_enabled() and soft_one_hot.requires_grad):
            return F.embedding(soft_one_hot.argmax(-1), self.codebook)  # B G C
        return torch.einsum("bgn,nc->bgc", soft_one_hot, self.codebook)  # B G C

    def teacher_features(self, sampled: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """Codebook vectors ``[B, G, tokens_dims]`` through the prompted teacher -> ``[B, G, tokens_dims]``.

        Fast path (no grad, deep prompts, our ViT blocks drawing no randomness, nobody hooked
        into the teacher): :func:`~act_zoo.layers.teacher.deep_prompt_inference`, which skips
        everything of the prompt rows but their keys and values (their outputs are replaced
        before the next block). The prompt dropout is drawn exactly as on the reference path."""
        cfg = self.config
        P = cfg.num_prompt_token
        B = sampled.shape[0]
        blocks, final_norm = self.visual_embed[0], self.visual_embed[-1]
        if self._fast_teacher(sampled):
            return self._teacher_features_inference(sampled, center)
        pos = self.visual_pos_embed(center)  # B G D
        x = self.proj_pre(sampled)  # B G D
        if P > 0:
            x = torch.cat((self.prompt_dropout(self.visual_prompt_token.expand(B, -1, -1)), x), dim=1)  # B P+G D
            pos = torch.cat((self.visual_prompt_pos.expand(B, -1, -1), pos), dim=1)  # B P+G D
        if P > 0 and cfg.use_deep_prompt:
            for i, blk in enumerate(blocks):
                if i > 0:  # deep prompts replace the first P tokens and their positions
                    prompt = self.prompt_dropout(self.deep_prompt_tokens[i - 1].expand(B, -1, -1))
                    x = torch.cat((prompt, x[:, P:]), dim=1)
                    pos = torch.cat((self.deep_prompt_pos[i - 1].expand(B, -1, -1), pos[:, P:]), dim=1)
                x = run_block(blk, x + pos)  # B P+G D
        elif P == 0 and cfg.freeze_teacher:
            with torch.no_grad():  # official: a frozen, prompt-less teacher runs without gradients
                for blk in blocks:
                    x = run_block(blk, x + pos)
        else:
            for blk in blocks:
                x = run_block(blk, x + pos)
        x = final_norm(x)[:, P:]  # B G D
        return self.proj_post(x)  # B G tokens_dims

    def _fast_teacher(self, x: torch.Tensor) -> bool:
        cfg = self.config
        return (self.fast and cfg.num_prompt_token > 0 and cfg.use_deep_prompt and not torch.is_grad_enabled()
                and not torch.is_autocast_enabled(x.device.type)
                and all(deterministic_vit_block(b) for b in self.visual_embed[0])
                and isinstance(self.visual_embed[-1], nn.LayerNorm) and not has_hooks(self.visual_embed))

    @torch.no_grad()
    def _teacher_features_inference(self, sampled: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        B = sampled.shape[0]
        blocks, final_norm = self.visual_embed[0], self.visual_embed[-1]
        pos = self.visual_pos_embed(center)  # B G D
        x = self.proj_pre(sampled)  # B G D
        drop = self.prompt_dropout
        if drop.training and drop.p > 0:  # per-sample masks, drawn in the reference order
            tokens = [drop(self.visual_prompt_token.expand(B, -1, -1))]
            tokens += [drop(self.deep_prompt_tokens[i].expand(B, -1, -1)) for i in range(len(blocks) - 1)]
        else:  # no draw: one prompt set shared by the batch
            tokens = [self.visual_prompt_token] + [self.deep_prompt_tokens[i:i + 1] for i in range(len(blocks) - 1)]
        prompt_pos = [self.visual_prompt_pos] + [self.deep_prompt_pos[i:i + 1] for i in range(len(blocks) - 1)]
        prompts = [t + p for t, p in zip(tokens, prompt_pos)]  # block i's prompt-row input
        x = deep_prompt_inference(blocks, x, pos, prompts)  # B G D
        return self.proj_post(final_norm(x))  # B G tokens_dims

    # -- official entry points --------------------------------------------------------------------
    def tokenize(self, points: torch.Tensor) -> torch.Tensor:
        """Deterministic tokens ``LongTensor [B, G]`` (official ``forward_tokenizer``)."""
        p = self.patchify(points)
        return self.token_logits(p.neighborhood, p.center).argmax(-1)

    def tokenizer_features(
        self,
        neighborhood: torch.Tensor,
        center: torch.Tensor,
        *,
        gumbel_noise: torch.Tensor | None = None,
        return_global: bool = True,
    ) -> torch.Tensor:
        """Official ``forward_tokenizer_features``: hard Gumbel tokens (temperature 1) through
        the teacher, then ``dgcnn_2`` when ``return_global`` -- the stage-II targets."""
        logits = self.token_logits(neighborhood, center)  # B G T
        if self.fast and not (torch.is_grad_enabled() and (logits.requires_grad or self.codebook.requires_grad)):
            # only the hard tokens are used and no gradient flows: the straight-through
            # one-hot is never formed (its argmax is the argmax of y_soft)
            sampled = F.embedding(gumbel_argmax(logits, tau=1.0, noise=gumbel_noise), self.codebook)  # B G C
        else:
            one_hot = gumbel_softmax(logits, tau=1.0, hard=True, noise=gumbel_noise)
            sampled = self.quantize(one_hot, exact_one_hot=True)  # B G C
        feature = self.teacher_features(sampled, center)  # B G C
        return self.dgcnn_2(feature, center) if return_global else feature

    def forward_loss(
        self,
        points: torch.Tensor,
        *,
        temperature: float = 1.0,
        hard: bool = False,
        gumbel_noise: torch.Tensor | None = None,
    ) -> DVAEOutput:
        """One stage-I pass: reconstruction (Chamfer-L1 of the local groups, coarse + fine)
        and the KL-to-uniform term. ``gumbel_noise [B, G, num_tokens]`` replaces the draw."""
        p = self.patchify(points)
        neighborhood, center = p.neighborhood, p.center
        logits = self.token_logits(neighborhood, center)  # B G T
        soft_one_hot = gumbel_softmax(logits, tau=temperature, hard=hard, noise=gumbel_noise)  # B G T
        sampled = self.teacher_features(self.quantize(soft_one_hot), center)  # B G C
        feature = self.dgcnn_2(sampled, center)  # B G C
        coarse, fine = self.decoder(feature)  # B G K/4 3, B G K 3
        with torch.no_grad():
            B = center.shape[0]
            whole_fine = (fine + center.unsqueeze(2)).reshape(B, -1, 3)
            whole_coarse = (coarse + center.unsqueeze(2)).reshape(B, -1, 3)
        BG = neighborhood.shape[0] * neighborhood.shape[1]
        target = neighborhood.reshape(BG, -1, 3)
        loss_coarse = chamfer_l1(coarse.reshape(BG, -1, 3), target)
        loss_fine = chamfer_l1(fine.reshape(BG, -1, 3), target)
        return DVAEOutput(
            recon=loss_coarse + loss_fine,
            kl=self.kl_loss(logits),
            loss_coarse=loss_coarse,
            loss_fine=loss_fine,
            coarse=coarse,
            fine=fine,
            whole_coarse=whole_coarse,
            whole_fine=whole_fine,
            neighborhood=neighborhood,
            center=center,
            logits=logits,
            soft_one_hot=soft_one_hot,
        )

    def kl_loss(self, logits: torch.Tensor) -> torch.Tensor:
        """Official KL term: ``kl_div(log(mean_g softmax), log(1/T), batchmean, log_target)``."""
        log_qy = torch.log(F.softmax(logits, dim=-1).mean(dim=1))  # B T
        log_uniform = torch.full_like(log_qy, 1.0 / self.config.num_tokens).log()
        return F.kl_div(log_qy, log_uniform, reduction="batchmean", log_target=True)

    @staticmethod
    @torch.no_grad()
    def validation_metrics(points: torch.Tensor, output: DVAEOutput) -> dict[str, float]:
        """Official dVAE validation: Chamfer L1/L2 of the whole reconstructed cloud against the
        input, for the coarse (sparse) and fine (dense) sets."""
        points = points.unsqueeze(0) if points.dim() == 2 else points
        points = points.to(output.whole_fine.dtype)
        return {
            "sparse_l1": chamfer_l1(output.whole_coarse, points).item(),
            "sparse_l2": chamfer_l2(output.whole_coarse, points).item(),
            "dense_l1": chamfer_l1(output.whole_fine, points).item(),
            "dense_l2": chamfer_l2(output.whole_fine, points).item(),
        }

    def forward(self, points: torch.Tensor, **kwargs: Any) -> DVAEOutput:
        return self.forward_loss(points, **kwargs)
