"""What does watching the Train page's live view cost? CPU of the Streamlit server and of headless Chromium while
they show a running run, with nothing else on the machine competing: the cause behind dashboard_speed.py's ratio,
without the noise of timing two trainings against each other.

    python bench/live_view_cpu.py [--seconds 30] [--epochs-done 3] [--rounds 2]

The run is a stand-in: a process that writes status.json and metrics.jsonl the way the trainer does (a step
record every 20 steps at ~14 steps/s, the fast model's pace at batch 256; a heartbeat every 0.5 s) and sleeps in
between, so the dashboard sees a real running run while the training itself uses no CPU. On 2 cores, the UI's
share of one core divided by 2 is roughly what a real training loses to it (dashboard_speed.py's target of
>= 0.95 of the CLI's images/s needs it under ~10%).
"""
import argparse
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
from dashboard_speed import UICpu  # noqa: E402
from tests.conftest import CHROMIUM, CHROMIUM_ARGS, StreamlitServer  # noqa: E402

STEPS_PER_EPOCH = 215  # 55,000 images at batch 256


def stand_in(runs_dir: str, epochs_done: int) -> None:
    """The child process: a 'running' run that writes like the trainer and computes nothing."""
    from mnistviz import train

    run = train.create_run(train.Config(name="live", epochs=50, batch_size=256, log_every=20), runs_dir)
    total = 50 * STEPS_PER_EPOCH
    for e in range(1, epochs_done + 1):
        run.append_metrics([{"epoch": e, "step": e * STEPS_PER_EPOCH, "train_loss": 0.3 / e, "train_acc": 1 - 0.03 / e,
                             "val_loss": 0.2 / e, "val_acc": 1 - 0.02 / e, "test_loss": 0.2 / e, "test_acc": 1 - 0.02 / e,
                             "epoch_seconds": 6.0, "eval_seconds": 0.5, "images_per_s": 9000.0, "lr": 0.1}])
    g = epochs_done * STEPS_PER_EPOCH
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), started=time.time(),
                     total_steps=total, steps_per_epoch=STEPS_PER_EPOCH, epochs=50)
    beat = 0.0
    while True:
        time.sleep(0.07)
        g += 1
        if g % 20 == 0:
            run.append_metrics([{"step": g, "epoch_progress": round(g / STEPS_PER_EPOCH, 4), "train_loss": 20 / g,
                                 "train_acc": 1 - 2 / g, "lr": 0.1, "images_per_s": 9000.0, "time": time.time()}])
        now = time.time()
        if now - beat >= 0.5:
            beat = now
            run.write_status(status="running", heartbeat=now, epoch=g // STEPS_PER_EPOCH + 1, step=g % STEPS_PER_EPOCH,
                             global_step=g, images_per_s=9000.0, eta_s=(total - g) / 14, progress=g / total)


def start_stand_in(runs_dir: str, epochs_done: int = 3) -> subprocess.Popen:
    """The stand-in as a child process, once its run shows as running in `runs_dir` (a run named "live")."""
    child = subprocess.Popen([sys.executable, __file__, "--stand-in", runs_dir, "--epochs-done", str(epochs_done)])
    deadline = time.time() + 60
    while not (Path(runs_dir) / "live" / "status.json").exists():
        if child.poll() is not None or time.time() > deadline:
            child.kill()
            raise SystemExit("the stand-in run did not start")
        time.sleep(0.1)
    return child


def watch(browser, seconds: float, epochs_done: int) -> tuple[float, float]:
    """One round: a fresh runs folder, the stand-in, a server, the Train page; (server %, Chromium %) of one core."""
    with tempfile.TemporaryDirectory() as tmp:
        child = start_stand_in(tmp, epochs_done)
        srv = None
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            srv = StreamlitServer({"MNISTVIZ_RUNS": tmp})
            page = ctx.new_page()
            page.goto(srv.url + "/train?run=live")
            page.get_by_role("heading", name="Live: live").wait_for(timeout=60000)
            time.sleep(8)  # past the first render: the steady state is what a training competes with
            ui = UICpu(srv, exclude={child.pid})
            time.sleep(seconds)
            return ui.percent()
        finally:
            ctx.close()
            if srv:
                srv.stop()
            child.kill()
            child.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--epochs-done", type=int, default=3, help="finished epochs in the stand-in run (epoch table, points)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--stand-in", metavar="RUNS_DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stand_in:
        return stand_in(args.stand_in, args.epochs_done)
    if not CHROMIUM:
        raise SystemExit("no chromium: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; the Train page watching a stand-in run "
          f"({args.epochs_done} epochs done), {args.seconds:.0f} s a round")
    totals = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for k in range(args.rounds):
            server, chromium = watch(browser, args.seconds, args.epochs_done)
            totals.append(server + chromium)
            print(f"round {k + 1}: Streamlit {server:.1f}% + Chromium {chromium:.1f}% = {server + chromium:.1f}% of one core",
                  flush=True)
        browser.close()
    median = statistics.median(totals)
    print(f"UI total, median of {len(totals)}: {median:.1f}% of one core "
          f"(~{median / os.cpu_count():.1f}% of this machine's {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
