"""A sweep in Chromium (issue 22): made on the Train page under "Sweep these settings" (2 trials, 1 epoch of the tiny
data), its two trials run by the dashboard's queue while the Sweeps page watches, then a click on a trial's row
selects its run for every page."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from conftest import StreamlitServer

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
TIMEOUT = 30000  # ms: a first render on a busy 2-core machine
ROW_PX = 35  # Streamlit's data grid: the header and each row are 35 px high


@pytest.fixture
def server(tmp_path, tiny_data):
    runs = tmp_path / "runs"
    runs.mkdir()
    srv = StreamlitServer({"MNISTVIZ_RUNS": str(runs), "MNISTVIZ_DATA": str(tiny_data), "MNISTVIZ_SWEEP_STORAGE": ""})
    yield srv
    srv.stop()


def fill(page, label: str, value: str, within=None) -> None:
    idle(page)
    field = (within or page).get_by_label(label, exact=True)
    field.fill(value)
    field.press("Enter")
    expect(field).to_have_value(value)


def pick(page, label: str, option: str) -> None:
    box = page.get_by_role("combobox", name=label, exact=True)
    for attempt in range(3):  # a rerun arriving meanwhile redraws the box and closes its list: open it again
        idle(page)
        box.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5000)
            break
        except playwright_api.TimeoutError:
            page.keyboard.press("Escape")
    expect(page.get_by_role("combobox", name=label, exact=True)).to_have_value(option)


def idle(page) -> None:
    expect(page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')).to_have_count(1, timeout=TIMEOUT)


def test_make_a_sweep_on_the_train_page_watch_two_trials_and_select_one(server, page):
    page.goto(server.url + "/train")
    expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible(timeout=60000)
    for label, value in (("Epochs", "1"), ("Batch size", "50"), ("Validation images", "50")):
        fill(page, label, value)
    page.get_by_text("Sweep these settings").click()
    pick(page, "Learning rate in the sweep", "list")
    fill(page, "values", "0.05, 0.1", within=page.locator(".st-key-sweep_row_lr"))
    fill(page, "Trials", "2")
    pick(page, "Pruner", "none")
    fill(page, "Sweep name", "e2e")
    idle(page)
    page.get_by_role("button", name="Create the sweep and run it").click()
    expect(page.get_by_text("Sweep e2e made: 2 trials")).to_be_visible(timeout=TIMEOUT)

    page.get_by_role("link", name="Watch e2e on the Sweeps page").click()
    expect(page.get_by_role("heading", name="Sweeps", exact=True)).to_be_visible(timeout=TIMEOUT)
    # opened while the trials run (each needs seconds: a trainer process), the page refreshes itself until both are
    # done, one after the other
    expect(page.get_by_text(re.compile(r"^[01] of 2 trials done"))).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text(re.compile(r"^2 of 2 trials done"))).to_be_visible(timeout=180000)
    idle(page)
    grid = page.locator('[data-testid="stDataFrame"]')
    expect(grid.locator("[role=row]").filter(has_text="e2e-t1")).to_have_count(1, timeout=TIMEOUT)
    rows = grid.locator("[role=row]").all_inner_texts()[1:]
    assert len(rows) == 2 and all("complete" in r for r in rows), rows
    i = next(i for i, t in enumerate(rows) if "e2e-t1" in t)
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 15, box["y"] + ROW_PX * (i + 1) + ROW_PX / 2)
    expect(page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Run")).to_have_value(
        "e2e-t1", timeout=TIMEOUT)
    idle(page)
    assert parse_qs(urlparse(page.url).query).get("run") == ["e2e-t1"]
