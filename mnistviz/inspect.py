"""Look inside a model: stage-by-stage outputs, conv filters, attributions (torch + captum; no Streamlit).

Every model in models.MODELS is an nn.Sequential of named stages, so walking its children gives the output
of every stage (normalize, conv1, bn1, act1, pool1, ..., flatten, fc...) in one forward pass, without FX
tracing (torchvision's feature_extraction would trace the same graph to return the same tensors).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

METHODS = ("saliency", "integrated_gradients")
# stages whose output is an image stack worth showing as feature maps
MAP_TYPES = ("Conv2d", "BatchNorm2d", "ReLU", "Tanh", "Sigmoid", "LeakyReLU", "GELU", "MaxPool2d", "AvgPool2d")


def as_input(image) -> torch.Tensor:
    """One image as a 1 x 1 x 28 x 28 float tensor in [0, 1]: accepts uint8 (0-255) or float, shaped
    28x28, 1x28x28 or 1x1x28x28, as a tensor or numpy array."""
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    if x.dtype == torch.uint8:
        x = x.float() / 255
    x = x.float()
    while x.dim() < 4:
        x = x.unsqueeze(0)
    if tuple(x.shape) != (1, 1, 28, 28):
        raise ValueError(f"expected one 28 x 28 image, got shape {tuple(x.shape)}")
    return x


@contextmanager
def _eval(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if not isinstance(model, nn.Sequential):
        raise TypeError("inspect works on the nn.Sequential models of mnistviz.models")
    return list(model.named_children())


@torch.no_grad()
def stage_outputs(model: nn.Module, x) -> list[tuple[str, str, torch.Tensor]]:
    """[(stage name, module type name, output tensor)] after every named stage, for one input image
    (see as_input). Runs in eval mode (dropout off, batch norm on running statistics)."""
    out = []
    h = as_input(x)
    with _eval(model):
        for name, stage in stages(model):
            h = stage(h)
            out.append((name, type(stage).__name__, h.detach().clone()))
    return out


def feature_map_stages(outputs) -> list[tuple[str, str, torch.Tensor]]:
    """The stage outputs that are stacks of 2-D maps (conv, batch norm, activation, pooling)."""
    return [(n, t, o) for n, t, o in outputs if t in MAP_TYPES and o.dim() == 4]


def conv_filters(model: nn.Module) -> dict[str, torch.Tensor]:
    """{conv stage name: weights (out, in, k, k)} in model order, detached copies on the CPU."""
    return {name: m.weight.detach().cpu().clone() for name, m in stages(model) if isinstance(m, nn.Conv2d)}


def single_values(maps: torch.Tensor) -> bool:
    """True when every map of a stack (... x H x W) is one value (H = W = 1: e.g. LeNet-5's conv3, 120 x 1 x 1),
    where a map's own grey scale means nothing: such a stage reads better as one value per unit."""
    return maps.dim() >= 2 and maps.shape[-1] * maps.shape[-2] == 1


def image_grid(maps: torch.Tensor, nrow: int = 8, pad: int = 1, scale_each: bool = True) -> np.ndarray:
    """A stack of 2-D maps (C x H x W, or N x C x H x W with C == 1) as one grayscale H' x W' float array in
    [0, 1], via torchvision.utils.make_grid. scale_each stretches every map to its own min..max (a flat map
    is drawn mid-grey rather than divided by zero); otherwise the whole stack shares one scale. Maps of a
    single value (1 x 1) always share one scale: stretched to its own range, each would be the same flat grey."""
    from torchvision.utils import make_grid

    t = maps.detach().float().cpu()
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.dim() != 4 or t.shape[1] != 1:
        raise ValueError(f"expected C x H x W or N x 1 x H x W maps, got shape {tuple(t.shape)}")
    scale_each = scale_each and not single_values(t)
    lo = t.amin(dim=(1, 2, 3), keepdim=True) if scale_each else t.min()
    hi = t.amax(dim=(1, 2, 3), keepdim=True) if scale_each else t.max()
    span = hi - lo
    t = torch.where(span > 0, (t - lo) / torch.where(span > 0, span, torch.ones_like(span)), torch.full_like(t, 0.5))
    grid = make_grid(t, nrow=max(1, min(nrow, len(t))), padding=pad, pad_value=1.0)
    return grid[0].numpy()


def filter_grid(weights: torch.Tensor, max_inputs: int | None = None) -> np.ndarray:
    """Conv weights (out, in, k, k) as a grid: one row per output filter, one column per input channel
    (8 filters a row when there is one input channel), each kernel scaled to its own range. max_inputs keeps the first input channels only."""
    w = weights.detach().float().cpu()
    if max_inputs is not None:
        w = w[:, :max_inputs]
    out_c, in_c, k1, k2 = w.shape
    # a first layer (one input channel) reads better as rows of 8 filters than as one tall column
    return image_grid(w.reshape(out_c * in_c, 1, k1, k2), nrow=8 if in_c == 1 else in_c)


def attribution(model: nn.Module, x, target: int | None = None, method: str = "saliency",
                n_steps: int = 32) -> np.ndarray:
    """Attribution of the class `target` (default: the predicted class) over the 28 x 28 input pixels.

    saliency: |d logit / d pixel| (captum Saliency, >= 0).
    integrated_gradients: captum IntegratedGradients from an all-black baseline (signed; sums to the
    logit difference between the image and the black image)."""
    from captum.attr import IntegratedGradients, Saliency

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    inp = as_input(x).clone().requires_grad_(True)
    with _eval(model):
        if target is None:
            with torch.no_grad():
                target = int(model(inp).argmax(1))
        if not 0 <= int(target) < 10:
            raise ValueError(f"target must be a digit 0-9, got {target}")
        if method == "saliency":
            attr = Saliency(model).attribute(inp, target=int(target))
        else:
            attr = IntegratedGradients(model).attribute(inp, baselines=torch.zeros_like(inp),
                                                        target=int(target), n_steps=n_steps)
    return attr.detach()[0, 0].numpy().astype(np.float32)


@torch.no_grad()
def class_scores(model: nn.Module, x) -> tuple[np.ndarray, np.ndarray]:
    """(final layer outputs = logits, softmax probabilities), each float32 of length 10."""
    with _eval(model):
        logits = model(as_input(x))[0].float()
    return logits.numpy(), torch.softmax(logits, 0).numpy()


def enlarge(img, px: int = 224) -> np.ndarray:
    """A small grayscale image (H x W, uint8 or float) scaled up by a whole factor so its longer side is
    about px, pixel-exact (a browser would blur a 28 x 28 image stretched by CSS). Floats are clipped to
    [0, 1]; returns uint8."""
    a = np.asarray(img)
    a = a.astype(np.uint8) if a.dtype == np.uint8 else (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    f = max(1, px // max(a.shape))
    return a.repeat(f, axis=0).repeat(f, axis=1)
