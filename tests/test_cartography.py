"""Training-set cartography (issue 26, second part): the trainer stores each training image's probability of its label
per epoch, as its training step saw it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import train_tiny
from mnistviz import cartography, data
from mnistviz.evaluate import predict_logits
from mnistviz.runs import Run, RunError, load_model


def test_the_recorder_keeps_each_images_label_probability_by_position():
    rec = cartography.Recorder(6, "cpu")
    logits = torch.tensor([[2.0, 0.0] + [0.0] * 8, [0.0, 3.0] + [0.0] * 8, [1.0] * 10])
    rec.record(torch.tensor([4, 0, 2]), logits)
    labels = torch.tensor([1, 0, 5, 0, 0, 0])
    got = rec.label_probs(labels)
    want = torch.softmax(logits, 1)
    assert got.dtype == np.float16
    assert got[[4, 0, 2]] == pytest.approx([want[0, 0].item(), want[1, 1].item(), 0.1], abs=1e-3)
    assert np.isnan(got[[1, 3, 5]]).all()  # no step saw them
    assert np.isnan(rec.label_probs(labels)).all()  # each epoch starts afresh


def test_the_trainer_stores_what_its_steps_saw(tiny_data, tmp_path):
    # a model that does not move (lr 1e-9; LeNet-5: no batch norm, no dropout, so training and evaluation agree):
    # each image's stored probability is then the final model's, image by image; and without label smoothing the
    # epoch's train loss is the mean of -log of what was stored
    path = train_tiny(tmp_path, tiny_data, name="carto", model="lenet5", optimizer="sgd", lr=1e-9,
                      label_smoothing=0.0, epochs=1)
    run = Run(path)
    epochs, probs = cartography.load(run)
    cfg = run.config()
    d = data.load_mnist(tiny_data, download=False)
    x_tr, y_tr, _, _ = data.split_validation(d.train_images, d.train_labels, cfg["val_size"], cfg["seed"])
    assert epochs == [1] and probs.shape == (1, len(y_tr))
    assert np.load(path / cartography.TRAIN_DIR / "epoch_001.npy").dtype == np.float16
    want = torch.softmax(predict_logits(load_model(path), x_tr), 1)[torch.arange(len(y_tr)), y_tr].numpy()
    assert probs[0] == pytest.approx(want, abs=2e-3)
    assert -np.log(probs[0].astype(np.float64)).mean() == pytest.approx(run.epoch_records()[0]["train_loss"],
                                                                       rel=1e-3)
    conf, var = cartography.confidence_variability(np.stack([probs[0], probs[0] / 2]))
    assert conf == pytest.approx(probs[0] * 0.75, abs=1e-6) and var == pytest.approx(probs[0] / 4, abs=1e-6)


def test_the_map_and_its_hard_to_learn_corner_from_a_recorded_folder(tmp_path):
    # three epochs of 40 images: most learned at once; three flipped labels the run never learns; one ambiguous,
    # one learned late, one an epoch did not see (a resumed run), one no epoch saw
    run = Run(tmp_path / "r")
    run.path.mkdir()
    probs = np.full((3, 40), 0.95) + np.random.default_rng(0).uniform(-0.04, 0.04, (3, 40))
    probs[:, 5], probs[:, 17], probs[:, 30] = 0.02, 0.05, 0.01
    probs[:, 8], probs[:, 12] = [0.1, 0.9, 0.4], [0.1, 0.6, 0.95]
    probs[:, 20], probs[:, 25] = [np.nan, 0.2, 0.3], np.nan
    for e, p in enumerate(probs, 1):
        cartography.save_probs(run, e, p)
    epochs, got = cartography.load(run)
    assert epochs == [1, 2, 3] and got.shape == (3, 40)
    s = cartography.summary(got)
    assert s["seen"][[20, 25, 0]].tolist() == [2, 0, 3]
    assert s["confidence"][20] == pytest.approx(0.25, abs=1e-3)
    assert s["variability"][20] == pytest.approx(0.05, abs=1e-3)
    assert s["confidence"][8] == pytest.approx(1.4 / 3, abs=1e-3)
    assert s["variability"][8] == pytest.approx(np.std([0.1, 0.9, 0.4]), abs=1e-3)
    assert np.isnan(s["confidence"][25]) and np.isnan(s["correctness"][25])
    assert s["correctness"][[12, 8, 20, 0, 5]] == pytest.approx([2 / 3, 1 / 3, 0, 1, 0])
    # nearest the corner first; only under 1/2 confidence (not 12, at 0.55); never the image no epoch saw
    assert cartography.hard_to_learn(s["confidence"], s["variability"], 10).tolist() == [30, 5, 17, 20, 8]
    assert cartography.hard_to_learn(s["confidence"], s["variability"], 2).tolist() == [30, 5]
    one = cartography.summary(got[:1])
    assert (one["variability"][~np.isnan(got[0])] == 0).all()
    cartography.save_probs(run, 4, probs[0, :30])  # an epoch of another training set: said, not stacked
    with pytest.raises(RunError, match="one value per training image"):
        cartography.load(run)
    (run.path / cartography.TRAIN_DIR / "epoch_004.npy").write_bytes(b"garbage")
    with pytest.raises(RunError, match="cannot be read"):
        cartography.load(run)


@pytest.mark.parametrize("val_size, seed, limit", [(100, 1, 0), (0, 0, 50), (37, 5, 200)])
def test_the_recorded_positions_map_back_to_the_mnist_training_images(tiny_data, val_size, seed, limit):
    d = data.load_mnist(tiny_data, download=False)
    x_tr, y_tr, _, _ = data.split_validation(d.train_images, d.train_labels, val_size, seed)
    if limit:
        x_tr, y_tr = x_tr[:limit], y_tr[:limit]  # as the trainer cuts --limit-train
    idx = cartography.train_indices({"val_size": val_size, "seed": seed, "limit_train": limit}, len(d.train_labels))
    assert torch.equal(d.train_images[idx], x_tr) and torch.equal(d.train_labels[idx], y_tr)
    with pytest.raises(RunError, match="whole numbers"):
        cartography.train_indices({"name": "x", "val_size": "5000", "seed": 0, "limit_train": 0}, 600)
