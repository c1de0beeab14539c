"""Process identity (issue 20): a status.json's pid is a run's trainer only when its pid, its start time and the run
folder it holds all match; anything else is never signalled, and a heartbeat from the future is not a heartbeat.

"Not signalled" is checked without a sleep: the processes here keep SIGTERM's default (fatal) action, and the kernel
fixes a process's exit signal when the first fatal signal is sent to it; so when a process dies of the SIGKILL this
test sends after jobs.stop returned, nothing had signalled it before (assert_never_signalled).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from mnistviz import jobs, runs, train
from mnistviz import procs as ident  # `procs` is conftest's fixture that starts processes
from tests.conftest import ROOT

QUICK = dict(epochs=1, batch_size=50, val_size=50, log_every=2)
DAY_AGO = time.time() - 86400


def assert_never_signalled(p):
    """p, alive until now with SIGTERM's default action, dies of our SIGKILL: no fatal signal reached it before."""
    p.kill()
    p.wait()
    assert p.returncode == -signal.SIGKILL, f"process {p.pid} was signalled ({p.returncode}) before the test's SIGKILL"


def started(p, mark: bytes):
    """Wait until p has exec'd (before, its command line is still this process's)."""
    deadline = time.monotonic() + 30
    while mark not in Path(f"/proc/{p.pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the process never started"
        time.sleep(0.01)
    return p


def stat_start(pid) -> int:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def fake_running(root, name, pid, **fields):
    run = train.create_run(train.Config(name=name, **QUICK), root)
    runs.atomic_write_json(run.status_file, {"status": "running", "pid": pid, **fields})
    return run


def test_start_time_reads_field_22_of_proc_stat(procs):
    p = started(procs("sleep", "300"), b"sleep")
    assert ident.start_time(p.pid) == stat_start(p.pid)
    assert ident.start_time(os.getpid()) != ident.start_time(p.pid)
    assert ident.start_time(999_999_999) is None


def test_tail_of_train_py_is_not_a_trainer_and_is_never_signalled(tiny_env, procs):
    # `tail -f mnistviz/train.py` has "mnistviz/train.py" in its command line: not a trainer for all that
    tail = started(procs("tail", "-f", str(ROOT / "mnistviz" / "train.py")), b"tail")
    stale = fake_running(tiny_env, "stale", tail.pid, heartbeat=DAY_AGO)
    assert stale.status()["status"] == "interrupted"
    assert jobs.active() is None
    with pytest.raises(runs.RunError, match="stale is interrupted, not queued or running"):
        jobs.stop("stale")
    fresh = fake_running(tiny_env, "fresh", tail.pid, heartbeat=time.time())  # beats, says who: cannot be told
    assert ident.identify(fresh.path, fresh.raw_status()) == ident.UNKNOWN
    with pytest.raises(runs.RunError, match=f"run fresh trains inside process {tail.pid}, which is not known to be "
                                            f"its trainer, so it is not signalled from here"):
        jobs.stop("fresh")
    runs.delete_run("stale")
    assert_never_signalled(tail)


def test_a_process_with_mnistviz_train_in_its_argv_is_not_signalled(tiny_env, procs):
    sleeper = started(procs(sys.executable, "-c", "import time; time.sleep(300)", "-m", "mnistviz.train"),
                      b"mnistviz.train")
    # a status.json of an older version (no start time): shown as running while it lives, never signalled
    legacy = fake_running(tiny_env, "legacy", sleeper.pid, heartbeat=time.time())
    with pytest.raises(runs.RunError, match="not known to be its trainer, so it is not signalled from here"):
        jobs.stop("legacy")
    # the pid of a trainer that was killed, now reused: its start time differs from the one recorded
    start = ident.start_time(sleeper.pid)
    reused = fake_running(tiny_env, "reused", sleeper.pid, pid_start=start - 1, heartbeat=time.time(),
                          run_dir=str(tiny_env / "reused"))
    assert ident.identify(reused.path, reused.raw_status()) == ident.OTHER
    st = reused.status()
    assert st["status"] == "interrupted" and f"{sleeper.pid} now belongs to another program" in st["error"]
    with pytest.raises(runs.RunError, match="reused is interrupted, not queued or running"):
        jobs.stop("reused")
    runs.delete_run("reused")
    # the right start time, but the process does not hold this run folder's lock: not its trainer either
    held_not = fake_running(tiny_env, "held-not", sleeper.pid, pid_start=start, heartbeat=time.time(),
                            run_dir=str(tiny_env / "held-not"))
    assert ident.identify(held_not.path, held_not.raw_status()) == ident.OTHER
    assert held_not.status()["status"] == "interrupted"
    with pytest.raises(runs.RunError, match="held-not is interrupted"):
        jobs.stop("held-not")
    legacy.write_status(status="stopped")
    assert_never_signalled(sleeper)


def test_a_heartbeat_in_the_future_is_stale(tiny_env):
    # this test process stands in for a trainer inside another program: alive, identity unknown, so its heartbeat
    # decides; one a day ahead (a clock jump, a hand edit) must not keep the run "running" for ever
    ahead = fake_running(tiny_env, "ahead", os.getpid(), heartbeat=time.time() + 86400)
    assert ahead.status()["status"] == "interrupted"
    assert jobs.active() is None and jobs.running() == []
    runs.delete_run("ahead")  # not refused
    assert not ident.heartbeat_fresh({"heartbeat": time.time() + 60})
    assert not ident.heartbeat_fresh({"heartbeat": time.time() - 60, "updated": time.time() + 3600})
    assert ident.heartbeat_fresh({"heartbeat": time.time() + 1})  # a little ahead: two clocks, not a jump
    soon = fake_running(tiny_env, "soon", os.getpid(), heartbeat=time.time())
    assert soon.status()["status"] == "running" and jobs.active() == "soon"
    soon.write_status(status="stopped")


def test_a_launch_is_ours_only_with_its_start_time_and_run(tiny_env, procs):
    # a stand-in for jobs' launch: its command line names the run and the runs folder, like `sh -c ... NAME ROOT`
    def launch(name):
        return started(procs(sys.executable, "-c", "import time; time.sleep(300)", "mnistviz.train", name,
                             str(tiny_env)), b"mnistviz.train")

    mine, stray = launch("late"), launch("late")
    late = train.create_run(train.Config(name="late", **QUICK), tiny_env)
    # its pid alive, its command line right, its start time not the one recorded: a reused pid, not our launch
    late.write_status(status="queued", launcher_pid=stray.pid, launcher_start=stat_start(stray.pid) + 1,
                      launched=time.time())
    assert jobs.running() == []
    assert "late removed from the queue" in jobs.stop("late")
    assert_never_signalled(stray)
    assert ident.identify(late.path, late.raw_status() | {"launcher_pid": stray.pid}, "launcher_pid") == ident.GONE

    late.write_status(status="queued", launcher_pid=mine.pid, launcher_start=stat_start(mine.pid))
    assert ident.identify(late.path, late.raw_status(), "launcher_pid") == ident.OURS
    copy = train.create_run(train.Config(name="late-copy", **QUICK), tiny_env)  # a copy of late's folder
    runs.atomic_write_json(copy.status_file, late.raw_status())
    assert ident.identify(copy.path, copy.raw_status(), "launcher_pid") == ident.OTHER
    assert jobs.running() == ["late"]
    jobs.stop("late")  # ours: the whole launch is ended
    mine.wait(30)
    assert mine.returncode == -signal.SIGTERM
