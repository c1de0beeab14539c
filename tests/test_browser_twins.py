"""Twins of the Chromium tests (tests/e2e/), on the tiny constructed data of conftest.py: AppTest for what a page
draws and what its live poller is told, mnistviz.live.snapshot for what that poller's next poll would say, and a
plain HTTP client for what app.py serves. A machine without Chromium still guards the behaviour each e2e test is
about; what only a browser can show (pixel layout, the poller's JavaScript, drawing with a mouse) is said where the
e2e test is, in the report of issue 29."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import StreamlitServer, texts
from mnistviz import jobs, live, runs

ROOT = Path(__file__).resolve().parent.parent


def pollers(at, where=None) -> dict:
    """The live pollers (pages/_live.py) the page mounted: key -> the data the browser component is given."""
    return {e.key: json.loads(e.proto.json) for e in (where or at).get("bidi_component")}


def stat(at, label: str) -> str:
    """A value of the page's live numbers row (data-stat cells, pages/_live.stat_row), as drawn."""
    import re

    for m in at.markdown:
        found = re.search(rf'data-stat="{re.escape(label)}"><div class="mv-label">[^<]*</div>'
                          rf'<div class="mv-value">([^<]*)</div>', m.value)
        if found:
            return found.group(1)
    raise AssertionError(f"no {label} in the live numbers")


def poll(data: dict) -> dict:
    """What the poller mounted with `data` gets at its next poll (app.py's /api/live answers live.snapshot)."""
    return live.snapshot(data["run"], seen=data["seen"])


def running(run, **fields) -> None:
    """Mark `run` training elsewhere: here, this test process (alive, fresh heartbeat)."""
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), started=time.time(), **fields)


EPOCH_1 = {"epoch": 1, "step": 215, "train_loss": 0.3, "train_acc": 0.9, "test_loss": 0.2, "test_acc": 0.9731,
           "epoch_seconds": 5.0, "images_per_s": 9000.0}


def step_record(k: int) -> dict:
    """The trainer's k-th step record (log_every 20, 215 steps an epoch), as in tests/e2e/test_train_live.py."""
    return {"step": 20 * k, "epoch_progress": round(20 * k / 215, 4), "train_loss": 2.3 / k, "train_acc": 1 - 0.9 / k,
            "lr": 0.2, "images_per_s": 9000.0, "time": time.time()}


@pytest.fixture
def starting(tiny_env):
    """A run shown as running that has logged nothing yet (training elsewhere: this test process)."""
    from mnistviz import train

    run = train.create_run(train.Config(name="starting", epochs=2, log_every=20), tiny_env)
    running(run, total_steps=430, steps_per_epoch=215, epochs=2)
    yield run
    run.write_status(status="stopped", pid=None)


# ---------- tests/e2e/test_train_live.py ----------

def test_the_train_page_polls_its_numbers_every_second_and_reruns_only_when_the_state_changes(starting, app):
    # twin of test_the_numbers_refresh_every_second_without_rerunning_the_page_until_the_state_changes
    at = app("pages/train.py", run="starting")
    assert stat(at, "Status") == "running" and "live_stop:starting" in [b.key for b in at.button]
    numbers = pollers(at)["live_poll"]
    assert (numbers["run"], numbers["every_ms"], numbers["stats"]) == ("starting", 1000, True)
    assert numbers["seen"] == {"busy": ["starting", []], "phase": "running"}
    for k in range(1, 5):  # the trainer moves on: each poll carries the new Step, and asks for no rerun
        starting.write_status(global_step=1000 * k, progress=1000 * k / 430, eta_s=60 - k)
        snap = poll(numbers)
        assert snap["rerun"] is False and dict((s[0], s[1]) for s in snap["stats"])["Step"] == f"{1000 * k:,}"
    starting.append_metrics([EPOCH_1])  # an epoch ends: the poller writes the sidebar's figures, still no rerun
    snap = poll(numbers)
    assert snap["rerun"] is False and snap["sidebar"] == {"epochs_done": "1", "best": "97.31%"}
    assert numbers["side"] is True
    starting.write_status(status="stopped", pid=None)  # a change of state: the poll asks for the page's rerun
    assert poll(numbers)["rerun"] is True
    at.run()
    keys = [b.key for b in at.button]
    assert "live_resume:starting" in keys and "live_stop:starting" not in keys and stat(at, "Status") == "stopped"


def test_the_chart_polls_for_its_first_records_then_leaves_them_to_its_10_s_refresh(starting, app):
    # twin of test_the_first_records_of_a_run_show_at_once_then_the_curves_keep_their_10_s_rhythm
    at = app("pages/train.py", run="starting")
    sparse = 3  # pages/train.py SPARSE_RECORDS
    for k in range(1, sparse + 1):
        curves = pollers(at).get("curves_poll")
        assert curves and curves["run"] == "starting" and curves["every_ms"] == 1000, (k, pollers(at))
        starting.append_metrics([step_record(k)])
        assert poll(curves)["rerun"] is True  # the record is drawn at the chart poller's next poll
        at.run()
        spec = json.loads(at.get("plotly_chart")[0].proto.spec)
        assert [len(t["x"]) for t in spec["data"] if t.get("legendgroup") == "train-step"] == [k, k]
    # SPARSE_RECORDS records shown: the chart's poller watches only the epochs done (the numbers' poller stays)
    drawn = pollers(at)
    assert set(drawn) == {"live_poll", "curves_poll"} and drawn["curves_poll"]["seen"] == {"epochs_done": 0}
    starting.append_metrics([step_record(sparse + 1)])
    for data in drawn.values():
        assert poll(data)["rerun"] is False  # a step record alone reruns nothing before the refresh
    starting.append_metrics([EPOCH_1])
    assert poll(drawn["curves_poll"])["rerun"] is True  # an epoch's end: its point is drawn at the next poll


def test_a_run_being_started_is_drawn_as_running_and_its_trainer_starting_asks_for_no_rerun(tiny_env, app):
    # twin of test_a_run_being_started_is_drawn_as_running_and_its_trainer_starting_reruns_nothing
    from mnistviz import train

    run = train.create_run(train.Config(name="launching", epochs=2, log_every=20), tiny_env)
    # a stand-in for jobs' launch: alive, and its command line names the run and mnistviz (procs.launcher_alive)
    launch = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "mnistviz.train", "launching"])
    try:
        deadline = time.monotonic() + 30  # until it has exec'd (before, its command line is still this process's)
        while b"mnistviz.train" not in Path(f"/proc/{launch.pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the stand-in launcher never started"
            time.sleep(0.01)
        run.write_status(status="queued", launcher_pid=launch.pid, launched=time.time())
        at = app("pages/train.py", run="launching")
        assert "Live: launching" in texts(at.subheader)
        assert stat(at, "Status") == "starting"
        assert "live_stop:launching" in [b.key for b in at.button] and "is queued" not in texts(at.info)
        assert at.sidebar.caption[0].value.startswith("**running** · ")
        spec = json.loads(at.get("plotly_chart")[0].proto.spec)
        assert [a["text"] for a in spec["layout"]["annotations"]] == ["waiting for the first logged steps"] * 2
        drawn = pollers(at)
        assert set(drawn) == {"live_poll", "curves_poll"}  # its first records will show at once
        # the trainer starts: its status says running; neither poller asks for a rerun
        running(run, total_steps=430, steps_per_epoch=215, epochs=2, global_step=3)
        for data in drawn.values():
            assert poll(data)["rerun"] is False, data
        assert dict((s[0], s[1]) for s in poll(drawn["live_poll"])["stats"])["Status"] == "running"
    finally:
        run.write_status(status="stopped", pid=None, launcher_pid=None)
        launch.kill()
        launch.wait()


def test_on_a_page_without_a_live_view_the_sidebar_polls_its_training_run_until_it_ends(starting, app):
    # twin of test_on_another_page_the_sidebar_follows_the_training_and_its_end
    at = app("pages/data.py", run="starting")
    assert [t.value for t in at.title] == ["Data"]
    caption = at.sidebar.caption[0].value
    assert caption.startswith("**running** · ") and "no epoch yet" in caption
    side = pollers(at, at.sidebar)["side_poll"]
    assert (side["run"], side["every_ms"], side["stats"], side["side"]) == ("starting", 2000, False, True)
    starting.append_metrics([EPOCH_1])
    snap = poll(side)
    assert snap["rerun"] is False and snap["sidebar"] == {"epochs_done": "1", "best": "97.31%"}
    starting.write_status(status="completed", pid=None)  # its end: the poll reruns the page...
    assert poll(side)["rerun"] is True
    at.run()
    assert not at.exception
    assert at.sidebar.caption[0].value.startswith("**completed** · ")
    assert pollers(at) == {}  # ...which polls no more


# ---------- tests/e2e/test_shell_e2e.py ----------

def test_the_run_picker_offers_plain_names_and_keeps_its_run_when_its_status_changes(tiny_env, fixture_runs, app):
    # twin of test_the_selected_run_survives_its_status_changing: labels that carried the status came back from the
    # browser as unknown values once the status changed; the options are the plain names
    for name in ("tiny-none", "tiny-aug"):
        shutil.copytree(fixture_runs / name, tiny_env / name)
    cfg_file = tiny_env / "tiny-aug" / "config.json"  # the oldest run: a fallback (the newest) is not it
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "created": 1_000_000_000.0}))
    at = app("pages/confusion.py", run="tiny-aug")
    picker = at.selectbox(key="_run_picker")
    assert picker.value == "tiny-aug" and sorted(picker.options) == ["tiny-aug", "tiny-none"]
    runs.Run(tiny_env / "tiny-aug").write_status(status="stopped")
    for page in ("pages/mispredictions.py", "pages/feature_maps.py", "pages/home.py"):
        at.selectbox(key="_run_picker").set_value("tiny-aug")  # the browser sends back the option it shows
        at.switch_page(page).run()
        assert not at.exception, page
        assert at.selectbox(key="_run_picker").value == "tiny-aug", page
        assert at.query_params["run"] in ("tiny-aug", ["tiny-aug"]), page
    assert "stopped" in at.sidebar.caption[0].value


def test_the_runs_page_polls_for_a_training_and_follows_it_without_rerunning_for_its_numbers(tiny_env, fixture_runs,
                                                                                          app):
    # twin of test_the_runs_page_follows_a_training_without_a_reload
    shutil.copytree(fixture_runs / "tiny-none", tiny_env / "tiny-none")
    run = runs.Run(tiny_env / "tiny-none")
    at = app(run="tiny-none")
    idle = pollers(at)["runs_poll"]  # nothing trains: one small request every IDLE_EVERY_S = 5 s
    assert (idle["run"], idle["every_ms"], idle["stats"]) == (None, 5000, False)
    running(run, progress=0.25, epoch=1, global_step=10, total_steps=40)  # a training starts, as from a terminal
    assert poll(idle)["rerun"] is True
    at.run()
    assert "**Training now: tiny-none**" in texts(at.markdown) and "home_stop:tiny-none" in [b.key for b in at.button]
    assert stat(at, "Step") == "10"
    numbers = pollers(at)["runs_poll"]
    assert (numbers["run"], numbers["every_ms"], numbers["stats"]) == ("tiny-none", 1000, True)
    for k in (20, 30):  # the trainer moves on: written in place by the poller, no rerun
        run.write_status(global_step=k, progress=k / 40)
        snap = poll(numbers)
        assert snap["rerun"] is False and dict((s[0], s[1]) for s in snap["stats"])["Step"] == str(k)
    run.write_status(status="completed", pid=None, heartbeat=time.time(), progress=1.0)
    assert poll(numbers)["rerun"] is True
    at.run()
    assert "home_stop:tiny-none" not in [b.key for b in at.button] and "Training now" not in texts(at.markdown)
    assert "completed" in at.sidebar.caption[0].value


def test_app_serves_every_page_url_with_the_root_of_its_server(tiny_env):
    # twin of test_runs_path_opens_the_runs_page_with_its_run and test_a_page_url_finds_the_server_at_once_...: each
    # page's URL (/runs included) is Streamlit's page with window.__streamlit naming the app's root for that page
    from pages._nav import PAGES

    srv = StreamlitServer({"MNISTVIZ_RUNS": str(tiny_env)})
    try:
        for _, _, _, path in PAGES:
            with urllib.request.urlopen(f"{srv.url}/{path}?run=tiny-aug", timeout=30) as r:
                body = r.read().decode()
            assert r.status == 200 and '<div id="root"' in body, path
            assert f"const page = {json.dumps(path)}" in body and "window.__streamlit = {BACKEND_BASE_URL: root" in body
    finally:
        srv.stop()


def test_app_turns_off_the_legacy_pages_mode_before_any_session():
    # twin of test_a_page_url_opened_first_on_a_fresh_server_runs_inside_the_shell: with a pages/ folder beside the
    # main script, a fresh server decides uses_pages_directory at its first session unless app.py has decided it
    out = subprocess.run([sys.executable, "-c", "import app; from streamlit.runtime.pages_manager import "
                          "PagesManager as P; print(P.uses_pages_directory)"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "False", out.stdout


# ---------- tests/e2e/test_first_run.py ----------

def test_a_first_run_on_a_desktop_asks_nothing_and_shows_no_deploy_button(tmp_path):
    # twin (no browser): the README's command on a desktop with no Streamlit credentials yet serves the app, asks no
    # email, and the project's config keeps the Deploy button out of the toolbar (client.toolbarMode "viewer")
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["client"]["toolbarMode"] == "viewer" and cfg["browser"]["gatherUsageStats"] is False
    home, root = tmp_path / "home", tmp_path / "runs"
    home.mkdir()
    root.mkdir()
    srv = StreamlitServer({"HOME": str(home), "DISPLAY": ":99", "BROWSER": "true", "MNISTVIZ_RUNS": str(root)},
                          flags=())
    try:
        with urllib.request.urlopen(srv.url + "/", timeout=30) as r:
            assert r.status == 200
    finally:
        srv.stop()
    log = (root / f".streamlit-{srv.port}.log").read_text()
    assert "Email" not in log and "Collecting usage statistics" not in log, log


# ---------- tests/e2e/test_compare_e2e.py ----------

def test_a_compare_link_draws_one_curve_per_run_in_each_of_the_six_panels(tiny_env, fixture_runs, monkeypatch):
    # twin of test_compare_page_shows_both_runs_curves (its heading and legend: test_page_compare.py)
    monkeypatch.chdir(ROOT)
    for name in ("tiny-none", "tiny-aug"):
        shutil.copytree(fixture_runs / name, tiny_env / name)
    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    at.query_params["runs"] = "tiny-none,tiny-aug"
    at.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception
    assert "A = tiny-none vs B = tiny-aug" in [h.value for h in at.subheader]
    assert at.sidebar.selectbox(key="_run_picker")  # inside the shell
    chart = at.get("plotly_chart")[0]
    spec = json.loads(chart.proto.spec)
    panels = {name: sorted((t.get("xaxis", "x"), t.get("yaxis", "y")) for t in spec["data"] if t.get("name") == name)
              for name in ("tiny-none", "tiny-aug")}
    assert len(spec["data"]) == 12 and panels["tiny-none"] == panels["tiny-aug"] and len(set(panels["tiny-none"])) == 6
    config = json.loads(chart.proto.config)  # plotly's toolbar, shown, downloads the chart as PNG
    assert config.get("displayModeBar") is not False and config["toImageButtonOptions"]["format"] == "png", config


# ---------- tests/e2e/test_draw_e2e.py ----------

def strokes(points, pen: int = 20) -> np.ndarray:
    """What streamlit-drawable-canvas sends for a stroke through `points`: a 280 x 280 RGBA image, white on black."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (280, 280), (0, 0, 0, 255))
    d = ImageDraw.Draw(img)
    d.line(points, fill=(255, 255, 255, 255), width=pen, joint="curve")
    for x, y in (points[0], points[-1]):
        d.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=(255, 255, 255, 255))
    return np.asarray(img).copy()


def test_a_drawn_one_then_zero_are_predicted_and_clear_empties_the_canvas(tiny_env, monkeypatch):
    # twin of test_trace_a_one_then_a_zero: the canvas (a browser component) replaced by one that "sends" the image
    # of the e2e test's strokes; the page prepares it, classifies it with the bundled default model, shows it
    import types

    drawn = {}  # canvas key -> its image (none: an empty canvas)

    def fake_canvas(*, key, **kwargs):
        return types.SimpleNamespace(image_data=drawn.get(key))
    monkeypatch.setitem(sys.modules, "streamlit_drawable_canvas", types.SimpleNamespace(st_canvas=fake_canvas))
    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/draw.py").run()
    assert "Draw a digit 0-9" in texts(at.info)
    drawn["draw_canvas_0"] = strokes([(150, 50), (140, 140), (132, 240)])  # a "1", slightly slanted
    at.run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Prediction"] == "1", metrics
    assert "The model's input, 28 x 28" in [img.caption for e in at.get("image") for img in e.proto.imgs]
    at.button(key="draw_clear").click().run()  # a fresh canvas (a new key): empty, no prediction
    assert "Draw a digit 0-9" in texts(at.info) and "Prediction" not in [m.label for m in at.metric]
    drawn["draw_canvas_1"] = strokes([(140 - 65 * math.cos(2 * math.pi * k / 32),
                                       140 + 95 * math.sin(2 * math.pi * k / 32)) for k in range(34)])
    at.run()
    assert {m.label: m.value for m in at.metric}["Prediction"] == "0"


# ---------- tests/e2e/test_runs_actions_e2e.py ----------

def test_stop_on_the_runs_page_stops_the_run_it_names_after_the_selection_moved(tiny_env, fixture_runs, app):
    # twin of test_stop_stops_the_run_it_names (with queued runs: Stop's binding to its run is the same; a real
    # trainer's SIGTERM is guarded by tests/test_jobs.py)
    from mnistviz import train

    held = train.create_run(train.Config(name="elsewhere", epochs=1), tiny_env)
    running(held)  # the queue waits behind it
    for name in ("train-a", "train-b"):
        train.create_run(train.Config(name=name, epochs=1), tiny_env).write_status(status="queued")
    jobs._enqueue(tiny_env, ["train-a", "train-b"])
    at = app(run="train-b")
    assert "home_stop:train-b" in [b.key for b in at.button]
    # a row click (a rerun of its own) or a link has moved the selection to train-a before the click arrives
    at.session_state["run"] = "train-a"
    at.query_params["run"] = "train-a"
    at.button(key="home_stop:train-b").click().run()
    assert not at.exception
    assert runs.get_run("train-b").status()["status"] == "stopped"
    assert runs.get_run("train-a").status()["status"] == "queued" and jobs.queue() == ["train-a"]
    jobs.stop("train-a")
    held.write_status(status="stopped", pid=None)
