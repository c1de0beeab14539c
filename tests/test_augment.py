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


def test_fast_paths_match_torch_reference_ops():
    """The grid, the elastic field and the stroke thickness take shortcuts; each equals the torch op it replaces."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(3)
    theta = torch.randn(6, 2, 3, generator=g)
    ours = torch.matmul(augment._base_grid(28, 20), theta.transpose(1, 2)).view(6, 28, 20, 2)
    assert torch.allclose(ours, F.affine_grid(theta, (6, 1, 28, 20), align_corners=False), atol=1e-5)
    coarse = torch.randn(6, 2, 4, 4, generator=g)
    field = augment._bicubic_matrix(28) @ coarse @ augment._bicubic_matrix(20).t()
    assert torch.allclose(field, F.interpolate(coarse, size=(28, 20), mode="bicubic", align_corners=False), atol=1e-5)
    # thickness alone (probability 1): half the samples dilated, half eroded, as 3x3 max-pooling does it
    x = _batch(32)
    out = augment.augment(x, augment.Strength(thickness=1.0), torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    for _ in range(5):  # augment draws rotation, shear, zoom, x and y shift first (all zero here), then the pick
        torch.rand(32, generator=g)
    pick = torch.rand(32, generator=g)
    grid = F.grid_sample(x, F.affine_grid(torch.eye(2, 3).repeat(32, 1, 1), (32, 1, 28, 28), align_corners=False),
                         align_corners=False)
    dilated, eroded = F.max_pool2d(grid, 3, 1, 1), -F.max_pool2d(-grid, 3, 1, 1)
    want = torch.where((pick < 0.5).view(32, 1, 1, 1), dilated, eroded).clamp(0, 1)
    assert 0 < (pick < 0.5).sum() < 32 and torch.allclose(out, want, atol=1e-5)
