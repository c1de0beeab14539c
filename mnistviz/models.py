"""The seeds' architectures and the fast default, a registry by name.

Every model is an nn.Sequential of named stages, so a page can walk it stage by stage
(conv -> activation -> pool) and read filters by name (``conv1``, ``conv2``...). Every model takes
N x 1 x 28 x 28 pixels in [0, 1]: normalization is its first stage, so a checkpoint is self-contained.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .data import MEAN, STD


class Normalize(nn.Module):
    def __init__(self, mean: float = MEAN, std: float = STD):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std

    def extra_repr(self):
        return f"mean={self.mean}, std={self.std}"


def tanh_via_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x * 2).mul_(2).sub_(1)


class _SigmoidTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = tanh_via_sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Tanh):
    """tanh computed as 2*sigmoid(2x) - 1 (within 1e-7 of torch.tanh), because torch's CPU
    tanh kernel is several times slower than its sigmoid (figures: docs/performance.md)."""

    def forward(self, x):
        return _SigmoidTanh.apply(x)


class Conv2d(nn.Conv2d):
    """nn.Conv2d that runs as a matrix product when the kernel covers the whole input (LeNet-5's
    conv3: 16x5x5 in, 120x1x1 out): the same arithmetic, cheaper than the convolution kernels forward and
    backward. Parameters and state_dict are nn.Conv2d's."""

    def matrix_operands(self, x):
        """(input, weight, channels_last) with input and weight as the matrices of that product, or None
        when the kernel does not cover the input. When both are channels-last (the trainer's layout), both
        are flattened in (h, w, c) order, a view of each: flatten(1) would copy the weight every step and
        its gradient back."""
        w = self.weight
        if not (x.dim() == 4 and x.shape[-2:] == w.shape[-2:] and self.padding == (0, 0)
                and self.dilation == (1, 1) and self.groups == 1 and self.padding_mode == "zeros"):
            return None
        cl = x.is_contiguous(memory_format=torch.channels_last) and w.is_contiguous(memory_format=torch.channels_last)
        if cl:
            x, w = x.permute(0, 2, 3, 1), w.permute(0, 2, 3, 1)
        return x.flatten(1), w.flatten(1), cl

    def forward(self, x):
        mats = self.matrix_operands(x)
        if mats is None:
            return super().forward(x)
        return F.linear(mats[0], mats[1], self.bias)[:, :, None, None]


def _seq(*stages) -> nn.Sequential:
    return nn.Sequential(OrderedDict(stages))


def lenet5() -> nn.Sequential:
    """LeCun et al. 1998 with full C3 connections: 61,706 parameters."""
    return _seq(
        ("normalize", Normalize()),
        # 28 padded to 32 as LeNet-5 was drawn: conv1's padding=2 is the same zero border, one op cheaper
        ("conv1", Conv2d(1, 6, 5, padding=2)), ("act1", Tanh()), ("pool1", nn.AvgPool2d(2)),
        ("conv2", Conv2d(6, 16, 5)), ("act2", Tanh()), ("pool2", nn.AvgPool2d(2)),
        ("conv3", Conv2d(16, 120, 5)), ("act3", Tanh()),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(120, 84)), ("act4", Tanh()),
        ("fc2", nn.Linear(84, 10)),
    )


def lenet5_relu() -> nn.Sequential:
    return _seq(
        ("normalize", Normalize()),
        ("conv1", Conv2d(1, 6, 5, padding=2)), ("act1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", Conv2d(6, 16, 5)), ("act2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("conv3", Conv2d(16, 120, 5)), ("act3", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(120, 84)), ("act4", nn.ReLU()),
        ("fc2", nn.Linear(84, 10)),
    )


def cnn_32_64() -> nn.Sequential:
    return _seq(
        ("normalize", Normalize()),
        ("conv1", Conv2d(1, 32, 5)), ("act1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),   # 24 -> 12
        ("conv2", Conv2d(32, 64, 5)), ("act2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),  # 8 -> 4
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(1024, 500)), ("act3", nn.ReLU()), ("dropout", nn.Dropout(0.4)),
        ("fc2", nn.Linear(500, 10)),
    )


def net_320() -> nn.Sequential:
    return _seq(
        ("normalize", Normalize()),
        ("conv1", Conv2d(1, 10, 5)), ("pool1", nn.MaxPool2d(2)), ("act1", nn.ReLU()),
        ("conv2", Conv2d(10, 20, 5)), ("pool2", nn.MaxPool2d(2)), ("act2", nn.ReLU()),
        ("flatten", nn.Flatten()),  # 20 x 4 x 4 = 320
        ("fc1", nn.Linear(320, 50)), ("act3", nn.ReLU()),
        ("fc2", nn.Linear(50, 10)),
    )


def single_conv() -> nn.Sequential:
    return _seq(
        ("normalize", Normalize()),
        ("conv1", Conv2d(1, 10, 8, stride=2)), ("act1", nn.ReLU()),  # 11 x 11 x 10
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(1210, 10)),
    )


def _bn_block(i, cin, cout, k):
    return [(f"conv{i}", Conv2d(cin, cout, k, padding=k // 2, bias=False)),
            (f"bn{i}", nn.BatchNorm2d(cout)), (f"act{i}", nn.ReLU()), (f"pool{i}", nn.MaxPool2d(2))]


def fast() -> nn.Sequential:
    """The default: a small BatchNorm CNN (8/16/32 filters, ~9k parameters) that passes 99% test
    accuracy in two CPU epochs (bench/time_to_99.py). Wider variants were slower to 99% on 2 cores."""
    return _seq(
        ("normalize", Normalize()),
        *_bn_block(1, 1, 8, 5),     # 28 -> 14
        *_bn_block(2, 8, 16, 3),    # 14 -> 7
        *_bn_block(3, 16, 32, 3),   # 7 -> 3
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(32 * 3 * 3, 10)),
    )


def wide() -> nn.Sequential:
    """fast with twice the filters (16/32/64): about 4x the compute, for the best accuracy."""
    return _seq(
        ("normalize", Normalize()),
        *_bn_block(1, 1, 16, 5),
        *_bn_block(2, 16, 32, 3),
        *_bn_block(3, 32, 64, 3),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(64 * 3 * 3, 10)),
    )


MODELS = {
    "fast": fast,
    "wide": wide,
    "lenet5": lenet5,
    "lenet5-relu": lenet5_relu,
    "cnn-32-64": cnn_32_64,
    "net-320": net_320,
    "single-conv": single_conv,
}

DESCRIPTIONS = {
    "fast": "BatchNorm CNN 8/16/32 filters, the quick default",
    "wide": "BatchNorm CNN 16/32/64 filters, for the best accuracy",
    "lenet5": "LeNet-5: tanh, average pooling, 32x32 input",
    "lenet5-relu": "LeNet-5 layers with ReLU and max-pooling",
    "cnn-32-64": "conv 32 + conv 64, fc 500, dropout 0.4",
    "net-320": "conv 10 + conv 20, 320-wide flatten, fc 50",
    "single-conv": "one 8x8 conv (stride 2) + dense",
}


def build(name: str) -> nn.Sequential:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name]()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_children() if isinstance(m, nn.Conv2d)]


def summary(model: nn.Module, input_size=(1, 1, 28, 28)) -> list[dict]:
    """One row per stage: name, type, output shape, parameters (torchinfo-style; plain Sequential walk)."""
    rows = []
    x = torch.zeros(input_size)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for name, stage in model.named_children():
            x = stage(x)
            rows.append({"layer": name, "type": type(stage).__name__,
                         "output shape": "x".join(str(d) for d in x.shape[1:]),
                         "parameters": sum(p.numel() for p in stage.parameters())})
    model.train(was_training)
    return rows
