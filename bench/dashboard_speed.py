"""Does watching a training in the dashboard slow it down? The CLI alone vs a run launched from the Train page
while headless Chromium watches its live view (its numbers re-read every second, its plotly curves redrawn every
10 s), side by side in one go, on real MNIST.

    MNISTVIZ_DATA=../shared/data python bench/dashboard_speed.py [--rounds 3] [--epochs 1] [--limit-train 0]
    MNISTVIZ_DATA=../shared/data python bench/dashboard_speed.py --rounds 0   # page renders only, on checkpoints/default
    MNISTVIZ_DATA=../shared/data python bench/dashboard_speed.py --rounds 0 --page embeddings   # one page only

Each round runs the CLI alone (no server, no browser), then starts `streamlit run app.py`, opens the Train page
in Chromium, fills the form with the same config and clicks Train, and keeps watching until the run completes.
images/s is the trainer's own figure (training steps only: no start-up, no evaluation), read from each run's
metrics.jsonl. Prints every pair, the median ratio dashboard / CLI and the ratio of each side's best round (the
target is >= 0.95; on a shared 2-core VM one side's images/s varies by +-10% between rounds), and the CPU
the UI itself used meanwhile (Streamlit server, Chromium), which does not depend on what else the machine runs.
Then (--pages, default) the first render of every page in a warm app, until its script has finished, its charts
are drawn and its images loaded: opening the page's URL in a new browser session (in the tab that shows the app,
and in a tab of its own), and clicking its sidebar link in an open one (target <= 1 s).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mnistviz import data, runs  # noqa: E402
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, StreamlitServer  # noqa: E402

COUNT_UPDATES_JS = """() => {
  window.__stepUpdates = 0;
  let last = null;
  new MutationObserver(() => {
    const m = document.querySelector('[data-stat="Step"] .mv-value');
    const v = m ? m.innerText : null;
    if (v !== last) { last = v; window.__stepUpdates++; }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""
BASE = dict(epochs="1", batch_size="256", log_every="20")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(p.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.add(c)
            todo.append(c)
    return out


class UICpu:
    """CPU the UI uses from now on: the Streamlit server, and the browser (this process's other descendants, but
    not the server's, nor the pids in `exclude`). `percent()` gives both in % of one core since creation."""

    def __init__(self, srv: StreamlitServer, exclude=()):
        self.server = srv.proc.pid
        self.browser = descendants(os.getpid()) - descendants(self.server) - {self.server, *exclude}
        self.t0, self.start = time.time(), self._seconds()

    def _seconds(self) -> tuple[float, float]:
        return cpu_seconds(self.server), sum(cpu_seconds(p) for p in self.browser)

    def percent(self) -> tuple[float, float]:
        wall = time.time() - self.t0
        return tuple(100 * (now - then) / wall for now, then in zip(self._seconds(), self.start))


def images_per_s(run_dir: Path) -> float:
    """Training images per second of training time over the whole run (steps only)."""
    epochs = runs.Run(run_dir).epoch_records()
    if not epochs:
        raise SystemExit(f"{run_dir.name}: no epoch finished; see {run_dir / 'train.log'}")
    seen = sum(r["epoch_seconds"] * r["images_per_s"] for r in epochs)
    return seen / sum(r["epoch_seconds"] for r in epochs)


def cli_run(runs_dir: Path, name: str, cfg: dict) -> float:
    cmd = [sys.executable, "-m", "mnistviz.train", "--runs-dir", str(runs_dir), "--name", name, "--no-progress",
           "--epochs", cfg["epochs"], "--batch-size", cfg["batch_size"], "--log-every", cfg["log_every"],
           "--limit-train", cfg["limit_train"]]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return images_per_s(runs_dir / name)


def dashboard_run(runs_dir: Path, name: str, cfg: dict, browser) -> tuple[float, int, float, float]:
    """Launch from the Train page and watch it to the end. Returns (images/s, live updates seen, CPU of the
    Streamlit server and of the browser while it trained, each in % of one core)."""
    from playwright.sync_api import expect

    srv = StreamlitServer({"MNISTVIZ_RUNS": str(runs_dir), "MNISTVIZ_DATA": str(data.data_root())})
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = ctx.new_page()
        page.goto(srv.url + "/train")
        expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible(timeout=60000)
        for label, value in (("Epochs", cfg["epochs"]), ("Batch size", cfg["batch_size"]),
                             ("Log every N steps", cfg["log_every"]), ("Limit training images", cfg["limit_train"]),
                             ("Run name", name)):
            field = page.get_by_label(label, exact=True)
            field.fill(value)
            field.press("Enter")
            expect(field).to_have_value(value)
        page.get_by_role("button", name="Train", exact=True).click()
        expect(page.get_by_role("heading", name=f"Live: {name}")).to_be_visible(timeout=30000)
        ui = UICpu(srv)
        # count the live view's updates in the page itself (no polling from here): each new Step value
        page.evaluate(COUNT_UPDATES_JS)
        status = page.locator('[data-stat="Status"] .mv-value')
        expect(status).to_have_text("completed", timeout=3600_000)
        server, chromium = ui.percent()
        return images_per_s(runs_dir / name), page.evaluate("() => window.__stepUpdates"), server, chromium
    finally:
        ctx.close()
        srv.stop()


# rendered: the script has finished, every visible plotly chart has drawn, every image has loaded
RENDERED_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.dataset.testScriptState !== "notRunning" || !document.querySelector("h1")) return false;
  for (const c of document.querySelectorAll('[data-testid="stPlotlyChart"]'))
    if (c.offsetParent !== null && !c.querySelector(".main-svg")) return false;
  for (const img of document.querySelectorAll("img")) if (!img.complete) return false;
  return true;
}"""


def page_render_times(runs_dir: Path, browser, repeat: int = 3, only=None) -> dict[str, float]:
    """Seconds until each page has rendered (script finished, its charts drawn and its images loaded):
    opening the page's URL in a new session (a pasted link; median of `repeat`) in the tab that shows the app and
    in a new tab, and clicking its sidebar link in an open session. After one warm-up visit of every page."""
    srv = StreamlitServer({"MNISTVIZ_RUNS": str(runs_dir), "MNISTVIZ_DATA": str(data.data_root())})
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()

    def visit(path, new_tab=False):  # a pasted link: a new session, the whole app script, the page's own script
        nonlocal page
        if new_tab:  # ... in a tab of its own: a new renderer process, which compiles Streamlit's JavaScript anew
            page.close()
            page = ctx.new_page()
            time.sleep(0.3)
        t = time.perf_counter()
        page.goto(f"{srv.url}/{path}")
        page.wait_for_function(RENDERED_JS, timeout=60000, polling="raf")
        return time.perf_counter() - t

    def click(path, title):  # the sidebar link, in a session that is open already
        t = time.perf_counter()
        page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()
        page.wait_for_url(f"**/{path}*", timeout=60000)
        # its own title shown (the rerun has drawn the page: the old page's title differs), then drawn and done
        page.wait_for_function(f"(t) => document.querySelector('h1')?.innerText.trim() === t && ({RENDERED_JS})()",
                               arg=titles[path], timeout=60000, polling="raf")
        return time.perf_counter() - t
    try:
        pages = [(path, title) for path, title in app_pages() if not only or (path or "runs") in only]
        titles = {}
        for path, _ in pages:
            visit(path)
            titles[path] = page.locator("h1").first.inner_text().strip()
        out = {}
        for path, title in pages:
            out[f"{path or 'runs'} (new session)"] = statistics.median(visit(path) for _ in range(repeat))
        for path, title in pages:
            out[f"{path or 'runs'} (new tab)"] = statistics.median(visit(path, new_tab=True) for _ in range(repeat))
        visit("")
        clicks: dict[str, list[float]] = {}
        for _ in range(repeat):  # round the sidebar: every page's first render in this session, `repeat` times
            for path, title in pages[1:] + pages[:1] if len(pages) > 1 else pages:
                if len(pages) == 1:  # one page alone: its link clicked from the home page, open in this tab
                    visit("")
                clicks.setdefault(path, []).append(click(path, title))
        for path, ts in clicks.items():
            out[f"{path or 'runs'} (sidebar click)"] = statistics.median(ts)
        return out
    finally:
        ctx.close()
        srv.stop()


def app_pages() -> list[tuple[str, str]]:
    """(url path, title) of the app's pages that exist (pages/_nav.py), the home page first with path ""."""
    from pages._nav import PAGES

    return [("" if url == "runs" else url, title) for f, title, _, url in PAGES if (ROOT / f).exists()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit-train", type=int, default=0, help="train on the first N images (0 = all 55,000)")
    ap.add_argument("--pages", action=argparse.BooleanOptionalAction, default=True,
                    help="also time each page's first render in a warm app (default: on)")
    ap.add_argument("--page", action="append", metavar="URL_PATH",
                    help="time only this page (its URL path, e.g. embeddings; repeatable)")
    args = ap.parse_args()
    if data.find_mnist() is None:
        raise SystemExit(data.missing_message())
    if not CHROMIUM:
        raise SystemExit("no chromium: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    cfg = {**BASE, "epochs": str(args.epochs), "limit_train": str(args.limit_train)}
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; fast model, batch 256, "
          f"{args.epochs} epoch(s), {'all' if not args.limit_train else args.limit_train} training images")
    clis, dashes = [], []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for k in range(args.rounds):
            cli = cli_run(Path(tmp), f"cli-{k}", cfg)
            dash, redraws, server, chromium = dashboard_run(Path(tmp), f"dash-{k}", cfg, browser)
            clis.append(cli)
            dashes.append(dash)
            print(f"round {k + 1} (load average {os.getloadavg()[0]:.1f}): CLI alone {cli:8.0f} images/s | dashboard + browser watching {dash:8.0f} images/s "
                  f"({redraws} live updates seen) | ratio {dash / cli:.3f} | meanwhile the UI used "
                  f"{server:.1f}% (Streamlit) + {chromium:.1f}% (Chromium) of one core", flush=True)
        if args.pages and not args.rounds:  # no trained runs to show: time the pages on the committed default run
            shutil.copytree(ROOT / "checkpoints" / "default", Path(tmp) / "default")
        times = page_render_times(Path(tmp), browser, only=args.page) if args.pages else {}
        browser.close()
    ratios = [d / c for d, c in zip(dashes, clis)]
    median = statistics.median(ratios) if ratios else None
    if ratios:
        print(f"median ratio dashboard / CLI: {median:.3f}; best of {len(ratios)} each: CLI {max(clis):.0f}, "
              f"dashboard {max(dashes):.0f} images/s, ratio {max(dashes) / max(clis):.3f} (target >= 0.95)")
    for path, t in times.items():
        print(f"page {path:30s} first render {t:5.2f} s (target <= 1 s, warm app)")
    print(json.dumps({"ratios": [round(r, 4) for r in ratios], "median": median and round(median, 4),
                      "best_ratio": ratios and round(max(dashes) / max(clis), 4),
                      "page_seconds": {k: round(v, 3) for k, v in times.items()}}))


if __name__ == "__main__":
    main()
