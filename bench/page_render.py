"""First render of every dashboard page in real headless Chromium, once the app is warm.

    MNISTVIZ_DATA=../shared/data python bench/page_render.py [--run default] [--repeat 3]

Starts `streamlit run app.py` on a free port (runs folder: this project's checkpoints/ unless MNISTVIZ_RUNS is
set), opens every page once to warm caches, then times each page `--repeat` times: from navigation start to the
script having run to completion with no exception on screen. Target (issues 3 and 4): at most 1 s per page.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, StreamlitServer  # noqa: E402

PAGES = ["runs", "train", "data", "mispredictions", "confusion", "feature-maps", "draw", "compare"]
DONE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def render(page, url: str) -> float:
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="running"]', timeout=30000, state="attached")
    page.wait_for_selector(DONE, timeout=60000, state="attached")
    elapsed = time.perf_counter() - t0
    if page.locator('[data-testid="stException"]').count():
        raise SystemExit(f"{url}: the page shows an exception")
    return elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="default")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    runs_dir = os.environ.get("MNISTVIZ_RUNS", str(ROOT / "checkpoints"))
    server = StreamlitServer({"MNISTVIZ_RUNS": runs_dir})
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            for name in PAGES:  # warm-up: imports, caches, model loads
                render(page, f"{server.url}/{name}?run={args.run}")
            print(f"{'page':16s} {'median s':>9s} {'max s':>7s}  target <= 1.0 s")
            for name in PAGES:
                times = [render(page, f"{server.url}/{name}?run={args.run}") for _ in range(args.repeat)]
                med = statistics.median(times)
                print(f"{name:16s} {med:9.3f} {max(times):7.3f}  {'ok' if med <= 1.0 else 'SLOW'}")
            b.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
