import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mnistviz import runs


def test_atomic_write_crash_keeps_previous_file(tmp_path):
    target = tmp_path / "status.json"
    runs.atomic_write_json(target, {"status": "running", "n": 1})

    def crash(f):
        f.write(b'{"status": "compl')  # half a file, then the process "dies"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runs.atomic_save(crash, target)
    assert json.loads(target.read_text()) == {"status": "running", "n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]  # no temp file left


def test_checkpoint_crash_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    runs.save_checkpoint(path, {"w": torch.ones(3)})

    def boom(obj, f, *a, **k):
        f.write(b"garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        runs.save_checkpoint(path, {"w": torch.zeros(3)})
    monkeypatch.undo()
    assert torch.equal(runs.load_checkpoint(path)["w"], torch.ones(3))


def test_torn_metrics_line_is_skipped(tmp_path):
    m = tmp_path / "metrics.jsonl"
    runs.append_jsonl(m, [{"step": 1}, {"step": 2}])
    with open(m, "a") as f:
        f.write('{"step": 3, "tra')
    assert [r["step"] for r in runs.read_jsonl(m)] == [1, 2]
    bad = []
    runs.read_jsonl(m, bad)
    assert bad == []  # an unfinished last line is not (yet) damage: it may be being appended


def test_damaged_metrics_lines_are_skipped_and_numbered(tmp_path):
    run = runs.Run(tmp_path / "r")
    run.path.mkdir()
    run.append_metrics([{"step": 1}])
    with open(run.metrics_file, "a") as f:
        f.write('{"step": 2, "tra\n\n[1, 2]\n')  # a line torn in the middle of the file, a blank one, a list
    run.append_metrics([{"step": 3}])
    assert [r["step"] for r in run.metrics()] == [1, 3]
    assert run.unreadable_metric_lines() == [2, 4]


def test_a_metrics_line_with_bytes_that_are_not_utf8_is_skipped_and_numbered(tmp_path):
    # damage that is not text: json.loads of such bytes raises UnicodeDecodeError, not a JSONDecodeError
    run = runs.Run(tmp_path / "r")
    run.path.mkdir()
    run.append_metrics([{"step": 1}])
    with open(run.metrics_file, "ab") as f:
        f.write(b'{"step": 2, "train_loss": \xff\xfe0.5}\n\x80\x81\n')
    run.append_metrics([{"step": 3}])
    assert [r["step"] for r in run.metrics()] == [1, 3]
    assert run.unreadable_metric_lines() == [2, 3]
    with open(run.metrics_file, "ab") as f:
        f.write(b'{"step": 4, "lr": "\xc3"}')  # an unfinished last line with such a byte: not (yet) damage
    assert [r["step"] for r in runs.read_jsonl(run.metrics_file)] == [1, 3]
    assert run.unreadable_metric_lines() == [2, 3]


def test_a_growing_jsonl_is_parsed_only_where_it_grew(tmp_path, monkeypatch):
    m = tmp_path / "metrics.jsonl"
    runs.append_jsonl(m, [{"step": k} for k in range(100)])
    assert len(runs.read_jsonl(m)) == 100
    parsed = []
    real_loads = json.loads
    monkeypatch.setattr(runs.json, "loads", lambda b: parsed.append(b) or real_loads(b))
    runs.append_jsonl(m, [{"step": 100}])
    with open(m, "a") as f:
        f.write('{"step": 101')  # being appended: not a record yet, and read again next time
    assert [r["step"] for r in runs.read_jsonl(m)][-2:] == [99, 100] and len(parsed) == 2
    with open(m, "a") as f:
        f.write(', "x": 1}\n')
    bad = []
    assert [r["step"] for r in runs.read_jsonl(m, bad)][-2:] == [100, 101] and bad == []
    # a last line without a newline that parses is a record (a hand-edited file), as before
    with open(m, "a") as f:
        f.write('{"step": 102}')
    assert runs.read_jsonl(m)[-1] == {"step": 102}


def test_a_jsonl_replaced_or_rewritten_is_read_again(tmp_path):
    run = runs.Run(tmp_path / "r")
    run.path.mkdir()
    run.append_metrics([{"step": k} for k in range(10)])
    assert len(run.metrics()) == 10
    run.truncate_metrics(4)  # a new file (atomic rename), shorter
    assert [r["step"] for r in run.metrics()] == [0, 1, 2, 3, 4]
    run.append_metrics([{"step": k} for k in range(50, 60)])  # now longer than the first read
    assert [r["step"] for r in run.metrics()] == [0, 1, 2, 3, 4] + list(range(50, 60))
    with open(run.metrics_file, "r+b") as f:  # rewritten in place, same inode, same length: one digit changed
        data = f.read()
        f.seek(0)
        f.write(data.replace(b'{"step":59}', b'{"step":58}'))
    assert run.metrics()[-1] == {"step": 58}
    with open(run.metrics_file, "wb") as f:  # truncated in place and written longer than before
        f.write(b"".join(b'{"step":%d}\n' % k for k in range(200, 230)))
    assert [r["step"] for r in run.metrics()] == list(range(200, 230))
    run.metrics_file.unlink()
    assert run.metrics() == [] and run.unreadable_metric_lines() == []


@pytest.mark.parametrize("bad", ["../evil", "..", "a/b", "/abs", "", ".hidden", "x" * 101, "a\x00b", "a b"])
def test_names_cannot_escape(tmp_path, bad):
    with pytest.raises(runs.RunError):
        runs.run_path(bad, tmp_path)


def test_good_names(tmp_path):
    assert runs.run_path("lenet5-aug_1.2", tmp_path) == (tmp_path / "lenet5-aug_1.2").resolve()


def _fake_run(root, name, status="completed", pid=None, **fields):
    d = root / name
    d.mkdir()
    runs.atomic_write_json(d / "config.json", {"model": "fast", "augment": "none", "epochs": 2, "created": 1.0})
    if status == "running":
        fields.setdefault("heartbeat", time.time())  # a trainer beats while it runs
    runs.atomic_write_json(d / "status.json", {"status": status, "pid": pid, **fields})
    return runs.Run(d)


def test_broken_folder_listed_as_broken_others_fine(tmp_path):
    _fake_run(tmp_path, "good")
    (tmp_path / "noconfig").mkdir()
    bad = tmp_path / "badjson"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    (tmp_path / "_queue.json").write_text("[]")
    good, broken = runs.list_runs(tmp_path)
    assert [r["name"] for r in good] == ["good"]
    assert {b["name"] for b in broken} == {"noconfig", "badjson"}
    assert all(b["error"] for b in broken)


def test_dead_pid_reported_interrupted(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    run = _fake_run(tmp_path, "r", status="running", pid=p.pid)
    assert run.status()["status"] == "interrupted"
    alive = _fake_run(tmp_path, "alive", status="running", pid=os.getpid())
    assert alive.status()["status"] == "running"


def test_probs_missing_and_wrong_shape(tmp_path):
    run = _fake_run(tmp_path, "r")
    with pytest.raises(runs.RunError, match="no stored test predictions"):
        run.probs()
    run.save_probs(1, np.full((5, 10), 0.1, np.float32))
    assert run.probs(1).shape == (5, 10) and run.probs(1).dtype == np.float32
    (run.preds_dir / "epoch_002.npy").write_bytes(b"junk")
    with pytest.raises(runs.RunError, match="predictions for epoch 2 cannot be read"):
        run.probs(2)
    run.save_probs(3, np.zeros((5, 9), np.float32))  # readable, but not N x 10
    with pytest.raises(runs.RunError, match=r"predictions for epoch 3 have shape \(5, 9\), expected N x 10"):
        run.probs(3)
    run.save_probs(4, np.zeros(10, np.float32))  # 1-D
    with pytest.raises(runs.RunError, match=r"predictions for epoch 4 have shape \(10,\), expected N x 10"):
        run.probs(4)


def test_delete_refuses_running(tmp_path):
    _fake_run(tmp_path, "busy", status="running", pid=os.getpid())
    with pytest.raises(runs.RunError, match="stop it"):
        runs.delete_run("busy", tmp_path)
    _fake_run(tmp_path, "done")
    runs.delete_run("done", tmp_path)
    assert not (tmp_path / "done").exists()


def test_load_model_uses_weights_only(tmp_path, monkeypatch):
    from mnistviz import models
    run = _fake_run(tmp_path, "m")
    m = models.build("fast")
    runs.save_checkpoint(run.best_ckpt, {"model": m.state_dict()})
    seen = {}
    real_load = torch.load

    def spy(*a, **k):
        seen.update(k)
        return real_load(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    loaded = runs.load_model(run.path)
    assert seen.get("weights_only") is True
    assert not loaded.training
    x = torch.rand(2, 1, 28, 28)
    m.eval()
    assert torch.allclose(loaded(x), m(x))


def test_checkpoint_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    run = _fake_run(tmp_path, "evil")
    with open(run.best_ckpt, "wb") as f:
        torch.save({"model": Evil()}, f)
    with pytest.raises(runs.RunError, match="cannot be loaded"):
        runs.load_model(run.path)
    assert not (tmp_path / "pwned").exists()


# ---------- bad input: a reused pid, odd folder names, badly typed values, non-object lines ----------

DAY_AGO = time.time() - 86400


def test_reused_pid_is_interrupted_but_a_long_evaluation_is_not(tmp_path, procs):
    # killed by the OOM killer, then the pid went to an unrelated process: not running, whatever the pid says
    other = procs("sleep", "300")
    ghost = _fake_run(tmp_path, "ghost", status="running", pid=other.pid, heartbeat=DAY_AGO)
    st = ghost.status()
    assert st["status"] == "interrupted"
    assert "ended without saying so" in st["error"] and f"{other.pid} now belongs to another program" in st["error"]
    # a real `python -m mnistviz.train` beats only between steps: evaluating a big model for minutes is not death
    evaluating = procs(sys.executable, "-c", "import time; time.sleep(300)", "-m", "mnistviz.train")
    slow = _fake_run(tmp_path, "slow", status="running", pid=evaluating.pid, heartbeat=DAY_AGO)
    assert slow.status()["status"] == "running"
    # training inside another program (a notebook; here this test process): alive while its heartbeat is fresh
    assert _fake_run(tmp_path, "inproc", status="running", pid=os.getpid()).status()["status"] == "running"
    stale = _fake_run(tmp_path, "stale", status="running", pid=os.getpid(),
                      heartbeat=time.time() - runs.HEARTBEAT_STALE_S - 5)
    assert stale.status()["status"] == "interrupted"
    good, _ = runs.list_runs(tmp_path)
    assert {r["name"]: r["status"] for r in good} == {"ghost": "interrupted", "slow": "running",
                                                       "inproc": "running", "stale": "interrupted"}
    runs.delete_run("ghost", tmp_path)  # interrupted: deletable
    assert other.poll() is None  # and nobody signalled the unrelated process


@pytest.mark.parametrize("bad", ["tiny-none (copy)", "tiny none", "-dash"])
def test_folder_with_an_invalid_name_is_broken_and_deletable_by_path(tmp_path, bad):
    _fake_run(tmp_path, "good")
    shutil.copytree(tmp_path / "good", tmp_path / bad)
    good, broken = runs.list_runs(tmp_path)
    assert [r["name"] for r in good] == ["good"]
    assert [b["name"] for b in broken] == [bad]
    msg = broken[0]["error"]
    assert "is not a valid run name: rename the folder" in msg and repr(bad) in msg
    suggested = re.search(r"\(e\.g\. ([^)]+)\)", msg).group(1)
    assert runs.check_name(suggested) == suggested  # the name it suggests is one get_run accepts
    with pytest.raises(runs.RunError):
        runs.delete_run(bad, tmp_path)  # by name it cannot be reached...
    runs.delete_folder(broken[0]["path"], tmp_path)  # ...by path it can
    assert not (tmp_path / bad).exists() and (tmp_path / "good").is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["good"]
    with pytest.raises(runs.RunError, match="not a folder of the runs folder"):
        runs.delete_folder(tmp_path.parent, tmp_path)
    assert (tmp_path / "good").is_dir()


def test_delete_folder_refuses_a_folder_a_trainer_uses(tmp_path, procs):
    trainer = procs(sys.executable, "-c", "import time; time.sleep(300)", "-m", "mnistviz.train")
    _fake_run(tmp_path, "busy (renamed)", status="running", pid=trainer.pid, heartbeat=DAY_AGO)
    with pytest.raises(runs.RunError, match="in use by a training process"):
        runs.delete_folder(tmp_path / "busy (renamed)", tmp_path)
    assert (tmp_path / "busy (renamed)").is_dir()


def test_load_model_of_an_unknown_architecture_is_a_run_error(tmp_path):
    from mnistviz import models
    run = _fake_run(tmp_path, "future")
    runs.save_checkpoint(run.best_ckpt, {"model": models.build("fast").state_dict()})
    cfg = run.config()
    runs.atomic_write_json(run.config_file, {**cfg, "model": "resnet-from-v9"})
    with pytest.raises(runs.RunError, match=r"run future uses the model 'resnet-from-v9', which this version of "
                                            r"mnistviz does not have \(it has fast, "):
        runs.load_model(run.path)


def test_one_badly_typed_value_breaks_only_its_run(tmp_path):
    for name in ("ok", "date", "listmodel", "strings"):
        _fake_run(tmp_path, name)
    cfg = runs.read_json(tmp_path / "ok" / "config.json")
    runs.atomic_write_json(tmp_path / "date" / "config.json", {**cfg, "created": "2024-01-01"})
    runs.atomic_write_json(tmp_path / "listmodel" / "config.json", {**cfg, "model": ["fast"]})
    runs.append_jsonl(tmp_path / "strings" / "metrics.jsonl", [
        {"step": 2, "train_loss": "0.5", "train_acc": 0.5},
        {"epoch": 1, "step": 2, "test_acc": "0.9", "test_loss": 0.3},
        {"epoch": 2, "step": 4, "test_acc": 0.95, "val_acc": None, "lr": "fast"},
        {"epoch": "3", "step": 6, "test_acc": 0.99},  # not a whole number: not an epoch record
        {"epoch": 4, "step": 8, "test_acc": float("nan")},
        {"step": "8", "train_acc": 0.7},
        {"step": 10 ** 400, "train_acc": 10 ** 400}])  # absurd, but JSON allows it and float() overflows
    good, broken = runs.list_runs(tmp_path)
    assert sorted(r["name"] for r in good) == ["ok", "strings"]
    why = {b["name"]: b["error"] for b in broken}
    assert why["date"] == ("run date: config.json's created is '2024-01-01', not a time in seconds since 1970; "
                           f"write one such as {why['date'].split('such as ')[1].split()[0]} there, or delete the run")
    assert why["listmodel"].startswith("run listmodel: config.json's model is ['fast'], not a model name")
    run = runs.Run(tmp_path / "strings")
    assert run.epoch_records() == [{"epoch": 1, "step": 2, "test_loss": 0.3},
                                   {"epoch": 2, "step": 4, "test_acc": 0.95},
                                   {"epoch": 4, "step": 8}]
    assert run.step_records() == [{"step": 2, "train_acc": 0.5}, {"step": 10 ** 400, "train_acc": 10 ** 400}]
    s = next(r for r in good if r["name"] == "strings")
    assert (s["best_test_acc"], s["last_test_acc"], s["epochs_done"]) == (0.95, 0.95, 3)
    assert run.best_epoch() == 2
    with pytest.raises(runs.RunError, match="not a model name"):
        runs.load_model(tmp_path / "listmodel")


def test_badly_typed_status_fields_are_dropped(tmp_path):
    run = _fake_run(tmp_path, "r", status="stopped", progress="half", global_step="12", error=["x"])
    st = run.status()
    assert st["status"] == "stopped" and "progress" not in st and "global_step" not in st and st["error"] == "['x']"
    runs.atomic_write_json(run.status_file, {"status": ["running"], "pid": os.getpid()})
    assert run.status() == {"status": "failed", "error": "status.json has status ['running'], which this version "
                                                        "does not know; resume or delete the run"}


def test_non_object_metrics_lines_are_skipped(tmp_path):
    run = _fake_run(tmp_path, "r")
    runs.append_jsonl(run.metrics_file, [{"step": 1}, 42, [1, 2], "text", None, {"epoch": 1, "step": 2,
                                                                                  "test_acc": 0.5}])
    assert runs.read_jsonl(run.metrics_file) == [{"step": 1}, {"epoch": 1, "step": 2, "test_acc": 0.5}]
    good, broken = runs.list_runs(tmp_path)
    assert broken == [] and good[0]["best_test_acc"] == 0.5


def test_summary_has_the_hyperparameters_and_progress_the_runs_table_shows(fixture_runs, tmp_path):
    from mnistviz import charts
    shutil.copytree(fixture_runs / "tiny-none", tmp_path / "r")
    run = runs.Run(tmp_path / "r")
    cfg, epochs = run.config(), run.epoch_records()
    s = run.summary()
    assert (s["lr"], s["batch_size"], s["optimizer"]) == (cfg["lr"], cfg["batch_size"], cfg["optimizer"])
    assert s["train_seconds"] == epochs[-1]["train_seconds"] > epochs[0]["train_seconds"]
    assert s["progress"] == 1.0 and s["epochs_done"] == cfg["epochs"] == 2
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), progress=0.37)
    assert run.summary()["progress"] == 0.37  # the trainer's own figure while it trains, finer than epochs
    run.write_status(status="stopped", pid=None, progress=0.37)
    (run.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in epochs[:1]))
    assert run.summary()["progress"] == 0.37  # a stop checkpoints that very step: the Train page's figure too
    run.write_status(progress=None)
    assert run.summary()["progress"] == 0.5  # without the trainer's figure, whole epochs: 1 of 2

    run.write_status(progress=0.5)
    table = charts.runs_table([run.summary()])
    row = table.iloc[0]
    assert (row["status"], row["progress %"], row["lr"], row["batch"], row["epoch"]) == (
        "stopped", 50.0, cfg["lr"], cfg["batch_size"], "1 / 2")
    assert "pair" in table.columns and row["pair"] == cfg["pair"]  # the fixture's runs were trained as a pair
    assert "pair" not in charts.runs_table([{**run.summary(), "pair": None}]).columns  # a column of None: hidden


@pytest.mark.parametrize("status, progress", [
    ({"status": "running", "progress": 0.3, "checkpoint_step": 100, "total_steps": 1000}, 0.3),
    ({"status": "stopped", "progress": 0.3, "checkpoint_step": 300, "total_steps": 1000}, 0.3),
    ({"status": "completed", "progress": 0.4}, 0.4),  # stopped early at its target accuracy
    ({"status": "interrupted", "progress": 0.3, "checkpoint_step": 100, "total_steps": 1000}, 0.1),
    ({"status": "failed", "progress": 0.3, "checkpoint_step": 0, "total_steps": 1000}, 0.0),
    ({"status": "interrupted", "progress": 0.3}, 0.25),  # an older run: whole epochs
    ({"status": "queued"}, 0.25),
    ({"status": "running", "progress": 1.7}, 1.0),
])
def test_progress_is_what_the_run_keeps(status, progress):
    assert runs.progress_of(status, 1, 4) == progress


def test_progress_without_a_plan_is_unknown():
    assert runs.progress_of({"status": "queued"}, 0, None) is None
