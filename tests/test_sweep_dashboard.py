"""Sweeps from the dashboard (issue 22): the Train page's "Sweep these settings" refuses bad input with one sentence
and makes nothing, queues a good sweep in the training queue, Stop and Resume on the Sweeps page; a sweep run by the
queue whose worker is killed with -9 shows its trial's worker as gone, and Resume finishes it (a grid sweep with the
Hyperband pruner, trained for real on the tiny data)."""
from __future__ import annotations

import os
import signal
import time

import optuna
import pytest

from conftest import free_port
from mnistviz import jobs, procs, runs, sweep, train


@pytest.fixture(autouse=True)
def no_storage_env(monkeypatch):
    monkeypatch.delenv("MNISTVIZ_SWEEP_STORAGE", raising=False)


def wait_for(cond, timeout, what, tick_root=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if tick_root is not None:
            jobs.tick(tick_root)  # what the dashboard's pages do at every refresh
        if cond():
            return
        time.sleep(0.05 if tick_root is None else 0.5)
    raise AssertionError(f"timed out waiting for {what}")


def study_of(name, root):
    return optuna.load_study(study_name=name, storage=sweep.open_storage(sweep.storage_url(None, root)))


@pytest.fixture
def busy_queue(tiny_env):
    """A run that this test process 'trains' (it holds the run's lock, as a trainer does): the queue starts nothing
    else meanwhile, so a sweep queued from a page stays queued and no training process is started."""
    run = train.create_run(train.Config(name="busy", epochs=1), tiny_env)
    with procs.hold_run(run.path):
        run.write_status(status="running", heartbeat=time.time(), started=time.time(),
                         **procs.identity_fields(run.path, sigterm_stops=False))
        assert jobs.running(tiny_env) == ["busy"]
        yield tiny_env
        run.write_status(status="stopped", pid=None)


def _form(at, **widgets):
    """Set the sweep form's widgets by key (selectboxes first: their inputs appear on the next run), then Create."""
    for key, value in widgets.items():
        if key.startswith("sweep_how_") or key in ("sweep_sampler", "sweep_pruner"):
            at.selectbox(key=key).set_value(value)
    at.run()
    for key, value in widgets.items():
        if key.startswith(("sweep_lo_", "sweep_hi_", "sweep_list_", "sweep_name", "sweep_storage")):
            at.text_input(key=key).input(value)
        elif key == "sweep_trials":
            at.number_input(key=key).set_value(value)
    at.button(key="sweep_create").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return [e.value for e in at.error]


def test_train_page_sweep_form_refuses_bad_input_then_queues_a_sweep(app, busy_queue):
    root = busy_queue
    sweep.create("taken", 3, ["lr=uniform(0.1,0.2)"], ["epochs=1"], root)
    at = app(page="pages/train.py")
    at.session_state["sweep_open"] = True  # the expander, opened
    at.run()
    assert at.selectbox(key="sweep_how_lr").value == "fixed"
    for f in sweep.SEARCHABLE:  # numbers get ranges, names lists
        assert ("range" in at.selectbox(key=f"sweep_how_{f}").options) == (f not in ("model", "optimizer", "augment",
                                                                                       "schedule"))
    bad = [
        ({}, "pick at least one setting to search"),
        (dict(sweep_how_lr="range", sweep_lo_lr="0.1", sweep_hi_lr="0.1"), "Learning rate: the range is empty"),
        (dict(sweep_how_lr="range", sweep_lo_lr="0.3", sweep_hi_lr="0.001"), "Learning rate: the range is inverted"),
        (dict(sweep_how_lr="log range", sweep_lo_lr="0", sweep_hi_lr="0.1"), "a log range must stay above 0"),
        (dict(sweep_how_lr="fixed", sweep_how_batch_size="list", sweep_list_batch_size="32, 64",
              sweep_how_epochs="range", sweep_lo_epochs="1", sweep_hi_epochs="3", sweep_sampler="grid",
              sweep_trials=4), "the grid has 6 points, more than the 4 trials"),
        (dict(sweep_sampler="tpe", sweep_storage=f"postgresql://u:pw@127.0.0.1:{free_port()}/nodb"),
         "cannot open the sweep storage postgresql://u:"),
        (dict(sweep_storage="", sweep_name="taken"), "a sweep named 'taken' exists already"),
    ]
    for widgets, says in bad:
        errors = _form(at, **widgets)
        assert len(errors) == 1 and errors[0].startswith("Nothing was made: ") and says in errors[0], (says, errors)
        assert [s["sweep"] for s in sweep.list_sweeps(root)] == ["taken"]  # nothing made
        assert jobs.queue(root) == [] and not (root / jobs.SWEEP_DIR).exists()
    assert study_of("taken", root).user_attrs["mnistviz"]["space"]["lr"]["high"] == 0.2  # the other sweep as it was

    # a good one: made, and queued behind the training in progress
    assert _form(at, sweep_name="good", sweep_how_batch_size="fixed", sweep_how_epochs="fixed", sweep_sampler="grid",
                 sweep_how_lr="list", sweep_list_lr="0.05, 0.1", sweep_trials=5) == []
    assert any("Sweep good made: 2 trials" in s.value for s in at.success)  # a grid of 2 points: 2 trials
    spec = study_of("good", root).user_attrs["mnistviz"]
    assert spec["space"] == {"lr": {"kind": "choice", "values": [0.05, 0.1]}} and spec["sampler"] == "grid"
    assert spec["fixed"]["epochs"] == 2 and spec["fixed"]["val_size"] == 5000  # the Train form's other settings
    assert jobs.queue(root) == ["sweep:good"] and jobs.sweep_job("good", root)["state"] == "queued"

    # Stop and Resume on the Sweeps page
    at.switch_page("pages/sweeps.py").run()
    at.selectbox(key="sweep_pick").set_value("good").run()
    assert any("waiting in the training queue" in m.value for m in at.markdown), [m.value for m in at.markdown]
    at.button(key="sweep_stop:good").click().run()
    assert jobs.queue(root) == [] and jobs.sweep_job("good", root)["state"] == "stopped"
    at.button(key="sweep_resume:good").click().run()
    assert not at.exception and jobs.queue(root) == ["sweep:good"]
    assert jobs.stop_sweep("good", root).startswith("Sweep good removed from the queue")


def test_a_queued_sweep_whose_worker_is_killed_resumes(tiny_env):
    made = sweep.create("k9", 5, ["lr=choice(0.05,0.1)"], ["epochs=2", "limit_train=300", "batch_size=50",
                                                           "val_size=50"], tiny_env, sampler="grid",
                        pruner="hyperband")
    assert made["planned"] == 2
    jobs.submit_sweep("k9", root=tiny_env)
    t0 = tiny_env / "k9-t0"
    wait_for(lambda: t0.is_dir() and runs.Run(t0).raw_status().get("status") == "running", 120, "trial 0 to train")
    worker = study_of("k9", tiny_env).trials[0].user_attrs["worker"]["pid"]
    os.kill(worker, signal.SIGKILL)  # its trainer goes on: an orphan, finishing trial 0's run
    wait_for(lambda: jobs.sweep_job("k9", tiny_env)["state"] == "interrupted", 60, "the launch's follow-up")
    st = sweep.status("k9", tiny_env)
    assert st["trials"][0]["state"] == "running" and f"worker (pid {worker} on this machine) is gone" in \
        st["trials"][0]["worker_gone"]
    assert sweep.trials_table(st)["state"].tolist() == ["worker gone"]

    jobs.submit_sweep("k9", root=tiny_env)  # Resume: the next worker takes the trial over
    wait_for(lambda: jobs.sweep_job("k9", tiny_env)["state"] == "done", 240, "the sweep to finish", tiny_env)
    trials = study_of("k9", tiny_env).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"], [t.user_attrs for t in trials]
    assert trials[0].user_attrs["interrupted"] and trials[1].params == trials[0].params
    assert trials[1].user_attrs["run"] == "k9-t0"  # the same run, trained once (its orphan trainer finished it)
    assert sorted(t.params["lr"] for t in trials[1:]) == [0.05, 0.1]  # the grid: each point once
    assert sorted(p.name for p in runs.run_folders(tiny_env)) == ["k9-t0", "k9-t2"]
    assert [r["epoch"] for r in runs.Run(t0).epoch_records()] == [1, 2]
    assert trials[1].value == max(r["val_acc"] for r in runs.Run(t0).epoch_records())
    assert sweep.status("k9", tiny_env)["finished"] == 2 and jobs.queue(tiny_env) == []
