"""A soak of the live route (issue 20): concurrent requests to /api/live on loopback, as many browser tabs polling at
once, while a real training runs. No request fails, every answer is the JSON the pages read, and the trainer's
records are neither lost nor duplicated by the load."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

from conftest import ROOT, StreamlitServer
from mnistviz import runs

CLIENTS = 6
EPOCHS = 12
MAX_REQUESTS = 3000  # in all: bounded whatever the machine's speed


def test_concurrent_polls_of_a_training_lose_and_duplicate_nothing(tmp_path, tiny_data):
    root = tmp_path / "runs"
    root.mkdir()
    srv = StreamlitServer({"MNISTVIZ_RUNS": str(root), "MNISTVIZ_DATA": str(tiny_data)})
    # the route's first answer imports what it needs: before the training, so that the polls overlap the training
    with urllib.request.urlopen(f"{srv.url}/api/live?run=soak", timeout=120) as r:
        assert r.status == 200
    # tiny data: 550 training images at batch 50 are 11 steps an epoch; a step record every step
    trainer = subprocess.Popen(
        [sys.executable, "-m", "mnistviz.train", "--name", "soak", "--epochs", str(EPOCHS), "--batch-size", "50",
         "--val-size", "50", "--log-every", "1", "--runs-dir", str(root), "--no-progress"],
        cwd=ROOT, env={**os.environ, "MNISTVIZ_DATA": str(tiny_data)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    # the requests' budget is for the training itself: on a busy machine the trainer's start (importing torch) could
    # use it all up before a step is taken
    deadline = time.monotonic() + 300
    while runs.Run(root / "soak").raw_status().get("status") != "running" and trainer.poll() is None:
        assert time.monotonic() < deadline, "the trainer never started"
        time.sleep(0.05)
    errors, answers = [], []
    sent = iter(range(MAX_REQUESTS))
    lock = threading.Lock()

    def poll():
        steps = []  # what this client saw, in order
        seen = json.dumps({"busy": [None, []], "phase": "running"})
        while trainer.poll() is None:
            with lock:
                if next(sent, None) is None:
                    break
            url = f"{srv.url}/api/live?run=soak&seen={urllib.parse.quote(seen)}"
            try:
                with urllib.request.urlopen(url, timeout=30) as r:
                    body = json.loads(r.read())
                    assert r.status == 200
            except Exception as e:  # noqa: BLE001  (any failure is what the soak looks for)
                errors.append(repr(e))
                continue
            if body.get("state") in ("running", "queued", "completed"):
                stats = dict((s[0], s[1]) for s in body["stats"])
                steps.append(int(stats["Step"].replace(",", "")))
        with lock:
            answers.append(steps)

    try:
        clients = [threading.Thread(target=poll) for _ in range(CLIENTS)]
        for c in clients:
            c.start()
        for c in clients:
            c.join(600)
        out, err = trainer.communicate(timeout=600)
    finally:
        if trainer.poll() is None:
            trainer.kill()
        srv.stop()
    assert trainer.returncode == 0, err
    assert errors == [], errors[:5]
    assert sum(map(len, answers)) > CLIENTS, "the clients saw the training"
    for steps in answers:  # each client's view of the step only moves forward
        assert steps == sorted(steps), steps
    run = runs.Run(root / "soak")
    assert run.status()["status"] == "completed"
    steps = [r["step"] for r in run.step_records()]
    total = run.status()["total_steps"]
    assert steps == list(range(1, total + 1))  # one record per step: none lost, none written twice
    assert [r["epoch"] for r in run.epoch_records()] == list(range(1, EPOCHS + 1))
    assert json.loads(out.strip().splitlines()[-1])["epochs"] == EPOCHS
