import torch

from mnistviz import augment


def _batch(n=16):
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0  # a vertical bar, like a "1"
    x += torch.rand(x.shape, generator=g) * 0.01
    return x.clamp(0, 1)


def test_none_is_identity():
    x = _batch()
    assert torch.equal(augment.augment(x, "none"), x)


def test_shapes_range_and_per_sample_variety():
    x = _batch()
    for level in ("light", "standard", "strong"):
        out = augment.augment(x, level, torch.Generator().manual_seed(1))
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
        assert not torch.allclose(out, x, atol=1e-3)
        # every sample got its own transform: no two outputs alike although all inputs are nearly alike
        flat = out.view(len(out), -1)
        d = torch.cdist(flat, flat) + torch.eye(len(out)) * 1e9
        assert d.min() > 1e-2


def test_deterministic_per_seed():
    x = _batch()
    a = augment.augment(x, "strong", torch.Generator().manual_seed(5))
    b = augment.augment(x, "strong", torch.Generator().manual_seed(5))
    c = augment.augment(x, "strong", torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_each_transform_acts():
    x = _batch(8)
    for field in ("rotate", "translate", "scale", "shear", "elastic", "thickness", "erase"):
        strength = augment.Strength(**{field: {"rotate": 30, "translate": 0.2, "scale": 0.3, "shear": 20,
                                               "elastic": 2.0, "thickness": 1.0, "erase": 1.0}[field]})
        out = augment.augment(x, strength, torch.Generator().manual_seed(0))
        assert (out - x).abs().mean() > 1e-3, field


def test_preview_pairs():
    imgs = (torch.rand(50, 28, 28) * 255).to(torch.uint8)
    o, a = augment.preview(imgs, 8, "standard", seed=2)
    assert o.shape == a.shape == (8, 1, 28, 28)
    o2, a2 = augment.preview(imgs, 8, "standard", seed=2)
    assert torch.equal(o, o2) and torch.equal(a, a2)
