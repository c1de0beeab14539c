"""The Train page in Chromium: launch a short run from the form, watch the live curves gain points while it
trains in its own process, and the status reach completed; the curves of a run's first seconds; the form's layout
at 900 and 1400 px."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from conftest import ROOT, StreamlitServer

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

# points drawn in the live curves chart (all traces); -1 while no chart is shown
CHART_POINTS_JS = """() => {
  const el = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  if (!el || !el.data) return -1;
  return el.data.reduce((n, t) => n + (t.x ? t.x.length : 0), 0);
}"""
# the live curves' per-step traces (loss, accuracy): their mode and the y range plotly drew
TRACES_JS = """() => {
  const el = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  return el.data.filter(t => t.legendgroup === 'train-step').map(t => ({
    mode: t.mode, yrange: el._fullLayout[t.yaxis === 'y2' ? 'yaxis2' : 'yaxis'].range}));
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
    # tiny data: 11 steps an epoch, a point every 2 steps; 150 epochs train for about 30 s on an idle machine, long
    # enough for the curves to refresh twice (every CURVES_EVERY_S = 10 s) while the run is still running
    for label, value in (("Epochs", "150"), ("Batch size", "50"), ("Validation images", "50"),
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
    assert (cfg["epochs"], cfg["batch_size"], cfg["val_size"]) == (150, 50, 50)
    records = [json.loads(line) for line in (runs / "live-e2e" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "epoch" in r]
    assert len(epochs) == 150
    # the final chart holds every record: per-step points (x2 panels) and per-epoch points (3 splits x 2 panels)
    steps = len(records) - len(epochs)
    page.wait_for_function(f"({CHART_POINTS_JS})() == {2 * steps + 6 * len(epochs)}", timeout=10000)
    expect(page.locator('[data-stat="Epoch"] .mv-value')).to_have_text("150 / 150")
    expect(page.get_by_text("Per epoch: seconds spent training and evaluating")).to_be_visible()  # the epoch table


# ---------- the curves of a run's first seconds ----------

@pytest.fixture
def starting_run(server):
    """A run shown as running that has logged nothing yet: training elsewhere (here, this test process, which
    appends the records itself, so the test decides when each lands)."""
    from mnistviz import train

    srv, root = server
    run = train.create_run(train.Config(name="starting", epochs=2, log_every=20), root)
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), started=time.time(),
                     total_steps=430, steps_per_epoch=215, epochs=2)
    yield srv, run
    run.write_status(status="stopped", pid=None)


def step_record(k: int) -> dict:
    """The trainer's k-th step record (log_every 20, 215 steps an epoch)."""
    return {"step": 20 * k, "epoch_progress": round(20 * k / 215, 4), "train_loss": 2.3 / k, "train_acc": 1 - 0.9 / k,
            "lr": 0.2, "images_per_s": 9000.0, "time": time.time()}


def live_polls(page) -> list[str]:
    """The URLs of the page's /api/live requests from now on, decoded (a curves poller's carry "metrics_size")."""
    from urllib.parse import unquote

    urls = []
    page.on("request", lambda r: "/api/live" in r.url and urls.append(unquote(r.url)))
    return urls


def next_polls(page, n: int) -> None:
    """Wait for the page's next n /api/live requests (the pollers ask about once a second): a count of events
    instead of a sleep, so a loaded machine makes the test slower, not wrong."""
    for _ in range(n):
        with page.expect_request(lambda r: "/api/live" in r.url, timeout=60000):
            pass


def page_constant(name: str) -> float:
    """A constant of pages/train.py, read from its source (importing a page script would run it)."""
    return float(re.search(rf"^{name} = ([0-9.]+)", (ROOT / "pages" / "train.py").read_text(), re.M).group(1))


def test_the_first_records_of_a_run_show_at_once_then_the_curves_keep_their_10_s_rhythm(starting_run, page):
    CURVES_EVERY_S, SPARSE_RECORDS = page_constant("CURVES_EVERY_S"), int(page_constant("SPARSE_RECORDS"))
    srv, run = starting_run
    page.goto(srv.url + "/train?run=starting")
    expect(status(page)).to_have_text("running", timeout=60000)
    # an empty chart, drawn from the start (so plotly.js is loaded before the training needs the CPU)
    expect(page.locator('[data-testid="stPlotlyChart"] .annotation-text')).to_have_text(
        ["waiting for the first logged steps"] * 2, timeout=30000)
    assert page.evaluate(CHART_POINTS_JS) == 0
    # while the chart shows fewer than SPARSE_RECORDS records, each new one is drawn at the chart poller's next
    # poll or so, not at the next 10 s refresh (some ten polls later); a single point shows as a marker, on an
    # accuracy axis within 0-100%
    polls = live_polls(page)
    for k in range(1, SPARSE_RECORDS + 1):
        before = len(polls)
        run.append_metrics([step_record(k)])
        page.wait_for_function(f"({CHART_POINTS_JS})() == {2 * k}", timeout=60000, polling=100)
        assert len(polls) - before <= 4, polls[before:]
        if k == 1:
            traces = page.evaluate(TRACES_JS)
            assert [t["mode"] for t in traces] == ["lines+markers"] * 2, traces
            lo, hi = traces[1]["yrange"]
            assert 0 <= lo < hi <= 1, traces  # the accuracy panel
    # from then on the chart waits for its CURVES_EVERY_S refresh: its own poller is gone (no poll asks about
    # metrics_size), so the numbers' polls come and go without redrawing it. (Whether the new record is drawn a few
    # seconds later depends on where the 10 s refresh falls, and on the machine's load: not asserted.)
    next_polls(page, 1)  # one in flight when the chart's poller went away does not count
    del polls[:]
    run.append_metrics([step_record(SPARSE_RECORDS + 1)])
    next_polls(page, 3)
    assert polls and not [u for u in polls if "metrics_size" in u], polls
    page.wait_for_function(f"({CHART_POINTS_JS})() == {2 * (SPARSE_RECORDS + 1)}",
                           timeout=(CURVES_EVERY_S + 60) * 1000, polling=200)
    expect(status(page)).to_have_text("running")


# Streamlit reruns of the page's script (whole page or a fragment) and changes of the live Step value, counted from now
COUNT_JS = """() => {
  window.__reruns = 0; window.__steps = 0;
  const app = document.querySelector('[data-testid="stApp"]');
  new MutationObserver(() => { if (app.dataset.testScriptState === 'running') window.__reruns++; })
    .observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  const step = document.querySelector('[data-stat="Step"] .mv-value');
  new MutationObserver(() => window.__steps++).observe(step, {subtree: true, childList: true, characterData: true});
}"""


def test_the_numbers_refresh_every_second_without_rerunning_the_page_until_the_state_changes(starting_run, page):
    srv, run = starting_run
    page.goto(srv.url + "/train?run=starting")
    expect(status(page)).to_have_text("running", timeout=60000)
    expect(page.get_by_role("button", name="Stop")).to_be_visible(timeout=30000)  # drawn after the numbers
    page.wait_for_function("document.querySelector('[data-testid=\"stApp\"]').dataset.testScriptState === 'notRunning'")
    page.evaluate(COUNT_JS)
    for k in range(1, 5):  # the trainer's status moves on: each value shows within ~a second
        run.write_status(global_step=1000 * k, progress=1000 * k / 430, eta_s=60 - k)
        expect(page.locator('[data-stat="Step"] .mv-value')).to_have_text(f"{1000 * k:,}", timeout=30000)
    assert page.evaluate("window.__steps") >= 4
    # ...written by the poller: no Streamlit rerun a second (at most the curves' own CURVES_EVERY_S refresh)
    assert page.evaluate("window.__reruns") <= 1
    # the sidebar's figures of the run follow its epochs, written by the same poller (before, they stayed as the
    # page was drawn until it reran)
    sidebar = page.locator('[data-testid="stSidebar"] [data-testid="stCaptionContainer"]').first
    expect(sidebar).to_contain_text("0/2 epochs · best test accuracy no epoch yet")
    run.append_metrics([{"epoch": 1, "step": 215, "train_loss": 0.3, "train_acc": 0.9, "test_loss": 0.2,
                         "test_acc": 0.9731, "epoch_seconds": 5.0, "images_per_s": 9000.0}])
    expect(sidebar).to_contain_text("1/2 epochs · best test accuracy 97.31%", timeout=30000)
    # a change of state reruns the whole page: the Stop button makes way for Resume
    run.write_status(status="stopped", pid=None)
    expect(page.get_by_role("button", name="Resume")).to_be_visible(timeout=30000)
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    expect(status(page)).to_have_text("stopped")


def test_a_run_being_started_is_drawn_as_running_and_its_trainer_starting_reruns_nothing(server, page):
    """Launched, its trainer still loading (status queued, launch alive): the page draws it as running (sidebar, empty
    chart, Stop) so that the trainer's "running", a second before its first step, reruns nothing: that rerun's redraw
    took ~1 s of the browser's CPU from the training's first second."""
    import subprocess
    import sys

    from mnistviz import train

    srv, root = server
    run = train.create_run(train.Config(name="launching", epochs=2, log_every=20), root)
    # a stand-in for jobs' launch: alive, and its command line names the run and mnistviz (runs.launcher_alive)
    launch = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "mnistviz.train", "launching"])
    deadline = time.time() + 10  # until it has exec'd (before, its command line is still this process's)
    while b"mnistviz.train" not in Path(f"/proc/{launch.pid}/cmdline").read_bytes() and time.time() < deadline:
        time.sleep(0.01)
    try:
        run.write_status(status="queued", launcher_pid=launch.pid, launched=time.time())
        page.goto(srv.url + "/train?run=launching")
        expect(page.get_by_role("heading", name="Live: launching")).to_be_visible(timeout=60000)
        expect(page.locator('[data-testid="stPlotlyChart"] .annotation-text')).to_have_text(
            ["waiting for the first logged steps"] * 2, timeout=30000)
        expect(status(page)).to_have_text("starting")
        expect(page.get_by_role("button", name="Stop")).to_be_visible()
        expect(page.get_by_text("is queued")).to_have_count(0)
        expect(page.locator('[data-testid="stSidebar"]').get_by_text("running ·")).to_be_visible()
        page.wait_for_function("document.querySelector('[data-testid=\"stApp\"]').dataset.testScriptState"
                               " === 'notRunning'")
        page.evaluate(COUNT_JS)
        # a starting run's curves refresh on their own every CURVES_EVERY_S: start just after one, so that on a loaded
        # machine the next one does not fall inside the check below
        page.wait_for_function("window.__reruns >= 1", timeout=60000, polling=50)
        page.wait_for_function("document.querySelector('[data-testid=\"stApp\"]').dataset.testScriptState"
                               " === 'notRunning'")
        page.evaluate("window.__reruns = 0")
        since = time.time()
        # the trainer starts: its status says running; the poller shows it, and nothing reruns
        run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), started=time.time(),
                         total_steps=430, steps_per_epoch=215, epochs=2, global_step=3)
        expect(status(page)).to_have_text("running", timeout=30000)
        expect(page.locator('[data-stat="Step"] .mv-value')).to_have_text("3")
        next_polls(page, 3)  # the pollers have seen "running" a few times over
        assert page.evaluate("window.__reruns") == 0, f"{time.time() - since:.1f} s after the curves' refresh"
        # its first records are drawn at once (the chart's own poller: a starting run is drawn as running)
        polls = live_polls(page)
        run.append_metrics([step_record(1)])
        page.wait_for_function(f"({CHART_POINTS_JS})() == 2", timeout=60000, polling=100)
        assert len(polls) <= 4, polls  # at a poll or so, not at the curves' 10 s refresh
    finally:
        run.write_status(status="stopped", pid=None, launcher_pid=None)
        launch.kill()
        launch.wait()


def test_without_the_json_route_the_numbers_still_refresh(tmp_path, tiny_data, page):
    """Served without app.py's /api/live route, the poller reruns its fragment every second, which redraws the
    numbers on the server, and a change of state still reruns the page."""
    from mnistviz import train

    root = tmp_path / "runs"
    run = train.create_run(train.Config(name="plain", epochs=2, log_every=20), root)
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), started=time.time(),
                     total_steps=430, steps_per_epoch=215, epochs=2)
    srv = StreamlitServer({"MNISTVIZ_RUNS": str(root), "MNISTVIZ_DATA": str(tiny_data)}, script="tests/e2e/app_without_route.py")
    try:
        page.goto(srv.url + "/train?run=plain")
        expect(status(page)).to_have_text("running", timeout=60000)
        for k in range(1, 3):
            run.write_status(global_step=1000 * k, progress=1000 * k / 430)
            expect(page.locator('[data-stat="Step"] .mv-value')).to_have_text(f"{1000 * k:,}", timeout=30000)
        run.write_status(status="stopped", pid=None)
        expect(page.get_by_role("button", name="Resume")).to_be_visible(timeout=30000)
    finally:
        run.write_status(status="stopped", pid=None)
        srv.stop()


# ---------- layout ----------

# text cut short in the form and its buttons: elements whose content is wider than their box, clipped (an ellipsis
# or a hidden overflow), and fields whose value is wider than their box (a select's shown option included)
CUT_TEXT_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  const end = main.querySelector('[data-testid="stExpander"]');  // the model summary: the form ends above it
  const out = [];
  for (const el of main.querySelectorAll('*')) {
    if (end && (end.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING)) continue;
    const text = [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim();
    if (!text) continue;
    const cut = (node) => {
      const s = getComputedStyle(node);
      return node.scrollWidth > node.clientWidth + 1 && (s.textOverflow === 'ellipsis' || s.overflow !== 'visible');
    };
    let node = el, clipped = false;
    for (let i = 0; i < 4 && node && node !== main; i++, node = node.parentElement) clipped = clipped || cut(node);
    if (clipped) out.push(text);
  }
  // a field's value (a select's shown option is an <input> too) wider than the field's text box
  const ctx = document.createElement('canvas').getContext('2d');
  for (const input of main.querySelectorAll('input')) {
    if (end && (end.compareDocumentPosition(input) & Node.DOCUMENT_POSITION_FOLLOWING)) continue;
    if (!input.value || input.type === 'checkbox') continue;
    const s = getComputedStyle(input);
    ctx.font = s.font;
    const room = input.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
    if (ctx.measureText(input.value).width > room + 1) out.push(input.value);
  }
  return out;
}"""
# the form's widgets in view: [label, width in px]
WIDGET_WIDTHS_JS = """() => [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stNumberInput"],'
  + '[data-testid="stMain"] [data-testid="stSelectbox"], [data-testid="stMain"] [data-testid="stTextInput"]')]
  .filter(el => el.checkVisibility())  // not those of a closed expander (the LR finder's steps)
  .map(el => [el.querySelector('[data-testid="stWidgetLabel"]').innerText, el.getBoundingClientRect().width])"""


# the live curves' legend overlaps an axis title (boxes in px)
LEGEND_OVER_TITLE_JS = """() => {
  const chart = document.querySelector('[data-testid="stPlotlyChart"]');
  const legend = chart.querySelector('g.legend').getBoundingClientRect();
  return [...chart.querySelectorAll('.g-xtitle, .g-x2title')].some(t => {
    const r = t.getBoundingClientRect();
    return r.width > 0 && r.left < legend.right && legend.left < r.right && r.top < legend.bottom && legend.top < r.bottom;
  });
}"""


@pytest.mark.parametrize("width", [900, 1400])
def test_the_train_page_reads_whole_at_900_and_1400_px(server, browser, fixture_runs, width):
    srv, root = server
    shutil.copytree(fixture_runs / "tiny-none", root / "tiny-none")  # a run to show below the form
    ctx = browser.new_context(viewport={"width": width, "height": 1000})
    try:
        pg = ctx.new_page()
        pg.goto(srv.url + "/train?run=tiny-none")
        expect(pg.get_by_role("button", name="Train", exact=True)).to_be_visible(timeout=60000)
        expect(pg.get_by_text("Run name", exact=True)).to_be_visible()
        time.sleep(1)  # layout settled
        assert pg.evaluate(CUT_TEXT_JS) == []
        widths = pg.evaluate(WIDGET_WIDTHS_JS)
        labels = [label for label, _ in widths]
        assert len(widths) == 19 and {"Device", "Precision"} <= set(labels), labels
        assert [(label, w) for label, w in widths if w < 180] == []
        for name in ("Train", "Train augmented + normal pair", "Load settings from tiny-none"):
            button = pg.get_by_role("button", name=name, exact=True)
            expect(button).to_be_visible()  # whole: CUT_TEXT_JS found no label cut short
        expect(pg.locator('[data-testid="stPlotlyChart"] g.legend')).to_be_visible()
        assert not pg.evaluate(LEGEND_OVER_TITLE_JS)
    finally:
        ctx.close()


def test_on_another_page_the_sidebar_follows_the_training_and_its_end(starting_run, page):
    # the Data page has no live view: the sidebar mounts a poller of its own while its run trains
    srv, run = starting_run
    page.goto(srv.url + "/data?run=starting")
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible(timeout=60000)
    sidebar = page.locator('[data-testid="stSidebar"] [data-testid="stCaptionContainer"]').first
    expect(sidebar).to_contain_text("running")
    expect(sidebar).to_contain_text("0/2 epochs · best test accuracy no epoch yet")
    page.wait_for_function("document.querySelector('[data-testid=\"stApp\"]').dataset.testScriptState === 'notRunning'")
    # its poller (pages/_live.py, key side_poll): its element in the sidebar, its timer registered in window.__mvPollers
    poller = page.locator('[data-testid="stSidebar"] .st-key-side_poll')
    expect(poller).to_have_count(1)
    page.wait_for_function("() => typeof (window.__mvPollers || {}).side_poll === 'function'", timeout=30000)
    run.append_metrics([{"epoch": 1, "step": 215, "train_loss": 0.3, "train_acc": 0.9, "test_loss": 0.2,
                         "test_acc": 0.9731, "epoch_seconds": 5.0, "images_per_s": 9000.0}])
    expect(sidebar).to_contain_text("1/2 epochs · best test accuracy 97.31%", timeout=30000)
    # its end reruns the page: the sidebar says how it ended, and stops polling
    run.write_status(status="completed", pid=None)
    expect(sidebar).to_contain_text("completed", timeout=30000)
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()
    # stopped polling: the rerun took the poller's element away, and unmounting it ran its stop (which clears its
    # timer and leaves window.__mvPollers)
    page.wait_for_function("document.querySelector('[data-testid=\"stApp\"]').dataset.testScriptState === 'notRunning'")
    expect(poller).to_have_count(0, timeout=30000)
    page.wait_for_function("() => !(window.__mvPollers || {}).side_poll", timeout=30000)
