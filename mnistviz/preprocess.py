"""A drawing -> the 28 x 28 image a model expects, prepared the way MNIST itself was prepared.

LeCun, Cortes & Burges describe MNIST as: the NIST digits were size-normalized to fit in a 20 x 20
box preserving their aspect ratio (anti-aliased, hence grey levels), then centred in a 28 x 28 field
by their centre of mass. Shrinking a whole canvas to 28 x 28 instead makes a digit drawn small or off
centre a different image from anything in the training set; doing what MNIST did makes a digit drawn
small in a corner and the same digit drawn large in the middle give nearly the same 28 x 28 image.

Ink: a pixel's ink is its brightest colour channel, times its alpha when there is one (in [0, 1]).
That reads the drawing canvas either way it can come back: white strokes on an opaque black
background, or white strokes on a transparent background (whose invisible pixels count as no ink,
whatever colour they hold). An opaque picture whose border is mostly light (dark ink on white paper)
is inverted first, so the digit is always white on black, like MNIST.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SIZE = 28          # the model's input is SIZE x SIZE
BOX = 20           # the digit's longer side after size normalization (MNIST's 20 x 20 box)
INK_MIN = 0.1      # a pixel with less ink than this (of 1.0) is background when cropping
UNSURE_BELOW = 0.6  # the page says the model is unsure when its top probability is below this


def ink(image: np.ndarray) -> np.ndarray:
    """H x W float32 ink in [0, 1] (white on black) from a grayscale (H x W or H x W x 1), RGB or
    RGBA image, uint8 (0-255) or float (0-1). See the module docstring for how ink is decided."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape:
        raise ValueError(f"expected a grayscale, RGB or RGBA image (H x W, H x W x 3 or H x W x 4), "
                         f"got shape {a.shape}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif not np.issubdtype(a.dtype, np.integer):
        a = (np.clip(np.nan_to_num(a.astype(np.float32)), 0, 1) * 255 + 0.5).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    # work in uint8 and per channel (np.maximum of slices): a float copy of a 4-channel canvas costs ~10 ms
    if a.ndim == 2:
        value, alpha = a, None
    else:
        value = np.maximum(np.maximum(a[:, :, 0], a[:, :, 1]), a[:, :, 2])
        alpha = a[:, :, 3] if a.shape[2] == 4 else None
    if alpha is None or alpha.min() == 255:
        # opaque: decide the polarity from the border (a light border = dark ink on a light background)
        border = np.concatenate([value[0], value[-1], value[:, 0], value[:, -1]])
        if np.median(border) > 127:
            value = 255 - value
    else:
        value = (value.astype(np.uint16) * alpha + 127) // 255
    return value.astype(np.float32) / 255.0


def canvas_to_mnist(image: np.ndarray) -> np.ndarray | None:
    """CONTRACT: a drawing (grayscale, RGB or RGBA uint8, any size) -> 28 x 28 float32 in [0, 1], white
    digit on black, prepared as MNIST was: crop to the ink, scale the longer side to 20 px keeping the
    aspect ratio (anti-aliased), then place it so its centre of mass is at the centre of the 28 x 28
    field. Returns None when there is no ink (an empty canvas)."""
    v = ink(image)
    rows = np.flatnonzero((v >= INK_MIN).any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero((v >= INK_MIN).any(axis=0))
    crop = v[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    # antialias=True: a proper low-pass when shrinking (a 250 px stroke becomes a soft 1-2 px line, as in MNIST)
    small = F.interpolate(torch.from_numpy(crop)[None, None], size=(nh, nw), mode="bilinear",
                          align_corners=False, antialias=True)[0, 0].clamp_(0, 1).numpy()
    total = small.sum()
    if total <= 0:
        return None
    # centre of mass in the small image's pixel indices; MNIST's sits at pixel index 14 (mean 13.99 on the
    # test set). Integer shifts as in MNIST; clamped so no ink leaves the 28 x 28 field (only matters for
    # very lopsided shapes, whose centre of mass is then slightly off centre).
    cy = float((small.sum(axis=1) * np.arange(nh)).sum() / total)
    cx = float((small.sum(axis=0) * np.arange(nw)).sum() / total)
    top = int(np.clip(round(SIZE // 2 - cy), 0, SIZE - nh))
    left = int(np.clip(round(SIZE // 2 - cx), 0, SIZE - nw))
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top:top + nh, left:left + nw] = small
    return out


@torch.inference_mode()
def classify(model: torch.nn.Module, image28: np.ndarray) -> np.ndarray:
    """Class probabilities (float32, length 10) for one 28 x 28 image in [0, 1] (eval mode)."""
    was_training = model.training
    model.eval()
    try:
        x = torch.as_tensor(np.asarray(image28, dtype=np.float32)).reshape(1, 1, SIZE, SIZE)
        return torch.softmax(model(x).float(), dim=1)[0].numpy()
    finally:
        model.train(was_training)


def is_unsure(probs: np.ndarray, threshold: float = UNSURE_BELOW) -> bool:
    """True when the model's top probability is below threshold (say so rather than show a confident digit)."""
    return float(np.max(probs)) < threshold
