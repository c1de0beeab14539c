"""Adversarial digits: the smallest L-inf step that changes a model's prediction of an image, and a run's accuracy
against the size of that step (CPU inference; no Streamlit).

FGSM (Goodfellow et al. 2015, "Explaining and Harnessing Adversarial Examples") moves every pixel by epsilon in the
direction that raises the loss (the sign of its gradient). PGD (Madry et al. 2018) takes several smaller such steps,
each projected back into the L-inf ball of radius epsilon around the image and into [0, 1].

Epsilon is in grey levels, 0-255: MNIST's own pixel unit (its images are bytes). The models see pixels in [0, 1], so
a step of k levels is k / 255 there, and an FGSM image at a whole number of levels is again a whole-byte image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .runs import load_model

LEVELS = 255
METHODS = ("fgsm", "pgd")
PGD_STEPS = 20
CURVE_EPS = (0, 4, 8, 16, 24, 32, 48, 64, 80)  # grey levels: up to 0.31 of the range, past MNIST's usual 0.3
CURVE_IMAGES = 2000


def _as_input(x) -> torch.Tensor:
    """uint8 28 x 28 or N x 28 x 28, or floats N x 1 x 28 x 28 in [0, 1] -> floats N x 1 x 28 x 28 in [0, 1]."""
    x = torch.as_tensor(x)
    if x.dtype == torch.uint8:
        x = x.float().div(LEVELS)
    x = x[None] if x.ndim == 2 else x
    return (x.unsqueeze(1) if x.ndim == 3 else x).float()


def gradient_sign(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The sign of the cross-entropy's gradient with respect to the pixels (autograd.grad: the model's own parameter
    gradients are left alone, so a model shared between threads is not touched)."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), labels, reduction="sum")
        (g,) = torch.autograd.grad(loss, x)
    return g.sign()


def fgsm(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, eps_levels: float) -> torch.Tensor:
    """x moved by eps_levels / 255 along the sign of the loss's gradient, clipped to [0, 1]."""
    return (x + eps_levels / LEVELS * gradient_sign(model, x, labels)).clamp(0, 1)


def pgd(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, eps_levels: float,
        steps: int = PGD_STEPS) -> torch.Tensor:
    """Projected gradient descent within eps_levels / 255 of x (L-inf), from x itself (no random start, so the same
    image gives the same answer), step 2.5 eps / steps (Madry et al.). An image keeps the first step at which its
    prediction left its label: the question asked is whether any step of size eps flips it."""
    eps = eps_levels / LEVELS
    alpha = 2.5 * eps / steps
    adv, done = x.clone(), torch.zeros(len(x), dtype=torch.bool)
    for _ in range(steps):
        step = (adv + alpha * gradient_sign(model, adv, labels)).clamp(x - eps, x + eps).clamp(0, 1)
        adv = torch.where(done[:, None, None, None], adv, step)
        with torch.no_grad():
            done |= model(adv).argmax(1) != labels
        if done.all():
            break
    return adv


def _predict(model, x) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(x).float(), 1)


@dataclass
class Flip:
    """The smallest step found: `eps` in grey levels (None: no step up to 255 flips it), the image before and after
    (1 x 1 x 28 x 28), the probabilities before and after (10), the predicted digit before and after, the method."""
    eps: int | None
    image: torch.Tensor
    adversarial: torch.Tensor
    probs: np.ndarray
    adv_probs: np.ndarray
    pred: int
    adv_pred: int
    method: str

    @property
    def difference(self) -> np.ndarray:
        """28 x 28: the change made to each pixel, in grey levels (-eps..eps)."""
        return ((self.adversarial - self.image)[0, 0] * LEVELS).numpy()


def smallest_flip(model: torch.nn.Module, image, method: str = "fgsm", steps: int = PGD_STEPS) -> Flip:
    """The smallest whole number of grey levels eps whose FGSM or PGD step changes the model's prediction of `image`
    (away from what it predicts now, right or wrong). FGSM: every eps from 1 to 255 at once, from the one gradient,
    so the eps found is the smallest there is. PGD: bisection over 0..255 (each probe is a PGD attack), so eps flips
    and eps - 1 does not."""
    if method not in METHODS:
        raise ValueError(f"unknown attack {method!r}; choose one of {', '.join(METHODS)}")
    model.eval()
    x = _as_input(image)[:1]
    probs = _predict(model, x)[0]
    pred = int(probs.argmax())
    label = torch.tensor([pred])
    if method == "fgsm":
        levels = torch.arange(1, LEVELS + 1, dtype=torch.float32)
        candidates = (x + levels[:, None, None, None] / LEVELS * gradient_sign(model, x, label)).clamp(0, 1)
        flipped = torch.nonzero(_predict(model, candidates).argmax(1) != pred).flatten()
        eps = int(levels[flipped[0]]) if len(flipped) else None
        adv = candidates[flipped[0]:flipped[0] + 1] if len(flipped) else candidates[-1:]
    else:
        eps, adv = _bisect(model, x, label, steps)
    adv_probs = _predict(model, adv)[0]
    return Flip(eps, x, adv, probs.numpy(), adv_probs.numpy(), pred, int(adv_probs.argmax()), method)


def _bisect(model, x, label, steps) -> tuple[int | None, torch.Tensor]:
    """(the smallest eps found by bisection over whole grey levels at which PGD flips, its image); (None, the image
    at 255) when even 255 does not flip it. Invariant: lo does not flip, hi does."""
    def attack(eps):
        adv = pgd(model, x, label, eps, steps)
        return adv, bool(_predict(model, adv).argmax(1)[0] != label[0])

    best, flips = attack(LEVELS)
    if not flips:
        return None, best
    lo, hi = 0, LEVELS
    while hi - lo > 1:
        mid = (lo + hi) // 2
        adv, flips = attack(mid)
        if flips:
            hi, best = mid, adv
        else:
            lo = mid
    return hi, best


def accuracy_curve(models: dict[str, torch.nn.Module], images, labels, eps_levels=CURVE_EPS, method: str = "fgsm",
                   steps: int = 10, batch: int = 500) -> pd.DataFrame:
    """Accuracy of each model on `images` attacked at each eps (grey levels) against the true labels. Tidy:
    run, epsilon, accuracy (fraction). Each model is attacked through its own gradients."""
    x, y = _as_input(images), torch.as_tensor(labels, dtype=torch.int64)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"an accuracy curve needs images and as many labels (got {len(x)} and {len(y)})")
    rows = []
    for name, model in models.items():
        model.eval()
        right = np.zeros(len(eps_levels))
        for i in range(0, len(x), batch):
            xb, yb = x[i:i + batch], y[i:i + batch]
            sign = gradient_sign(model, xb, yb) if method == "fgsm" else None
            for k, eps in enumerate(eps_levels):
                adv = (xb + eps / LEVELS * sign).clamp(0, 1) if sign is not None else pgd(model, xb, yb, eps, steps)
                right[k] += (_predict(model, adv).argmax(1) == yb).sum().item()
        rows += [(name, int(eps), right[k] / len(x)) for k, eps in enumerate(eps_levels)]
    return pd.DataFrame(rows, columns=["run", "epsilon", "accuracy"])


def run_accuracy_curve(run_dirs: list[str | Path], images, labels, n: int = CURVE_IMAGES,
                       eps_levels=CURVE_EPS) -> pd.DataFrame:
    """accuracy_curve (FGSM) for runs' best checkpoints on the first `n` images. RunError for a run whose
    checkpoint cannot be loaded."""
    models = {Path(d).name: load_model(d) for d in run_dirs}
    return accuracy_curve(models, images[:n], labels[:n], eps_levels)
