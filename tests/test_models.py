import pytest
import torch
from torch import nn

from mnistviz import models


@pytest.mark.parametrize("name", list(models.MODELS))
def test_output_shape_and_named_convs(name):
    m = models.build(name).eval()
    out = m(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10)
    convs = models.conv_layers(m)
    assert convs and convs[0] == "conv1"
    assert isinstance(m[0], models.Normalize)  # normalization is inside the model


def test_lenet5_has_61706_parameters():
    assert models.count_params(models.build("lenet5")) == 61706
    assert models.count_params(models.build("lenet5-relu")) == 61706


def _shapes(name):
    return {r["layer"]: r["output shape"] for r in models.summary(models.build(name))}


def test_seed_layer_sizes():
    s = _shapes("lenet5")
    assert s["conv1"] == "6x28x28" and s["pool1"] == "6x14x14" and s["conv2"] == "16x10x10"
    assert s["conv3"] == "120x1x1" and s["fc1"] == "84" and s["fc2"] == "10"
    lenet = models.build("lenet5")
    assert isinstance(lenet.act1, nn.Tanh) and isinstance(lenet.pool1, nn.AvgPool2d)
    relu = models.build("lenet5-relu")
    assert isinstance(relu.act1, nn.ReLU) and isinstance(relu.pool1, nn.MaxPool2d)
    s = _shapes("cnn-32-64")
    assert s["conv1"] == "32x24x24" and s["conv2"] == "64x8x8" and s["flatten"] == "1024" and s["fc1"] == "500"
    assert models.build("cnn-32-64").dropout.p == 0.4
    s = _shapes("net-320")
    assert s["conv1"] == "10x24x24" and s["conv2"] == "20x8x8" and s["flatten"] == "320" and s["fc1"] == "50"
    s = _shapes("single-conv")
    assert s["conv1"] == "10x11x11" and s["flatten"] == "1210" and s["fc1"] == "10"
    conv = models.build("single-conv").conv1
    assert conv.kernel_size == (8, 8) and conv.stride == (2, 2)


def test_summary_total_matches_parameter_count():
    m = models.build("lenet5")
    assert sum(r["parameters"] for r in models.summary(m)) == 61706


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model"):
        models.build("resnet")


def test_fast_tanh_matches_torch_tanh_forward_and_backward():
    x = torch.linspace(-12, 12, 2001).repeat(3, 1).requires_grad_()
    y = models.Tanh()(x)
    y.sum().backward()
    ref_x = x.detach().clone().requires_grad_()
    ref = torch.tanh(ref_x)
    ref.sum().backward()
    assert torch.allclose(y, ref, atol=2e-7, rtol=0)
    assert torch.allclose(x.grad, ref_x.grad, atol=1e-6, rtol=0)
    assert isinstance(models.Tanh(), nn.Tanh)


@pytest.mark.parametrize("kw,size", [({}, 5), ({"padding": 2}, 5), ({}, 9), ({"stride": 2}, 5)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv2d_matrix_path_matches_nn_conv2d(kw, size, channels_last):
    """conv3 (kernel = whole input) runs as a matrix product: same outputs and gradients as nn.Conv2d."""
    torch.manual_seed(0)
    ours = models.Conv2d(16, 120, 5, **kw)
    ref = nn.Conv2d(16, 120, 5, **kw)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(4, 16, size, size)
    if channels_last:
        ours, ref = ours.to(memory_format=torch.channels_last), ref.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = ours(xa), ref(xb)
    assert a.shape == b.shape
    assert torch.allclose(a, b, atol=1e-5)
    g = torch.randn_like(b)
    a.backward(g)
    b.backward(g)
    assert torch.allclose(xa.grad, xb.grad, atol=1e-5)
    assert torch.allclose(ours.weight.grad, ref.weight.grad, atol=1e-4)
    assert torch.allclose(ours.bias.grad, ref.bias.grad, atol=1e-4)
