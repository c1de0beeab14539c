"""The shell in Chromium: the sidebar's run picker keeps its run through status changes; /runs opens the Runs page."""
from __future__ import annotations

import json
import re
import shutil
from urllib.parse import parse_qs, urlparse

import pytest

from conftest import RUN_BOX_TEXT_JS, TABLE_OVERFLOW_JS, StreamlitServer
from mnistviz import runs

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
TIMEOUT = 20000  # ms: a first render on a busy 2-core machine


@pytest.fixture
def server(tmp_path, fixture_runs, tiny_data):
    root = tmp_path / "runs"
    shutil.copytree(fixture_runs, root)  # the server writes its log into the runs folder; the fixture is read-only
    srv = StreamlitServer({"MNISTVIZ_RUNS": str(root), "MNISTVIZ_DATA": str(tiny_data)})
    srv.root = root
    yield srv
    srv.stop()


def url_run(page) -> list[str]:
    return parse_qs(urlparse(page.url).query).get("run", [])


def idle(page) -> None:
    expect(page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')).to_have_count(1, timeout=TIMEOUT)


def goto_page(page, title: str, path: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()
    page.wait_for_url(f"**/{path}?*")
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=TIMEOUT)
    idle(page)


def test_the_selected_run_survives_its_status_changing(server, page):
    # the picker's labels used to carry each run's status; a browser holding the old label sent it back once the
    # status had changed, Streamlit handed that label over as the value, and the shell put "tiny-aug · completed"
    # into the URL and then fell back to another run
    cfg_file = server.root / "tiny-aug" / "config.json"  # the oldest run: a fallback (the newest) is not it
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "created": 1_000_000_000.0}))
    page.goto(server.url + "/confusion?run=tiny-aug")
    expect(page.get_by_role("heading", name="Confusion", exact=True)).to_be_visible(timeout=TIMEOUT)
    picker = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Run")
    expect(picker).to_have_value(re.compile(r"^tiny-aug\b"), timeout=TIMEOUT)
    runs.Run(server.root / "tiny-aug").write_status(status="stopped")  # it ended, was stopped or resumed meanwhile
    for title, path in (("Mispredictions", "mispredictions"), ("Feature maps", "feature-maps"), ("Runs", "")):
        if path:
            goto_page(page, title, path)
        else:
            page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()
            expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible(timeout=TIMEOUT)
            idle(page)
        assert url_run(page) == ["tiny-aug"], (title, page.url)
        expect(picker).to_have_value(re.compile(r"^tiny-aug\b"), timeout=TIMEOUT)
    expect(page.locator('[data-testid="stSidebar"]')).to_contain_text("stopped")  # its status is still shown


def test_runs_path_opens_the_runs_page_with_its_run(server, page):
    page.goto(server.url + "/runs?run=tiny-aug")
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("Page not found")).to_have_count(0)
    expect(page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Run")).to_have_value(
        re.compile(r"^tiny-aug\b"), timeout=TIMEOUT)


def test_a_page_url_opened_first_on_a_fresh_server_runs_inside_the_shell(server, page):
    # a pages/ folder beside the main script once put a fresh server in Streamlit's legacy multipage mode: the first
    # session opened at /data ran pages/data.py alone (no run picker, no run from the URL) until "/" was opened
    page.goto(server.url + "/data?run=tiny-aug")
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible(timeout=TIMEOUT)
    picker = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Run")
    expect(picker).to_have_value("tiny-aug", timeout=TIMEOUT)
    nav = page.locator('[data-testid="stSidebarNav"]')
    for title in ("Runs", "Train", "Compare"):
        expect(nav.get_by_role("link", name=title, exact=True)).to_be_visible()
    expect(nav.get_by_role("link", name="Shared", exact=True)).to_have_count(0)  # no page made of pages/_shared.py


def test_the_runs_page_follows_a_training_without_a_reload(server, page):
    import os
    import time

    run = runs.Run(server.root / "tiny-none")
    page.goto(server.url + "/?run=tiny-none")
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible(timeout=TIMEOUT)
    idle(page)
    # a training starts elsewhere, as from a terminal (here: this test's own process, alive, with a fresh
    # heartbeat): the idle page's poll, every IDLE_EVERY_S = 5 s, notices it
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), progress=0.25, epoch=1,
                     global_step=10, total_steps=40)
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("Training now: tiny-none")).to_be_visible(timeout=TIMEOUT)
    step = page.locator('[data-stat="Step"] .mv-value')
    expect(step).to_have_text("10")
    page.wait_for_function("document.querySelector('[data-testid=\"stApp\"]').dataset.testScriptState === 'notRunning'")
    page.evaluate("""() => { window.__reruns = 0; const app = document.querySelector('[data-testid="stApp"]');
      new MutationObserver(() => { if (app.dataset.testScriptState === 'running') window.__reruns++; })
        .observe(app, {attributes: true, attributeFilter: ['data-test-script-state']}); }""")
    polls = []
    page.on("request", lambda r: "/api/live" in r.url and polls.append(r.url))
    for k in (20, 30):  # the trainer moves on: the numbers follow at the poller's next poll or so, written in place
        before = len(polls)
        run.write_status(global_step=k, progress=k / 40)
        expect(step).to_have_text(str(k), timeout=TIMEOUT)
        assert len(polls) - before <= 3, polls[before:]
    for _ in range(2):  # two more polls: a rerun one of them had asked for would have begun by then
        with page.expect_request(lambda r: "/api/live" in r.url, timeout=TIMEOUT):
            pass
    assert page.evaluate("window.__reruns") == 0  # no Streamlit rerun for them (the page used to rerun every 3 s)
    run.write_status(status="completed", pid=None, heartbeat=time.time(), progress=1.0)
    # no reload, no click: the poller notices the new status and the page follows (buttons, sidebar)
    expect(stop).to_have_count(0, timeout=TIMEOUT)
    expect(page.locator('[data-testid="stSidebar"]')).to_contain_text("completed")
    expect(page.get_by_text("Training now")).to_have_count(0)  # nothing trains: the numbers are gone


def test_a_page_url_finds_the_server_at_once_and_navigates_as_before(server, page):
    # Streamlit's frontend, opened at /confusion, used to ask /confusion/_stcore/health first (a 404) and the root
    # only ~0.1 s later; app.py serves each page's URL with window.__streamlit naming the app's root
    asked = []
    page.on("response", lambda r: "/_stcore/" in r.url and asked.append((r.status, urlparse(r.url).path)))
    page.goto(server.url + "/confusion?run=tiny-aug")
    expect(page.get_by_role("heading", name="Confusion", exact=True)).to_be_visible(timeout=TIMEOUT)
    idle(page)
    assert asked[:2] and all(status == 200 and path.startswith("/_stcore/") for status, path in asked), asked
    goto_page(page, "Mispredictions", "mispredictions")
    assert urlparse(page.url).path == "/mispredictions" and url_run(page) == ["tiny-aug"]
    page.goto(server.url + "/confusion?run=tiny-aug")  # the page's own URL again, as served by app.py
    expect(page.get_by_role("heading", name="Confusion", exact=True)).to_be_visible(timeout=TIMEOUT)
    page.reload()  # and reloaded: the same page and run
    expect(page.get_by_role("heading", name="Confusion", exact=True)).to_be_visible(timeout=TIMEOUT)
    expect(page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Run")).to_have_value(
        re.compile(r"^tiny-aug\b"), timeout=TIMEOUT)
    assert all(status == 200 for status, _ in asked), asked


def test_the_longest_automatic_name_reads_whole_in_the_run_box_and_the_runs_table_still_fits(server, page):
    # issue 28: "lenet5-standard-20261206-09122" was cut in the Run box. The longest automatic name: the longest
    # model and augmentation names, a time stamp, and a -2 for a second launch in the same second.
    from mnistviz import augment, models, train

    cfg = dict(model=max(models.MODELS, key=len), augment=max(augment.LEVELS, key=len), created=1_796_000_000.0)
    made = [train.create_run(train.Config(**cfg), server.root) for _ in range(2)]
    for run in made:
        run.write_status(status="stopped")  # not queued: the server would start it
    name = made[1].name
    assert name.endswith("-2") and len(name) == len(made[0].name) + 2, name
    page.goto(server.url + f"/?run={name}")
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible(timeout=TIMEOUT)
    picker = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Run")
    expect(picker).to_have_value(name, timeout=TIMEOUT)
    idle(page)
    text, room = picker.evaluate(RUN_BOX_TEXT_JS)
    assert text <= room, (name, text, room)
    # the sidebar's extra width is not taken from the Runs table: its columns still fit at 1400 px
    expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
    assert page.evaluate(TABLE_OVERFLOW_JS) == 0
