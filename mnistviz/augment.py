"""Batched, per-sample augmentation on tensors (no per-image loop, no PIL), after airbench.

One affine grid per sample (rotation, translation, scale, shear) plus an optional smooth random
displacement (elastic), sampled in a single grid_sample call; then stroke thickness (dilate/erode
with 3x3 max-pooling) and random erasing, each chosen per sample with torch.where.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Strength:
    rotate: float = 0.0      # max degrees either way
    translate: float = 0.0   # max fraction of the image either way
    scale: float = 0.0       # max relative zoom either way
    shear: float = 0.0       # max degrees either way
    elastic: float = 0.0     # displacement amplitude in pixels
    thickness: float = 0.0   # probability of dilating or eroding the strokes
    erase: float = 0.0       # probability of erasing a random rectangle


LEVELS = {
    "none": Strength(),
    "light": Strength(rotate=8, translate=0.08, scale=0.08, shear=5),
    "standard": Strength(rotate=12, translate=0.1, scale=0.12, shear=8, elastic=1.0, thickness=0.2),
    "strong": Strength(rotate=18, translate=0.14, scale=0.18, shear=12, elastic=1.8, thickness=0.4, erase=0.3),
}


def _uniform(n, bound, g, device):
    return (torch.rand(n, generator=g, device=device) * 2 - 1) * bound


# both cached per device: made on the CPU once, copied to a GPU once (not at every batch)
@functools.lru_cache(maxsize=16)
def _bicubic_matrix(size: int, coarse: int = 4, device: torch.device | None = None) -> torch.Tensor:
    """size x coarse: F.interpolate's bicubic upsampling (align_corners=False) along one axis, as a matrix.
    It is linear and separable, so K_h @ c @ K_w.T equals interpolating c, at a twentieth of the cost."""
    if device is not None and device.type != "cpu":
        return _bicubic_matrix(size, coarse).to(device)
    eye = torch.eye(coarse).view(coarse, 1, coarse, 1)
    return F.interpolate(eye, size=(size, 1), mode="bicubic", align_corners=False).view(coarse, size).t().contiguous()


@functools.lru_cache(maxsize=16)
def _base_grid(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """(h*w) x 3 pixel centres in grid units, with a column of ones: F.affine_grid's base (align_corners=False)."""
    if device is not None and device.type != "cpu":
        return _base_grid(h, w).to(device)
    ys = (torch.arange(h, dtype=torch.float32) * 2 + 1) / h - 1
    xs = (torch.arange(w, dtype=torch.float32) * 2 + 1) / w - 1
    return torch.stack([xs.repeat(h), ys.repeat_interleave(w), torch.ones(h * w)], 1)


def augment(x: torch.Tensor, level: str | Strength, generator: torch.Generator | None = None) -> torch.Tensor:
    """x: N x 1 x H x W floats in [0, 1]. Returns a new tensor, each sample transformed differently."""
    s = LEVELS[level] if isinstance(level, str) else level
    if s == LEVELS["none"]:
        return x
    n, _, h, w = x.shape
    dev, g = x.device, generator
    rot = torch.deg2rad(_uniform(n, s.rotate, g, dev))
    shear = torch.deg2rad(_uniform(n, s.shear, g, dev))
    zoom = 1 + _uniform(n, s.scale, g, dev)
    tx, ty = _uniform(n, 2 * s.translate, g, dev), _uniform(n, 2 * s.translate, g, dev)  # grid units: 2 = full width
    cos, sin = torch.cos(rot), torch.sin(rot)
    # output->input sampling matrix: inverse zoom of (rotation @ shear-x)
    a = torch.stack([
        torch.stack([cos, -sin + cos * torch.tan(shear), tx], 1),
        torch.stack([sin, cos + sin * torch.tan(shear), ty], 1),
    ], 1) / zoom.view(n, 1, 1)
    a[:, :, 2] = torch.stack([tx, ty], 1)
    # F.affine_grid(a, (n, 1, h, w), align_corners=False), without rebuilding its base grid every call
    grid = torch.matmul(_base_grid(h, w, dev), a.transpose(1, 2)).view(n, h, w, 2)
    if s.elastic > 0:
        # smooth random field: coarse noise upsampled bicubically, amplitude in pixels -> grid units
        coarse = torch.randn(n, 2, 4, 4, generator=g, device=dev)
        field = _bicubic_matrix(h, 4, dev) @ coarse @ _bicubic_matrix(w, 4, dev).t()
        grid = grid + field.permute(0, 2, 3, 1) * (s.elastic * 2 / max(h, w))
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if s.thickness > 0:
        pick = torch.rand(n, generator=g, device=dev)
        out = _thickness(out, pick < s.thickness / 2, (pick >= s.thickness / 2) & (pick < s.thickness))
    if s.erase > 0:
        eh = (torch.rand(n, generator=g, device=dev) * 0.3 + 0.15) * h
        ew = (torch.rand(n, generator=g, device=dev) * 0.3 + 0.15) * w
        cy = torch.rand(n, generator=g, device=dev) * h
        cx = torch.rand(n, generator=g, device=dev) * w
        on = torch.rand(n, generator=g, device=dev) < s.erase
        ys = torch.arange(h, device=dev).view(1, h, 1)
        xs = torch.arange(w, device=dev).view(1, 1, w)
        box = ((ys - cy.view(n, 1, 1)).abs() < eh.view(n, 1, 1) / 2) & ((xs - cx.view(n, 1, 1)).abs() < ew.view(n, 1, 1) / 2)
        out = out.masked_fill((box & on.view(n, 1, 1)).unsqueeze(1), 0.0)
    return out.clamp_(0, 1)


def _thickness(out: torch.Tensor, dilate: torch.Tensor, erode: torch.Tensor, sync_free: bool | None = None):
    """Dilate the strokes of the samples where `dilate`, erode those where `erode` (3x3 max-pooling). The same
    result either way; `sync_free` (default: off the CPU) never reads the masks back to the host."""
    if sync_free is None:
        sync_free = out.device.type != "cpu"
    if sync_free:
        # on a GPU, nonzero() would wait for the GPU at every batch; pooling all of it and picking does not
        out = torch.where(dilate.view(-1, 1, 1, 1), F.max_pool2d(out, 3, 1, 1), out)
        return torch.where(erode.view(-1, 1, 1, 1), -F.max_pool2d(-out, 3, 1, 1), out)
    # only the picked samples are pooled (a fifth of them at "standard"), the others stay as they are
    dilate, erode = dilate.nonzero().squeeze(1), erode.nonzero().squeeze(1)
    if len(dilate):
        out.index_copy_(0, dilate, F.max_pool2d(out.index_select(0, dilate), 3, 1, 1))
    if len(erode):
        out.index_copy_(0, erode, -F.max_pool2d(-out.index_select(0, erode), 3, 1, 1))
    return out


def preview(images: torch.Tensor, n: int = 16, level: str = "standard", seed: int = 0):
    """Pick n images (uint8 N x 28 x 28) at random; return (originals, augmented) as N x 1 x 28 x 28 floats."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=g)[:n]
    orig = images[idx].unsqueeze(1).float().div(255)
    return orig, augment(orig, level, g)


def describe(level: str | Strength) -> str:
    """What a level does, in words (the Data page says it beside the samples): "rotation up to ±12°, ..."."""
    s = LEVELS[level] if isinstance(level, str) else level
    parts = [
        s.rotate and f"rotation up to ±{s.rotate:g}°",
        s.translate and f"shift up to ±{s.translate:.0%} (±{s.translate * 28:.1f} px)",
        s.scale and f"zoom up to ±{s.scale:.0%}",
        s.shear and f"shear up to ±{s.shear:g}°",
        s.elastic and f"elastic distortion of about {s.elastic:g} px",
        s.thickness and f"strokes thickened or thinned in {s.thickness:.0%} of images",
        s.erase and f"a random rectangle erased in {s.erase:.0%} of images",
    ]
    parts = [p for p in parts if p]
    return ", ".join(parts) if parts else "no change"


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"unknown augmentation {level!r}; choose one of {', '.join(LEVELS)}")
    return level

