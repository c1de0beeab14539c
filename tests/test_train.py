import gc
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mnistviz import runs, train
from tests.conftest import ROOT, TINY


def _run(runs_dir, **overrides):
    cfg = train.Config(**{**TINY, **overrides})
    run = train.create_run(cfg, runs_dir)
    return run, train.train_run(run)


def test_loss_falls_on_a_small_subset(tiny_env):
    run, res = _run(tiny_env, epochs=3, limit_train=300, model="lenet5", optimizer="adam", lr=3e-3,
                    schedule="none", weight_decay=0.0, label_smoothing=0.0)
    ep = run.epoch_records()
    assert res["status"] == "completed" and len(ep) == 3
    assert ep[-1]["train_loss"] < ep[0]["train_loss"] * 0.8
    assert ep[-1]["test_acc"] > 0.3  # 10 classes: chance is 0.1
    steps = run.step_records()
    assert steps and all(k in steps[0] for k in ("train_loss", "train_acc", "lr", "images_per_s"))
    for k in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "epoch_seconds"):
        assert ep[0][k] is not None
    assert run.probs().shape == (200, 10) and run.pred_epochs() == [1, 2, 3]
    assert len(run.test_labels()) == 200
    assert gc.get_freeze_count() == 0  # the loop's gc.freeze() is undone: the caller's objects are collectable again


def test_step_points_average_whole_windows_across_epochs(tiny_env):
    # 500 training images at batch 50: 10 steps an epoch; a point every 4 steps, windows running across epoch
    # ends (a point for a 2-step tail at each epoch end was a visible spike), and the run's last 2 steps at the end
    run, res = _run(tiny_env, epochs=3, log_every=4, model="net-320")
    steps = run.step_records()
    assert [r["step"] for r in steps] == [4, 8, 12, 16, 20, 24, 28, 30]
    assert [r["epoch_progress"] for r in steps] == [0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8, 3]


METRIC_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")


def _metrics(run):
    return [[r.get(k) for k in METRIC_KEYS + ("step",)] for r in run.epoch_records()] + \
           [[r["train_loss"], r["train_acc"], r["step"]] for r in run.step_records()]


def test_same_seed_same_metrics(tiny_env):
    a, _ = _run(tiny_env, augment="standard", model="net-320", seed=7, epochs=2)
    b, _ = _run(tiny_env, augment="standard", model="net-320", seed=7, epochs=2)
    c, _ = _run(tiny_env, augment="standard", model="net-320", seed=8, epochs=2)
    assert _metrics(a) == _metrics(b)
    assert _metrics(a) != _metrics(c)


class StopAfter(train.StopRequested):
    """A caller's stop request that arrives after n steps (as a SIGTERM would)."""
    def __init__(self, n):
        super().__init__()
        self.n = n

    def is_set(self):
        self.n -= 1
        return self.n < 0


@pytest.mark.parametrize("optimizer,lr", [("sgd", train.Config.lr), ("adamw", 1e-3)])
def test_stop_then_resume_reaches_planned_epochs_with_same_metrics(tiny_env, optimizer, lr):
    over = {"epochs": 3, "augment": "light", "model": "net-320", "seed": 3, "optimizer": optimizer, "lr": lr}
    ref, _ = _run(tiny_env, **over, name=f"ref-{optimizer}")
    cfg = train.Config(**{**TINY, **over})
    run = train.create_run(cfg, tiny_env)
    res = train.train_run(run, stop=StopAfter(15))  # 10 steps per epoch: stops mid-epoch 2
    assert res["status"] == "stopped" and run.status()["status"] == "stopped"
    assert len(run.epoch_records()) == 1
    # the stop itself saved a checkpoint, mid-epoch (the one from the end of epoch 1 would say step 10)
    assert runs.load_checkpoint(run.last_ckpt)["state"]["global_step"] == 15
    assert runs.load_checkpoint(run.last_ckpt)["state"]["step_in_epoch"] == 5
    assert run.status()["checkpoint_step"] == 15  # what the pages show as kept
    res = train.train_run(run, resume=True)
    assert res["status"] == "completed" and res["epochs"] == 3
    assert [r["epoch"] for r in run.epoch_records()] == [1, 2, 3]
    assert _metrics(run) == _metrics(ref)  # resuming mid-epoch changes nothing
    assert run.status()["checkpoint_step"] == run.status()["global_step"] == 30


def _cli(args, env, timeout=120):
    return subprocess.run([sys.executable, "-m", "mnistviz.train", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def test_cli_trains_and_prints_json_last(tiny_env, tiny_data):
    p = _cli(["--epochs", "2", "--batch-size", "50", "--val-size", "100", "--name", "cli1", "--model", "net-320",
              "--target-accuracy", "99.9"], {})
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(out) == {"run", "run_dir", "status", "epochs", "test_accuracy", "best_test_accuracy", "train_seconds"}
    assert out["run"] == "cli1" and out["status"] == "completed" and out["epochs"] == 2
    assert out["train_seconds"] > 0 and 0 <= out["test_accuracy"] <= 1
    run = runs.Run(out["run_dir"])
    assert run.config()["target_accuracy"] == pytest.approx(0.999)
    # evaluate CLI on the same run agrees with the trainer's best epoch
    e = subprocess.run([sys.executable, "-m", "mnistviz.evaluate", out["run_dir"], "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert e.returncode == 0, e.stderr
    ev = json.loads(e.stdout.strip().splitlines()[-1])
    assert ev["test_accuracy"] == pytest.approx(out["best_test_accuracy"], abs=1e-6)
    assert ev["test_loss"] > 0


BAD = [
    ["--lr", "-0.1"], ["--lr", "abc"], ["--batch-size", "0"], ["--epochs", "0"], ["--model", "resnet"],
    ["--augment", "extreme"], ["--preset", "nope"], ["--momentum", "2"], ["--name", "../escape"],
    ["--name", "a/b"], ["--resume", "no-such-run"], ["--resume", "../x"], ["--batch-size", "1.5"],
    ["--target-accuracy", "150"],
]


@pytest.mark.parametrize("args", BAD, ids=" ".join)
def test_cli_bad_input_exits_2_one_line(tiny_env, args, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("python -m mnistviz.train: error:")
    assert list(tiny_env.iterdir()) == []  # nothing created


def test_cli_bad_input_no_traceback_in_a_real_process(tiny_env):
    for args in (["--lr", "-1"], ["--resume", "ghost"]):
        p = _cli(args, {})
        assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def _wait(cond, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def _start(runs_dir, name, epochs):
    return subprocess.Popen([sys.executable, "-m", "mnistviz.train", "--epochs", str(epochs), "--batch-size", "20",
                             "--val-size", "100", "--model", "net-320", "--name", name, "--no-progress"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_is_interrupted_and_resume_completes(tiny_env):
    p = _start(tiny_env, "killed", 12)
    run = runs.Run(tiny_env / "killed")
    # killed once a checkpoint is written and said in status.json (written just after last.pt: a kill between the
    # two leaves the status one checkpoint behind, which the pages then show as kept)
    assert _wait(lambda: run.last_ckpt.exists() and run.raw_status().get("checkpoint_step"))
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert run.raw_status()["status"] == "running"  # what the dead process left behind
    st = run.status()
    assert st["status"] == "interrupted" and st["error"]
    done = len(run.epoch_records())
    assert 1 <= done < 12
    # where resume continues, as the pages show it: last.pt's step, or the one before if the kill fell in between
    assert 0 < st["checkpoint_step"] <= runs.load_checkpoint(run.last_ckpt)["state"]["global_step"]
    r = _cli(["--resume", "killed", "--no-progress"], {}, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["status"] == "completed" and out["epochs"] == 12
    assert [e["epoch"] for e in run.epoch_records()] == list(range(1, 13))  # no gaps, no duplicates
    steps = [s["step"] for s in run.step_records()]
    assert steps == sorted(set(steps))
    again = _cli(["--resume", "killed"], {})
    assert again.returncode == 2 and "already completed" in again.stderr


# A child that trains like `python -m mnistviz.train ARGS` and dies (os._exit, as a SIGKILL would) right after
# one file write of the run: after last.pt of epoch 2, after the metrics append that carries epoch 2's record, or
# after the append of the run's last steps (30 steps, a point every 4: the tail is step 30).
KILL_AT = r"""
import os, sys
from mnistviz import train
where = sys.argv[1]
if where == "last.pt":
    real_save = train.save_checkpoint
    def save(path, obj):
        real_save(path, obj)
        if path.name == "last.pt" and obj["state"]["epoch"] == 2:
            os._exit(9)
    train.save_checkpoint = save
else:
    hit = {"epoch2": lambda r: r.get("epoch") == 2, "tail": lambda r: "epoch" not in r and r["step"] == 30}[where]
    real_append = train.Run.append_metrics
    def append(self, records):
        real_append(self, records)
        if any(hit(r) for r in records):
            os._exit(9)
    train.Run.append_metrics = append
sys.exit(train.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("where", ["last.pt", "epoch2", "tail"])
def test_kill_at_an_epoch_end_loses_no_record(tiny_env, where):
    over = dict(epochs=3, model="net-320", log_every=4)
    ref, _ = _run(tiny_env, **over, name="ref")
    args = ["--epochs", "3", "--batch-size", "50", "--val-size", "100", "--log-every", "4", "--model", "net-320",
            "--name", "killed", "--no-progress"]
    k = subprocess.run([sys.executable, "-c", KILL_AT, where, *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=300)
    assert k.returncode == 9, k.stderr  # died where planned
    run = runs.Run(tiny_env / "killed")
    assert run.status()["status"] == "interrupted"
    r = _cli(["--resume", "killed", "--no-progress"], {}, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["status"] == "completed" and out["epochs"] == 3 and "after 3 epochs" in r.stderr
    assert [e["epoch"] for e in run.epoch_records()] == [1, 2, 3]
    assert run.summary()["epochs_done"] == 3
    assert _metrics(run) == _metrics(ref)  # no record lost, none twice, the same numbers as without the kill


def test_sigterm_checkpoints_and_stops(tiny_env):
    p = _start(tiny_env, "termed", 40)
    run = runs.Run(tiny_env / "termed")
    assert _wait(lambda: run.epoch_records())
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["status"] == "stopped" and run.status()["status"] == "stopped"
    assert res["epochs"] < 40
    # the checkpoint is the one saved at the signal, not the last epoch's
    assert runs.load_checkpoint(run.last_ckpt)["state"]["global_step"] == run.raw_status()["global_step"]


def test_one_cycle_with_very_few_steps(tiny_env):
    run, res = _run(tiny_env, epochs=1, batch_size=50, limit_train=200, schedule="onecycle", val_size=0)
    assert res["status"] == "completed"
    lrs = [r["lr"] for r in run.step_records()]
    # 4 steps: one warm-up step, then linear down to 0; records every 2 steps carry the rate of steps 1 and 3
    # (0-based): lr * (4 - k) / 3
    assert lrs == pytest.approx([0.2 * (4 - k) / 3 for k in (1, 3)])


def test_one_cycle_shape():
    import torch
    model = torch.nn.Linear(2, 2)
    cfg = train.Config(lr=1.0, epochs=1)
    opt = train._optimizer(model, cfg)
    sched = train._scheduler(opt, cfg, 100)
    lrs = []
    for _ in range(100):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.04) and max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 25
    # the warm-up: a straight line from lr/25 up to lr over the first quarter (25 steps)
    assert lrs[:26] == pytest.approx([0.04 + 0.96 * k / 25 for k in range(26)])
    # then a straight line down to 0 at the end
    assert lrs[25:] == pytest.approx([(100 - k) / 75 for k in range(25, 100)])
    assert lrs[-1] < 0.02 and all(b <= a for a, b in zip(lrs[25:], lrs[26:]))


def test_failure_in_setup_marks_run_failed(tiny_env):
    run = train.create_run(train.Config(**TINY), tiny_env)
    cfg = run.config()
    cfg["model"] = "no-such-model"
    runs.atomic_write_json(run.config_file, cfg)
    with pytest.raises(ValueError):
        train.train_run(run)
    st = run.status()
    assert st["status"] == "failed" and "no-such-model" in st["error"]


# ---------- what the loop trains on and evaluates, seen from outside ----------

def _seen_batches(monkeypatch):
    """Record every batch the model trains on (N x 1 x 28 x 28 floats), through a hook on the model the trainer
    builds; the hand-written backward (fastgrad) is switched off so that each training batch goes through forward."""
    seen = []
    real_build = train.build

    def build(name):
        model = real_build(name)
        model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()) if m.training else None)
        return model
    monkeypatch.setattr(train, "build", build)
    monkeypatch.setattr(train.fastgrad, "supports", lambda model: False)
    return seen


def _keys(images_uint8):
    """Each image's bytes, to find it among others (the tiny data's images are all different)."""
    return [bytes(im.numpy().tobytes()) for im in images_uint8]


def _as_uint8(batches):
    return [im for b in batches for im in (b[:, 0] * 255).round().to(torch.uint8)]


def test_a_limited_run_trains_on_the_first_images_of_the_training_part_never_on_validation_images(tiny_env, tiny_data,
                                                                                                  monkeypatch):
    from mnistviz.data import load_mnist

    seen = _seen_batches(monkeypatch)
    evaluated = []  # the images of each epoch-end evaluation: the validation part, then the test set
    real_evaluate = train.evaluate
    monkeypatch.setattr(train, "evaluate", lambda m, x, y: evaluated.append(x.clone()) or real_evaluate(m, x, y))
    _run(tiny_env, epochs=1, limit_train=200, val_size=100, model="net-320", seed=4)
    data = load_mnist(tiny_data)
    all_keys = _keys(data.train_images)
    val = set(_keys(evaluated[0]))
    assert len(val) == 100 and val <= set(all_keys)
    # the training part is what is left, in file order; a limited run takes its first 200
    expected = [k for k in all_keys if k not in val][:200]
    got = _keys(_as_uint8(seen))
    assert len(got) == 200 and len(set(got)) == 200  # one epoch: each of the 200 images once
    assert not set(got) & val  # no validation image leaks into training
    assert set(got) == set(expected)


@pytest.mark.parametrize("augment", ["none", "light", "standard"])
def test_the_model_trains_on_augmented_images_exactly_when_the_run_asks_for_them(tiny_env, tiny_data, monkeypatch,
                                                                                augment):
    from mnistviz.data import load_mnist

    seen = _seen_batches(monkeypatch)
    _run(tiny_env, epochs=1, limit_train=100, val_size=100, model="net-320", augment=augment)
    stored = set(_keys(load_mnist(tiny_data).train_images))
    images = torch.cat(seen)
    assert len(images) == 100
    exact = [bool(torch.equal(im[0], (im[0] * 255).round() / 255)) and k in stored
             for im, k in zip(images, _keys(_as_uint8(seen)))]
    if augment == "none":
        assert all(exact)  # the stored images themselves
    else:
        assert not any(exact)  # each one moved, rotated or warped: none is a stored image
        assert (images.min(), images.max()) >= (0, 0) and images.max() <= 1


def test_an_augmented_run_evaluates_the_test_set_as_it_is(fixture_runs, tiny_data):
    """The stored test accuracy and predictions of an augmented run are those of its checkpoint on the plain
    test set: the augmentation is for training only."""
    from mnistviz.data import load_mnist
    from mnistviz.evaluate import evaluate
    from mnistviz.models import build

    run = runs.Run(fixture_runs / "tiny-aug")
    assert run.config()["augment"] == "standard"
    data = load_mnist(tiny_data)
    recs = {r["epoch"]: r for r in run.epoch_records()}
    last = runs.load_checkpoint(run.last_ckpt)
    best = runs.load_checkpoint(run.best_ckpt)
    for ck, epoch in ((last, last["state"]["epoch"]), (best, best["epoch"])):
        model = build(run.config()["model"])
        model.load_state_dict(ck["model"])
        loss, acc, probs = evaluate(model, data.test_images, data.test_labels)
        assert recs[epoch]["test_acc"] == pytest.approx(acc, abs=1e-9)
        assert recs[epoch]["test_loss"] == pytest.approx(loss, rel=1e-4)
        stored = run.probs(epoch)
        assert (stored.argmax(1) == probs.argmax(1)).all()
        assert stored == pytest.approx(probs, abs=2e-3)  # stored as float16


def test_step_schedule_divides_the_rate_by_10_at_half_and_three_quarters_of_the_steps(tiny_env):
    # 500 training images at batch 50: 10 steps an epoch, 40 in 4 epochs; a record every step carries its rate
    run, res = _run(tiny_env, epochs=4, log_every=1, model="net-320", schedule="step", lr=0.2)
    assert res["status"] == "completed"
    lrs = [r["lr"] for r in run.step_records()]
    assert lrs == pytest.approx([0.2] * 20 + [0.02] * 10 + [0.002] * 10)
    assert [r["lr"] for r in run.epoch_records()] == pytest.approx([0.2, 0.2, 0.02, 0.002])


# `python -m mnistviz.train ARGS`, held at a gate right after it first reads the run's status (what the check for a
# run still running reads), until the test says go: two of them both read "queued" before either starts training
GATED_CLI = r"""
import sys
from mnistviz import train
real_status, gated = train.Run.status, []
def status(self):
    st = real_status(self)
    if not gated:
        gated.append(1)
        print("ready", flush=True)
        sys.stdin.readline()
    return st
train.Run.status = status
sys.exit(train.main(sys.argv[1:]))
"""


def test_two_trainers_of_one_run_folder_the_second_exits_2(tiny_env):
    # two `--resume x` started together (two tabs, a CLI and the queue): each used to train, and every record was
    # written twice. The folder's lock lets one train; the other exits 2 saying who trains it.
    run = train.create_run(train.Config(**{**TINY, "name": "x", "epochs": 400}), tiny_env)
    # each child is `python -m mnistviz.train --resume x` held at a gate (GATED_CLI), so that both reach the run
    # folder together (started plainly, one's imports can outlast the other's start of training)
    both = [subprocess.Popen([sys.executable, "-c", GATED_CLI, "--resume", "x", "--no-progress"], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        ready = [p for p in both if p.stdout.readline() == "ready\n"]  # or "": it ended before reading the status
        for p in both:
            if p in ready:
                p.stdin.write("go\n")
            p.stdin.close()
            p.stdin = None  # communicate() below: nothing more to send
        def twice():
            keys = [(r.get("epoch"), r["step"]) for r in run.metrics()]
            return len(keys) != len(set(keys))

        assert _wait(lambda: any(p.poll() is not None for p in both) or twice(), 120), "neither ended"
        assert not twice(), "both trainers wrote the run's metrics"
        loser = next(p for p in both if p.poll() is not None)
        winner = next(p for p in both if p is not loser)
        out, err = loser.communicate()
        assert loser.returncode == 2, err
        assert err.strip().splitlines() == [f"python -m mnistviz.train: error: run x is being trained by pid "
                                            f"{winner.pid}"]
        assert _wait(lambda: run.raw_status().get("pid") == winner.pid and run.epoch_records(), 120)
        winner.send_signal(signal.SIGTERM)
        out, err = winner.communicate(timeout=120)
        assert winner.returncode == 0, err
        assert run.raw_status()["status"] == "stopped"
        keys = [(r.get("epoch"), r["step"]) for r in run.metrics()]
        assert keys and len(keys) == len(set(keys))
    finally:
        for p in both:
            p.kill()
            p.wait()


def test_a_run_folder_whose_lock_cannot_be_made_exits_2_one_line(tiny_env):
    run = train.create_run(train.Config(**{**TINY, "name": "nolock"}), tiny_env)
    (run.path / ".lock").mkdir()  # as a folder that cannot be written would (root ignores permission bits)
    r = _cli(["--resume", "nolock"], {})
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"python -m mnistviz.train: error: run nolock cannot be trained here: its lock file cannot be made in "
        f"{run.path} (Is a directory)"]
    assert run.raw_status()["status"] == "queued"  # untouched
