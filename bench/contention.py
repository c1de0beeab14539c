"""What does a browser watching the live view cost a training, measured without the machine's drift? One training
runs throughout; a load is switched on and off every few seconds; the training's steps per second in the "on"
windows are compared with the "off" windows beside them.

    MNISTVIZ_DATA=../shared/data python bench/contention.py [--windows 16] [--window 6] [--loads dashboard runs burst10 burst50]

On this kind of shared 2-core VM the same training runs +-15% faster or slower from one minute to the next, more
than the effect measured here, so timing one whole training against another (bench/dashboard_speed.py) needs
luck. Here each "on" window is compared with the "off" windows just before and after it (median of those ratios).

The training is the default recipe's model, optimizer and batch size (train.Config(): fast, SGD nesterov, 256), two
threads, on random pixels, in its own process. Loads:
  dashboard  a Streamlit server and headless Chromium showing the Train page's live view of a stand-in running
             run (bench/live_view_cpu.py's), against the Data page (idle once drawn, but for its sidebar's poll of
             the run's figures every 2 s); switched with sidebar clicks in one session
  runs       the same with the Runs page (its table, and the training's numbers polled every second) for the Train page
  burst10    a process burning 20% of one core as 10 ms every 50 ms
  burst50    the same 20% of one core as 50 ms every 250 ms
The burners take the same CPU in different patterns: if a training lost only the CPU a load takes, both would
cost it about 10% on 2 cores.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
BURSTS = {"burst10": (0.010, 0.050), "burst50": (0.050, 0.250)}
SETTLE = 1.5  # seconds dropped at the start of every window (a page's first render, a process start)


def probe(out: str, seconds: float) -> None:
    """The child: train the default recipe's model with its optimizer and batch size on random pixels for `seconds`,
    then write every step's end time."""
    import torch
    import torch.nn.functional as F

    from mnistviz import train
    from mnistviz.models import build

    torch.manual_seed(0)
    cfg = train.Config()
    model = build(cfg.model).to(memory_format=torch.channels_last)
    opt = train._optimizer(model, cfg)
    x = torch.rand(cfg.batch_size, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (cfg.batch_size,))
    ends, stop = [], time.time() + seconds
    while time.time() < stop:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        ends.append(time.time())
    Path(out).write_text(json.dumps(ends))


def burn(busy: float, period: float) -> None:
    """The child: busy-loop `busy` seconds, sleep the rest of each `period`, forever."""
    while True:
        t = time.perf_counter()
        while time.perf_counter() - t < busy:
            pass
        time.sleep(max(0.0, period - (time.perf_counter() - t)))


class Burner:
    def __init__(self, name):
        self.busy, self.period = BURSTS[name]
        self.child = None

    def on(self):
        self.child = subprocess.Popen([sys.executable, __file__, "--burn", str(self.busy), str(self.period)])

    def off(self):
        if self.child:
            self.child.kill()
            self.child.wait()
            self.child = None

    def close(self):
        self.off()


class Dashboard:
    """A stand-in running run, a Streamlit server, Chromium: on = the Train page watching it, off = the Data page."""

    def __init__(self, tmp: str):
        from live_view_cpu import start_stand_in
        from playwright.sync_api import sync_playwright

        from tests.conftest import CHROMIUM, CHROMIUM_ARGS, StreamlitServer

        if not CHROMIUM:
            raise SystemExit("no chromium: apt-get install -y chromium")
        self.child = start_stand_in(tmp)
        self.srv = StreamlitServer({"MNISTVIZ_RUNS": tmp})
        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        self.page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.goto(self.srv.url + "/train?run=live")
        self.page.get_by_role("heading", name="Live: live").wait_for(timeout=60000)
        self.off()

    def nav(self, title):
        self.page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()

    def on(self):  # the sidebar's Train link (the run stays selected: it is in the URL)
        self.nav("Train")
        self.page.get_by_role("heading", name="Live: live").wait_for(timeout=60000)

    def off(self):  # the Data page: idle once drawn
        self.nav("Data")
        self.page.get_by_role("heading", name="Live: live").wait_for(state="detached", timeout=60000)

    def close(self):
        self.browser.close()
        self.pw.stop()
        self.srv.stop()
        self.child.kill()
        self.child.wait()


class RunsPage(Dashboard):
    """The same, with on = the Runs page while the stand-in run trains."""

    def on(self):
        self.nav("Runs")
        self.page.locator('[data-testid="stDataFrame"]').wait_for(timeout=60000)


def measure(load, windows: int, window: float) -> list[float]:
    """Ratios (steps/s in an 'on' window) / (mean of the 'off' windows beside it)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "steps.json"
        total = windows * window + 6
        child = subprocess.Popen([sys.executable, __file__, "--probe", str(out), str(total)])
        time.sleep(4)  # the probe's start-up and first steps
        spans = []
        try:
            for k in range(windows):
                on = k % 2 == 1
                t0 = time.time()
                if on:
                    load.on()
                spans.append((t0, on))
                time.sleep(max(0.0, t0 + window - time.time()))
                if on:
                    load.off()
            spans.append((time.time(), None))
        finally:
            load.off()
        child.wait()
        ends = json.loads(out.read_text())
    rates = []
    for (t0, on), (t1, _) in zip(spans, spans[1:]):
        n = sum(1 for e in ends if t0 + SETTLE <= e < t1)
        rates.append((on, n / (t1 - t0 - SETTLE)))
    return [rates[i][1] / statistics.mean([rates[i - 1][1]] + ([rates[i + 1][1]] if i + 1 < len(rates) else []))
            for i in range(1, len(rates)) if rates[i][0]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", type=int, default=16, help="windows per load, alternately off and on")
    ap.add_argument("--window", type=float, default=6.0, help="seconds per window")
    ap.add_argument("--loads", nargs="+", default=["dashboard", "burst10", "burst50"],
                    choices=["dashboard", "runs", *BURSTS])
    ap.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--burn", nargs=2, type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        return probe(args.probe[0], float(args.probe[1]))
    if args.burn:
        return burn(*args.burn)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.windows} windows of {args.window:g} s "
          f"per load (the first {SETTLE:g} s of each dropped)")
    for name in args.loads:
        with tempfile.TemporaryDirectory() as tmp:
            load = Dashboard(tmp) if name == "dashboard" else RunsPage(tmp) if name == "runs" else Burner(name)
            try:
                ratios = measure(load, args.windows, args.window)
            finally:
                load.close()
        print(f"{name:9s}: training speed with the load on / off: median {statistics.median(ratios):.3f} "
              f"(windows: {' '.join(f'{r:.2f}' for r in ratios)})", flush=True)


if __name__ == "__main__":
    main()
