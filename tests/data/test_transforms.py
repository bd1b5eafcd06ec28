"""Transforms: official formulas, statistics over many seeds, determinism, batch/single agreement."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from act_zoo.data import (
    Compose,
    FPSResample,
    Jitter,
    NormalizeUnitSphere,
    RandomPointDropout,
    RandomResample,
    RotateY,
    ScaleAndTranslate,
    SyntheticShapes,
)
from act_zoo.ops import furthest_point_sample

RANDOM = [
    lambda g: ScaleAndTranslate(generator=g),
    lambda g: RotateY(generator=g),
    lambda g: Jitter(generator=g),
    lambda g: RandomPointDropout(generator=g),
    lambda g: FPSResample(16, pool=24, generator=g),
    lambda g: RandomResample(16, generator=g),
    lambda g: RandomResample(16, replace=True, generator=g),
]


def clouds(b: int = 4, n: int = 64, c: int = 3) -> torch.Tensor:
    return torch.randn(b, n, c, generator=torch.Generator().manual_seed(11)) * 2 + 1


def test_scale_and_translate_statistics():
    # a cloud with a point at the origin and one at (1,1,1): out[0] = shift, out[1] - out[0] = scale
    base = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]).expand(20000, 2, 3)
    out = ScaleAndTranslate(generator=0)(base)
    shift, scale = out[:, 0], out[:, 1] - out[:, 0]
    lo, hi = 2 / 3, 3 / 2
    assert scale.min() >= lo - 1e-6 and scale.max() <= hi + 1e-6
    assert abs(float(scale.mean()) - (lo + hi) / 2) < 0.01
    assert abs(float(scale.var()) - (hi - lo) ** 2 / 12) < 0.005
    assert shift.abs().max() <= 0.2 + 1e-6 and abs(float(shift.mean())) < 0.005
    assert abs(float(shift.var()) - 0.4**2 / 12) < 0.001
    # independent per axis and per cloud
    corr = np.corrcoef(scale.T.numpy())
    assert np.abs(corr - np.eye(3)).max() < 0.05
    assert ScaleAndTranslate(1.0, 1.0, 0.0, generator=0)(base[:3]).equal(base[:3])


def test_rotate_y_is_the_official_rotation():
    x = clouds(500, 32)
    out = RotateY(generator=1)(x)
    torch.testing.assert_close(out[..., 1], x[..., 1])  # y is untouched
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))  # a rotation
    # (1,0,0) @ R = (cos a, 0, sin a): recover the angles and check them uniform on [0, 2pi)
    e = torch.tensor([[[1.0, 0.0, 0.0]]]).expand(4000, 1, 3)
    r = RotateY(generator=2)(e)[:, 0]
    angle = torch.atan2(r[:, 2], r[:, 0]) % (2 * math.pi)
    hist = torch.histc(angle, bins=8, min=0, max=2 * math.pi) / 4000
    assert (hist - 1 / 8).abs().max() < 0.03
    a = torch.tensor(0.3)
    c, s = math.cos(0.3), math.sin(0.3)
    expected = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    torch.testing.assert_close(RotateY.matrix(a), expected)
    # normals rotate with the points when asked; other channels never
    x6 = clouds(2, 10, 7)
    o6 = RotateY(normals=True, generator=3)(x6)
    o3 = RotateY(generator=3)(x6)
    torch.testing.assert_close(o6[..., :3], o3[..., :3])
    torch.testing.assert_close(o6[..., 3:6].norm(dim=-1), x6[..., 3:6].norm(dim=-1))
    assert torch.equal(o3[..., 3:], x6[..., 3:]) and torch.equal(o6[..., 6], x6[..., 6])


def test_normalize_unit_sphere():
    x = clouds(3, 100, 5)
    out = NormalizeUnitSphere()(x)
    torch.testing.assert_close(out[..., :3].mean(1), torch.zeros(3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[..., :3].norm(dim=-1).amax(1), torch.ones(3))
    assert torch.equal(out[..., 3:], x[..., 3:])
    torch.testing.assert_close(NormalizeUnitSphere()(x[1]), out[1])
    same = NormalizeUnitSphere()(torch.ones(10, 3))
    assert torch.isfinite(same).all() and torch.equal(same, torch.zeros(10, 3))
    # the numpy formula of the official pc_normalize
    pc = x[0, :, :3].double().numpy()
    c = pc - pc.mean(0)
    np.testing.assert_allclose(out[0, :, :3].numpy(), c / np.sqrt((c**2).sum(1)).max(), atol=1e-6)


def test_jitter_statistics_and_clip():
    x = torch.zeros(50, 400, 4)
    out = Jitter(sigma=0.01, clip=0.05, generator=0)(x)
    assert out[..., :3].abs().max() <= 0.05 and torch.equal(out[..., 3], x[..., 3])
    assert abs(float(out[..., :3].std()) - 0.01) < 0.0005
    clipped = Jitter(sigma=1.0, clip=0.1, generator=0)(x)
    assert float(clipped[..., :3].abs().max()) == pytest.approx(0.1)


def test_random_point_dropout():
    x = clouds(400, 200, 4)
    out = RandomPointDropout(0.5, generator=0)(x)
    assert out.shape == x.shape
    changed = (out != x).any(-1)
    # every changed point is now a copy of point 0 (all channels)
    assert torch.equal(out[changed], x[:, :1].expand_as(x)[changed])
    # ratio ~ U(0, 0.5) per cloud -> on average a quarter of the points are dropped
    assert abs(float(changed.float().mean()) - 0.25) < 0.02
    assert torch.equal(RandomPointDropout(0.0, generator=0)(x), x)
    with pytest.raises(ValueError):
        RandomPointDropout(1.0)


def test_fps_resample_and_pool():
    x = clouds(3, 100)
    out = FPSResample(10)(x)
    idx = furthest_point_sample(x, 10)
    assert torch.equal(out, torch.stack([x[b, idx[b]] for b in range(3)]))
    torch.testing.assert_close(FPSResample(10)(x[2]), out[2])
    pooled = FPSResample(10, pool=30, generator=0)(x)
    pool_idx = furthest_point_sample(x, 30)
    for b in range(3):
        rows = {tuple(r.tolist()) for r in x[b, pool_idx[b]]}
        picked = [tuple(r.tolist()) for r in pooled[b]]
        assert len(set(picked)) == 10 and set(picked) <= rows
    assert FPSResample.OFFICIAL_POOL[1024] == 1200
    with pytest.raises(ValueError, match="cannot FPS-sample"):
        FPSResample(200)(x)


def test_random_resample():
    x = clouds(5, 50)
    out = RandomResample(20, generator=0)(x)
    for b in range(5):
        rows = [tuple(r.tolist()) for r in out[b]]
        assert len(set(rows)) == 20 and set(rows) <= {tuple(r.tolist()) for r in x[b]}
    assert RandomResample(80, replace=True, generator=0)(x).shape == (5, 80, 3)
    with pytest.raises(ValueError, match="without replacement"):
        RandomResample(80)(x)


@pytest.mark.parametrize("make", RANDOM)
def test_determinism_and_batch_single_agreement(make):
    x = clouds(4, 64)
    a, b, c = make(5), make(5), make(6)
    out_a, out_b, out_c = a(x), b(x), c(x)
    assert torch.equal(out_a, out_b)  # same seed, same result
    assert not torch.equal(out_a, out_c)  # another seed, another result
    assert not torch.equal(a(x), out_a)  # the stream advances
    single = make(5)
    for i in range(4):  # cloud i of a batch == the i-th single-cloud call
        assert torch.equal(single(x[i]), out_a[i])
    gen_a = make(torch.Generator().manual_seed(9))(x)
    assert torch.equal(gen_a, make(torch.Generator().manual_seed(9))(x))
    assert torch.equal(make(5)(x.numpy()), out_a)  # numpy input
    assert torch.equal(x, clouds(4, 64))  # the input is never modified
    clone = pickle.loads(pickle.dumps(make(5)))
    assert torch.equal(clone(x), out_a)
    torch.manual_seed(0)
    g1 = make(None)(x)
    torch.manual_seed(0)
    assert torch.equal(make(None)(x), g1)  # None follows torch's global seed


def test_reprs_and_compose():
    t = Compose(
        [ScaleAndTranslate(generator=3), RotateY(), Jitter(sigma=0.02), FPSResample(8, pool=10, generator=1)]
    )
    text = repr(t)
    assert "ScaleAndTranslate(scale_low=0.6667, scale_high=1.5, translate_range=0.2, generator=3)" in text
    assert "Jitter(sigma=0.02, clip=0.05, generator=None)" in text and "pool=10" in text
    assert len(t) == 4 and repr(Compose([])) == "Compose([])"
    x = clouds(2, 32)
    manual = x
    for step in [ScaleAndTranslate(generator=3), RotateY(generator=4)]:
        manual = step(manual)
    assert torch.equal(Compose([ScaleAndTranslate(generator=3), RotateY(generator=4)])(x), manual)
    with pytest.raises(TypeError):
        Compose([1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="shape"):
        Jitter()(torch.zeros(5, 2))


def test_seeded_transforms_differ_across_dataloader_workers():
    ds = SyntheticShapes(8, num_points=16, noise=0.0, transform=Jitter(sigma=0.1, clip=1.0, generator=0))
    plain = SyntheticShapes(8, num_points=16, noise=0.0)

    def noise_of(loader_kwargs):
        loader = torch.utils.data.DataLoader(ds, batch_size=None, **loader_kwargs)
        return torch.stack([p - plain[i][0] for i, (p, _) in enumerate(loader)])

    torch.manual_seed(1)
    n1 = noise_of({"num_workers": 2, "multiprocessing_context": "fork"})
    torch.manual_seed(1)
    n2 = noise_of({"num_workers": 2, "multiprocessing_context": "fork"})
    torch.testing.assert_close(n1, n2)  # reproducible under torch.manual_seed
    # items 0 and 1 go to different workers; their first draws must differ
    assert not torch.allclose(n1[0], n1[1])
