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

from mnistviz import data, jobs, procs as ident, runs, train
from conftest import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = dict(epochs=1, batch_size=50, val_size=50, log_every=2)  # 11 steps an epoch on tiny data


def assert_never_signalled(p):
    """p (SIGTERM's default, fatal action) dies of this SIGKILL, not of a signal sent before: the kernel fixes a
    process's exit signal when the first fatal signal is sent to it, so no sleep is needed to see "nothing happened"."""
    p.kill()
    p.wait()
    assert p.returncode == -signal.SIGKILL, f"process {p.pid} was signalled ({p.returncode}) before the test's SIGKILL"


def training_elsewhere(root, name="cli-run"):
    """A run trained outside the queue: status running with a live pid (here this test process, training
    "inside another program", so alive by its fresh heartbeat). While it runs, the queue must wait."""
    run = train.create_run(train.Config(name=name, **QUICK), root)
    run.write_status(status="running", pid=os.getpid(), started=time.time(), heartbeat=time.time())
    return run


@pytest.fixture
def root(tiny_env):
    yield tiny_env
    # end every process these tests started (launchers and trainers in this runs folder), never others
    for run in map(runs.Run, runs.run_folders(tiny_env)):
        raw = run.raw_status()
        for key, kill in (("pid", os.kill), ("launcher_pid", os.killpg)):
            pid = raw.get(key)
            if pid and pid != os.getpid() and ident.identify(run.path, raw, key) == ident.OURS:
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


# ---------- bad input: a reused pid, an unreadable queue file ----------

DAY_AGO = time.time() - 86400


def test_a_reused_pid_neither_blocks_the_queue_nor_gets_signalled(root, procs):
    # "ghost" was killed (OOM, container restart) while training; its pid now belongs to an unrelated process
    other = procs("sleep", "300")
    ghost = train.create_run(train.Config(name="ghost", **QUICK), root)
    runs.atomic_write_json(ghost.status_file, {"status": "running", "pid": other.pid, "heartbeat": DAY_AGO})
    assert ghost.status()["status"] == "interrupted"
    assert jobs.active() is None

    nxt = jobs.submit(train.Config(name="next", **QUICK))  # the queue is not blocked: it starts now
    assert nxt.raw_status()["launcher_pid"] and jobs.queue() == []
    with pytest.raises(runs.RunError, match="ghost is interrupted, not queued or running"):
        jobs.stop("ghost")
    jobs.resume("ghost")  # not "still running": queued behind next, and both complete
    wait_for(lambda: ghost.raw_status()["status"] == "completed", 120, "ghost to be resumed and complete")
    assert nxt.raw_status()["status"] == "completed"
    assert other.poll() is None  # never signalled

    # a launch whose launcher died and whose pid (= process group) went to another process: stop spares it
    stray = procs("sleep", "300")
    late = train.create_run(train.Config(name="late", **QUICK), root)
    late.write_status(status="queued", launcher_pid=stray.pid, launched=DAY_AGO)
    jobs._enqueue(root, ["late"])
    assert jobs.running() == []
    assert "late removed from the queue" in jobs.stop("late")
    assert_never_signalled(stray)


def test_stop_never_signals_a_process_that_is_not_a_trainer(root, procs):
    # status running with a fresh heartbeat, but the pid is not `python -m mnistviz.train` (training inside a
    # notebook, or a pid reused within HEARTBEAT_STALE_S of a kill): SIGTERM would end that program, not a run
    other = procs("sleep", "300")
    run = train.create_run(train.Config(name="elsewhere", **QUICK), root)
    run.write_status(status="running", pid=other.pid, heartbeat=time.time())
    assert run.status()["status"] == "running" and jobs.active() == "elsewhere"
    with pytest.raises(runs.RunError, match=f"run elsewhere trains inside process {other.pid}, which is not known "
                                            f"to be its trainer, so it is not signalled from here"):
        jobs.stop("elsewhere")
    assert_never_signalled(other)


def test_an_unreadable_queue_file_is_rebuilt_from_the_queued_runs(root):
    blocker = training_elsewhere(root)
    older = jobs.submit(train.Config(name="b-older", **QUICK))  # names in the other order than submission
    newer = jobs.submit(train.Config(name="a-newer", **QUICK))
    stopped = jobs.submit(train.Config(name="c-stopped", **QUICK))
    jobs.stop(stopped.name)
    qf = root / jobs.QUEUE_FILE
    assert json.loads(qf.read_text()) == {"queue": ["b-older", "a-newer"]}
    qf.write_text('{"queue": ["b-old')  # torn
    assert jobs.queue() == ["b-older", "a-newer"]  # read-only: from the runs' statuses, oldest first
    note = jobs.repair_queue()
    assert note == (f"The training queue file {qf} could not be read, so it was rebuilt from the 2 run(s) marked "
                    f"queued (b-older, a-newer), oldest first.")
    assert json.loads(qf.read_text()) == {"queue": ["b-older", "a-newer"]} and jobs.repair_queue() is None

    qf.write_text("garbage")  # and tick (the launcher's, with no page open) rebuilds it too: the queue moves
    blocker.write_status(status="completed")
    assert jobs.tick() == "b-older"
    assert jobs.queue() == ["a-newer"]
    wait_for(lambda: newer.raw_status()["status"] == "completed", 120, "both queued runs to complete")
    assert older.raw_status()["status"] == "completed" and stopped.raw_status()["status"] == "stopped"


def test_a_queue_file_that_is_a_directory_is_moved_aside_not_raised(root):
    training_elsewhere(root)  # so nothing starts
    waiting = train.create_run(train.Config(name="waiting", **QUICK), root)
    qf = root / jobs.QUEUE_FILE
    qf.mkdir()
    (qf / "keep.txt").write_text("whatever was here")
    assert jobs.queue() == ["waiting"]
    assert jobs.tick() is None  # no IsADirectoryError
    assert json.loads(qf.read_text()) == {"queue": ["waiting"]}
    aside = [p for p in root.iterdir() if p.name.startswith(jobs.QUEUE_FILE + ".unreadable-")]
    assert len(aside) == 1 and (aside[0] / "keep.txt").read_text() == "whatever was here"  # nothing lost
    assert [r["name"] for r in runs.list_runs()[0]] == ["waiting", "cli-run"]  # not taken for a run
    jobs.stop(waiting.name)
    assert jobs.queue() == []


def test_stop_on_a_copy_of_a_training_run_signals_nothing(root):
    # `cp -r a a-copy` while a trains: a-copy's status.json names a's trainer (pid, start time and all), but that
    # process holds a's folder, not a-copy's: a-copy is interrupted, and Stop on it must not end a's training
    trainer = subprocess.Popen([sys.executable, "-m", "mnistviz.train", "--name", "a", "--epochs", "400",
                                "--batch-size", "50", "--val-size", "50", "--no-progress"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        a = runs.Run(root / "a")
        wait_for(lambda: a.path.is_dir() and a.raw_status().get("status") == "running" and a.epoch_records(), 120,
                 "a to train")
        copy = root / "a-copy"
        copy.mkdir()
        for f in a.path.iterdir():  # as cp -r would, skipping the temp files of writes going on meanwhile
            try:
                if f.is_file() and ".tmp" not in f.name:
                    (copy / f.name).write_bytes(f.read_bytes())
            except FileNotFoundError:
                pass
        c = runs.Run(copy)
        assert c.raw_status()["pid"] == trainer.pid
        with pytest.raises(runs.RunError, match="a-copy is interrupted, not queued or running"):
            jobs.stop("a-copy")
        assert c.status()["status"] == "interrupted" and jobs.running() == ["a"]
        st = a.raw_status()
        assert st["pid"] == trainer.pid and st["pid_start"] == ident.start_time(trainer.pid)
        assert ident.identify(a.path, st) == ident.OURS and ident.identify(copy, c.raw_status()) == ident.OTHER
        # not signalled: a trainer told to stop ends at its next step, after at most the epoch record it was
        # writing; two more epoch records from here on mean no SIGTERM reached it
        done = len(a.epoch_records())
        wait_for(lambda: len(a.epoch_records()) >= done + 2 or trainer.poll() is not None, 120, "two more epochs")
        assert trainer.poll() is None and a.raw_status()["status"] == "running"
        runs.delete_run("a-copy")  # interrupted: deletable, while a is not
        with pytest.raises(runs.RunError, match="stop it"):
            runs.delete_run("a")
        assert "Stopping a" in jobs.stop("a")  # a itself: its trainer is signalled and stops
        assert trainer.wait(60) == 0 and a.raw_status()["status"] == "stopped"
    finally:
        trainer.kill()
        trainer.wait()
