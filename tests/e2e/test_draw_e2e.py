"""The Draw page in Chromium: trace a "1" with the mouse, read the Prediction; a stroke more, undo it; clear;
trace a "0", read it."""
from __future__ import annotations

import json
import math

import pytest

from canvas import INPUT_SRC_JS, settle, trace
from conftest import StreamlitServer
from mnistviz import mydigits

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

WAIT = 30_000  # ms: generous, for a loaded CI machine (the first run also starts torch and loads the model)


def prediction(page):
    return page.locator('[data-testid="stMetric"]', has_text="Prediction").locator('[data-testid="stMetricValue"]')


@pytest.fixture
def server(tmp_path, tiny_data):
    assert (mydigits.DEFAULT_MODEL / "config.json").exists(), "the bundled default model checkpoints/default is missing"
    runs = tmp_path / "runs"
    runs.mkdir()
    srv = StreamlitServer({"MNISTVIZ_RUNS": str(runs), "MNISTVIZ_DATA": str(tiny_data)})
    yield srv
    srv.stop()


def test_trace_a_one_then_a_zero(server, page):
    page.goto(server.url)                                        # the app's own navigation, as a user gets there
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Draw").click()
    page.locator("canvas.upper-canvas").wait_for()
    expect(page.get_by_text("Draw a digit 0-9")).to_be_visible(timeout=WAIT)
    settle(page)

    trace(page, [(150, 50), (140, 140), (132, 240)])            # a "1", slightly slanted
    expect(prediction(page)).to_have_text("1", timeout=WAIT)
    # the 28 x 28 input follows the metric in the same rerun: wait for it rather than race it
    one = page.wait_for_function(INPUT_SRC_JS, timeout=WAIT).json_value()
    assert one

    # a stroke too many, then "Undo last stroke" beside Clear (the canvas's own undo hides in a toolbar shown only on
    # hover): the model gets the "1" alone again
    undo = page.get_by_role("button", name="Undo last stroke")
    trace(page, [(60, 140), (220, 140)])
    page.wait_for_function(f"() => !['', null, {json.dumps(one)}].includes(({INPUT_SRC_JS})())", timeout=WAIT)
    expect(undo).to_be_enabled(timeout=WAIT)
    undo.click()
    page.wait_for_function(f"() => ({INPUT_SRC_JS})() === {json.dumps(one)}", timeout=WAIT)
    expect(prediction(page)).to_have_text("1", timeout=WAIT)

    old_canvas = page.locator("canvas.upper-canvas").element_handle()
    page.get_by_role("button", name="Clear").click()
    page.wait_for_function("el => !el.isConnected", arg=old_canvas, timeout=WAIT)  # a new canvas replaced it
    expect(page.get_by_text("Draw a digit 0-9")).to_be_visible(timeout=WAIT)  # a fresh, empty canvas
    expect(prediction(page)).to_have_count(0, timeout=WAIT)
    settle(page)

    zero = [(140 - 65 * math.cos(2 * math.pi * k / 32), 140 + 95 * math.sin(2 * math.pi * k / 32)) for k in range(34)]
    trace(page, zero)
    expect(prediction(page)).to_have_text("0", timeout=WAIT)
