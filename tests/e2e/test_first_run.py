"""`streamlit run app.py` as a new user's desktop runs it: no credentials yet, a display, a browser to open. The
project's .streamlit/config.toml keeps Streamlit from asking for an email address (on a terminal the app would not
start until it is answered; without one, Streamlit exits) and from showing its Deploy button."""
from __future__ import annotations

import pytest

from conftest import StreamlitServer

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


def test_a_first_run_on_a_desktop_starts_without_questions(tmp_path, tiny_data, page):
    home = tmp_path / "home"  # no ~/.streamlit/credentials.toml: Streamlit's first run on this machine
    home.mkdir()
    runs = tmp_path / "runs"
    runs.mkdir()
    # not headless (a display; BROWSER=true opens nothing) and no flags: the command the README gives
    srv = StreamlitServer({"HOME": str(home), "DISPLAY": ":99", "BROWSER": "true", "MNISTVIZ_RUNS": str(runs),
                           "MNISTVIZ_DATA": str(tiny_data)}, flags=())
    try:
        page.goto(srv.url)
        expect(page.get_by_role("heading", name="Runs")).to_be_visible(timeout=30000)
        expect(page.get_by_text("No runs yet").first).to_be_visible()
        expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
    finally:
        srv.stop()
    log = (runs / f".streamlit-{srv.port}.log").read_text()
    assert "Email" not in log and "Collecting usage statistics" not in log, log
