"""Inputs that used to get through or end in a traceback (issue 20): run names, seeds, runs folders, long paths,
automatic names launched together, stored predictions with a lying header, file modes, a full disk."""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import stat
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistviz import evaluate, runs, train
from tests.conftest import TINY

TRAIN_PROG = "python -m mnistviz.train: error:"
EVAL_PROG = "python -m mnistviz.evaluate: error:"


def _one_line_error(capsys, prog) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prog), err
    return lines[0]


def _exits_2(capsys, argv, prog=TRAIN_PROG, main=None) -> str:
    main = main or train.main
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code == 2
    return _one_line_error(capsys, prog)


# ---------- mounts (root only): a read-only folder, a small disk ----------

def _mount_tmpfs(where: Path, options: str):
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs (a read-only folder or a small disk: as root, chmod stops nothing)")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip() or p.returncode})")


def _umount(where: Path):
    if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def read_only_dir(tmp_path):
    d = tmp_path / "ro"
    _mount_tmpfs(d, "ro,size=1m")
    yield d
    _umount(d)


@pytest.fixture
def small_disk(tmp_path):
    d = tmp_path / "small"
    _mount_tmpfs(d, "size=8m")
    yield d
    _umount(d)


# ---------- names ----------

@pytest.mark.parametrize("name", ["abc\n", "abc\r", "a\nb", "abc\t", "x" * 101])
def test_a_run_name_must_match_the_pattern_in_full(name):
    with pytest.raises(runs.RunError):
        runs.check_name(name)
    assert "name" in train.validate(train.Config(name=name))


def test_cli_refuses_a_name_ending_in_a_newline(tiny_env, capsys):
    _exits_2(capsys, ["--name", "abc\n"])
    assert list(tiny_env.iterdir()) == []  # no folder with a newline in its name


# ---------- seeds ----------

def test_the_largest_accepted_seed_trains_with_augmentation(tiny_env):
    top = 2**31 - 1
    assert not train.validate(train.Config(seed=top, augment="light"))
    assert "seed" in train.validate(train.Config(seed=top + 1))
    run = train.create_run(train.Config(**{**TINY, "epochs": 1, "limit_train": 100}, seed=top, augment="light",
                                        model="net-320"), tiny_env)
    assert train.train_run(run)["status"] == "completed"


def test_cli_refuses_a_seed_beyond_the_bound(tiny_env, capsys):
    line = _exits_2(capsys, ["--seed", str(2**31), "--augment", "light"])
    assert "seed" in line
    assert list(tiny_env.iterdir()) == []


def test_train_page_shows_the_seed_bound_beside_the_seed_field(tiny_env, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/train.py").run()
    at.number_input(key="cfg_seed").set_value(2**31).run()
    # beside the field: the element right after the Seed box, in its column of the form
    assert _after(at._tree, "cfg_seed") == "Seed must be at least 0 and at most 2147483647 (got 2147483648)"  # the field's label


def _after(node, key):
    """The value of the element that follows the widget `key` in its block (None when nothing follows it)."""
    kids = list(getattr(node, "children", {}).values())
    for i, k in enumerate(kids):
        if getattr(k, "key", None) == key:
            return getattr(kids[i + 1], "value", None) if i + 1 < len(kids) else None
        found = _after(k, key)
        if found is not None:
            return found
    return None


# ---------- the runs folder ----------

def test_cli_runs_dir_that_is_a_file(tiny_env, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    line = _exits_2(capsys, ["--runs-dir", str(f), "--epochs", "1"])
    assert str(f) in line and "not a folder" in line
    line = _exits_2(capsys, ["--runs-dir", str(f / "sub"), "--epochs", "1"])
    assert str(f) in line


def test_cli_runs_dir_empty_is_refused(tiny_env, capsys):
    line = _exits_2(capsys, ["--runs-dir", "", "--epochs", "1"])
    assert "--runs-dir" in line
    line = _exits_2(capsys, ["somerun", "--runs-dir", ""], EVAL_PROG, evaluate.main)
    assert "--runs-dir" in line


def test_cli_runs_dir_read_only(tiny_env, read_only_dir, capsys):
    for d in (read_only_dir, read_only_dir / "sub"):
        line = _exits_2(capsys, ["--runs-dir", str(d), "--epochs", "1"])
        assert str(read_only_dir) in line
    assert list(read_only_dir.iterdir()) == []


# ---------- evaluate's argument ----------

@pytest.mark.parametrize("arg", ["x" * 300, "a/" + "y" * 300, "abc\n"], ids=["300 chars", "long part", "newline"])
def test_evaluate_cli_odd_run_argument_one_line(tiny_env, capsys, arg):
    _exits_2(capsys, [arg], EVAL_PROG, evaluate.main)


# ---------- automatic names ----------

def test_automatic_names_launched_in_the_same_second_do_not_clash(tiny_env, monkeypatch):
    """Another launch makes the same automatic name between this one's check and its mkdir (the race of two
    launches in one second): this one takes the next free name instead of failing with 'pick another --name'."""
    created = 1_800_000_000.0
    base = train.Config(model="fast", augment="none", created=created)
    mkdir = Path.mkdir
    raced = []

    def racing_mkdir(self, *a, **kw):
        if self.parent == tiny_env and not raced:
            raced.append(self.name)
            mkdir(self)  # the other launch wins the name
        return mkdir(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    run = train.create_run(train.Config(**{**base.__dict__}), tiny_env)
    assert raced and run.name != raced[0] and run.name.startswith(raced[0])
    assert run.config()["name"] == run.name
    # and plainly one after another in the same second
    names = {train.create_run(train.Config(**{**base.__dict__}), tiny_env).name for _ in range(3)}
    assert len(names) == 3 and run.name not in names


def test_a_name_given_by_the_user_that_exists_is_still_refused(tiny_env):
    train.create_run(train.Config(name="mine"), tiny_env)
    with pytest.raises(runs.RunError, match="pick another"):
        train.create_run(train.Config(name="mine"), tiny_env)


# ---------- stored predictions ----------

def _npy_with_header(path: Path, shape, descr="<f2", data=b"\0" * 4000):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
        f.write(data)


def _bare_run(root: Path) -> runs.Run:
    d = root / "r1"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model": "fast"}))
    return runs.Run(d)


def test_predictions_whose_header_claims_billions_of_rows_are_unreadable(tmp_path):
    run = _bare_run(tmp_path)
    _npy_with_header(run.preds_dir / "epoch_001.npy", (4_000_000_000, 10))
    with pytest.raises(runs.RunError, match="epoch 1 cannot be read"):
        run.probs(1)
    _npy_with_header(run.path / "test_labels.npy", (4_000_000_000,), "|u1")
    with pytest.raises(runs.RunError, match="test labels"):
        run.test_labels()


def test_predictions_shorter_than_their_header_or_of_another_type_are_unreadable(tmp_path):
    run = _bare_run(tmp_path)
    _npy_with_header(run.preds_dir / "epoch_001.npy", (300, 10))  # 6000 bytes claimed, 4000 there
    with pytest.raises(runs.RunError, match="cannot be read"):
        run.probs(1)
    _npy_with_header(run.preds_dir / "epoch_001.npy", (200, 10), "<U4", b"\0" * 16000)
    with pytest.raises(runs.RunError, match="cannot be read"):
        run.probs(1)


def test_good_predictions_still_load(tmp_path):
    run = _bare_run(tmp_path)
    probs = np.random.default_rng(0).random((200, 10)).astype(np.float32)
    run.save_probs(1, probs)
    run.save_test_labels(np.arange(200) % 10)
    assert np.allclose(run.probs(1), probs.astype(np.float16).astype(np.float32))
    assert run.test_labels().tolist() == (np.arange(200) % 10).tolist()


# ---------- file modes ----------

def test_every_run_file_has_the_mode_of_a_normal_file_under_the_umask(tiny_env):
    old = os.umask(0o002)
    try:
        run = train.create_run(train.Config(**{**TINY, "epochs": 1, "limit_train": 100}, model="net-320"), tiny_env)
        train.train_run(run)
        run.truncate_metrics(10**9)  # rewritten whole, as --resume does
        run.append_metrics([{"step": 10**9}])
    finally:
        os.umask(old)
    files = [p for p in run.path.rglob("*") if p.is_file()]  # the trainer's .lock too
    assert {p.name for p in files} >= {"config.json", "status.json", "metrics.jsonl", "last.pt", "best.pt",
                                       "test_labels.npy", "epoch_001.npy"}
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(0o664)}, modes


def test_a_new_metrics_file_takes_the_umask_too(tmp_path):
    old = os.umask(0o027)
    try:
        runs.append_jsonl(tmp_path / "m.jsonl", [{"a": 1}])
        runs.atomic_write_json(tmp_path / "s.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.jsonl").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "s.json").stat().st_mode) == 0o640


# ---------- a full disk ----------

def _fill(folder: Path, leave: int) -> Path:
    """A filler file that leaves about `leave` bytes free on folder's file system."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    filler = folder / f"_filler-{uuid.uuid4().hex[:6]}"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_full_disk_while_saving_a_checkpoint_is_one_sentence(small_disk):
    run = runs.Run(small_disk)
    filler = _fill(small_disk, 40_000)
    big = {"w": torch.zeros(100_000)}  # 400 KB: does not fit
    with pytest.raises(OSError) as e:
        runs.save_checkpoint(small_disk / "last.pt", big)
    msg = str(e.value)
    assert e.value.errno == errno.ENOSPC
    assert re.fullmatch(rf"no space left on the device holding {re.escape(str(small_disk))} while writing last\.pt",
                        msg), msg
    assert "unexpected pos" not in msg
    assert [p.name for p in small_disk.iterdir()] == [filler.name]  # no temp file left behind
    # an append that does not fit says the same, and leaves no torn line
    runs.append_jsonl(run.metrics_file, [{"a": 1}])
    _fill(small_disk, 0)
    with pytest.raises(OSError, match=r"no space left on .* while writing metrics\.jsonl"):
        runs.append_jsonl(run.metrics_file, [{"x": "y" * 10_000}])
    assert run.metrics_file.read_text() == '{"a":1}\n'


def test_full_disk_during_training_stops_with_one_sentence_and_keeps_the_checkpoints(tiny_env, tiny_data,
                                                                                      small_disk, monkeypatch,
                                                                                      capsys):
    """The first epoch's checkpoints fit; then a filler leaves too little room for the next ones."""
    end_epoch = train._end_epoch

    def fill_after_first(t, epoch):
        acc = end_epoch(t, epoch)
        if epoch == 0:
            _fill(small_disk, 40_000)  # room for status.json, metrics lines, a preds file; not a checkpoint
        return acc

    monkeypatch.setattr(train, "_end_epoch", fill_after_first)
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # main() must not take pytest's SIGINT handler
    code = train.main(["--runs-dir", str(small_disk), "--name", "full", "--model", "net-320", "--epochs", "3",
                       "--batch-size", "50", "--val-size", "100", "--log-every", "2", "--no-progress"])
    assert code == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(r"no space left on the device holding .*full while writing (best|last)\.pt", lines[0]), lines[0]
    assert "unexpected pos" not in err and "RuntimeError" not in err and "WriteError" not in err
    run = runs.Run(small_disk / "full")
    st = run.status()
    assert st["status"] == "failed" and re.match(r"no space left on .* while writing (best|last)\.pt", st["error"])
    last = torch.load(run.last_ckpt, map_location="cpu", weights_only=True)
    assert last["state"]["epoch"] == 1
    best = torch.load(run.best_ckpt, map_location="cpu", weights_only=True)
    assert best["epoch"] == 1
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]
