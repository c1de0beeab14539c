import json
import os

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


@pytest.mark.parametrize("bad", ["../evil", "..", "a/b", "/abs", "", ".hidden", "x" * 101, "a\x00b", "a b"])
def test_names_cannot_escape(tmp_path, bad):
    with pytest.raises(runs.RunError):
        runs.run_path(bad, tmp_path)


def test_good_names(tmp_path):
    assert runs.run_path("lenet5-aug_1.2", tmp_path) == (tmp_path / "lenet5-aug_1.2").resolve()


def _fake_run(root, name, status="completed", pid=None):
    d = root / name
    d.mkdir()
    runs.atomic_write_json(d / "config.json", {"model": "fast", "augment": "none", "epochs": 2, "created": 1.0})
    runs.atomic_write_json(d / "status.json", {"status": status, "pid": pid})
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
    import subprocess
    import sys
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
