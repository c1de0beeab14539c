"""What a run got wrong, from its stored test predictions (numpy/pandas; no Streamlit, no model).

Names follow fastai's ClassificationInterpretation: `most_confused`, `top_losses`, `confusion_matrix`.
Inputs are `labels` (int N) and `probs` (float N x 10) as stored by the run store, or `preds` (int N).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .runs import Run, RunError

N_CLASSES = 10
SHOW = ("wrong", "correct", "all")


def predictions(probs) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class int64 N, confidence = probability of that class float32 N)."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[1] != N_CLASSES:
        raise ValueError(f"probs must be N x {N_CLASSES}, got shape {probs.shape}")
    pred = probs.argmax(1).astype(np.int64)
    return pred, probs[np.arange(len(probs)), pred]


def _check(labels, preds) -> tuple[np.ndarray, np.ndarray]:
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    if labels.shape != preds.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and predictions {preds.shape} must be 1-D of the same length")
    for name, a in (("labels", labels), ("predictions", preds)):
        if a.size and (a.min() < 0 or a.max() >= N_CLASSES):
            raise ValueError(f"{name} must be digits 0-9")
    return labels, preds


def confusion_matrix(labels, preds, normalize: bool = False) -> np.ndarray:
    """10 x 10: rows = true digit, columns = predicted digit. Counts (int64), or with normalize each row
    divided by its total (float; a digit with no test images keeps a row of zeros)."""
    labels, preds = _check(labels, preds)
    cm = np.bincount(labels * N_CLASSES + preds, minlength=N_CLASSES ** 2).reshape(N_CLASSES, N_CLASSES)
    if not normalize:
        return cm
    rows = cm.sum(1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)


def per_class_metrics(labels, preds) -> pd.DataFrame:
    """One row per digit: count (test images of that digit), wrong, accuracy, precision, recall, f1.

    A digit's accuracy is the share of its images classified correctly, which is the same number as its
    recall (torchmetrics' per-class accuracy is defined the same way); precision is the share of
    predictions of that digit that were right. Undefined ratios (no images / never predicted) are NaN.
    """
    cm = confusion_matrix(labels, preds)
    tp = np.diag(cm).astype(np.float64)
    count, predicted = cm.sum(1), cm.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(count > 0, tp / count, np.nan)
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        f1 = 2 * precision * recall / (precision + recall)
    df = pd.DataFrame({"count": count, "wrong": count - tp.astype(np.int64), "accuracy": recall,
                       "precision": precision, "recall": recall, "f1": f1})
    df.index.name = "digit"
    return df


def most_confused(labels, preds, k: int | None = 10) -> pd.DataFrame:
    """The off-diagonal cells with at least one image: columns true, predicted, count; most first
    (ties by true then predicted digit). k=None gives all of them."""
    cm = confusion_matrix(labels, preds)
    t, p = np.nonzero(cm * (1 - np.eye(N_CLASSES, dtype=cm.dtype)))
    df = pd.DataFrame({"true": t, "predicted": p, "count": cm[t, p]})
    df = df.sort_values(["count", "true", "predicted"], ascending=[False, True, True], kind="stable")
    return df.head(k).reset_index(drop=True) if k is not None else df.reset_index(drop=True)


def n_batches(n: int, batch_size: int) -> int:
    return math.ceil(n / check_batch_size(batch_size))


def check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch size must be a whole number of at least 1, got {batch_size!r}")
    return int(batch_size)


def wrong_per_batch(labels, preds, batch_size: int) -> np.ndarray:
    """Wrong predictions in each consecutive test batch (test-set order, the last one may be short):
    int64 array of length ceil(N / batch_size)."""
    labels, preds = _check(labels, preds)
    bs = check_batch_size(batch_size)
    wrong = (labels != preds).astype(np.int64)
    return np.bincount(np.arange(len(wrong)) // bs, weights=wrong, minlength=n_batches(len(wrong), bs)).astype(np.int64)


def losses(labels, probs, eps: float = 1e-7) -> np.ndarray:
    """Per-image cross-entropy -log p(true). Stored probabilities are float16, so a confident mistake can be
    stored as exactly 0: p is clipped at eps (loss at most ~16.1)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or probs.shape != (len(labels), N_CLASSES):
        raise ValueError(f"probs {probs.shape} must be N x {N_CLASSES} with N = {len(labels)} labels")
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], eps, 1.0))


def prediction_table(labels, probs, batch_size: int | None = None) -> pd.DataFrame:
    """One row per test image: index, true, predicted, confidence, loss, correct (and batch when a batch
    size is given). Row i is test image i."""
    labels = np.asarray(labels, dtype=np.int64)
    pred, conf = predictions(probs)
    _check(labels, pred)
    df = pd.DataFrame({"index": np.arange(len(labels)), "true": labels, "predicted": pred,
                       "confidence": conf.astype(np.float64), "loss": losses(labels, probs),
                       "correct": labels == pred})
    if batch_size is not None:
        df["batch"] = df["index"] // check_batch_size(batch_size)
    return df


def top_losses(labels, probs, k: int | None = None) -> pd.DataFrame:
    """Test images sorted by loss, highest first: columns index, true, predicted, confidence, loss.
    k=None gives every image."""
    df = prediction_table(labels, probs)[["index", "true", "predicted", "confidence", "loss"]]
    df = df.sort_values("loss", ascending=False, kind="stable").reset_index(drop=True)
    return df.head(k) if k is not None else df


def batch_rows(table: pd.DataFrame, batch: int, batch_size: int) -> pd.DataFrame:
    """The rows of `prediction_table` in batch number `batch` (0-based)."""
    bs = check_batch_size(batch_size)
    return table.iloc[batch * bs:(batch + 1) * bs]


def filter_predictions(table: pd.DataFrame, show: str = "all", true=None, predicted=None) -> pd.DataFrame:
    """Rows of a `prediction_table` that are wrong / correct / all, and whose true and predicted digits are in
    the given collections (None or empty = any)."""
    if show not in SHOW:
        raise ValueError(f"show must be one of {SHOW}, got {show!r}")
    keep = np.ones(len(table), bool)
    if show != "all":
        keep &= table["correct"].to_numpy() == (show == "correct")
    if true:
        keep &= table["true"].isin(list(true)).to_numpy()
    if predicted:
        keep &= table["predicted"].isin(list(predicted)).to_numpy()
    return table[keep]


def cell_indices(labels, preds, true: int, predicted: int) -> np.ndarray:
    """Test-image indices in confusion cell (true, predicted)."""
    labels, preds = _check(labels, preds)
    return np.flatnonzero((labels == true) & (preds == predicted))


def accuracy(labels, preds) -> float:
    labels, preds = _check(labels, preds)
    return float((labels == preds).mean()) if len(labels) else float("nan")


def test_images_for(labels, root=None) -> tuple[np.ndarray | None, str | None]:
    """The MNIST test images a run's stored predictions refer to: (uint8 N x 28 x 28, None), or
    (None, a sentence saying what to do) when MNIST is missing or is not the test set the run was
    evaluated on (a different size or different labels). Never downloads."""
    from . import data

    try:
        d = data.load_mnist(root, download=False)
    except data.MNISTMissing as e:
        return None, str(e)
    test_labels = d.test_labels.numpy()
    labels = np.asarray(labels)
    if len(test_labels) != len(labels) or not np.array_equal(test_labels, labels):
        return None, (f"The MNIST test set in {d.root} ({len(test_labels)} images) is not the one this run was "
                      f"evaluated on ({len(labels)} images): set MNISTVIZ_DATA to the data it was trained with.")
    return d.test_images.numpy(), None


def run_predictions(run: Run, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64 N, probs float32 N x 10) for a stored run after `epoch` (default: best).
    Raises RunError with a sentence for the user when the run has no predictions, is in an older format,
    or its labels and predictions disagree."""
    probs = run.probs(epoch)
    labels = run.test_labels()
    if labels.ndim != 1 or len(labels) != len(probs):
        raise RunError(f"run {run.name}: {len(labels)} stored test labels but {len(probs)} predictions; "
                       f"the run folder is inconsistent (retrain it)")
    if labels.size and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise RunError(f"run {run.name}: stored test labels are not digits 0-9 (older format); retrain it")
    if not np.isfinite(probs).all():
        raise RunError(f"run {run.name}: stored predictions for epoch {epoch or 'best'} contain NaN or inf "
                       f"(the training diverged)")
    return labels, probs
