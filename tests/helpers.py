"""Shared test helpers (importable from every test module as ``helpers``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures" / "official_act"


def load_official(name: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(weights as float32, fixture tensors without the 'fixture/' prefix) of a tiny file."""
    raw = load_file(str(FIXTURES / "tiny" / name))
    weights = {k: (v.float() if v.is_floating_point() else v) for k, v in raw.items() if not k.startswith("fixture/")}
    fx = {k[len("fixture/"):]: v for k, v in raw.items() if k.startswith("fixture/")}
    return weights, fx


def load_official_dvae() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The tiny stage-I dVAE: weights are split over three files."""
    weights, fx = load_official("dvae_vit_tiny.safetensors")
    for part in ("dgcnn_1", "dgcnn_2"):
        w, _ = load_official(f"dvae_vit_tiny.{part}.safetensors")
        weights.update(w)
    return weights, fx


def tiny_pretrain_checkpoint(prefix: str = "") -> dict:
    """The tiny stage-II checkpoint as the official code saves it: student + frozen teacher."""
    student, _ = load_official("pretrain_distill_tiny.safetensors")
    teacher, _ = load_official_dvae()
    sd = dict(student)
    sd.update({"dvae_tokenizer." + k: v for k, v in teacher.items()})
    return {"base_model": {prefix + k: v for k, v in sd.items()}, "epoch": 1}


def official_keys(name: str) -> dict:
    return json.loads((FIXTURES / "keys" / name).read_text())


def manifest() -> dict:
    return json.loads((FIXTURES / "manifest.json").read_text())


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, atol: float = 1e-5, rtol: float = 0.0, name: str = "") -> None:
    """Parity at the README's stated level: |actual - expected| <= atol (1e-5) everywhere, no relative slack."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


# The tiny fine-tuning config of the fixtures, in official key names.
TINY_FINETUNE = dict(
    NAME="PointTransformer", embed_dim=48, depth=2, drop_path_rate=0.0, cls_dim=5, num_heads=3,
    group_size=8, num_group=16, encoder_dims=48, transfer_type="full",
)


# The tiny stage-I / stage-II configs of the fixtures, in official key names.
TINY_DVAE = dict(
    NAME="ACTPromptedDiscreteVAEwithVIT", visual_embed_type="tinyvit_e32_d2_h2", visual_embed_dim=32,
    visual_embed_pos="after_dgcnn1", freeze_visual_embed=True, num_prompt_token=4, use_deep_prompt=True,
    num_group=16, group_size=8, num_tokens=64, encoder_dims=48, tokens_dims=40, decoder_dims=40, npoints=256,
)
TINY_DISTILL = dict(
    NAME="ACT_PointDistillation", loss="cosine", npoints=256,
    transformer_config=dict(mask_ratio=0.8, mask_type="rand", proj="linear", embed_dim=48, encoder_dims=48, depth=2,
                            drop_path_rate=0.0, cls_dim=32, replace_pob=0.0, num_heads=3, decoder_depth=2,
                            decoder_num_heads=3, return_all_tokens=False, cls_loss=False, register_shallow_hook=9),
    dvae_config={k: v for k, v in TINY_DVAE.items() if k not in ("NAME", "npoints")} | {"ckpt": "missing/ckpt_dvae.pth"},
)
