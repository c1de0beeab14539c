"""mnistviz.analysis against small hand-computed cases, and run_predictions on real run folders."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from mnistviz import analysis as A
from mnistviz.runs import Run, RunError


def one_hot_probs(preds, conf=0.9):
    """N x 10 probabilities whose argmax is preds, with `conf` on it and the rest spread evenly."""
    p = np.full((len(preds), 10), (1 - conf) / 9, np.float32)
    p[np.arange(len(preds)), preds] = conf
    return p


# true:  0 0 1 1 2 2 2 3
# pred:  0 1 1 1 2 0 1 3
LABELS = np.array([0, 0, 1, 1, 2, 2, 2, 3])
PREDS = np.array([0, 1, 1, 1, 2, 0, 1, 3])


def test_predictions_argmax_and_confidence():
    probs = np.array([[0.1, 0.7, 0.2] + [0] * 7, [0.5, 0.2, 0.3] + [0] * 7], np.float32)
    pred, conf = A.predictions(probs)
    assert pred.tolist() == [1, 0]
    assert conf == pytest.approx([0.7, 0.5])
    with pytest.raises(ValueError):
        A.predictions(np.zeros((3, 9)))


def test_confusion_matrix_counts_by_hand():
    cm = A.confusion_matrix(LABELS, PREDS)
    assert cm.shape == (10, 10)
    expected = np.zeros((10, 10), int)
    expected[0, 0] = 1; expected[0, 1] = 1           # noqa: E702
    expected[1, 1] = 2
    expected[2, 2] = 1; expected[2, 0] = 1; expected[2, 1] = 1  # noqa: E702
    expected[3, 3] = 1
    assert (cm == expected).all()
    assert cm.sum() == len(LABELS)


def test_confusion_matrix_row_normalized():
    cm = A.confusion_matrix(LABELS, PREDS, normalize=True)
    assert cm[0, :2] == pytest.approx([0.5, 0.5])
    assert cm[2, [0, 1, 2]] == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert cm[1, 1] == 1.0
    # digits with no test images keep a row of zeros rather than NaN
    assert (cm[5] == 0).all() and not np.isnan(cm).any()
    assert cm[:4].sum(1) == pytest.approx([1, 1, 1, 1])


def test_confusion_rejects_bad_input():
    with pytest.raises(ValueError):
        A.confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError):
        A.confusion_matrix([0, 10], [0, 1])


def test_per_class_metrics_by_hand():
    m = A.per_class_metrics(LABELS, PREDS)
    assert list(m.index) == list(range(10)) and m.index.name == "digit"
    assert m.loc[0, "count"] == 2 and m.loc[2, "count"] == 3
    assert m.loc[0, "accuracy"] == pytest.approx(0.5)
    assert m.loc[2, "accuracy"] == pytest.approx(1 / 3)  # its precision is 1: accuracy is not precision
    assert m.loc[2, "recall"] == pytest.approx(1 / 3)
    assert m.loc[2, "wrong"] == 2
    # precision of 1: predicted 1 four times (0->1, 1->1, 1->1, 2->1), right twice
    assert m.loc[1, "precision"] == pytest.approx(0.5)
    # precision of 0: predicted twice (0->0, 2->0), right once
    assert m.loc[0, "precision"] == pytest.approx(0.5)
    assert m.loc[3, "precision"] == 1.0 and m.loc[3, "recall"] == 1.0
    assert m.loc[1, "f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    # digit 7: no images, never predicted
    assert m.loc[7, "count"] == 0 and math.isnan(m.loc[7, "precision"]) and math.isnan(m.loc[7, "recall"])


def test_most_confused_sorted_off_diagonal():
    labels = np.array([4, 4, 4, 9, 9, 7, 7, 1, 1, 1])
    preds = np.array([9, 9, 9, 4, 4, 1, 7, 7, 1, 1])
    df = A.most_confused(labels, preds)
    assert list(df.columns) == ["true", "predicted", "count"]
    assert df.values.tolist() == [[4, 9, 3], [9, 4, 2], [1, 7, 1], [7, 1, 1]]
    assert A.most_confused(labels, preds, k=2).values.tolist() == [[4, 9, 3], [9, 4, 2]]
    assert A.most_confused(labels, labels).empty


def test_wrong_per_batch_by_hand():
    labels = np.array([0, 1, 2, 3, 4, 5, 6])
    preds = np.array([0, 0, 0, 3, 4, 0, 0])   # wrong at 1, 2, 5, 6
    assert A.wrong_per_batch(labels, preds, 3).tolist() == [2, 1, 1]   # last batch is short
    assert A.wrong_per_batch(labels, preds, 2).tolist() == [1, 1, 1, 1]
    assert A.wrong_per_batch(labels, preds, 7).tolist() == [4]
    assert A.wrong_per_batch(labels, preds, 100).tolist() == [4]
    assert A.wrong_per_batch(labels, preds, 1).tolist() == [0, 1, 1, 0, 0, 1, 1]


def test_wrong_per_batch_10000_by_32_gives_313_batches():
    labels = np.zeros(10_000, int)
    preds = np.zeros(10_000, int)
    preds[[0, 31, 32, 9_999]] = 1
    w = A.wrong_per_batch(labels, preds, 32)
    assert len(w) == 313 == A.n_batches(10_000, 32)
    assert w[0] == 2 and w[1] == 1 and w[312] == 1 and w.sum() == 4


@pytest.mark.parametrize("bad", [0, -3, 2.5, "32", None, True])
def test_wrong_per_batch_rejects_bad_batch_size(bad):
    with pytest.raises(ValueError, match="batch size"):
        A.wrong_per_batch([0, 1], [0, 1], bad)


def test_top_losses_by_hand():
    labels = np.array([0, 1, 2])
    probs = np.zeros((3, 10), np.float32)
    probs[0, [0, 1]] = [0.9, 0.1]       # right, loss -log 0.9
    probs[1, [1, 3]] = [0.25, 0.75]     # wrong (pred 3), loss -log 0.25
    probs[2, [2, 5]] = [0.0, 1.0]       # confidently wrong, p(true) stored as 0 -> clipped
    df = A.top_losses(labels, probs)
    assert list(df.columns) == ["index", "true", "predicted", "confidence", "loss"]
    assert df["index"].tolist() == [2, 1, 0]
    assert df["predicted"].tolist() == [5, 3, 0]
    assert df["confidence"].tolist() == pytest.approx([1.0, 0.75, 0.9])
    assert df["loss"].tolist() == pytest.approx([-math.log(1e-7), -math.log(0.25), -math.log(0.9)], rel=1e-5)
    assert A.top_losses(labels, probs, k=1)["index"].tolist() == [2]


def test_prediction_table_filters_and_batches():
    labels = np.array([0, 1, 2, 3, 4, 5])
    preds = np.array([0, 7, 2, 8, 4, 7])
    t = A.prediction_table(labels, one_hot_probs(preds), batch_size=4)
    assert t["batch"].tolist() == [0, 0, 0, 0, 1, 1]
    assert t["correct"].tolist() == [True, False, True, False, True, False]
    assert A.batch_rows(t, 1, 4)["index"].tolist() == [4, 5]
    assert A.filter_predictions(t, "wrong")["index"].tolist() == [1, 3, 5]
    assert A.filter_predictions(t, "correct")["index"].tolist() == [0, 2, 4]
    assert A.filter_predictions(t, "all", predicted=[7])["index"].tolist() == [1, 5]
    assert A.filter_predictions(t, "wrong", true=[3, 5], predicted=[7])["index"].tolist() == [5]
    with pytest.raises(ValueError):
        A.filter_predictions(t, "some")


def test_cell_indices_and_accuracy():
    assert A.cell_indices(LABELS, PREDS, 2, 1).tolist() == [6]
    assert A.cell_indices(LABELS, PREDS, 1, 1).tolist() == [2, 3]
    assert A.accuracy(LABELS, PREDS) == pytest.approx(5 / 8)


# ---------- run folders ----------

def make_run(tmp_path, probs=None, labels=None, epochs=(1, 2), best=2):
    d = tmp_path / "r"
    (d / "preds").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model": "fast", "batch_size": 4}))
    recs = [{"epoch": e, "test_acc": 0.5 + 0.1 * (e == best)} for e in epochs]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    run = Run(d)
    for e in epochs:
        run.save_probs(e, one_hot_probs(np.full(6, e)) if probs is None else probs)
    if labels is not None:
        np.save(d / "test_labels.npy", labels)
    return run


def test_run_predictions_default_best_and_epoch(tmp_path):
    run = make_run(tmp_path, labels=np.arange(6).astype(np.uint8), epochs=(1, 2, 3), best=2)
    labels, probs = A.run_predictions(run)
    assert labels.dtype == np.int64 and labels.tolist() == list(range(6))
    assert A.predictions(probs)[0].tolist() == [2] * 6       # best epoch 2 (not the last, 3) predicts 2 everywhere
    assert A.predictions(A.run_predictions(run, 1)[1])[0].tolist() == [1] * 6
    assert A.predictions(A.run_predictions(run, 3)[1])[0].tolist() == [3] * 6


def test_run_predictions_clear_errors(tmp_path):
    run = make_run(tmp_path, labels=None)
    with pytest.raises(RunError, match="test labels"):
        A.run_predictions(run)
    np.save(run.path / "test_labels.npy", np.arange(5))
    with pytest.raises(RunError, match="inconsistent"):
        A.run_predictions(run)
    np.save(run.path / "test_labels.npy", np.arange(6))
    with pytest.raises(RunError, match="epoch 7"):
        A.run_predictions(run, 7)
    for p in (run.path / "preds").iterdir():
        p.unlink()
    with pytest.raises(RunError, match="no stored test predictions"):
        A.run_predictions(run)


def test_run_predictions_on_trained_fixture_run(fixture_runs):
    run = Run(fixture_runs / "tiny-none")
    labels, probs = A.run_predictions(run)
    assert probs.shape == (len(labels), 10) and len(labels) == 200
    w = A.wrong_per_batch(labels, A.predictions(probs)[0], run.config()["batch_size"])
    assert len(w) == 4 and w.sum() == (labels != probs.argmax(1)).sum()
    assert isinstance(A.per_class_metrics(labels, probs.argmax(1)), pd.DataFrame)


def test_test_images_for(tiny_data, tmp_path, fixture_runs):
    from mnistviz import data

    labels = Run(fixture_runs / "tiny-none").test_labels()
    imgs, msg = A.test_images_for(labels, tiny_data)
    assert msg is None and imgs.shape == (len(labels), 28, 28) and imgs.dtype == np.uint8
    assert np.array_equal(imgs, data.load_mnist(tiny_data).test_images.numpy())
    imgs, msg = A.test_images_for(labels[:-1], tiny_data)
    assert imgs is None and "not the one this run was evaluated on" in msg
    imgs, msg = A.test_images_for((labels + 1) % 10, tiny_data)  # same length, other labels
    assert imgs is None and "not the one this run was evaluated on" in msg
    imgs, msg = A.test_images_for(labels, tmp_path / "nowhere")
    assert imgs is None and "MNISTVIZ_DATA" in msg
