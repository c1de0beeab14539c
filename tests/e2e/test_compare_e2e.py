"""The Compare page in Chromium: opened by its URL with the fixture pair, both runs' curves are drawn."""
from __future__ import annotations

import shutil

import pytest

from conftest import StreamlitServer

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


@pytest.fixture
def server(tmp_path, fixture_runs, tiny_data):
    runs = tmp_path / "runs"
    shutil.copytree(fixture_runs, runs)  # the server writes its log into the runs folder; the fixture is read-only
    srv = StreamlitServer({"MNISTVIZ_RUNS": str(runs), "MNISTVIZ_DATA": str(tiny_data)})
    yield srv
    srv.stop()


def test_compare_page_shows_both_runs_curves(server, page):
    # a shared link straight to the page on a fresh server: it runs inside the app shell (sidebar included)
    page.goto(server.url + "/compare?runs=tiny-none,tiny-aug")
    # (the first render on a fresh server imports torch and the pages' modules: seconds, more on a fresh clone)
    expect(page.get_by_role("heading", name="A = tiny-none vs B = tiny-aug")).to_be_visible(timeout=30000)
    expect(page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Compare", exact=True)).to_be_visible()
    curves = page.locator('[data-testid="stPlotlyChart"]').first
    legend = curves.locator(".legendtext")
    expect(legend).to_have_count(2, timeout=30000)  # plotly draws after the page's first render
    assert sorted(legend.all_text_contents()) == ["tiny-aug", "tiny-none"]
    # one line per run in each of the six panels
    expect(curves.locator("g.scatterlayer g.trace")).to_have_count(12)
    # charts download as PNG from plotly's toolbar
    curves.hover()
    expect(curves.locator('[data-title*="download plot as" i][data-title*="png" i]')).to_have_count(1)
