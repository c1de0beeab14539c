"""The Draw page under AppTest: the empty-canvas hint, the model picker, a damaged My digits set.

AppTest cannot draw on the canvas (a browser component); tests/e2e/test_draw_e2e.py draws with the mouse.
"""
from __future__ import annotations

import numpy as np
from streamlit.testing.v1 import AppTest

from conftest import ROOT, copy_run_files, texts
from mnistviz import mydigits


def open_draw(monkeypatch) -> AppTest:
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    at.switch_page("pages/draw.py")
    return at.run()


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
    at.session_state["mydigits_tab"] = "Evaluate a model"  # the tab a click opens: only the open tab is computed
    at.run()
    expected = mydigits.evaluate_set(load_model(mydigits.DEFAULT_MODEL), mydigits.load())["accuracy"]
    accuracy = next(m for m in at.metric if m.label == "Accuracy on my digits")
    assert accuracy.value == f"{expected:.1%}"


def test_a_run_with_a_broken_checkpoint_is_reported(tiny_env, fixture_runs, monkeypatch):
    broken = copy_run_files(fixture_runs / "tiny-none", tiny_env / "broken")
    (broken / "best.pt").write_bytes(b"not a checkpoint")
    at = open_draw(monkeypatch)
    picker = model_picker(at)
    picker.select(str(broken.resolve())).run()
    assert not at.exception
    assert "The model broken cannot be loaded" in texts(at.error)
    assert "Draw a digit 0-9" in texts(at.info)


# ---------- the model follows the run selected in the sidebar ----------

def open_draw_on(monkeypatch, run: str) -> AppTest:
    """The app opened with ?run=RUN (the sidebar picks it), then switched to the Draw page."""
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    at.query_params["run"] = run
    at.run()
    at.switch_page("pages/draw.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_model_is_the_run_selected_in_the_sidebar_until_the_user_picks_another(fixture_runs, tiny_data,
                                                                                   monkeypatch):
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(fixture_runs))
    none, aug = (str((fixture_runs / n).resolve()) for n in ("tiny-none", "tiny-aug"))
    at = open_draw_on(monkeypatch, "tiny-none")
    assert model_picker(at).value == none
    # the user's own pick stays over reruns of the page
    default = str(mydigits.DEFAULT_MODEL.resolve())
    model_picker(at).select(default).run()
    assert model_picker(at).value == default
    at.button(key="draw_clear").click().run()
    assert not at.exception and model_picker(at).value == default
    # another run picked in the sidebar: the model follows it
    at.selectbox(key="_run_picker").select("tiny-aug").run()
    assert not at.exception and model_picker(at).value == aug
    # leaving the page and coming back: the sidebar's run again
    model_picker(at).select(default).run()
    at.switch_page("pages/home.py").run()
    at.switch_page("pages/draw.py").run()
    assert not at.exception and model_picker(at).value == aug


def test_a_selected_run_without_usable_weights_falls_back_to_the_default(fixture_runs, tiny_data, tmp_path,
                                                                           monkeypatch):
    from mnistviz.train import Config, create_run

    root = tmp_path / "runs"
    copy_run_files(fixture_runs / "tiny-none", root / "broken")
    (root / "broken" / "best.pt").write_bytes(b"not a checkpoint")
    create_run(Config(name="queued", epochs=1), root)          # never trained: no checkpoint at all
    monkeypatch.setenv("MNISTVIZ_DATA", str(tmp_path / "no-mnist"))  # the Draw page does not need MNIST
    monkeypatch.setenv("MNISTVIZ_RUNS", str(root))
    default = str(mydigits.DEFAULT_MODEL.resolve())
    at = open_draw_on(monkeypatch, "broken")
    assert model_picker(at).value == default and not at.error
    assert "broken, cannot be loaded" in texts(at.caption)
    assert "Draw a digit 0-9" in texts(at.info)
    at.selectbox(key="_run_picker").select("queued").run()
    assert not at.exception and model_picker(at).value == default and not at.error
    assert not any(o.startswith("queued") for o in model_picker(at).options)


def test_a_stopped_run_selected_in_the_sidebar_is_offered_and_used(fixture_runs, tiny_data, tmp_path, monkeypatch):
    import json

    root = tmp_path / "runs"
    run = copy_run_files(fixture_runs / "tiny-none", root / "halfway")
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "status": "stopped"}))
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(root))
    at = open_draw_on(monkeypatch, "halfway")
    picker = model_picker(at)
    assert picker.value == str(run.resolve())
    label = picker.options[picker.index]
    assert label.startswith("halfway (") and "stopped" in label


def test_a_run_named_default_is_told_apart_from_the_built_in_one(fixture_runs, tiny_data, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    copy_run_files(fixture_runs / "tiny-none", root / "default")
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(root))
    at = open_draw_on(monkeypatch, "default")
    picker = model_picker(at)
    assert len(set(picker.options)) == len(picker.options) == 2
    assert picker.options[0].startswith("default (built in") and picker.options[1].startswith("default (your runs")
    assert picker.value == str((root / "default").resolve())   # the sidebar's run, not the built-in namesake


def grid_tiles(at: AppTest, key: str) -> list[int]:
    """The ids of the tiles a digit grid chart draws (the invisible markers' customdata)."""
    import json

    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith(key) or key in c.proto.id)
    spec = json.loads(chart.proto.spec)
    return [int(i) for t in spec["data"] if t.get("customdata") for i in t["customdata"]]


def test_a_large_set_is_drawn_a_page_at_a_time_and_only_the_open_tab_computes(tiny_env, monkeypatch):
    n = 450
    rng = np.random.default_rng(0)
    mydigits.save(mydigits.DigitSet(images=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
                                    labels=np.arange(n, dtype=np.int64) % 10,
                                    created=np.arange(n, dtype=np.float64)))
    calls = []
    evaluate_set = mydigits.evaluate_set
    monkeypatch.setattr(mydigits, "evaluate_set", lambda *a: calls.append(1) or evaluate_set(*a))
    exports = []
    to_bytes = mydigits.to_bytes
    monkeypatch.setattr(mydigits, "to_bytes", lambda *a: exports.append(1) or to_bytes(*a))
    at = open_draw(monkeypatch)
    assert not at.exception
    assert grid_tiles(at, "mydigits_grid") == list(range(n - 1, n - 201, -1))  # the newest 200
    assert "450 digits" in texts(at.caption) and "Showing 1-200" in texts(at.caption)
    at.number_input(key="mydigits_page").set_value(3).run()
    assert grid_tiles(at, "mydigits_grid") == list(range(49, -1, -1))  # the oldest 50
    assert "Showing 401-450" in texts(at.caption)
    assert calls == [] and exports == []  # the other tabs are closed: no evaluation, no export made
