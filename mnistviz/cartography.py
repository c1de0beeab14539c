"""Training-set cartography (Swayamdipta et al., 2020): per epoch, each training image's probability of its label as
its training step saw it (the augmented image, when the run augments), so that confidence (the mean over epochs)
and variability (the standard deviation) can be plotted for every training image; low confidence with low
variability is the "hard to learn" corner, where wrong labels gather.

The trainer calls `record` after each step and `save` at each epoch's end. A step costs one copy of its logits into
a buffer; the softmax runs once per epoch, over the whole buffer. Stored in the run folder as
``train_probs/epoch_NNN.npy``: float16, one value per training image in the trainer's order (the training set after
the validation split and --limit-train; `data.split_validation` with the run's val_size and seed gives the images),
NaN for an image the epoch did not see (the steps before a stop, when a run resumes mid-epoch).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from .runs import Run, atomic_save, load_npy

TRAIN_DIR = "train_probs"
_enabled = True  # off only to measure what recording costs (bench/cartography_speed.py)


def set_enabled(on: bool) -> None:
    global _enabled
    _enabled = bool(on)


class Recorder:
    """The current epoch's logits of every training image, by its position in the training set."""

    def __init__(self, n: int, device):
        self.logits = torch.full((n, 10), float("nan"), device=device)

    def record(self, idx: torch.Tensor, logits: torch.Tensor) -> None:
        self.logits.index_copy_(0, idx.to(self.logits.device), logits.detach().float())

    def label_probs(self, labels: torch.Tensor) -> np.ndarray:
        """float16 N: each image's probability of its label (NaN where no step recorded it); then a fresh epoch."""
        p = torch.softmax(self.logits, 1).gather(1, labels.to(self.logits.device).view(-1, 1)).view(-1)
        self.logits.fill_(float("nan"))
        return p.cpu().numpy().astype(np.float16)


def record(t, idx: torch.Tensor, logits: torch.Tensor) -> None:
    """After a training step of the trainer's `t` (train._Training) on the training images at `idx`."""
    if _enabled:
        if t.cartography is None:
            t.cartography = Recorder(len(t.x_tr), logits.device)
        t.cartography.record(idx, logits)


def save(t, epoch: int) -> None:
    """At the end of `epoch` (1-based): the epoch's label probabilities to the run folder."""
    if _enabled and t.cartography is not None:
        save_probs(t.run, epoch, t.cartography.label_probs(t.y_tr))


def save_probs(run: Run, epoch: int, probs: np.ndarray) -> None:
    folder = run.path / TRAIN_DIR
    folder.mkdir(exist_ok=True)
    atomic_save(lambda f: np.save(f, probs.astype(np.float16)), folder / f"epoch_{epoch:03d}.npy")


def load(run: Run) -> tuple[list[int], np.ndarray]:
    """(epochs, E x N float32 label probabilities) stored by the run; ([], empty) when none."""
    folder = run.path / TRAIN_DIR
    epochs = sorted(int(p.stem.split("_")[1]) for p in folder.glob("epoch_*.npy")) if folder.is_dir() else []
    if not epochs:
        return [], np.zeros((0, 0), np.float32)
    return epochs, np.stack([load_npy(folder / f"epoch_{e:03d}.npy") for e in epochs]).astype(np.float32)


def confidence_variability(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, variability) per training image: the mean and the standard deviation over the epochs of its
    label's probability, ignoring epochs that did not see it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an image no epoch saw: NaN (numpy warns of an empty mean)
        return np.nanmean(probs, 0), np.nanstd(probs, 0)
