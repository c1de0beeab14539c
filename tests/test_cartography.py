"""Training-set cartography (issue 26, second part): the trainer stores each training image's probability of its label
per epoch, as its training step saw it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import train_tiny
from mnistviz import cartography, data
from mnistviz.evaluate import predict_logits
from mnistviz.runs import Run, load_model


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
