"""The live numbers as data (mnistviz.live) and as the app's JSON route (/api/live, app.py) that the Train page
polls every second instead of rerunning its script."""
import json
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import StreamlitServer
from mnistviz import live, runs, train


def running_run(root, name="r1", epochs=4):
    """A run shown as running (this test process stands in for its trainer), one epoch done, 100 of 400 steps."""
    run = train.create_run(train.Config(name=name, epochs=epochs, log_every=20), root)
    run.append_metrics([{"epoch": 1, "step": 100, "train_loss": 0.3, "train_acc": 0.9, "test_loss": 0.2,
                         "test_acc": 0.9731, "epoch_seconds": 5.0, "images_per_s": 5120.0}])
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), started=time.time(), total_steps=400,
                     steps_per_epoch=100, epochs=epochs, global_step=150, progress=0.375, eta_s=125.4,
                     images_per_s=6400.0)
    return run


def test_stats_of_a_running_run(tmp_path):
    run = running_run(tmp_path)
    state, stats = live.stats(run)
    assert state == "running"
    assert stats == [("Status", "running"), ("Epoch", "2 / 4"), ("Step", "150", "of 400 · 38%"), ("ETA", "2:05"),
                     ("Images/s", "6,400"), ("Best test acc", "97.31%")]
    run.write_status(status="stopped", pid=None)
    state, stats = live.stats(run)
    assert (state, stats[1], stats[3]) == ("stopped", ("Epoch", "1 / 4"), ("ETA", "–"))
    assert stats[2] == ("Step", "150", "of 400 · 38%")  # a stop checkpoints where it stopped


def test_a_dead_runs_step_says_where_resume_continues(tmp_path):
    """Killed at step 150 with its last checkpoint at step 100 (the end of epoch 1): the Train page and the Runs
    table both give 25%, what --resume keeps, and the page says where the checkpoint is."""
    run = running_run(tmp_path)
    run.write_status(status="running", pid=999_999_999, checkpoint_step=100)  # a trainer that is gone
    state, stats = live.stats(run)
    assert state == "interrupted"
    assert stats[2] == ("Step", "150", "of 400 · checkpoint at 100 (25%)")
    assert run.summary()["progress"] == 0.25


@pytest.mark.parametrize("seconds, text", [(None, "–"), (0, "0:00"), (59.6, "1:00"), (3599, "59:59"),
                                           (3600, "1h00"), (7325, "2h02")])
def test_clock(seconds, text):
    assert live.clock(seconds) == text


def test_sidebar_figures():
    assert live.sidebar_figures(0, None) == {"epochs_done": "0", "best": "no epoch yet"}
    assert live.sidebar_figures(2, None) == {"epochs_done": "2", "best": "none recorded"}  # epochs without a test
    assert live.sidebar_figures(3, 0.98765) == {"epochs_done": "3", "best": "98.77%"}


def test_snapshot_and_when_the_page_must_rerun(tmp_path):
    run = running_run(tmp_path)
    snap = live.snapshot("r1", tmp_path)
    assert snap["busy"] == ["r1", []]  # training now (its process, this one, is alive), nothing queued
    assert snap["state"] == snap["phase"] == "running" and snap["stats"][0] == ("Status", "running")
    assert snap["metrics_size"] == run.metrics_file.stat().st_size and "rerun" not in snap
    assert snap["sidebar"] == {"epochs_done": "1", "best": "97.31%"}  # what the sidebar says of it
    drawn = {"busy": ["r1", []], "phase": "running"}
    assert live.snapshot("r1", tmp_path, seen=drawn)["rerun"] is False
    run.write_status(global_step=160, progress=0.4)  # only numbers moved: no rerun
    assert live.snapshot("r1", tmp_path, seen=drawn)["rerun"] is False
    run.write_status(status="completed", pid=None)
    assert live.snapshot("r1", tmp_path, seen=drawn)["rerun"] is True
    # the chart's poller watches metrics.jsonl only
    size = {"metrics_size": run.metrics_file.stat().st_size}
    assert live.snapshot("r1", tmp_path, seen=size)["rerun"] is False
    run.append_metrics([{"step": 180, "train_loss": 0.25}])
    assert live.snapshot("r1", tmp_path, seen=size)["rerun"] is True
    run.append_metrics([{"epoch": 2, "step": 200, "test_acc": 0.9702}])  # a worse second epoch: the best stays
    assert live.snapshot("r1", tmp_path)["sidebar"] == {"epochs_done": "2", "best": "97.31%"}
    # a training started or ended (what live.busy() reads: the job manager's own runs and queue)
    assert live.changed({"busy": [None, []]}, {"busy": ["r2", []]}) is True
    assert live.changed({"busy": ["r2", ["r3"]]}, {"busy": ["r2", []]}) is True


def test_a_run_being_started_is_in_the_running_phase():
    # the Train page draws a launched run whose trainer is still loading (busy()'s training, status queued) as
    # running, so the trainer's own "running" changes nothing it drew
    assert live.phase("queued", "r1", ["r1", []]) == "running"
    assert live.phase("running", "r1", ["r1", []]) == "running"
    assert live.phase("queued", "r1", ["r0", ["r1"]]) == "queued"  # waiting behind another training
    assert live.phase("queued", "r1", [None, ["r1"]]) == "queued"
    assert live.phase("stopped", "r1", [None, []]) == "stopped"
    assert live.phase("queued", None, [None, []]) == "queued"


def test_a_run_being_started_shows_as_starting(tmp_path):
    import subprocess
    import sys

    run = running_run(tmp_path)
    # jobs' launch, as runs.launcher_alive knows it: alive, its command line naming the run and mnistviz
    launch = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "mnistviz.train", "r1"])
    deadline = time.time() + 10  # until it has exec'd (before, its command line is still this process's)
    while b"mnistviz.train" not in Path(f"/proc/{launch.pid}/cmdline").read_bytes() and time.time() < deadline:
        time.sleep(0.01)
    try:
        run.write_status(status="queued", pid=None, launcher_pid=launch.pid)
        snap = live.snapshot("r1", tmp_path)
        assert snap["busy"] == ["r1", []] and snap["state"] == "queued" and snap["phase"] == "running"
        assert snap["stats"][0] == ("Status", "starting")
        assert live.snapshot("r1", tmp_path, seen={"busy": ["r1", []], "phase": "running"})["rerun"] is False
    finally:
        launch.kill()
        launch.wait()
    snap = live.snapshot("r1", tmp_path)  # the launch ended without its trainer: failed (jobs' tick says why)
    assert snap["phase"] == snap["state"] != "running" and snap["stats"][0] == ("Status", snap["state"])


def test_status_numbers_that_are_infinite_or_nan_are_dropped_not_raised(tmp_path):
    run = running_run(tmp_path)
    (run.status_file).write_text(json.dumps({**run.raw_status(), "eta_s": float("inf"), "images_per_s": float("nan"),
                                             "progress": float("-inf")}))  # json.dumps writes Infinity / NaN
    assert not {"eta_s", "images_per_s", "progress"} & set(run.status())
    got = dict((s[0], s[1]) for s in live.snapshot("r1", tmp_path)["stats"])
    assert got["ETA"] == "estimating" and got["Images/s"] == "5,120"  # no ETA yet; the last epoch's rate instead
    json.dumps(live.snapshot("r1", tmp_path), allow_nan=False)  # what the JSON route sends


def test_a_seen_that_is_not_a_small_object_is_ignored():
    assert live.parse_seen(None) is None
    assert live.parse_seen("{broken") is None and live.parse_seen("[1]") is None
    assert live.parse_seen("[" * 100_000 + "]" * 100_000) is None
    assert live.parse_seen('{"busy": [null, []], "other": 1}') == {"busy": [None, []]}


def test_a_run_deleted_or_never_there_is_gone(tmp_path):
    running_run(tmp_path)
    assert live.snapshot("nope", tmp_path)["state"] == "gone"
    assert live.snapshot("../etc", tmp_path)["state"] == "gone"
    assert live.snapshot("nope", tmp_path, seen={"state": "running"})["rerun"] is True
    assert "state" not in live.snapshot(None, tmp_path)


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Cache-Control"] == "no-store"
        return json.loads(r.read())


def test_the_app_serves_the_snapshot_as_json(tmp_path):
    root = tmp_path / "runs"
    run = running_run(root)
    srv = StreamlitServer({"MNISTVIZ_RUNS": str(root)})
    try:
        seen = json.dumps({"busy": ["r1", []], "state": "running"})
        got = get_json(f"{srv.url}/api/live?" + urllib.parse.urlencode({"run": "r1", "seen": seen}))
        assert got == json.loads(json.dumps(live.snapshot("r1", root, seen=json.loads(seen))))
        assert got["rerun"] is False and got["stats"][2] == ["Step", "150", "of 400 · 38%"]
        run.write_status(status="stopped", pid=None)
        assert get_json(f"{srv.url}/api/live?" + urllib.parse.urlencode({"run": "r1", "seen": seen}))["rerun"] is True
        # bad input: an unknown run, a name leaving the folder, a broken `seen`, no run at all
        assert get_json(f"{srv.url}/api/live?run=nope")["state"] == "gone"
        assert get_json(f"{srv.url}/api/live?run=..%2F..%2Fetc")["state"] == "gone"
        assert "rerun" not in get_json(f"{srv.url}/api/live?run=r1&seen=%7Bbroken")
        assert "rerun" not in get_json(f"{srv.url}/api/live?run=r1&seen=%5B1%5D")
        assert get_json(f"{srv.url}/api/live") == {"busy": [None, []]}
        deep = "[" * 5000 + "]" * 5000  # deeper than json can read: a RecursionError, once a 500
        assert "rerun" not in get_json(f"{srv.url}/api/live?run=r1&seen=" + urllib.parse.quote(deep))
        runs.atomic_write_json(run.status_file, {**run.raw_status(), "status": "running", "pid": os.getpid(),
                                                 "heartbeat": time.time(), "eta_s": float("inf")})
        # no ETA can be made of it: as before the trainer knows its rate
        assert dict((s[0], s[1]) for s in get_json(f"{srv.url}/api/live?run=r1")["stats"])["ETA"] == "estimating"
        # the dashboard itself is still served by the same server
        with urllib.request.urlopen(srv.url + "/train", timeout=10) as r:
            assert b"<div id=\"root\"" in r.read()
    finally:
        srv.stop()
