"""oneDNN packed inference linears: same numbers as addmm, rebuilt when weights change."""

import pytest
import torch

from act_zoo.layers import gemm
from act_zoo.models import MODELNET40, ACTClassifier


@pytest.fixture
def packed():
    if not gemm.packed_available():
        pytest.skip("this torch build has no oneDNN packed linear")


def test_packed_linear_matches_addmm_and_fuses_gelu(packed):
    layer = torch.nn.Linear(48, 96)
    x = torch.randn(37, 48)
    with torch.no_grad():
        torch.testing.assert_close(gemm.linear(x, layer), torch.nn.functional.linear(x, layer.weight, layer.bias),
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(gemm.linear(x, layer, gelu=True), torch.nn.functional.gelu(layer(x)),
                                   atol=1e-5, rtol=1e-5)
        stream = torch.randn(37, 96)
        expect = stream + layer(x)
        gemm.residual_linear_(stream, x, layer)
        torch.testing.assert_close(stream, expect, atol=1e-5, rtol=1e-5)


def test_packed_copy_is_rebuilt_when_weights_change(packed):
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(5, 8)
    with torch.no_grad():
        gemm.linear(x, layer)
        layer.weight.mul_(2.0)  # an in-place update (optimizer step) bumps the version counter
        torch.testing.assert_close(gemm.linear(x, layer), layer(x), atol=1e-5, rtol=1e-5)
        layer.load_state_dict({"weight": torch.randn(4, 8), "bias": torch.randn(4)})
        torch.testing.assert_close(gemm.linear(x, layer), layer(x), atol=1e-5, rtol=1e-5)
    assert set(layer.state_dict()) == {"weight", "bias"}  # the packed copy is never in the state dict


def test_whole_model_same_with_packing_on_and_off(monkeypatch):
    model = ACTClassifier(MODELNET40).eval()
    x = torch.randn(2, 1024, 3)
    with torch.inference_mode():
        on = model(x)
        monkeypatch.setenv("ACT_ZOO_PACKED", "0")
        assert not gemm.packed_available()
        off = model(x)
    torch.testing.assert_close(on, off, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        ref = model.set_fast_path(False)(x)
    torch.testing.assert_close(on, ref, atol=1e-5, rtol=1e-4)


def test_grad_paths_never_use_packing(packed):
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(5, 8, requires_grad=True)
    y = gemm.linear(x, layer)  # grad enabled: plain F.linear, differentiable
    y.sum().backward()
    assert x.grad is not None and layer.weight.grad is not None
