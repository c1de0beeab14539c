"""Every action on a run acts on the run named on screen beside it (issue 27, in Chromium): a row click in the Runs
table, a ?run= link and the sidebar are one selection, and Delete, Download and Stop act on the run their labels name
after any of them; two quick clicks on Train launch one run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlparse

import pytest
import torch

from conftest import ROOT, StreamlitServer
from mnistviz import runs

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
TIMEOUT = 30000  # ms: a first render on a busy 2-core machine
ROW_PX = 35  # Streamlit's data grid: the header and each row are 35 px high


@pytest.fixture
def server(tmp_path, tiny_data):
    """Runs default, victim-a and victim-b (copies of the committed default model), newest first in that order:
    victim-a, victim-b, default. Each best.pt carries its run's name, so a download says whose it is."""
    root = tmp_path / "runs"
    root.mkdir()
    for name, created in (("victim-a", 2_000_000_000.0), ("victim-b", 1_900_000_000.0), ("default", 1_000_000_000.0)):
        shutil.copytree(ROOT / "checkpoints" / "default", root / name)
        cfg = root / name / "config.json"
        cfg.write_text(json.dumps({**json.loads(cfg.read_text()), "name": name, "created": created}))
        ckpt = torch.load(root / name / "best.pt", weights_only=True)
        torch.save({**ckpt, "copy_of": name}, root / name / "best.pt")
    srv = StreamlitServer({"MNISTVIZ_RUNS": str(root), "MNISTVIZ_DATA": str(tiny_data)})
    srv.root = root
    yield srv
    srv.stop()


def idle(page) -> None:
    expect(page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')).to_have_count(1, timeout=TIMEOUT)


def open_runs(page, url: str) -> None:
    page.goto(url)
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible(timeout=TIMEOUT)
    expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible(timeout=TIMEOUT)
    idle(page)


def click_row(page, name: str) -> None:
    """Click the selection box of `name`'s row in the runs table (a canvas: its accessible rows give the order)."""
    grid = page.locator('[data-testid="stDataFrame"]')
    expect(grid.locator("[role=row]").filter(has_text=name)).to_have_count(1, timeout=TIMEOUT)  # the grid is drawn
    rows = grid.locator("[role=row]").all_inner_texts()[1:]  # each row's cells, its name first
    i = next(i for i, t in enumerate(rows) if t.startswith(name))
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 15, box["y"] + ROW_PX * (i + 1) + ROW_PX / 2)


def url_run(page) -> list[str]:
    return parse_qs(urlparse(page.url).query).get("run", [])


def expect_named(page, name: str) -> None:
    """The heading under the table, the sidebar's Run box, the URL and the Download button all name `name`."""
    expect(page.get_by_role("heading", name=name, exact=True)).to_be_visible(timeout=TIMEOUT)
    expect(page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name="Run")).to_have_value(
        name, timeout=TIMEOUT)
    expect(page.get_by_role("button", name=f"Download {name}/best.pt")).to_be_visible()
    idle(page)
    assert url_run(page) == [name]


def confirm_delete(page, name: str) -> None:
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_text(f"Delete {name} and all its files? This cannot be undone.")).to_be_visible()
    page.get_by_role("button", name=f"Yes, delete {name}", exact=True).click()
    expect(page.get_by_text(f"Deleted {name}.")).to_be_visible(timeout=TIMEOUT)


def left(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.is_dir()}


def test_a_row_click_selects_its_run_everywhere_and_delete_deletes_that_run_only(server, page):
    open_runs(page, server.url + "/?run=victim-a")
    expect_named(page, "victim-a")
    click_row(page, "victim-b")
    expect_named(page, "victim-b")
    confirm_delete(page, "victim-b")
    assert left(server.root) == {"victim-a", "default"}


def test_a_second_row_click_moves_the_selection_again(server, page):
    open_runs(page, server.url + "/?run=victim-a")
    click_row(page, "victim-b")
    expect_named(page, "victim-b")
    click_row(page, "default")
    expect_named(page, "default")
    confirm_delete(page, "default")
    assert left(server.root) == {"victim-a", "victim-b"}


def test_a_run_link_opened_while_the_confirmation_is_open_is_the_run_deleted(server, page):
    open_runs(page, server.url + "/?run=victim-a")
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_text("Delete victim-a and all its files?")).to_be_visible()
    open_runs(page, server.url + "/?run=victim-b")
    expect_named(page, "victim-b")
    confirm_delete(page, "victim-b")
    assert left(server.root) == {"victim-a", "default"}


def test_download_sends_the_checkpoint_of_the_run_it_names(server, page, tmp_path):
    open_runs(page, server.url + "/?run=victim-a")
    click_row(page, "victim-b")
    expect_named(page, "victim-b")
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download victim-b/best.pt").click()
    assert dl.value.suggested_filename == "victim-b-best.pt"
    got = tmp_path / "got.pt"
    dl.value.save_as(got)
    assert torch.load(got, weights_only=True)["copy_of"] == "victim-b"


def trainer(root: Path, data: Path, name: str) -> subprocess.Popen:
    """A real training of the tiny data that lasts minutes (a folder of its own, as from a terminal)."""
    return subprocess.Popen(
        [sys.executable, "-m", "mnistviz.train", "--name", name, "--epochs", "500", "--batch-size", "50",
         "--val-size", "50", "--log-every", "5", "--runs-dir", str(root), "--no-progress"],
        cwd=ROOT, env={**os.environ, "MNISTVIZ_DATA": str(data)}, stdout=subprocess.DEVNULL,
        stderr=open(root / f".{name}.log", "w"), start_new_session=True)


def wait_status(root: Path, name: str, want: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while runs.Run(root / name).status().get("status") != want:
        log = root / f".{name}.log"
        assert time.monotonic() < deadline, f"{name} never became {want}" + (
            f"; its trainer said: {log.read_text()[-2000:]}" if log.exists() else "")
        time.sleep(0.3)


def test_stop_stops_the_run_it_names(server, page, tiny_data):
    procs = [trainer(server.root, tiny_data, n) for n in ("train-a", "train-b")]
    try:
        for n in ("train-a", "train-b"):
            wait_status(server.root, n, "running")
        open_runs(page, server.url + "/?run=train-a")
        expect(page.get_by_role("heading", name="train-a", exact=True)).to_be_visible(timeout=TIMEOUT)
        click_row(page, "train-b")
        expect(page.get_by_role("heading", name="train-b", exact=True)).to_be_visible(timeout=TIMEOUT)
        page.get_by_role("button", name="Stop train-b", exact=True).click()
        procs[1].wait(60)  # its trainer checkpoints and exits...
        wait_status(server.root, "train-b", "stopped", timeout=10)
        assert procs[0].poll() is None  # ...and the other one trains on
        assert runs.Run(server.root / "train-a").status()["status"] == "running"
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_two_quick_clicks_on_train_launch_one_run_and_say_so(server, page):
    page.goto(server.url + "/train")
    expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible(timeout=TIMEOUT)
    for label, value in (("Epochs", "1"), ("Batch size", "50"), ("Validation images", "50")):
        field = page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Tab")
    idle(page)
    before = left(server.root)
    train = page.get_by_role("button", name="Train", exact=True)
    train.click()
    page.wait_for_timeout(150)  # the gap of a double click
    train.click()
    expect(page.get_by_text("nothing more was launched")).to_be_visible(timeout=TIMEOUT)
    idle(page)
    made = left(server.root) - before
    assert len(made) == 1, made
    # the same settings once more, on purpose
    page.get_by_role("button", name="Train again", exact=True).click()
    expect(page.get_by_text("nothing more was launched")).to_have_count(0, timeout=TIMEOUT)
    idle(page)
    assert len(left(server.root) - before) == 2
    for name in left(server.root) - before:  # tiny runs of one epoch: let them end before the folder goes
        wait_status(server.root, name, "completed", timeout=120)


def test_a_crafted_run_link_renders_no_link_or_image(server, page):
    # the ?run= of a link goes into the sidebar's warning as text: once it was markdown, so a crafted link drew a
    # link and an image (a request to any server) in the page
    crafted = "[pwn](http://evil.invalid/x)![i](http://evil.invalid/i.png)"
    page.goto(server.url + "/?run=" + quote(crafted))
    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible(timeout=TIMEOUT)
    warning = page.locator('[data-testid="stSidebar"] [data-testid="stAlert"]')
    expect(warning).to_contain_text("There is no run named", timeout=TIMEOUT)
    shown = warning.evaluate("e => e.textContent.replaceAll('\\u2060', '')")  # the word joiners are invisible
    assert f"There is no run named '{crafted}'" in shown
    bad = page.locator('a[href*="evil.invalid"], img[src*="evil.invalid"]')
    assert bad.count() == 0, [bad.nth(i).evaluate("e => e.outerHTML") for i in range(bad.count())]
