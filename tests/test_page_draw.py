"""The Draw page under AppTest: the empty-canvas hint, the model picker, a damaged My digits set.

AppTest cannot draw on the canvas (a browser component); tests/e2e/test_draw_e2e.py draws with the mouse.
"""
from __future__ import annotations

import numpy as np
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from mnistviz import mydigits


def open_draw(monkeypatch) -> AppTest:
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.switch_page("views/draw.py")
    return at.run()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def model_picker(at: AppTest):
    return next(s for s in at.selectbox if s.label == "Model")


def test_empty_canvas_shows_a_hint_and_no_prediction_even_without_mnist(tiny_env, monkeypatch, tmp_path):
    monkeypatch.setenv("MNISTVIZ_DATA", str(tmp_path / "no-mnist-here"))
    at = open_draw(monkeypatch)
    assert not at.exception
    assert "Draw a digit 0-9" in texts(at.info)
    assert not [m for m in at.metric if m.label == "Prediction"]
    assert "No saved digits yet" in texts(at.info)


def test_the_default_model_is_listed_first_before_any_training(tiny_env, monkeypatch):
    assert (mydigits.DEFAULT_MODEL / "config.json").exists(), "the bundled default model checkpoints/default is missing"
    at = open_draw(monkeypatch)
    assert not at.exception
    picker = model_picker(at)
    assert picker.value == str(mydigits.DEFAULT_MODEL.resolve())
    assert picker.options[0].startswith("default (")


def test_completed_runs_are_offered_too(fixture_runs, tiny_data, monkeypatch):
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(fixture_runs))
    at = open_draw(monkeypatch)
    assert not at.exception
    options = model_picker(at).options
    assert any(o.startswith("tiny-none (") for o in options) and any(o.startswith("tiny-aug (") for o in options)


def test_without_any_model_the_page_says_so(tiny_env, monkeypatch, tmp_path):
    monkeypatch.setattr(mydigits, "DEFAULT_MODEL", tmp_path / "no-default")
    at = open_draw(monkeypatch)
    assert not at.exception
    assert "No model to classify with" in texts(at.warning)
    assert "Draw a digit 0-9" in texts(at.info)


def test_a_damaged_saved_set_is_reported_and_the_rest_of_the_page_works(tiny_env, monkeypatch):
    path = tiny_env / "_mydigits" / "digits.npz"
    path.parent.mkdir()
    path.write_bytes(b"this is not an npz file")
    at = open_draw(monkeypatch)
    assert not at.exception
    assert "is not a My digits set" in texts(at.error)
    assert "Draw a digit 0-9" in texts(at.info)                   # the canvas part still works
    aside = next(b for b in at.button if b.label.startswith("Set the damaged file aside"))
    aside.click().run()
    assert not at.exception and not at.error
    assert not path.exists() and len(list(path.parent.glob("digits.broken-*.npz"))) == 1
    assert "No saved digits yet" in texts(at.info)


def test_saved_digits_are_listed_and_evaluated(tiny_env, monkeypatch):
    from mnistviz.runs import load_model

    for label in (1, 1, 7):
        img = np.zeros((28, 28), np.float32)
        img[4:24, 13:15] = 1
        mydigits.add(img, label)
    at = open_draw(monkeypatch)
    assert not at.exception
    assert "3 digits: 0: 0, 1: 2" in texts(at.caption)
    expected = mydigits.evaluate_set(load_model(mydigits.DEFAULT_MODEL), mydigits.load())["accuracy"]
    accuracy = next(m for m in at.metric if m.label == "Accuracy on my digits")
    assert accuracy.value == f"{expected:.1%}"


def test_a_run_with_a_broken_checkpoint_is_reported(tiny_env, fixture_runs, monkeypatch):
    broken = tiny_env / "broken"
    broken.mkdir()
    for f in (fixture_runs / "tiny-none").iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    (broken / "best.pt").write_bytes(b"not a checkpoint")
    at = open_draw(monkeypatch)
    picker = model_picker(at)
    picker.select(str(broken.resolve())).run()
    assert not at.exception
    assert "The model broken cannot be loaded" in texts(at.error)
    assert "Draw a digit 0-9" in texts(at.info)
