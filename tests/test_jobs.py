"""The job manager with real training processes on tiny data: queue order, one at a time, stop, resume,
a killed process, a failed start, and re-attaching from a fresh process that only has the run folders."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mnistviz import data, jobs, runs, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = dict(epochs=1, batch_size=50, val_size=50, log_every=2)  # 11 steps an epoch on tiny data


def wait_for(cond, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def training_elsewhere(root, name="cli-run"):
    """A run trained by another process (as `python -m mnistviz.train` in a terminal would): status running
    with a live pid, here this test process. While it runs, the queue must wait."""
    run = train.create_run(train.Config(name=name, **QUICK), root)
    run.write_status(status="running", pid=os.getpid(), started=time.time())
    return run


@pytest.fixture
def root(tiny_env):
    yield tiny_env
    # end every process these tests started (launchers and trainers in this runs folder), never others
    for run in map(runs.Run, runs.run_folders(tiny_env)):
        raw = run.raw_status()
        for key, kill in (("pid", os.kill), ("launcher_pid", os.killpg)):
            pid = raw.get(key)
            if pid and pid != os.getpid() and runs.pid_alive(pid):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def test_submit_refuses_bad_config_and_missing_data(root, tmp_path, monkeypatch):
    with pytest.raises(runs.RunError, match="lr must be above 0"):
        jobs.submit(train.Config(lr=-1.0, **QUICK))
    with pytest.raises(runs.RunError, match="epochs"):
        jobs.submit_pair(train.Config(**{**QUICK, "epochs": 0}))
    monkeypatch.setenv("MNISTVIZ_DATA", str(tmp_path / "nothing-here"))
    with pytest.raises(data.MNISTMissing, match="IDX files"):
        jobs.submit(train.Config(**QUICK))
    assert runs.list_runs() == ([], [])
    assert jobs.queue() == []


def test_queue_is_fifo_one_at_a_time_and_survives_a_restart(root):
    blocker = training_elsewhere(root)
    a = jobs.submit(train.Config(name="a", **QUICK))
    aug, normal = jobs.submit_pair(train.Config(name="p", **QUICK))
    assert (aug.name, normal.name) == ("p-standard", "p-none")
    assert aug.config()["pair"] == normal.config()["pair"] and aug.config()["augment"] == "standard"
    assert normal.config()["augment"] == "none"
    # something trains already: everything waits, in submission order, and nothing was launched
    assert jobs.active() == "cli-run"
    assert jobs.queue() == ["a", "p-standard", "p-none"]
    for r in (a, aug, normal):
        assert r.raw_status()["status"] == "queued" and not r.raw_status().get("launcher_pid")

    assert "removed from the queue" in jobs.stop("p-standard")
    assert jobs.queue() == ["a", "p-none"]
    assert aug.status()["status"] == "stopped"

    # an app restart: a new process with nothing but the runs folder sees the same state
    out = subprocess.run([sys.executable, "-m", "mnistviz.jobs", "status", "--runs-dir", str(root)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"active": "cli-run", "queue": ["a", "p-none"]}

    # p-none's config goes bad on disk while it waits: its start must fail with the reason, not hang
    cfg = normal.config()
    cfg["batch_size"] = 0
    runs.atomic_write_json(normal.config_file, cfg)

    blocker.write_status(status="completed", ended=time.time())
    assert jobs.tick() == "a"
    assert jobs.queue() == ["p-none"] and jobs.active() == "a"
    assert jobs.tick() is None  # one at a time: p-none waits for a
    # a's launcher starts p-none when a ends, with no page calling tick(); p-none's launcher reports its failure
    wait_for(lambda: normal.raw_status()["status"] == "failed", 90, "p-none to be started and fail")
    sa, sn = a.raw_status(), normal.raw_status()
    assert sa["status"] == "completed" and len(a.epoch_records()) == 1
    assert sa["ended"] <= sn["launched"]
    assert "invalid config.json" in sn["error"] and "batch size" in sn["error"]
    assert "completed" in (a.path / jobs.LOG_FILE).read_text()
    assert jobs.queue() == [] and jobs.active() is None


def test_stop_resume_and_a_killed_process(root):
    run = jobs.submit(train.Config(name="long", **{**QUICK, "epochs": 400}))
    assert jobs.active() == "long"
    wait_for(lambda: len(run.epoch_records()) >= 1, 60, "a first epoch")
    assert "Stopping long" in jobs.stop("long")
    wait_for(lambda: run.raw_status()["status"] == "stopped", 30, "the trainer to stop")
    wait_for(lambda: not runs.pid_alive(run.raw_status()["pid"]), 30, "the trainer to exit")
    done = len(run.epoch_records())
    assert run.last_ckpt.exists() and done >= 1
    with pytest.raises(runs.RunError, match="stopped, not queued or running"):
        jobs.stop("long")

    jobs.resume("long")  # continues from last.pt: the next epoch record is done + 1, no epoch twice
    wait_for(lambda: len(run.epoch_records()) > done, 60, "an epoch after resuming")
    epochs = [r["epoch"] for r in run.epoch_records()]
    assert epochs == list(range(1, len(epochs) + 1))
    assert jobs.active() == "long"
    with pytest.raises(runs.RunError, match="still running"):
        jobs.resume("long")

    # the process dies without a word (OOM killer, kill -9): interrupted, resumable
    pid = run.raw_status()["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not runs.pid_alive(pid), 30, "the killed trainer to be gone")
    st = run.status()
    assert st["status"] == "interrupted" and "ended without saying so" in st["error"]
    assert jobs.active() is None
    jobs.resume("long")
    assert run.raw_status()["status"] == "queued" and run.raw_status()["launcher_pid"]
    assert "removed from the queue" in jobs.stop("long")  # stopped while starting: the launch is ended
    assert run.status()["status"] == "stopped" and jobs.active() is None


def test_resume_refuses_completed_and_queued(root):
    blocker = training_elsewhere(root)
    waiting = jobs.submit(train.Config(name="w", **QUICK))
    with pytest.raises(runs.RunError, match="already queued"):
        jobs.resume("w")
    blocker.write_status(status="completed")
    with pytest.raises(runs.RunError, match="completed"):
        jobs.resume("cli-run")
    jobs.stop(waiting.name)
    assert jobs.queue() == []
