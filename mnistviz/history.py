"""Prediction history: how a run predicted each test image at every stored epoch (numpy/pandas; no Streamlit).

Built from the per-epoch test predictions the trainer stores (runs.py: preds/epoch_NNN.npy). An image is *learned*
at the first epoch it is predicted right; it is *forgotten* when it is right at one epoch and wrong at a later one
(a "forgetting event", Toneva et al. 2019, "An Empirical Study of Example Forgetting during Deep Neural Network
Learning"). The lists read like fastai's top losses: `learned_late` (first right only in the last epochs) and
`forgotten` (right, then wrong), each one row per test image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from . import analysis
from .runs import Run, RunError


@dataclass
class History:
    """A run's predictions at every stored epoch: `epochs` (E epoch numbers, ascending), `labels` (int64 N),
    `probs` (float32 E x N x 10); `skipped` maps an epoch left out (its file unreadable, NaN...) to why."""
    epochs: list[int]
    labels: np.ndarray
    probs: np.ndarray
    skipped: dict[int, str] = field(default_factory=dict)

    # computed once per History (a page keeps one per run and its files: pages/_history.py)
    @cached_property
    def preds(self) -> np.ndarray:
        """E x N predicted digits."""
        return self.probs.argmax(2)

    @cached_property
    def correct(self) -> np.ndarray:
        """E x N: right at that epoch."""
        return self.preds == self.labels[None, :]

    def p_true(self) -> np.ndarray:
        """E x N: the probability given to the true digit."""
        return np.take_along_axis(self.probs, self.labels[None, :, None], 2)[..., 0]


def load(run: Run) -> History:
    """Every stored epoch's predictions of `run`. An epoch whose file cannot be read (or holds NaN, or another
    number of images) is left out and said in `skipped`; RunError when no epoch is left or the labels are unreadable."""
    epochs, probs, skipped, labels = [], [], {}, None
    for e in run.pred_epochs():
        try:
            y, p = analysis.run_predictions(run, e)
        except RunError as err:
            skipped[e] = str(err)
            continue
        if labels is not None and len(p) != len(labels):
            skipped[e] = f"its predictions are of {len(p)} images, not {len(labels)}"
            continue
        labels = y
        epochs.append(e)
        probs.append(p)
    if not epochs:
        why = "; ".join(skipped.values()) or "it has no stored test predictions"
        raise RunError(f"run {run.name} has no readable per-epoch predictions ({why})")
    return History(epochs, labels, np.stack(probs), skipped)


def first_right(correct: np.ndarray) -> np.ndarray:
    """N: the index (into the epochs) of the first epoch each image was right at; -1 for never."""
    correct = np.asarray(correct, bool)
    return np.where(correct.any(0), correct.argmax(0), -1)


def right_from(correct: np.ndarray) -> np.ndarray:
    """N: the index of the epoch from which each image stays right to the last; -1 when wrong at the last."""
    wrong = ~np.asarray(correct, bool)
    last_wrong = len(wrong) - 1 - wrong[::-1].argmax(0)
    return np.where(wrong[-1], -1, np.where(wrong.any(0), last_wrong + 1, 0))


def forgetting_events(correct: np.ndarray) -> np.ndarray:
    """N: how many times each image went from right at one epoch to wrong at the next stored one."""
    correct = np.asarray(correct, bool)
    return (correct[:-1] & ~correct[1:]).sum(0) if len(correct) > 1 else np.zeros(correct.shape[1], np.int64)


def image_table(h: History, index: int) -> pd.DataFrame:
    """One row per stored epoch for test image `index`: epoch, predicted, confidence (of the prediction),
    p_true (of the true digit), correct."""
    p = h.probs[:, index]
    pred = p.argmax(1)
    return pd.DataFrame({"epoch": h.epochs, "predicted": pred, "confidence": p[np.arange(len(p)), pred],
                         "p_true": p[:, h.labels[index]], "correct": pred == h.labels[index]})


def story(h: History, index: int) -> str:
    """Test image `index`'s history in a sentence: when it was first right, whether it was forgotten, how it ends."""
    c = h.correct[:, index]
    e, true = h.epochs, int(h.labels[index])
    last_pred = int(h.preds[-1, index])
    if not c.any():
        return f"Never right: predicted {', '.join(map(str, _distinct(h.preds[:, index])))} instead of {true}."
    first = int(first_right(c[:, None])[0])
    text = f"First right at epoch {e[first]}" + (" (the first stored)" if first == 0 else "")
    drops = [e[k + 1] for k in range(len(c) - 1) if c[k] and not c[k + 1]]
    if drops:
        text += f"; forgotten at epoch{'s' * (len(drops) > 1)} {', '.join(map(str, drops))}"
        text += (f", right again from epoch {e[int(right_from(c[:, None])[0])]}" if c[-1]
                 else f", and wrong at the last (predicted {last_pred})")
    elif not c[-1]:
        text += f"; wrong at the last (predicted {last_pred})"
    return text + "."


def _distinct(values) -> list[int]:
    return list(dict.fromkeys(int(v) for v in values))


def late_epochs(n_epochs: int) -> int:
    """How many of the last epochs count as "late": the last quarter, at least one."""
    return max(1, n_epochs // 4)


def learned_late(h: History, last: int | None = None) -> pd.DataFrame:
    """Test images first right only in the last `last` stored epochs (default late_epochs), never before, and right
    at the last: columns index, true, first_right (epoch), predicted_before (at the epoch before), p_true (at the
    last epoch). Latest learned first, then the least sure. Empty with fewer than two stored epochs."""
    n = len(h.epochs)
    last = late_epochs(n) if last is None else last
    first = first_right(h.correct)
    keep = (first >= max(1, n - last)) & h.correct[-1]
    idx = np.flatnonzero(keep)
    before = h.preds[first[idx] - 1, idx] if len(idx) else np.zeros(0, np.int64)
    df = pd.DataFrame({"index": idx, "true": h.labels[idx], "first_right": np.asarray(h.epochs)[first[idx]],
                       "predicted_before": before, "p_true": h.p_true()[-1, idx].astype(np.float64)})
    return df.sort_values(["first_right", "p_true", "index"], ascending=[False, True, True],
                          kind="stable").reset_index(drop=True)


def forgotten(h: History) -> pd.DataFrame:
    """Test images right at some stored epoch and wrong at a later one: columns index, true, times (forgetting
    events), last_right (epoch), predicted (at the last epoch), right_at_end, p_true (at the last epoch). Those
    still wrong at the end first, then the most often forgotten, then the least sure."""
    c = h.correct
    times = forgetting_events(c)
    idx = np.flatnonzero(times > 0)
    n = len(h.epochs)
    last_right = n - 1 - c[::-1, idx].argmax(0) if len(idx) else np.zeros(0, np.int64)
    df = pd.DataFrame({"index": idx, "true": h.labels[idx], "times": times[idx],
                       "last_right": np.asarray(h.epochs)[last_right], "predicted": h.preds[-1, idx],
                       "right_at_end": c[-1, idx], "p_true": h.p_true()[-1, idx].astype(np.float64)})
    return df.sort_values(["right_at_end", "times", "p_true", "index"], ascending=[True, False, True, True],
                          kind="stable").reset_index(drop=True)


def confusion_by_epoch(h: History) -> np.ndarray:
    """E x 10 x 10 confusion counts (rows true, columns predicted), one matrix per stored epoch."""
    return np.stack([analysis.confusion_matrix(h.labels, p) for p in h.preds])
