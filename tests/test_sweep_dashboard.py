"""Sweeps from the dashboard (issue 22): the Train page's "Sweep these settings" refuses bad input with one sentence
and makes nothing, queues a good sweep in the training queue, Stop and Resume on the Sweeps page. (A sweep run by the
queue, its worker killed with -9 and resumed: tests/e2e/test_sweep_e2e.py.)"""
from __future__ import annotations

import time

import optuna
import pytest

from conftest import free_port
from mnistviz import jobs, procs, runs, sweep, train


@pytest.fixture(autouse=True)
def no_storage_env(monkeypatch):
    monkeypatch.delenv("MNISTVIZ_SWEEP_STORAGE", raising=False)


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


def test_a_sweep_record_holding_a_storage_password_is_readable_by_its_user_only(busy_queue):
    # the dashboard keeps a sweep's storage URL in <runs>/_sweepjobs/NAME.json, to start its worker and show it later:
    # with a password in the URL, a runs folder that others can read must not show it to them
    root = busy_queue
    url = f"postgresql://mnist:s3cret@127.0.0.1:{free_port()}/sweeps"
    jobs.submit_sweep("shared", url, root)
    jobs.submit_sweep("local", None, root)  # the default storage: no secret, the umask's mode like every run file
    record = root / jobs.SWEEP_DIR / "shared.json"
    assert jobs.sweep_job("shared", root)["storage"] == url and record.stat().st_mode & 0o777 == 0o600
    assert (root / jobs.SWEEP_DIR / "local.json").stat().st_mode & 0o777 == runs.file_mode()
    jobs.stop_sweep("shared", root)  # rewritten: still private
    assert jobs.sweep_job("shared", root)["state"] == "stopped" and record.stat().st_mode & 0o777 == 0o600
