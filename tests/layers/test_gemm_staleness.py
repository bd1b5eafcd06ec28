"""The packed-weight cache never serves old weights (issue 12, item 14).

The cache was keyed on ``(data_ptr, _version)``: a weight freed and re-allocated at the same
address (a replaced Parameter, ``load_state_dict(assign=True)``, a dtype round trip through
``Module._apply``, which swaps ``param.data`` and keeps the version) looked unchanged, and the
model answered with the old weights. Each case below is compared, over many trials, with a
freshly built model holding the same weights (which has never packed anything).
"""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

from act_zoo.layers import gemm
from act_zoo.models import ACTClassifier
from act_zoo.models.point_transformer import ClassifierConfig

TINY = ClassifierConfig(embed_dim=32, depth=2, num_heads=2, group_size=8, num_group=8, encoder_dims=32, npoints=64,
                        cls_dim=5, drop_path_rate=0.0)
TRIALS = 20


@pytest.fixture(autouse=True)
def _packed_on():
    if not gemm.packed_available():
        pytest.skip("this torch build has no oneDNN packed linear (nothing cached, nothing to go stale)")


def _fresh(state: dict[str, torch.Tensor]) -> ACTClassifier:
    model = ACTClassifier(TINY).eval()
    model.load_state_dict(state)
    return model


def _replace_parameters(model: nn.Module, states: list[dict[str, torch.Tensor]]) -> None:
    """Free each Linear's weight, then allocate its replacement (same size: often the same
    address, and a fresh tensor's version is 0 like the one it replaces)."""
    for i, state in enumerate(states):
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Linear):
                mod.weight = None
                mod.weight = nn.Parameter(state[f"{name}.weight"].clone())
        if i == 0:
            model(X)  # packs the first replacement


def _assign(model: nn.Module, states: list[dict[str, torch.Tensor]]) -> None:
    """Load a checkpoint, run, load two more (the third lands where the first was freed), run."""
    for i, state in enumerate(states):
        model.load_state_dict({k: v.clone() for k, v in state.items()}, assign=True)
        if i == 0:
            model(X)


def _half_float(model: nn.Module, states: list[dict[str, torch.Tensor]]) -> None:
    """``Module._apply`` swaps ``param.data`` (same Parameter, same version, new storage); the
    half round trip really changes the values (rounding), as a dtype cast of new weights would."""
    model.half().float()


def _double_edit_float(model: nn.Module, states: list[dict[str, torch.Tensor]]) -> None:
    """New weights loaded while the model is float64, then ``.float()``: the float Parameter
    objects are the same ones, with the same version counter, on new storage."""
    model.double()
    for k, p in [*model.named_parameters(), *model.named_buffers()]:
        p.data = states[0][k].to(p.dtype).clone()  # ``.data`` assignment: no version bump
    model.float()


CASES = {"replace-parameter": _replace_parameters, "load_state_dict-assign": _assign, "half-float": _half_float,
         "double-edit-float": _double_edit_float}
X = torch.randn(3, 64, 3, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("case", sorted(CASES))
def test_changed_weights_never_answer_with_the_old_packed_copy(case):
    stale = 0
    for _ in range(TRIALS):
        model = ACTClassifier(TINY).eval()
        with torch.no_grad():
            model(X)  # packs every Linear weight
            states = [ACTClassifier(TINY).state_dict() for _ in range(3)]
            CASES[case](model, states)
            got = model(X)
            expected = _fresh({k: v.clone() for k, v in model.state_dict().items()})(X)
        if not torch.allclose(got, expected, atol=1e-5, rtol=0):
            stale += 1
    assert stale == 0, f"{case}: stale outputs in {stale} of {TRIALS} trials"


def test_functional_call_with_fresh_weights_each_time():
    """``torch.func.functional_call`` with a new parameter dict per call (ensembles, meta-learning):
    each dict is freed before the next is allocated, at the same addresses, all at version 0."""
    from torch.func import functional_call

    model = ACTClassifier(TINY).eval()
    stale = 0
    with torch.no_grad():
        for _ in range(TRIALS):
            params = {k: v.clone() for k, v in ACTClassifier(TINY).state_dict().items()}
            got = functional_call(model, params, (X,))
            expected = _fresh(params)(X)
            stale += not torch.allclose(got, expected, atol=1e-5, rtol=0)
            del params
    assert stale == 0, f"stale outputs in {stale} of {TRIALS} calls"


def test_double_float_round_trip_repacks_from_the_live_storage():
    """``.double().float()`` keeps values and Parameters but moves every weight to new storage:
    the cache entry must follow the live storage (never a freed address that may be reused)."""
    layer = nn.Linear(16, 8)
    x = torch.randn(4, 16)
    with torch.no_grad():
        gemm.linear(x, layer)
        before = layer.__dict__["_act_zoo_packed"]["weight"]
        layer.double().float()
        torch.testing.assert_close(gemm.linear(x, layer), layer(x), atol=1e-5, rtol=0)
        after = layer.__dict__["_act_zoo_packed"]["weight"]
    assert after is not before  # re-packed for the new storage


def test_version_bump_still_repacks_and_state_dict_stays_canonical():
    layer = nn.Linear(8, 4)
    x = torch.randn(5, 8)
    with torch.no_grad():
        gemm.linear(x, layer)
        layer.weight.mul_(2.0)
        torch.testing.assert_close(gemm.linear(x, layer), layer(x), atol=1e-5, rtol=0)
    assert set(layer.state_dict()) == {"weight", "bias"}


def test_cache_does_not_keep_replaced_weights_alive():
    """The key holds weak references only: a replaced weight's memory is released."""
    import weakref

    layer = nn.Linear(32, 32)
    x = torch.randn(2, 32)
    with torch.no_grad():
        gemm.linear(x, layer)
    old = weakref.ref(layer.weight)
    layer.weight = nn.Parameter(torch.randn(32, 32))
    gc.collect()
    assert old() is None


def test_data_edits_are_invisible_until_clear_packed():
    """The documented limit: ``.data`` edits bypass the version counter; clear_packed drops the copy."""
    layer = nn.Linear(8, 4)
    x = torch.randn(5, 8)
    with torch.no_grad():
        gemm.linear(x, layer)
        layer.weight.data.mul_(2.0)
        gemm.clear_packed(layer)
        torch.testing.assert_close(gemm.linear(x, layer), layer(x), atol=1e-5, rtol=0)
