"""A sweep in Chromium (issue 22): made on the Train page under "Sweep these settings" (a grid of 2 learning rates, the
Hyperband pruner, 2 epochs of the tiny data), run by the dashboard's queue while the Sweeps page watches; its worker
killed with -9 during the first trial, which the page then says; Resume finishes the sweep (the killed worker's trial
taken over, its run not trained twice); a click on a trial's row selects its run for every page."""
from __future__ import annotations

import os
import re
import signal
from urllib.parse import parse_qs, urlparse

import optuna
import pytest

from conftest import StreamlitServer, wait_for
from mnistviz import runs, sweep

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
TIMEOUT = 30000  # ms: a first render on a busy 2-core machine
ROW_PX = 35  # Streamlit's data grid: the header and each row are 35 px high


@pytest.fixture
def server(tmp_path, tiny_data):
    root = tmp_path / "runs"
    root.mkdir()
    srv = StreamlitServer({"MNISTVIZ_RUNS": str(root), "MNISTVIZ_DATA": str(tiny_data), "MNISTVIZ_SWEEP_STORAGE": ""})
    srv.root = root
    yield srv
    srv.stop()


def idle(page) -> None:
    expect(page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')).to_have_count(1, timeout=TIMEOUT)


def fill(page, label: str, value: str, within=None) -> None:
    idle(page)
    field = (within or page).get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    expect(field).to_have_value(value)


def pick(page, label: str, option: str) -> None:
    box = page.get_by_role("combobox", name=label, exact=True)
    for _ in range(3):  # a rerun arriving as the box opens redraws it closed: open it again
        idle(page)
        box.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5000)
            break
        except playwright_api.TimeoutError:
            page.keyboard.press("Escape")
    idle(page)
    expect(box).to_have_value(option)


def study(root):
    return optuna.load_study(study_name="e2e", storage=sweep.open_storage(sweep.storage_url(None, root)))


def test_make_a_sweep_kill_its_worker_resume_it_and_select_a_trial(server, page):
    page.goto(server.url + "/train")
    expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible(timeout=60000)
    for label, value in (("Epochs", "2"), ("Batch size", "50"), ("Validation images", "50")):
        fill(page, label, value)
    page.get_by_text("Sweep these settings").click()
    pick(page, "Learning rate in the sweep", "list")
    fill(page, "values", "0.05, 0.1", within=page.locator(".st-key-sweep_row_lr"))
    fill(page, "Trials", "2")
    pick(page, "Sampler", "grid")
    pick(page, "Pruner", "hyperband")
    fill(page, "Sweep name", "e2e")
    idle(page)
    page.get_by_role("button", name="Create the sweep and run it").click()
    expect(page.get_by_text("Sweep e2e made: 2 trials")).to_be_visible(timeout=TIMEOUT)
    page.get_by_role("link", name="Watch e2e on the Sweeps page").click()
    expect(page.get_by_role("heading", name="Sweeps", exact=True)).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text(re.compile(r"^[01] of 2 trials done"))).to_be_visible(timeout=TIMEOUT)

    # kill -9 the queue's sweep worker while its first trial trains: its trainer goes on alone
    t0 = server.root / "e2e-t0"
    wait_for(lambda: t0.is_dir() and runs.Run(t0).raw_status().get("status") == "running", 60, "trial 0 to train")
    trainer = runs.Run(t0).raw_status()["pid"]
    os.kill(trainer, signal.SIGSTOP)  # held, so trial 0 (a second or two of training) cannot end before the kill
    try:
        os.kill(study(server.root).trials[0].user_attrs["worker"]["pid"], signal.SIGKILL)
        expect(page.get_by_text(re.compile(r"Trial 0 \(e2e-t0\) is marked running, but its worker \(pid \d+ on "
                                           r"this machine\) is gone"))).to_be_visible(timeout=TIMEOUT)
        expect(page.get_by_text("Here: interrupted")).to_be_visible(timeout=TIMEOUT)  # at the queue's next tick
    finally:
        os.kill(trainer, signal.SIGCONT)
    page.get_by_role("button", name="Resume e2e").click()

    # the page refreshes itself while the queue runs the rest, until both trials are done
    expect(page.get_by_text(re.compile(r"^2 of 2 trials done"))).to_be_visible(timeout=120000)
    trials = study(server.root).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"], [t.user_attrs for t in trials]
    assert trials[0].user_attrs["interrupted"] and trials[1].params == trials[0].params
    assert trials[1].user_attrs["run"] == "e2e-t0"  # its run, finished by the orphaned trainer, is not trained again
    assert sorted(t.params["lr"] for t in trials[1:]) == [0.05, 0.1]  # the grid: each point once
    assert sorted(p.name for p in runs.run_folders(server.root)) == ["e2e-t0", "e2e-t2"]
    assert [r["epoch"] for r in runs.Run(t0).epoch_records()] == [1, 2]

    # a click on a row selects its trial's run for every page
    idle(page)
    grid = page.locator('[data-testid="stDataFrame"]')
    expect(grid.locator("[role=row]").filter(has_text="e2e-t2")).to_have_count(1, timeout=TIMEOUT)
    rows = grid.locator("[role=row]").all_inner_texts()[1:]
    assert len(rows) == 3, rows
    i = next(i for i, t in enumerate(rows) if "e2e-t2" in t)
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 15, box["y"] + ROW_PX * (i + 1) + ROW_PX / 2)
    expect(page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Run")).to_have_value(
        "e2e-t2", timeout=TIMEOUT)
    idle(page)
    assert parse_qs(urlparse(page.url).query).get("run") == ["e2e-t2"]
