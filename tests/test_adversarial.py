"""Adversarial digits (mnistviz/adversarial.py) on the tiny fixture run's model, and the pages that show them:
Feature maps' Adversarial tab and Compare's accuracy-against-epsilon curve (AppTest)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mnistviz import adversarial, runs
from mnistviz.data import load_mnist
from mnistviz.evaluate import predict_logits
from test_pages_inspect import FM, decode, open_page, open_tab


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors on one thread, as the pages run them (pages._shared.one_core): on a busy 2-core machine a second
    thread makes each op wait for it (conftest's torch_threads_back restores the count)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(fixture_runs, tiny_data):
    mnist = load_mnist(tiny_data, download=False)
    return runs.load_model(fixture_runs / "tiny-none"), mnist.test_images, mnist.test_labels


def predicted(model, x) -> int:
    return int(predict_logits(model, x).argmax(1)[0])


def test_fgsm_flips_a_prediction_at_the_smallest_epsilon(tiny):
    model, images, _ = tiny
    for index in (0, 1, 2):
        flip = adversarial.smallest_flip(model, images[index], "fgsm")
        assert flip.eps is not None and 1 <= flip.eps <= 255
        x = flip.image
        label = torch.tensor([flip.pred])
        assert flip.pred == predicted(model, x)
        # at eps the prediction changes; at eps - 1 (the tolerance: one grey level) and every step below it does not
        assert predicted(model, adversarial.fgsm(model, x, label, flip.eps)) != flip.pred
        assert flip.adv_pred == predicted(model, flip.adversarial) != flip.pred
        for below in range(flip.eps - 1, 0, -1):
            assert predicted(model, adversarial.fgsm(model, x, label, below)) == flip.pred
        # no pixel moved by more than eps grey levels, and the image is whole bytes again
        diff = flip.difference
        assert np.abs(diff).max() <= flip.eps + 1e-3
        np.testing.assert_allclose(flip.adversarial * 255, (flip.adversarial * 255).round(), atol=1e-3)


def test_pgd_bisection_finds_a_flip_whose_one_level_smaller_step_does_not(tiny):
    model, images, _ = tiny
    flip = adversarial.smallest_flip(model, images[0], "pgd", steps=10)
    assert flip.eps is not None
    x, label = flip.image, torch.tensor([flip.pred])
    assert predicted(model, adversarial.pgd(model, x, label, flip.eps, 10)) != flip.pred
    assert predicted(model, adversarial.pgd(model, x, label, flip.eps - 1, 10)) == flip.pred
    assert np.abs(flip.difference).max() <= flip.eps + 1e-3


def test_the_accuracy_curve_starts_at_the_plain_accuracy_and_falls(tiny):
    model, images, labels = tiny
    df = adversarial.accuracy_curve({"m": model}, images, labels, eps_levels=(0, 16, 80), batch=64)
    plain = (predict_logits(model, images).argmax(1) == labels).double().mean().item()
    acc = df.set_index("epsilon").accuracy
    assert acc[0] == pytest.approx(plain)
    assert acc[80] < acc[16] <= acc[0]
    pgd = adversarial.accuracy_curve({"m": model}, images[:40], labels[:40], eps_levels=(0, 80), method="pgd",
                                     steps=5)
    assert pgd.accuracy.iloc[1] <= df.accuracy.iloc[0]


def test_feature_maps_adversarial_tab(fixture_runs, tiny_data, monkeypatch, tiny):
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(fixture_runs))
    at = open_tab(open_page(FM, index="2"), "Adversarial")
    assert not at.error
    text = next(m.value for m in at.markdown if "grey levels" in m.value)
    eps = int(text.split("**ε = ")[1].split(" ")[0])
    model, images, _ = tiny
    x = images[2].unsqueeze(0).unsqueeze(0).float() / 255
    before = predicted(model, x)
    label = torch.tensor([before])
    after = predicted(model, adversarial.fgsm(model, x, label, eps))
    assert after != before == predicted(model, adversarial.fgsm(model, x, label, eps - 1))
    assert f"predicted **{before}**" in text and f"now predicts **{after}**" in text
    bars = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if "fm_adv_after" in c.proto.id][0]
    assert int(np.argmax(decode(bars["data"][0]["y"]))) == after


def test_compare_adds_the_fgsm_curve_of_each_run_to_the_robustness_check(fixture_runs, tiny_data, monkeypatch):
    from test_page_compare import charts, open_compare

    at = open_compare(monkeypatch, tiny_data, fixture_runs)  # the pair's robustness check runs on every visit
    assert not at.exception and not at.error
    spec = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "compare_adversarial" in c.proto.id)
    assert {d["name"] for d in spec["data"]} == {"tiny-aug", "tiny-none"}
    for d in spec["data"]:
        assert decode(d["x"]).tolist() == list(adversarial.CURVE_EPS)
        y = decode(d["y"])
        y0 = (predict_logits(runs.load_model(fixture_runs / d["name"]), load_mnist(tiny_data).test_images).argmax(1)
              == load_mnist(tiny_data).test_labels).double().mean().item()
        assert y[0] == pytest.approx(y0) and y[-1] < y[0]
    assert "Against adversarial steps (FGSM)" in " ".join(m.value for m in at.markdown)
    assert len(charts(at)) >= 2
