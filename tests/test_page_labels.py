"""The Suspicious labels page (issue 26) through AppTest: it opens on the bundled default model (checkpoints/default),
a review changes the corrected accuracy it shows, and the Runs, Mispredictions and Confusion pages then show the
accuracy on the reviewed labels and mark the reviewed image."""
from __future__ import annotations

import shutil

import pytest

from conftest import ROOT
from mnistviz import reviews as rv
from mnistviz.data import find_mnist
from mnistviz.runs import Run

DEFAULT = ROOT / "checkpoints" / "default"


def shown(at, *kinds) -> str:
    return "\n".join(str(e.value) for kind in kinds for e in at.get(kind))


@pytest.fixture
def runs_with_default(tmp_path, monkeypatch):
    """A runs folder holding a copy of the default model as the run 'default' (MNISTVIZ_DATA as it is: the real MNIST
    where there is one, else the pages say it is missing and show no images)."""
    root = tmp_path / "runs"
    shutil.copytree(DEFAULT, root / "default")
    monkeypatch.setenv("MNISTVIZ_RUNS", str(root))
    return root


def test_a_review_changes_the_accuracy_shown_on_the_reviewed_labels(app, runs_with_default):
    run = Run(DEFAULT)
    labels, best = run.test_labels(), run.best_epoch()
    preds = run.probs(best).argmax(1)
    acc = (preds == labels).mean()

    at = app(page="pages/labels.py", run="default")
    assert at.multiselect(key="lb_runs").value == [str(DEFAULT.resolve())]  # the bundled model, not the copy
    assert "Ranked by cleanlab" in shown(at, "caption") or "Ranked by self-confidence" in shown(at, "caption")
    text = shown(at, "markdown")
    assert f"**default**: test accuracy {acc:.2%} (epoch {best})" in text and "corrected" not in text
    wrong = [b for b in at.button if b.key and b.key.startswith("lb_wrong:")]
    assert len(wrong) == 30 and len({b.key for b in wrong}) == 30
    ts, i = wrong[0].key.split(":")[1:]
    i = int(i)
    digit = int(preds[i]) if preds[i] != labels[i] else (int(labels[i]) + 1) % 10
    at.selectbox(key=f"lb_digit:{ts}:{i}").set_value(digit).run()
    at.button(key=f"lb_wrong:{ts}:{i}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    fixed = labels.copy()
    fixed[i] = digit
    expected = (preds == fixed).mean()
    assert expected != acc
    line = f"{acc:.2%}, {expected:.2%} with 1 label corrected"
    assert f"**default**: test accuracy {line} (epoch {best})" in shown(at, "markdown")
    assert f"Reviewed: **label wrong, it is a {digit}**" in shown(at, "markdown")
    assert rv.reviewed_wrong(rv.load(), labels) == {i: digit}
    assert f"lb_undo:{ts}:{i}" in [b.key for b in at.button]

    at.switch_page("pages/home.py").run()
    table = at.dataframe[0].value
    assert table.loc[table["name"] == "default", "reviewed labels acc %"].item() == round(expected * 100, 2)
    assert f"Test accuracy (epoch {best}): {line}." in shown(at, "caption")

    images = find_mnist() is not None
    at.session_state["mp_view"], at.session_state["mp_top_k"] = "Top losses", 256
    at.switch_page("pages/mispredictions.py").run()
    assert f"On reviewed labels: {line}" in shown(at, "caption")
    if images:
        assert f"label reviewed wrong: #{i} it is a {digit}" in shown(at, "caption")

    at.session_state["cf_cell"] = (int(labels[i]), int(preds[i]))
    at.switch_page("pages/confusion.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"On reviewed labels: {line}" in shown(at, "caption")
    if images:
        assert f"label reviewed wrong: #{i} it is a {digit}" in shown(at, "caption")

    at.switch_page("pages/labels.py").run()  # Undo: the accuracy on the given labels alone again
    at.button(key=f"lb_undo:{ts}:{i}").click().run()
    assert "corrected" not in shown(at, "markdown") and rv.load() == {}


def test_a_damaged_reviews_file_is_reported_and_set_aside(app, runs_with_default):
    path = runs_with_default / rv.REVIEWS_FILE
    path.write_text("{torn")
    at = app(page="pages/labels.py")
    assert "is not a label reviews file" in shown(at, "error")
    assert all(b.disabled for b in at.button if b.key and b.key.startswith(("lb_wrong:", "lb_right:")))
    at.button(key="lb_aside").click().run()
    assert not path.exists() and [p.read_text() for p in runs_with_default.glob("_label_reviews.broken-*")] == ["{torn"]
    assert "Moved the damaged reviews file" in shown(at, "info")
    assert not any(b.disabled for b in at.button if b.key and b.key.startswith("lb_wrong:"))
