"""Inputs that used to get through or end in a traceback (issue 20): run names, seeds, runs folders, long paths,
automatic names launched together, stored predictions with a lying header, file modes, a full disk."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

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
    assert _after(at._tree, "cfg_seed") == "seed must be at least 0 and at most 2147483647 (got 2147483648)"


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
