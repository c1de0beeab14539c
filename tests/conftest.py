"""Shared fixtures: tiny MNIST written as real IDX files, tiny trained runs, a Streamlit server, Chromium.

Tests that need the real MNIST find it through MNISTVIZ_DATA (see `real_mnist`) and skip without it.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
# pytest.ini runs as many workers as the CI has cores: each worker's processes (itself, its trainers and servers)
# then take one OpenMP thread; two spinning threads a process on busy cores made a tiny training several times slower
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(ROOT))
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def write_idx(raw: Path, n_train: int = 600, n_test: int = 200, seed: int = 0) -> None:
    """Synthetic digits: each class is a fixed random blob pattern plus noise, so a model can learn it."""
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    templates = (rng.random((10, 28, 28)) > 0.8).astype(np.float32)
    templates[:, :4] = templates[:, -4:] = templates[:, :, :4] = templates[:, :, -4:] = 0

    def make(n):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        imgs = templates[labels] * rng.uniform(0.6, 1.0, (n, 1, 1)) + rng.random((n, 28, 28)) * 0.25
        return (np.clip(imgs, 0, 1) * 255).astype(np.uint8), labels.astype(np.uint8)

    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs, labels = make(n)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + imgs.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped, saying so, without one (bench/gpu_check.sh "
                                       "runs them: pytest -m gpu)")


@pytest.fixture(autouse=True)
def torch_threads_back():
    """A page run under AppTest puts torch on one thread (pages._shared.one_core), and threads started after it
    take that count: each test starts with the count this process had."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def no_legacy_pages_mode(monkeypatch):
    """AppTest runs shell.py without app.py and resets PagesManager.uses_pages_directory before every script run:
    apply app.py's setting after each reset, or a pages/ folder would run a switched-to page without the shell.
    Nothing to do without Streamlit (a GPU box that runs only the trainer's tests)."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return

    init = PagesManager.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", __init__)


@pytest.fixture
def app(monkeypatch):
    """shell.py under AppTest: make(page, run) opens `page` (a pages/ file) with ?run=`run`, and asserts it raised
    nothing."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.chdir(ROOT)

    def make(page: str | None = None, run: str | None = None) -> AppTest:
        at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
        if run:
            at.query_params["run"] = run
        at.run()
        if page:
            at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        return at
    return make


def texts(elements, sep: str = "\n") -> str:
    """The values of AppTest elements (markdown, captions, warnings...) as one string."""
    return sep.join(str(e.value) for e in elements)


def wait_for(cond, timeout: float = 60, what: str = "condition", every: float = 0.02):
    """Poll cond() until it returns something true (returned), or fail naming `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A data root holding tiny IDX files (600 train, 200 test) in MNIST/raw."""
    root = tmp_path_factory.mktemp("tinydata")
    write_idx(root / "MNIST" / "raw")
    return root


@pytest.fixture
def tiny_env(tiny_data, tmp_path, monkeypatch) -> Path:
    """MNISTVIZ_DATA -> tiny data, MNISTVIZ_RUNS -> an empty runs folder (returned)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(runs))
    return runs


TINY = dict(epochs=2, batch_size=50, val_size=100, log_every=2)


def train_tiny(runs: Path, data: Path, **overrides) -> Path:
    """Train a tiny run in-process on the tiny data; returns its folder."""
    from mnistviz import train

    old = os.environ.get("MNISTVIZ_DATA")
    os.environ["MNISTVIZ_DATA"] = str(data)
    try:
        cfg = train.Config(**{**TINY, **overrides})
        run = train.create_run(cfg, runs)
        train.train_run(run)
        return run.path
    finally:
        if old is None:
            os.environ.pop("MNISTVIZ_DATA", None)
        else:
            os.environ["MNISTVIZ_DATA"] = old


def copy_run_files(src: Path, dst: Path) -> Path:
    """A run folder's top-level files (config, status, metrics, checkpoints, test labels; not preds/) into dst."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.fixture(scope="session")
def fixture_runs(tiny_data, tmp_path_factory) -> Path:
    """A runs folder with an augmented + normal pair of tiny completed runs (names 'tiny-aug', 'tiny-none').
    Session-scoped: treat as read-only."""
    runs = tmp_path_factory.mktemp("fixture_runs")
    train_tiny(runs, tiny_data, name="tiny-none", augment="none", pair="p1", seed=1)
    train_tiny(runs, tiny_data, name="tiny-aug", augment="standard", pair="p1", seed=1)
    return runs


# The Mispredictions tests' run: a copy of tiny-none whose stored predictions are made by hand, so that what the
# page should show is known without the code under test, whatever training does. Epoch -> the wrong test images.
KNOWN_WRONG = {1: [0, 1, 45, 46, 47, 48, 100, 150, 199], 2: [7, 49, 60, 61, 130, 131, 132, 185]}


def known_probs(labels: np.ndarray, wrong: list[int]) -> np.ndarray:
    """N x 10 probabilities: image i is predicted (label + 1 + i % 3) % 10 when i is in `wrong`, else its label.
    Losses are all different: the wrong images have the highest, in the order of `wrong` (the first is the worst),
    then the correct ones from the last image to the first (p(true) = 0.99 - 0.002 i, distinct in float16 too)."""
    n = len(labels)
    p = np.zeros((n, 10), np.float64)
    for i, y in enumerate(labels):
        if i in wrong:
            t = 0.01 + 0.01 * wrong.index(i)
            p[i] = (0.1 - t) / 8
            p[i, (y + 1 + i % 3) % 10] = 0.9
        else:
            t = 0.99 - 0.002 * i
            p[i] = (1 - t) / 9
        p[i, y] = t
    return p


def known_predictions_run(fixture_runs: Path, root: Path) -> Path:
    """root/tiny-none: a copy of the fixture's tiny-none with KNOWN_WRONG as its stored predictions (epoch 2 the
    best: its metrics' test accuracies are made to match)."""
    import json

    dst = root / "tiny-none"
    shutil.copytree(fixture_runs / "tiny-none", dst)
    labels = np.load(dst / "test_labels.npy").astype(np.int64)
    for epoch, wrong in KNOWN_WRONG.items():
        np.save(dst / "preds" / f"epoch_{epoch:03d}.npy", known_probs(labels, wrong).astype(np.float16))
    lines = []
    for line in (dst / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "epoch" in rec:
            rec["test_acc"] = 1 - len(KNOWN_WRONG[rec["epoch"]]) / len(labels)
        lines.append(json.dumps(rec))
    (dst / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def real_mnist() -> Path:
    from mnistviz.data import find_mnist

    root = os.environ.get("MNISTVIZ_DATA")
    if not root or find_mnist(Path(root)) is None:
        pytest.skip("real MNIST not found: set MNISTVIZ_DATA to a folder with MNIST/raw (CI does)")
    return Path(root)


# ---------- browser tests ----------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    """`streamlit run app.py` (or `script`) as a real process on a free port, with the given env. `flags`: the
    command's options besides the port and address (default: headless, no file watcher); `address` None: no
    address flag (the project's .streamlit/config.toml decides)."""

    FLAGS = ("--server.headless=true", "--browser.gatherUsageStats=false", "--server.fileWatcherType=none")

    def __init__(self, env: dict, cwd: Path = ROOT, script: str = "app.py", flags=FLAGS, address="127.0.0.1"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(Path(env.get("MNISTVIZ_RUNS", "/tmp")) / f".streamlit-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", script, f"--server.port={self.port}",
             *([f"--server.address={address}"] if address else []), *flags],
            cwd=cwd, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline and self.proc.poll() is None:
            try:
                if urllib.request.urlopen(self.url + "/_stcore/health", timeout=2).read() == b"ok":
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"streamlit did not start; see {self.log.name}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM:
        pytest.skip("no chromium: apt-get install -y chromium (.ci/run does) to run browser tests")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.skip("playwright not installed: pip install -r requirements-dev.txt")
    # on two busy workers a rerun can take longer than expect's 5 s default; an expectation that holds returns at
    # once, so only a failure waits the longer time
    expect.set_options(timeout=15_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


# the sidebar's Run box: the width its value's text takes and the room the box gives it (px)
RUN_BOX_TEXT_JS = """input => {
  const ctx = document.createElement('canvas').getContext('2d'), s = getComputedStyle(input);
  ctx.font = s.font;
  const room = input.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
  return [ctx.measureText(input.value).width, room];
}"""
# the Runs table's columns wider than the table (cut off at its right-hand side), in px
TABLE_OVERFLOW_JS = """() => {
  const grid = document.querySelector('[data-testid="stDataFrame"] .dvn-scroller');
  return grid ? grid.scrollWidth - grid.clientWidth : null;
}"""


def click_until(page, where, check, tries: int = 3) -> None:
    """Click at where() (page pixels, asked again each try) until check() stops raising AssertionError: a click
    while a plotly chart is still settling can go unnoticed. check() is run once more after the last try."""
    for _ in range(tries):
        x, y = where()
        page.mouse.move(x, y)
        page.mouse.click(x, y)
        try:
            check()
            return
        except AssertionError:
            continue
    check()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(30000)
    yield pg
    ctx.close()


@pytest.fixture
def procs():
    """Start real, unrelated processes (each in its own session: a pid for a status.json to point at, a
    process group to signal); all are killed after the test."""
    started = []

    def start(*argv):
        p = subprocess.Popen(list(argv), start_new_session=True)
        started.append(p)
        return p
    yield start
    for p in started:
        p.kill()
        p.wait()
