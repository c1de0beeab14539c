"""The shell and the Runs page through AppTest: a selected run that disappears, Resume on the Runs page, a run whose
checkpoints are missing."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mnistviz import jobs, runs
from conftest import texts

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def shell(tiny_env, fixture_runs, monkeypatch):
    monkeypatch.chdir(ROOT)
    for name in ("tiny-none", "tiny-aug"):
        shutil.copytree(fixture_runs / name, tiny_env / name)

    def make(run: str) -> AppTest:
        at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
        at.query_params["run"] = run
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at
    return make


def test_a_selected_run_deleted_elsewhere_is_said_not_silently_swapped(shell, tiny_env):
    at = shell("tiny-aug")
    at.switch_page("pages/confusion.py").run()
    shutil.rmtree(tiny_env / "tiny-aug")  # another tab deleted it, or someone removed the folder
    at.run()
    assert not at.exception
    shown = at.selectbox(key="_run_picker").value
    assert shown == "tiny-none"
    assert f"Run 'tiny-aug' no longer exists (deleted, or its folder moved); showing {shown} instead." in texts(
        at.sidebar.warning)
    at.run()  # still said on the next rerun...
    assert "no longer exists" in texts(at.sidebar.warning)
    at.selectbox(key="_run_picker").set_value("tiny-none").run()
    at.switch_page("pages/home.py").run()
    assert "no longer exists" in texts(at.sidebar.warning)  # the same run shown: the note stays
    shutil.copytree(tiny_env / "tiny-none", tiny_env / "tiny-b")
    at.run()
    at.selectbox(key="_run_picker").set_value("tiny-b").run()  # ... until another run is picked
    assert "no longer exists" not in texts(at.sidebar.warning)


def test_resume_on_the_runs_page_shows_the_new_state_at_once(shell, tiny_env):
    run = runs.get_run("tiny-none")
    run.write_status(status="stopped", pid=None)
    # keep the queue from starting it: another run trains (this test's own process, with a fresh heartbeat)
    runs.get_run("tiny-aug").write_status(status="running", pid=os.getpid(), heartbeat=time.time())
    at = shell("tiny-none")
    at.button(key="home_resume:tiny-none").click().run()
    assert not at.exception
    assert run.status()["status"] == "queued" and jobs.queue() == ["tiny-none"]
    assert "tiny-none queued to resume." in texts(at.success)
    keys = [b.key for b in at.button]
    assert "home_resume:tiny-none" not in keys and "home_stop:tiny-none" in keys  # queued: Stop offered at once, no stale Resume
    assert "queued" in texts(at.sidebar.caption)
    jobs.stop("tiny-none")


def test_a_completed_run_without_best_pt_offers_last_pt_and_says_so(shell, tiny_env):
    run = runs.get_run("tiny-none")
    run.best_ckpt.unlink()
    at = shell("tiny-none")
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download tiny-none/last.pt"]
    assert "best.pt is missing from this run's folder: the pages use last.pt." in texts(at.caption)
    run.last_ckpt.unlink()
    at.run()
    assert not at.get("download_button")
    assert "best.pt and last.pt are missing from this run's folder (2 epoch(s) recorded)" in texts(at.caption)
    assert "No checkpoint yet" not in texts(at.caption)


@pytest.mark.parametrize("page,slider", [("pages/mispredictions.py", "mp_epoch_tiny-none"),
                                         ("pages/confusion.py", "cf_epoch_tiny-none")])
def test_one_unreadable_epoch_of_predictions_points_to_the_others(shell, tiny_env, page, slider):
    run = runs.get_run("tiny-none")
    best, other = run.best_epoch(), next(e for e in run.pred_epochs() if e != run.best_epoch())
    f = run.preds_dir / f"epoch_{best:03d}.npy"
    f.write_bytes(f.read_bytes()[:len(f.read_bytes()) // 2])  # truncated: a disk that filled up, a bad copy
    at = shell("tiny-none")
    at.switch_page(page).run()
    assert not at.exception
    msg = texts(at.warning)
    assert f"predictions for epoch {best} cannot be read" in msg and f"Pick another epoch above ({other})" in msg
    assert not at.get("plotly_chart")
    at.select_slider(key=slider).set_value(other).run()  # the slider is still there, and the other epoch works
    assert not at.exception and "cannot be read" not in texts(at.warning) and at.get("plotly_chart")


def test_the_sidebar_marks_the_figures_of_a_training_run_for_the_live_poller(shell, tiny_env):
    """While the selected run trains, its epochs done and best test accuracy are spans the poller rewrites
    (pages/_live.py); a run that is not training keeps a plain caption."""
    at = shell("tiny-none")
    caption = at.sidebar.caption[0].value
    assert "<span" not in caption and "2/2 epochs · best test accuracy " in caption
    runs.get_run("tiny-none").write_status(status="running", pid=os.getpid(), heartbeat=time.time())  # this process
    at = shell("tiny-none")
    caption = at.sidebar.caption[0].value
    assert caption.startswith("**running** · ")
    assert '<span class="mv-side" data-run="tiny-none" data-side="epochs_done">2</span>/2 epochs' in caption
    assert 'best test accuracy <span class="mv-side" data-run="tiny-none" data-side="best">' in caption
    at = shell("tiny-aug")  # another run selected: its caption, plain
    assert "<span" not in at.sidebar.caption[0].value


def side_pollers(at) -> list[str]:
    return [e.key for e in at.sidebar.get("bidi_component")]


def test_the_sidebar_polls_for_a_training_run_only_on_pages_without_a_live_view(shell, tiny_env):
    """The Runs and Train pages' own poller writes the sidebar's figures; on the other pages the sidebar mounts one
    while its run trains (one request every 2 s), and none for a run that does not train."""
    runs.get_run("tiny-none").write_status(status="running", pid=os.getpid(), heartbeat=time.time())  # this process
    at = shell("tiny-none")
    assert side_pollers(at) == []  # the Runs page
    for page, pollers in (("pages/train.py", []), ("pages/confusion.py", ["side_poll"]),
                          ("pages/data.py", ["side_poll"]), ("pages/home.py", [])):
        at.switch_page(page).run()
        assert not at.exception and side_pollers(at) == pollers, page
    at = shell("tiny-aug")
    at.switch_page("pages/confusion.py").run()
    assert side_pollers(at) == []


def test_names_from_the_url_and_the_disk_reach_markdown_as_literal_text(tiny_env):
    from pages._shared import md

    crafted = "[pwn](http://evil.invalid/x)![i](http://evil.invalid/i.png) *b* $x$"
    escaped = md(crafted)
    for made in ("[pwn]", "![i]", "http://", " *b*", "$x$"):
        assert made not in escaped, made
    assert escaped.replace("\\", "").replace("\u2060", "") == crafted  # only backslashes and word joiners added
    (tiny_env / "[pwn](http:evil.invalid)").mkdir()  # a folder of the runs folder whose name is markdown
    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    at.query_params["run"] = crafted
    at.run()
    assert not at.exception
    assert md(repr(crafted)) in texts(at.sidebar.warning)
    assert "**" + md("[pwn](http:evil.invalid)") + "**" in texts(at.warning)
