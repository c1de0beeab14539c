"""The dashboard's own tensor work runs on one thread (pages._shared.one_core), a robustness check on every core
unless a training runs; tests/conftest.py gives each later test its thread count back."""
import os
import threading
import time
from pathlib import Path

import torch
from streamlit.testing.v1 import AppTest

from mnistviz import jobs, train
from pages._shared import all_cores_unless_training

ROOT = Path(__file__).resolve().parent.parent


def test_a_page_run_puts_torch_on_one_thread(tiny_env, monkeypatch):
    monkeypatch.chdir(ROOT)
    torch.set_num_threads(2)
    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/data.py").run()
    assert not at.exception and at.title[0].value == "Data"
    # the count is per thread: the script ran in a thread of its own; a thread started now takes what it set
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [1]


def test_a_robustness_check_takes_every_core_unless_a_training_runs(tiny_env):
    torch.set_num_threads(1)  # as a page run leaves it (this runs in the test's thread, as the page's would)
    with all_cores_unless_training():
        assert torch.get_num_threads() == (os.cpu_count() or 1)
    assert torch.get_num_threads() == 1
    run = train.create_run(train.Config(name="r1", epochs=2), tiny_env)
    # this test process stands in for the run's trainer
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), started=time.time())
    assert jobs.active() == "r1"
    with all_cores_unless_training():
        assert torch.get_num_threads() == 1
    run.write_status(status="completed", pid=None)
    try:
        with all_cores_unless_training():
            raise ValueError("a failed check")
    except ValueError:
        pass
    assert torch.get_num_threads() == 1
