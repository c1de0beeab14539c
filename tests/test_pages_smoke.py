"""Every page through AppTest in the situations a user can be in: no runs at all; MNIST missing with a broken run
folder beside a good run; a run with its predictions and checkpoints gone. No page may raise."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["pages/home.py", "pages/train.py", "pages/data.py", "pages/mispredictions.py", "pages/confusion.py",
         "pages/cartography.py", "pages/feature_maps.py", "pages/embeddings.py", "pages/draw.py", "pages/compare.py"]


def visit_all(run: str | None = None) -> dict[str, str]:
    """Open every page; return page -> all the text it showed. Fails on any exception."""
    out = {}
    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    if run:
        at.query_params["run"] = run
    at.run()
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        shown = [str(e.value) for kind in ("error", "warning", "info", "caption", "markdown") for e in at.get(kind)]
        out[page] = "\n".join(shown)
    return out


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    d = tmp_path / "runs"
    d.mkdir()
    monkeypatch.setenv("MNISTVIZ_RUNS", str(d))
    return d


def test_no_runs_yet(runs_dir, tiny_data, monkeypatch):
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    shown = visit_all()
    assert "No run selected" in shown["pages/mispredictions.py"]


def test_missing_mnist_and_a_broken_folder(runs_dir, fixture_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTVIZ_DATA", str(tmp_path / "nowhere"))
    shutil.copytree(fixture_runs / "tiny-none", runs_dir / "tiny-none")
    (runs_dir / "broken").mkdir()
    (runs_dir / "broken" / "config.json").write_text("{oops")
    shown = visit_all("tiny-none")
    assert "broken" in shown["pages/home.py"]
    for page in ("pages/data.py", "pages/train.py"):
        assert "MNIST" in shown[page] and "train-images-idx3-ubyte" in shown[page], page


def test_run_without_predictions_or_checkpoints(runs_dir, fixture_runs, tiny_data, monkeypatch):
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    shutil.copytree(fixture_runs / "tiny-none", runs_dir / "gutted")
    shutil.rmtree(runs_dir / "gutted" / "preds")
    shutil.rmtree(runs_dir / "gutted" / "epochs")  # no weights left anywhere
    for f in ("best.pt", "last.pt"):
        (runs_dir / "gutted" / f).unlink()
    shown = visit_all("gutted")
    for page in ("pages/mispredictions.py", "pages/confusion.py"):
        assert "no stored test predictions" in shown[page], page
    assert "checkpoint" in shown["pages/feature_maps.py"] and "checkpoint" in shown["pages/embeddings.py"]


def test_every_picture_is_sent_as_png(runs_dir, fixture_runs, tiny_data, monkeypatch):
    # Streamlit sends an array as JPEG (quality 100) by default: pixels up to 1/255 off and 6-12x the bytes of a PNG
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    shutil.copytree(fixture_runs / "tiny-none", runs_dir / "tiny-none")
    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    at.query_params["run"] = "tiny-none"
    at.run()
    urls = {}
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, page
        urls[page] = [img.url for e in at.get("image") for img in e.proto.imgs]
    assert urls["pages/data.py"] and urls["pages/feature_maps.py"], urls  # the sample grids, the test image and maps
    assert all(u.endswith(".png") for us in urls.values() for u in us), urls
