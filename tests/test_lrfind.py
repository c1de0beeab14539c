"""The learning-rate range test (mnistviz/lrfind.py): fastai's suggestions on a synthetic loss curve, a real range
test on tiny data, a model that diverges at once, and the Train page's button: a real job that waits behind a
training, then goes before the trainings queued meanwhile."""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np
import pytest

from mnistviz import jobs, lrfind, runs, train
from conftest import wait_for


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors on one thread, as the pages run them (pages._shared.one_core): on a busy 2-core machine a second
    thread makes each op wait for it (conftest's torch_threads_back restores the count)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def no_jobs_left(tiny_env):
    """The range tests and trainings a test started are stopped after it, passed or failed: none outlives it."""
    yield tiny_env
    for job in jobs.lrfind_busy():
        jobs.stop_lrfind(jobs.lrfind_job(job))
    for name in jobs.running():
        try:
            jobs.stop(name)
        except runs.RunError:
            pass  # "training" in this test's own process (the held run): nothing to signal
    wait_for(lambda: not jobs.lrfind_busy() and set(jobs.running()) <= {"elsewhere"}, timeout=30,
             what="the test's jobs to stop")


# ---------- suggestions (no training) ----------

def synthetic_curve():
    """100 rates from 1e-7 to 10 (log10 lr = -7 + 8 i / 99) and a loss that is flat (2.3) below lr 1e-4, falls as a
    half cosine to 0.3 at lr 0.1 (steepest at its middle, lr 10^-2.5) and then climbs."""
    lrs = lrfind.schedule(1e-7, 10, 100)
    u = np.log10(lrs)
    loss = np.where(u < -4, 2.3, np.where(u <= -1, 1.3 + np.cos(np.pi * (u + 4) / 3), 0.3 + 5 * (u + 1) ** 2))
    return lrs, loss


def test_the_schedule_rises_exponentially_from_start_to_end():
    lrs = lrfind.schedule(1e-7, 10, 100)
    assert lrs[0] == pytest.approx(1e-7) and lrs[-1] == pytest.approx(10)
    np.testing.assert_allclose(lrs[1:] / lrs[:-1], (1e8) ** (1 / 99))


def test_suggestions_on_a_synthetic_curve_are_fastais():
    lrs, loss = synthetic_curve()
    s = lrfind.suggest(lrs, loss, planned=100)
    # steepest descent: the middle of the half cosine, lr 10^-2.5, within one step of the grid (8/99 in log10)
    assert abs(math.log10(s["steep"][0]) + 2.5) <= 8 / 99
    # valley, by hand: trimmed to points 10..94 (fastai drops the first tenth and the last 5); the loss falls
    # strictly from point 38 (the first below 2.3) to its minimum at point 74, and every flat point before can
    # start that run: the longest decreasing run is 37-74 (38 points); fastai's start is one before it (36) and
    # it takes int(38/3) + int(38/6) = 12 + 6 points from there: point 54
    assert s["valley"] == (pytest.approx(lrs[54]), pytest.approx(loss[54]))
    assert lrs[37] < s["valley"][0] < lrs[74]


def test_smooth_is_a_debiased_moving_average():
    np.testing.assert_allclose(lrfind.smooth([2.0, 2.0, 2.0]), [2.0, 2.0, 2.0])  # debiased: no warm-up from 0
    got = lrfind.smooth([1.0, 3.0], beta=0.5)
    assert got[1] == pytest.approx((0.25 * 1 + 0.5 * 3) / 0.75)


def test_too_few_points_suggest_nothing():
    lrs, loss = synthetic_curve()
    assert lrfind.suggest(lrs[:14], loss[:14], planned=100) is None  # 10..8: nothing left after the trim


# ---------- real range tests on tiny data ----------

def test_a_tiny_real_range_test_finds_a_rate_where_the_loss_falls(tiny_env):
    cfg = train.Config(model="lenet5", optimizer="sgd", batch_size=50, val_size=100, label_smoothing=0.0)
    result = lrfind.range_test(cfg, steps=60, start_lr=1e-4, end_lr=10)
    n = result["steps"]
    assert result["ended"] in ("diverged", "completed") and 20 < n <= 60
    np.testing.assert_allclose(result["lrs"], lrfind.schedule(1e-4, 10, 60)[:n])
    assert result["losses"][0] == pytest.approx(math.log(10), abs=0.3)  # a fresh model: about chance
    assert result["suggestions"] is not None
    valley = result["suggestions"]["valley"]["lr"]
    assert 1e-4 < valley < result["lrs"][-1]
    # at the valley the smoothed loss is below where it started: the rate trains
    i = result["lrs"].index(valley)
    assert result["smoothed"][i] < result["smoothed"][0]
    assert f"{valley:.2g}" in result["message"]
    assert list(tiny_env.iterdir()) == []  # nothing written: no run, no checkpoint


def test_a_model_that_diverges_at_once_says_so(tiny_env):
    cfg = train.Config(model="fast", optimizer="adam", batch_size=50, val_size=100)
    result = lrfind.range_test(cfg, steps=100, start_lr=5, end_lr=100)
    assert result["ended"] == "diverged" and result["suggestions"] is None
    assert result["message"].startswith(f"The loss diverged after {result['steps']} step")
    assert "no learning rate can be suggested" in result["message"]


def test_bad_settings_are_refused_in_one_sentence(tiny_env):
    with pytest.raises(runs.RunError, match="steps must be a whole number from 20"):
        lrfind.range_test(train.Config(), steps=5)
    with pytest.raises(runs.RunError, match="batch size must be at least 1"):
        lrfind.range_test(train.Config(batch_size=0))
    # fields that play no part in a range test do not stop it (a bad lr is what it is for)
    assert lrfind.config_problems(train.Config(lr=-1, epochs=0, name="../x")) == {}


# ---------- the background job ----------

def test_a_killed_job_reads_interrupted_and_blocks_nothing(no_jobs_left):
    job = jobs.submit_lrfind(train.Config(val_size=100, batch_size=50), 20, 1e-4, 10)
    raw = job.raw_status()
    os.kill(raw["launcher_pid"], 9)
    wait_for(lambda: jobs.lrfind_state(job)["status"] == "interrupted", what="the killed job to read interrupted")
    assert jobs.lrfind_busy() == []


def test_the_command_line_prints_the_suggestions_and_refuses_bad_settings(tiny_env, capsys, monkeypatch):
    monkeypatch.setattr(lrfind.signal, "signal", lambda *a: None)  # keep pytest's own Ctrl-C handling
    base = ["--model", "lenet5", "--batch-size", "50", "--val-size", "100", "--start-lr", "1e-4"]
    assert lrfind.main([*base, "--steps", "20", "--json"]) == 0
    out = capsys.readouterr()
    result = json.loads(out.out.splitlines()[-1])
    assert result["config"]["model"] == "lenet5" and result["planned"] == 20
    assert out.err.strip() == result["message"]
    with pytest.raises(SystemExit) as e:
        lrfind.main([*base, "--steps", "5"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == ("python -m mnistviz.lrfind: error: steps must be a whole number from "
                                               "20 to 1000 (got 5)")


# ---------- the Train page ----------

def test_train_page_finds_a_learning_rate_behind_a_training_and_fills_the_form(no_jobs_left, app):
    """The button starts a job that waits behind a training (the page says so), goes before a training queued
    meanwhile, shows its curve and suggestions, and "Use" fills the form; then the waiting training starts."""
    held = train.create_run(train.Config(name="elsewhere", epochs=1), no_jobs_left)
    held.write_status(status="running", pid=os.getpid(), heartbeat=time.time())
    at = app("pages/train.py")
    for key, value in (("cfg_model", "lenet5"), ("cfg_batch_size", 50), ("cfg_val_size", 100)):
        at.session_state[key] = value
    at.number_input(key="lrf_steps").set_value(20).run()
    at.button(key="lrf_start").click().run()
    assert not at.exception and not at.error
    job = jobs.lrfind_job(at.session_state["lrf_job"])
    request = json.loads((job.path / "request.json").read_text())
    assert (request["config"]["model"], request["config"]["batch_size"], request["steps"]) == ("lenet5", 50, 20)

    # (the job's files are watched, the page redrawn once each time: a page rerun costs the job CPU)
    wait_for(lambda: jobs.lrfind_state(job).get("behind") == "elsewhere", what="the range test to wait")
    at.run()
    assert "Waiting for elsewhere to finish" in " ".join(i.value for i in at.info)
    assert at.button(key="lrf_start").disabled  # one range test at a time from a page
    assert jobs.lrfind_busy() == [job.name]
    after = jobs.submit(train.Config(model="lenet5", batch_size=50, val_size=100, epochs=1, name="after"))
    held.write_status(status="completed", pid=None)
    assert jobs.tick() is None  # the range test goes first: the training queued after it waits
    wait_for(lambda: jobs.lrfind_state(job)["status"] == "done", what="the range test to end")
    at.run()
    result = json.loads((job.path / jobs.LRFIND_RESULT).read_text())
    valley = result["suggestions"]["valley"]["lr"]
    spec = json.loads(next(c for c in at.get("plotly_chart") if "lrf_chart" in c.proto.id).proto.spec)
    assert spec["layout"]["xaxis"]["type"] == "log"
    marked = {d["name"]: d["x"][0] for d in spec["data"] if d["name"] in ("valley", "steepest descent")}
    assert marked == {"valley": valley, "steepest descent": result["suggestions"]["steep"]["lr"]}
    assert f"{valley:.2g} (valley)" in " ".join(s.value for s in at.success)

    assert not at.button(key="lrf_start").disabled
    next(b for b in at.button if b.key.startswith("lrf_use_valley")).click().run()
    assert at.number_input(key="cfg_lr").value == float(f"{valley:.2g}")
    assert f"The form's learning rate is now {float(f'{valley:.2g}'):g} (the valley suggestion)." in \
        " ".join(s.value for s in at.success)
    assert result["config"]["model"] == "lenet5" and not after.best_ckpt.exists()
    # the range test's own last tick started the training that waited for it (stopped: its training is not the point)
    wait_for(lambda: jobs.running() == ["after"], what="the queued training to start")
    jobs.stop("after")
    wait_for(lambda: not jobs.running(), what="the training to stop")
