"""Classification evaluation shared by the trainer and act_zoo.evaluate: logits, voting, metrics, PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from act_zoo.data.transforms import ScaleAndTranslate
from act_zoo.models import ACTClassifier, ClassifierConfig
from act_zoo.train.evaluation import (
    classification_metrics,
    classify_logits,
    save_confusion_png,
    vote_pool_size,
)
from act_zoo.train.tasks.common import fps_exact, fps_subset


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = ClassifierConfig(embed_dim=32, depth=1, num_heads=2, group_size=8, num_group=8, encoder_dims=32,
                           npoints=64, cls_dim=5, drop_path_rate=0.0)
    return ACTClassifier(cfg).eval()


def test_plain_logits_are_fps_then_the_model(model):
    x = torch.randn(3, 100, 3)
    with torch.no_grad():
        torch.testing.assert_close(classify_logits(model, x, npoints=64), model(fps_exact(x, 64)))
        torch.testing.assert_close(classify_logits(model, x[:, :64], npoints=64), model(x[:, :64]))
    with pytest.raises(ValueError, match="fewer than the model's npoints=64"):
        classify_logits(model, x[:, :50], npoints=64)


def test_unseeded_voting_is_the_official_validate_vote_the_trainer_ran(model):
    """The trainer's former loop (fps_subset per vote + ScaleAndTranslate on the global RNG,
    logits averaged with stack().mean(0)) and the shared function draw the same numbers."""
    x = torch.randn(4, 120, 3)
    torch.manual_seed(7)
    with torch.no_grad():
        aug = ScaleAndTranslate()
        old = torch.stack([model(aug(fps_subset(x, 64, pool_ratio=1.2))) for _ in range(3)]).mean(0)
    torch.manual_seed(7)
    new = classify_logits(model, x, npoints=64, votes=3, pool_ratio=1.2, augment=ScaleAndTranslate())
    torch.testing.assert_close(new, old, atol=0, rtol=0)
    assert vote_pool_size(120, 64) == 77 and vote_pool_size(70, 64) == 70


def test_seeded_voting_is_reproducible_and_independent_of_the_batch(model):
    x = torch.randn(6, 120, 3)
    a = classify_logits(model, x, npoints=64, votes=4, seed=1)
    state = torch.get_rng_state()
    b = torch.cat([classify_logits(model, x[i:i + 1], npoints=64, votes=4, seed=1) for i in reversed(range(6))]).flip(0)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is not touched
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    c = classify_logits(model, x, npoints=64, votes=4, seed=2)
    assert not torch.allclose(a, c)
    assert not torch.allclose(a, classify_logits(model, x, npoints=64))  # votes do change the logits


def test_metrics_and_confusion_png(tmp_path):
    import matplotlib

    pred = torch.tensor([0, 1, 1, 2, 2, 2, 0])
    target = torch.tensor([0, 1, 2, 2, 2, 2, 1])
    m = classification_metrics(pred, target, 4)
    assert m.accuracy == pytest.approx(100 * 5 / 7) and m.count == 7
    assert m.per_class == [100.0, 50.0, 75.0, None]  # class 3 has no sample
    assert m.mean_class_accuracy == pytest.approx((100 + 50 + 75) / 3)  # the official acc_avg
    assert m.confusion.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 3, 0], [0, 0, 0, 0]]
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        classification_metrics(pred[:2], torch.tensor([0, 3]), 2)
    backend = matplotlib.get_backend()
    png = save_confusion_png(m.confusion, ["a", "b", "c", "d"], tmp_path / "sub" / "cm.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.get_backend() == backend  # the user's backend is never switched
    assert np.array_equal(m.confusion.sum(1), [1, 2, 4, 0])
