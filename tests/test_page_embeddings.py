"""AppTest of the Embeddings page on a copy of the fixture run tiny-none (tiny data: 200 test images)."""
import json
import shutil

import numpy as np
import pytest

from mnistviz import embeddings as E, runs
from mnistviz.data import load_mnist
from test_pages_inspect import decode

PAGE = "pages/embeddings.py"


@pytest.fixture
def env(fixture_runs, tiny_data, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(fixture_runs / "tiny-none", root / "tiny-none")
    shutil.rmtree(runs.Run(root / "tiny-none").epochs_dir)  # only its best weights: the tests below add epochs by hand
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(root))
    mnist = load_mnist(tiny_data, download=False)
    return runs.Run(root / "tiny-none"), mnist.test_labels.numpy()


def traces(at, k=0):
    """[(name, test indices, x, y, hover text)] of the k-th chart's traces."""
    spec = json.loads(at.get("plotly_chart")[k].proto.spec)
    return [(t["name"], decode(t["customdata"]), decode(t["x"]), decode(t["y"]), t["text"]) for t in spec["data"]]


def caption(at):
    return " ".join(c.value for c in at.caption)


def test_the_page_projects_the_penultimate_stage_and_switches_method_and_colour(env, app):
    run, labels = env
    at = app(PAGE, run="tiny-none")
    assert at.selectbox(key="emb_stage_tiny-none").value == "flatten"   # the fast model's last layer reads flatten
    assert "the run kept no per-epoch weights" in caption(at) and "best.pt" in caption(at)
    shown = traces(at)
    assert [t[0] for t in shown] == [str(d) for d in range(10)]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["type"] for t in spec["data"]} == {"scattergl"}
    ids = np.concatenate([t[1] for t in shown])
    assert sorted(ids.tolist()) == list(range(200))                     # the whole tiny test set (200 < 2,000)
    for name, idx, *_ in shown:                                         # coloured by the true digit
        assert (labels[idx] == int(name)).all()
    # the points are the stored PCA of the best weights, which the page made on this first visit
    (w,) = E.weight_choices(run)
    e = E.load_cached(run, w, "flatten", "pca", 200, 0, labels)
    assert e is not None
    pos = {int(i): k for k, i in enumerate(e.indices)}
    name, idx, x, y, hover = shown[3]
    np.testing.assert_allclose(x, e.coords[[pos[i] for i in idx], 0], rtol=1e-6)
    assert hover[0].startswith(f"#{idx[0]} · true 3 · predicted ") and "\u2800" <= hover[0][-1] <= "\u28ff"
    assert "PCA" in caption(at) and "variance" in caption(at)

    at.radio(key="emb_method").set_value("tsne").run()
    assert not at.exception
    assert "distances between clusters" in caption(at).lower() and "variance" not in caption(at)
    assert E.load_cached(run, w, "flatten", "tsne", 200, 0, labels) is not None
    assert len(at.status) == 1                                          # computed, with its progress

    at.radio(key="emb_colour").set_value("right or wrong").run()
    by_name = {t[0]: t[1] for t in traces(at)}
    pred = e.probs.argmax(1)
    wrong = e.indices[pred != labels[e.indices]]
    assert set(by_name) == {"right", "wrong"} and sorted(by_name["wrong"].tolist()) == sorted(wrong.tolist())
    assert not at.status                                                # t-SNE again: read from the run folder

    at.radio(key="emb_colour").set_value("predicted digit").run()
    for name, idx, *_ in traces(at):
        assert (pred[[pos[i] for i in idx]] == int(name)).all()


def test_a_click_shows_the_image_up_close_and_a_lasso_its_group(env, app):
    run, labels = env
    at = app(PAGE, run="tiny-none")
    at.session_state["emb_picked_tiny-none"] = 17    # what a click on a point stores
    at.run()
    assert not at.exception
    assert any(m.value.startswith(f"**true {labels[17]}, predicted ") for m in at.markdown)
    assert len(at.get("plotly_chart")) == 2                             # the scatter and the probability bars
    group = [3, 5, 8, 13, 21]
    at.session_state["emb_group_tiny-none"] = group  # what a lasso stores
    at.run()
    assert "5 selected" in [s.value for s in at.subheader]
    grid = json.loads(at.get("plotly_chart")[1].proto.spec)["data"][-1]
    assert decode(grid["customdata"]).tolist() == group
    at.button(key="emb_clear_tiny-none").click().run()
    assert "5 selected" not in [s.value for s in at.subheader]


def test_per_epoch_weights_get_an_epoch_slider(env, app):
    import torch

    run, _ = env
    run.epochs_dir.mkdir()
    weights = runs.load_checkpoint(run.best_ckpt)["model"]
    for epoch in (1, 2):
        torch.save({"model": weights}, run.epoch_weights(epoch))
    at = app(PAGE, run="tiny-none")
    slider = at.select_slider(key="emb_epoch_tiny-none")
    assert slider.value == "epoch-002" and "weights of epoch 2" in caption(at)
    slider.set_value("epoch-001").run()
    assert not at.exception and "weights of epoch 1" in caption(at)


def test_a_run_without_weights_says_so(env, app):
    run, _ = env
    run.best_ckpt.unlink()
    run.last_ckpt.unlink()
    at = app(PAGE, run="tiny-none")
    assert any("no checkpoint" in w.value for w in at.warning) and not at.get("plotly_chart")
