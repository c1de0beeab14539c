"""The Training cartography page (issue 26, second part) through AppTest, on the fixture's tiny augmented run: the
scatter of every training image, the hard-to-learn grid, and a review of a training label that lands in the reviews
file apart from the test set's; a run with one recorded epoch and one with none say so."""
from __future__ import annotations

import json
import shutil

from mnistviz import cartography, data
from mnistviz import reviews as rv
from mnistviz.runs import Run


def shown(at, *kinds) -> str:
    return "\n".join(str(e.value) for kind in kinds for e in at.get(kind))


def test_the_map_the_corner_and_a_training_review(app, fixture_runs, tiny_data, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(fixture_runs / "tiny-aug", root / "tiny-aug")
    shutil.copytree(fixture_runs / "tiny-none", root / "one")
    (root / "one" / cartography.TRAIN_DIR / "epoch_002.npy").unlink()
    shutil.copytree(fixture_runs / "tiny-none", root / "old")
    shutil.rmtree(root / "old" / cartography.TRAIN_DIR)
    monkeypatch.setenv("MNISTVIZ_RUNS", str(root))
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    run = Run(root / "tiny-aug")
    d = data.load_mnist(tiny_data, download=False)
    labels = d.train_labels.numpy()
    indices = cartography.train_indices(run.config(), len(labels))
    s = cartography.summary(cartography.load(run)[1])

    at = app(page="pages/cartography.py", run="tiny-aug")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["type"] for t in spec["data"]] == ["scattergl"] and len(spec["data"][0]["text"]) == len(indices) == 500
    hover = spec["data"][0]["text"][0]
    assert hover.startswith(f"#{indices[0]} · label {labels[indices[0]]} · confidence {s['confidence'][0]:.2f}")
    assert any("\u2800" <= c <= "\u28ff" for c in hover)  # the digit, in braille dots
    assert "probabilities of the augmented images" in shown(at, "caption")

    corner = indices[cartography.hard_to_learn(s["confidence"], s["variability"], 30)]
    wrong = [b.key for b in at.button if b.key and b.key.startswith("ct_wrong:")]
    assert len(corner) == 30 and [int(k.split(":")[2]) for k in wrong] == corner.tolist()
    ts = rv.train_set_id(labels)
    i = int(corner[0])
    assert wrong[0] == f"ct_wrong:{ts}:{i}"
    assert f"**#{i}** · given **{labels[i]}** · predicted" in shown(at, "markdown")
    digit = (int(labels[i]) + 1) % 10
    at.selectbox(key=f"ct_digit:{ts}:{i}").set_value(digit).run()
    at.button(key=f"ct_wrong:{ts}:{i}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    saved = rv.load()
    assert list(saved.values()) == [rv.Review(ts, i, int(labels[i]), "wrong", digit, saved[(ts, i)].time)]
    assert rv.applying(saved, d.test_labels.numpy()) == {}  # nothing of the test set's
    assert f"Reviewed: **label wrong, it is a {digit}**" in shown(at, "markdown")

    at.query_params["run"] = "one"
    at.run()
    assert "variability is 0 for every image" in shown(at, "caption") and not at.exception
    at.query_params["run"] = "old"
    at.run()
    assert "recorded no probabilities of its training images" in shown(at, "info") and not at.exception
    assert not at.get("plotly_chart")
