"""mnistviz.inspect: stage outputs, filters and attributions for every model in the registry."""
import numpy as np
import pytest
import torch
from torch import nn

from mnistviz import inspect as I
from mnistviz.models import MODELS, build, summary


@pytest.fixture(scope="module")
def image():
    return torch.rand(28, 28, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", list(MODELS))
def test_stage_outputs_shapes_for_every_model(name, image):
    torch.manual_seed(0)
    model = build(name)
    model.train()                       # stage_outputs must switch to eval and back
    outs = I.stage_outputs(model, image)
    assert model.training
    names = [n for n, _ in model.named_children()]
    assert [n for n, _, _ in outs] == names
    # every stage's shape matches the model summary, the last one is the 10 class outputs
    expected = [r["output shape"] for r in summary(model)]
    assert ["x".join(map(str, o.shape[1:])) for _, _, o in outs] == expected
    assert tuple(outs[-1][2].shape) == (1, 10)
    # the last stage output equals the whole model's output in eval mode
    with torch.no_grad():
        assert torch.allclose(outs[-1][2], model.eval()(image.view(1, 1, 28, 28)), atol=1e-5)
    types = {t for _, t, _ in outs}
    assert "Conv2d" in types and "Flatten" in types and "Linear" in types
    maps = I.feature_map_stages(outs)
    assert maps and all(o.dim() == 4 for _, _, o in maps)
    for _, _, o in maps:
        grid = I.image_grid(o[0])
        assert grid.ndim == 2 and 0.0 <= grid.min() and grid.max() <= 1.0
        assert grid.shape[0] >= o.shape[2] and grid.shape[1] >= o.shape[3]


@pytest.mark.parametrize("name", list(MODELS))
def test_conv_filters_for_every_model(name):
    model = build(name)
    filters = I.conv_filters(model)
    convs = [(n, m) for n, m in model.named_children() if isinstance(m, nn.Conv2d)]
    assert list(filters) == [n for n, _ in convs]
    for n, m in convs:
        assert tuple(filters[n].shape) == (m.out_channels, m.in_channels, *m.kernel_size)
        assert torch.equal(filters[n], m.weight.detach())
        g = I.filter_grid(filters[n])
        k = m.kernel_size[0]
        rows = m.out_channels if m.in_channels > 1 else -(-m.out_channels // 8)
        assert g.shape[0] == rows * (k + 1) + 1


def test_filters_are_copies():
    model = build("fast")
    f = I.conv_filters(model)["conv1"]
    f.zero_()
    assert model.conv1.weight.abs().sum() > 0


def test_as_input_accepts_common_shapes():
    u8 = np.full((28, 28), 255, np.uint8)
    assert I.as_input(u8).shape == (1, 1, 28, 28) and I.as_input(u8).max() == 1.0
    assert I.as_input(torch.zeros(1, 28, 28)).shape == (1, 1, 28, 28)
    with pytest.raises(ValueError):
        I.as_input(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError):
        I.as_input(torch.zeros(32, 32))


def test_image_grid_scaling():
    maps = torch.stack([torch.zeros(4, 4), torch.arange(16.).view(4, 4)])
    g = I.image_grid(maps, nrow=2, pad=0)
    assert g.shape == (4, 8)
    assert np.allclose(g[:, :4], 0.5)                    # a flat map is mid-grey, not NaN
    assert g[0, 4] == 0.0 and g[3, 7] == 1.0


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("method", I.METHODS)
def test_attribution_for_every_model(name, method, image):
    torch.manual_seed(0)
    model = build(name).eval()
    a = I.attribution(model, image, method=method, n_steps=8)
    assert a.shape == (28, 28) and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.abs(a).sum() > 0
    if method == "saliency":
        assert (a >= 0).all()


def test_saliency_is_the_input_gradient(image):
    torch.manual_seed(0)
    model = build("net-320").eval()
    x = image.view(1, 1, 28, 28).clone().requires_grad_(True)
    model(x)[0, 3].backward()
    a = I.attribution(model, image, target=3, method="saliency")
    assert np.allclose(a, x.grad[0, 0].abs().numpy(), atol=1e-6)


def test_integrated_gradients_completeness(image):
    """IG attributions sum to f(x) - f(baseline) for the target class (up to the integral's error)."""
    torch.manual_seed(0)
    model = build("single-conv").eval()
    a = I.attribution(model, image, target=4, method="integrated_gradients", n_steps=64)
    with torch.no_grad():
        diff = (model(image.view(1, 1, 28, 28)) - model(torch.zeros(1, 1, 28, 28)))[0, 4].item()
    assert a.sum() == pytest.approx(diff, rel=0.05, abs=1e-3)


def test_attribution_bad_arguments(image):
    model = build("fast")
    with pytest.raises(ValueError):
        I.attribution(model, image, method="gradcam")
    with pytest.raises(ValueError):
        I.attribution(model, image, target=10)


def test_class_scores(image):
    torch.manual_seed(0)
    model = build("fast")
    logits, probs = I.class_scores(model, image)
    assert logits.shape == probs.shape == (10,)
    assert probs.sum() == pytest.approx(1.0, abs=1e-5) and probs.argmax() == logits.argmax()


def test_image_grid_of_single_values_shares_one_scale():
    # 1 x 1 maps (LeNet-5's conv3): stretched each to its own range they would all be the same grey
    values = torch.tensor([-2.0, 0.0, 1.0, 2.0, 2.0])
    for each in (True, False):
        g = I.image_grid(values.view(5, 1, 1), nrow=5, pad=0, scale_each=each)
        assert g.shape == (1, 5)
        np.testing.assert_allclose(g[0], [0.0, 0.5, 0.75, 1.0, 1.0])
    assert I.single_values(values.view(1, 5, 1, 1)) and not I.single_values(torch.zeros(5, 2, 1))
    # bigger maps still get their own scale when asked
    maps = torch.stack([torch.arange(4.).view(2, 2), 10 * torch.arange(4.).view(2, 2)])
    g = I.image_grid(maps, nrow=2, pad=0, scale_each=True)
    np.testing.assert_allclose(g[:, :2], g[:, 2:])


def test_lenet_single_value_stages_are_not_flat(image):
    outs = I.feature_map_stages(I.stage_outputs(build("lenet5").eval(), image))
    ones = [(n, o) for n, _, o in outs if I.single_values(o)]
    assert [n for n, _ in ones] == ["conv3", "act3"]
    for _, o in ones:
        g = I.image_grid(o[0], nrow=16)  # scale_each on, as the pages ask
        assert np.unique(g[g < 1]).size > 2  # not 120 identical greys (1.0 is the padding)
