"""The Train page in Chromium: launch a short run from the form, watch the live curves gain points while it
trains in its own process, and the status reach completed."""
from __future__ import annotations

import json

import pytest

from conftest import StreamlitServer

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

# points drawn in the live curves chart (all traces); -1 while no chart is shown
CHART_POINTS_JS = """() => {
  const el = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  if (!el || !el.data) return -1;
  return el.data.reduce((n, t) => n + (t.x ? t.x.length : 0), 0);
}"""
STATUS_JS = """() => {
  const el = document.querySelector('[data-stat="Status"] .mv-value');
  return el ? el.textContent : null;
}"""


@pytest.fixture
def server(tmp_path, tiny_data):
    runs = tmp_path / "runs"
    runs.mkdir()
    srv = StreamlitServer({"MNISTVIZ_RUNS": str(runs), "MNISTVIZ_DATA": str(tiny_data)})
    yield srv, runs
    srv.stop()


def status(page):
    return page.locator('[data-stat="Status"] .mv-value')


def test_launch_from_the_train_page_and_watch_it_live(server, page):
    srv, runs = server
    page.goto(srv.url + "/train")
    expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible(timeout=60000)
    # tiny data: 11 steps an epoch, a point every 2 steps; 300 epochs train for about 30 s here, long enough for
    # the curves to refresh twice (every CURVES_EVERY_S = 10 s) while the run is still running
    for label, value in (("Epochs", "300"), ("Batch size", "50"), ("Validation images", "50"),
                         ("Log every N steps", "2"), ("Run name", "live-e2e")):
        field = page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Enter")
        expect(field).to_have_value(value)
    page.get_by_role("button", name="Train", exact=True).click()
    expect(page.get_by_text("Launched: live-e2e")).to_be_visible(timeout=30000)
    expect(page.get_by_role("heading", name="Live: live-e2e")).to_be_visible()

    # the curves fragment re-reads metrics.jsonl every CURVES_EVERY_S seconds while the run trains: the chart shows
    # up, then grows while the status still says running (the full rerun at completion, which redraws the chart
    # too, does not count)
    page.wait_for_function(f"({CHART_POINTS_JS})() > 0", timeout=60000, polling=200)
    first = page.evaluate(CHART_POINTS_JS)
    page.wait_for_function(f"({CHART_POINTS_JS})() > {first} && ({STATUS_JS})() === 'running'", timeout=60000,
                           polling=100)
    expect(status(page)).to_have_text("completed", timeout=300000)

    cfg = json.loads((runs / "live-e2e" / "config.json").read_text())
    assert (cfg["epochs"], cfg["batch_size"], cfg["val_size"]) == (300, 50, 50)
    records = [json.loads(line) for line in (runs / "live-e2e" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "epoch" in r]
    assert len(epochs) == 300
    # the final chart holds every record: per-step points (x2 panels) and per-epoch points (3 splits x 2 panels)
    steps = len(records) - len(epochs)
    page.wait_for_function(f"({CHART_POINTS_JS})() == {2 * steps + 6 * len(epochs)}", timeout=10000)
    expect(page.locator('[data-stat="Epoch"] .mv-value')).to_have_text("300 / 300")
    expect(page.get_by_text("Per epoch: seconds spent training and evaluating")).to_be_visible()  # the epoch table
