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

from .data import validation_indices
from .runs import Run, RunError, atomic_save, load_npy

TRAIN_DIR = "train_probs"
LEARNED = 0.5  # a label's probability above this is the model's prediction: "correctness" counts such epochs
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
    """(epochs, E x N float32 label probabilities) stored by the run; ([], empty) when none. RunError when a file
    cannot be read or the epochs hold different numbers of images."""
    folder = run.path / TRAIN_DIR
    names = folder.glob("epoch_*.npy") if folder.is_dir() else []
    epochs = sorted(int(p.stem[6:]) for p in names if p.stem[6:].isdigit())
    if not epochs:
        return [], np.zeros((0, 0), np.float32)
    try:
        arrays = [load_npy(folder / f"epoch_{e:03d}.npy") for e in epochs]
    except (OSError, ValueError) as e:
        raise RunError(f"run {run.name}: a file in {TRAIN_DIR}/ cannot be read ({e}); retrain the run to map its "
                       f"training set") from None
    if arrays[0].ndim != 1 or any(a.shape != arrays[0].shape for a in arrays):
        raise RunError(f"run {run.name}: the files in {TRAIN_DIR}/ do not hold one value per training image each; "
                       f"retrain the run to map its training set")
    return epochs, np.stack(arrays).astype(np.float32)


def confidence_variability(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, variability) per training image: the mean and the standard deviation over the epochs of its
    label's probability, ignoring epochs that did not see it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an image no epoch saw: NaN (numpy warns of an empty mean)
        return np.nanmean(probs, 0), np.nanstd(probs, 0)


def stamp(run: Run) -> tuple:
    """The recorded epochs' files with their modification times: with the run's path, a cache key."""
    folder = run.path / TRAIN_DIR
    try:
        return tuple((p.name, p.stat().st_mtime_ns) for p in sorted(folder.glob("epoch_*.npy")))
    except OSError:
        return ()


def summary(probs: np.ndarray) -> dict[str, np.ndarray]:
    """Per training image, from E x N recorded probabilities (NaN where an epoch did not see it): "confidence" and
    "variability" (confidence_variability), "correctness" (the share of the epochs that saw it in which its label's
    probability was above LEARNED, so surely the model's prediction) and "seen" (how many epochs saw it)."""
    probs = np.asarray(probs, np.float32)
    seen = (~np.isnan(probs)).sum(0)
    confidence, variability = confidence_variability(probs)
    with np.errstate(invalid="ignore", divide="ignore"):
        correctness = (probs > LEARNED).sum(0) / seen  # NaN > LEARNED is False; NaN for an image no epoch saw
    return {"confidence": confidence, "variability": variability, "correctness": correctness.astype(np.float32),
            "seen": seen}


def hard_to_learn(confidence, variability, top: int, below: float = LEARNED) -> np.ndarray:
    """The positions of the `top` training images nearest the corner of low confidence and low variability, nearest
    first (by confidence + variability; ties by position): the model gave their label a low probability epoch after
    epoch, where wrong labels gather. Only images with confidence under `below`; none that no epoch saw."""
    confidence, variability = np.asarray(confidence, np.float64), np.asarray(variability, np.float64)
    score = confidence + variability
    keep = np.flatnonzero(confidence < below)  # an image no epoch saw has confidence NaN, which compares False
    return keep[np.argsort(score[keep], kind="stable")][:max(int(top), 0)]


def train_indices(cfg: dict, n: int) -> np.ndarray:
    """The MNIST training-set index of each position of the run's recorded probabilities, for a training set of n
    images: the trainer trains on what data.split_validation keeps (the run's val_size and seed), cut to its
    limit_train. RunError when the run's config cannot say."""
    size, seed, limit = (cfg.get(k, d) for k, d in (("val_size", 5000), ("seed", 0), ("limit_train", 0)))
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (size, seed, limit)):
        raise RunError(f"run {cfg.get('name')}: config.json's val_size, seed and limit_train must be whole numbers "
                       f"(they are {size!r}, {seed!r}, {limit!r})")
    try:
        train, _ = validation_indices(n, size, seed)
    except ValueError as e:
        raise RunError(f"run {cfg.get('name')}: {e}") from None
    return (train[:limit] if limit else train).numpy()


def predicted(model: torch.nn.Module, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(the digit the model predicts, its probability) for each image (uint8 N x 28 x 28), on the model's device."""
    from .evaluate import predict_logits

    with torch.no_grad():
        p = torch.softmax(predict_logits(model, images), 1)
    best = p.max(1)
    return best.indices.cpu().numpy(), best.values.cpu().numpy()


COLOURS = ("correctness", "digit")


def figure(summ: dict, indices, labels, pictures, colour_by: str = "correctness", height: int = 560):
    """The cartography as a WebGL scatter (Scattergl: quick at 55,000 points): variability across, confidence up,
    one point per training image of `summ` (summary(), here for the images shown), coloured by correctness (a
    colour scale) or by digit (one trace each: the legend hides and shows them). `indices` are the images' MNIST
    training indices (customdata), `labels` their labels; the hover label shows the digit in braille dots
    (`pictures`, from embeddings.braille), as on the Embeddings page."""
    import plotly.graph_objects as go

    from .embeddings import DIGIT_COLOURS, HOVER_LABEL

    conf, var, corr = (np.asarray(summ[k]) for k in ("confidence", "variability", "correctness"))
    indices, labels = np.asarray(indices), np.asarray(labels)
    hover = np.array([f"#{i} · label {y} · confidence {c:.2f} · variability {v:.2f} · correctness {r:.0%}<br>{pic}"
                      for i, y, c, v, r, pic in zip(indices, labels, conf, var, corr, pictures)], dtype=object)
    common = dict(mode="markers", hovertemplate="%{text}<extra></extra>")
    fig = go.Figure()
    if colour_by == "digit":
        for d in range(10):
            m = labels == d
            fig.add_trace(go.Scattergl(x=var[m], y=conf[m], name=str(d), customdata=indices[m], text=hover[m],
                                       marker=dict(color=DIGIT_COLOURS[d], size=4, opacity=0.7), **common))
    else:
        fig.add_trace(go.Scattergl(x=var, y=conf, name="training images", customdata=indices, text=hover,
                                   marker=dict(color=corr, cmin=0, cmax=1, colorscale="Viridis", size=4, opacity=0.7,
                                               colorbar=dict(title="correctness", tickformat=".0%")), **common))
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=30, b=0), hoverlabel=HOVER_LABEL,
                      legend=dict(title="label", itemsizing="constant"),
                      xaxis=dict(title="variability (std of p(label) over epochs)", rangemode="tozero"),
                      yaxis=dict(title="confidence (mean p(label))", range=[-0.02, 1.02]))
    return fig
