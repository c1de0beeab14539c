"""The first ten minutes in Chromium (issue 28): the home page's one-click LeNet-5 pair (on tiny data: seconds), the
live view brought into view and following the pair, its end's "Compare these two", Compare's verdict at the top; on
the way, the sidebar's Run box and the Runs table read whole at 1400 px. Then an epoch's point on the live chart the
moment the epoch ends."""
from __future__ import annotations

import os
import re
import time
from urllib.parse import unquote

import pytest

from conftest import RUN_BOX_TEXT_JS, TABLE_OVERFLOW_JS, StreamlitServer
from mnistviz.compare import DISTORTED

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
WAIT = 60_000  # ms: a loaded 2-core machine; each run of the pair starts a Python process that imports torch


@pytest.fixture
def server(tmp_path, tiny_data):
    root = tmp_path / "runs"
    root.mkdir()
    srv = StreamlitServer({"MNISTVIZ_RUNS": str(root), "MNISTVIZ_DATA": str(tiny_data)})
    srv.root = root
    yield srv
    srv.stop()


def idle(page) -> None:
    expect(page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')).to_have_count(1, timeout=WAIT)


# the live view's heading, numbers and chart all inside the window (what a launch scrolls into view)
LIVE_IN_VIEW_JS = """() => {
  const view = document.querySelector('.st-key-live_view');
  if (!view) return false;
  const parts = [view.querySelector('h3'), view.querySelector('.mv-stats'), view.querySelector('[data-testid="stPlotlyChart"]')];
  return parts.every(el => {
    if (!el) return false;
    const r = el.getBoundingClientRect();
    return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;
  });
}"""
def test_the_first_ten_minutes(server, page):
    page.goto(server.url)
    expect(page.get_by_role("heading", name="mnistviz")).to_be_visible(timeout=WAIT)
    expect(page.get_by_role("link", name="Draw with the built-in model")).to_be_visible()
    expect(page.get_by_role("link", name="Its mistakes")).to_be_visible()
    idle(page)

    # one click: the LeNet-5 pair, and the Train page with the live view in view
    page.get_by_role("button", name=re.compile(r"Train the LeNet-5 pair \(about 1 minute\)")).click()
    page.wait_for_url(re.compile(r"/train\?.*run=lenet5-standard-"), timeout=WAIT)
    aug = re.search(r"run=([^&]+)", page.url).group(1)
    expect(page.get_by_role("heading", name=f"Live: {aug}")).to_be_visible(timeout=WAIT)
    page.wait_for_function(LIVE_IN_VIEW_JS, timeout=WAIT, polling=100)
    # the sidebar's Run box shows the automatic name whole
    picker = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Run")
    expect(picker).to_have_value(aug)
    text, room = picker.evaluate(RUN_BOX_TEXT_JS)
    assert text <= room, (aug, text, room)

    # the live view follows the pair: its first run ends, the second one is shown, then the pair's end
    pair = page.locator(".st-key-live_pair")
    expect(pair).to_contain_text("Pair: 1 of 2 done", timeout=WAIT)
    plain = aug.replace("-standard-", "-none-")
    expect(page.get_by_role("heading", name=f"Live: {plain}")).to_be_visible(timeout=WAIT)
    assert re.search(rf"run={plain}", page.url)
    expect(pair).to_contain_text("Pair: 2 of 2 done", timeout=WAIT)
    page.get_by_role("button", name="Compare these two").click()

    # Compare, opened on the pair: its verdict first
    page.wait_for_url(re.compile(r"/compare\?"), timeout=WAIT)
    verdict = page.get_by_text(f"Verdict: A = {aug} vs B = {plain}")
    expect(verdict).to_be_visible(timeout=WAIT)
    # its paired tests: McNemar's on clean images, then (once the pair's robustness check has run) the sign test
    clean = page.get_by_text(re.compile(r"^On clean images .*McNemar's exact test p"))
    expect(clean).to_be_visible(timeout=WAIT)
    expect(page.get_by_text(re.compile(rf"^On {DISTORTED} .*sign test over images p"))).to_be_visible(timeout=WAIT)
    box = clean.bounding_box()
    assert box["y"] + box["height"] <= page.viewport_size["height"], box  # at the top: no scrolling to find it
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=WAIT)
    assert page.locator('[data-testid="stPlotlyChart"]').first.bounding_box()["y"] > box["y"]  # above the curves

    # back home: the Runs table, its columns whole at 1400 px
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Runs").click()
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible(timeout=WAIT)
    expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible()
    idle(page)
    assert page.evaluate(TABLE_OVERFLOW_JS) == 0


CHART_POINTS_JS = """() => {
  const el = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  return el && el.data ? el.data.reduce((n, t) => n + (t.x ? t.x.length : 0), 0) : -1;
}"""


# counts the script's runs (the page's or a fragment's) that have ended, from now on
RERUNS_JS = """() => {
  window.__reruns = 0;
  const app = document.querySelector('[data-testid="stApp"]');
  new MutationObserver(() => { if (app.dataset.testScriptState === 'notRunning') window.__reruns++; })
    .observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""


def test_an_epochs_point_is_drawn_when_the_epoch_ends(server, page):
    """Not at the curves' next 10 s refresh: the chart's poller watches the epochs done (a poll a second)."""
    from mnistviz import train

    run = train.create_run(train.Config(name="going", epochs=3, log_every=20), server.root)
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), started=time.time(),
                     total_steps=300, steps_per_epoch=100, epochs=3)
    steps = [{"step": 20 * k, "epoch_progress": 0.2 * k, "train_loss": 1 / k, "train_acc": 0.5, "lr": 0.01,
              "images_per_s": 900.0, "time": time.time()} for k in range(1, 6)]
    run.append_metrics(steps)  # past the chart's first records, which it draws at once anyway
    try:
        page.goto(server.url + "/train?run=going")
        page.wait_for_function(f"({CHART_POINTS_JS})() == {2 * len(steps)}", timeout=WAIT)
        idle(page)
        # in step with the curves' own refresh: the epoch ends just after one, so the next is CURVES_EVERY_S away
        page.evaluate(RERUNS_JS)
        page.wait_for_function("window.__reruns >= 1", timeout=WAIT, polling=50)
        polls = []  # the numbers' poller's: one a second (its `seen` holds the phase)
        page.on("request", lambda r: "/api/live" in r.url and "phase" in unquote(r.url) and polls.append(r.url))
        run.append_metrics([{"epoch": 1, "step": 100, "train_loss": 0.3, "train_acc": 0.9, "test_loss": 0.2,
                             "test_acc": 0.95, "epoch_seconds": 5.0, "images_per_s": 900.0}])
        # the epoch's points (train and test, loss and accuracy): drawn within a few seconds, not at the curves' next
        # refresh, CURVES_EVERY_S = 10 s on
        page.wait_for_function(f"({CHART_POINTS_JS})() == {2 * len(steps) + 4}", timeout=WAIT, polling=100)
        assert len(polls) <= 4, polls
    finally:
        run.write_status(status="stopped", pid=None)
