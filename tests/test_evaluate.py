"""`python -m mnistviz.evaluate RUN` as a real process: bad input gets one line and exit 2; it says which weights it used."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from mnistviz import runs
from tests.conftest import ROOT


@pytest.fixture
def runs_copy(fixture_runs, tiny_data, tmp_path):
    """A writable runs folder with a copy of tiny-none; the env for the CLI."""
    root = tmp_path / "runs"
    shutil.copytree(fixture_runs / "tiny-none", root / "tiny-none")
    return root, {"MNISTVIZ_DATA": str(tiny_data), "MNISTVIZ_RUNS": str(root)}


def _evaluate(args, env, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "mnistviz.evaluate", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True,
                          timeout=120)


def _one_line_error(p, *words):
    assert p.returncode == 2, (p.stdout, p.stderr)
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("python -m mnistviz.evaluate: error:"), err
    assert "Traceback" not in err and "config.json" not in err, err
    for w in words:
        assert w in err, err
    return err


def test_a_folder_that_does_not_exist_is_not_a_missing_config(runs_copy, tmp_path):
    root, env = runs_copy
    _one_line_error(_evaluate(["ghost"], env), "no folder 'ghost'", f"no run named 'ghost' in {root}")
    _one_line_error(_evaluate([str(tmp_path / "nope" / "run")], env), f"no folder {tmp_path / 'nope' / 'run'}")
    (tmp_path / "afile").write_text("x")
    _one_line_error(_evaluate([str(tmp_path / "afile")], env), "is a file, not a run folder")
    _one_line_error(_evaluate([], env), "required")  # argparse's own errors are one line too


def test_a_run_name_is_found_in_the_runs_folder(runs_copy, tmp_path):
    root, env = runs_copy
    best = runs.load_checkpoint(root / "tiny-none" / "best.pt")
    by_name = _evaluate(["tiny-none", "--json"], env, cwd=tmp_path)  # no tiny-none folder in the working dir
    assert by_name.returncode == 0, by_name.stderr
    res = json.loads(by_name.stdout.strip().splitlines()[-1])
    assert res["checkpoint"] == "best.pt" and res["epoch"] == best["epoch"]  # the checkpoint's own epoch
    assert res["test_accuracy"] == pytest.approx(best["test_acc"], abs=1e-6)
    by_dir = _evaluate(["--runs-dir", str(root), "tiny-none", "--json"], {**env, "MNISTVIZ_RUNS": str(tmp_path)},
                       cwd=tmp_path)
    assert by_dir.returncode == 0, by_dir.stderr
    assert json.loads(by_dir.stdout.strip().splitlines()[-1])["test_accuracy"] == res["test_accuracy"]
    plain = _evaluate([str(root / "tiny-none")], env)
    assert plain.returncode == 0 and f"weights from best.pt (epoch {best['epoch']}" in plain.stdout


def test_without_best_pt_it_says_it_used_last_pt(runs_copy):
    root, env = runs_copy
    (root / "tiny-none" / "best.pt").unlink()
    p = _evaluate([str(root / "tiny-none"), "--json"], env)  # a folder, as before run names were taken
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["checkpoint"] == "last.pt" and res["epoch"] == 2
    assert "last.pt (after epoch 2; the run has no best.pt)" in p.stderr
    p = _evaluate([str(root / "tiny-none")], env)
    assert p.returncode == 0 and "weights from last.pt (after epoch 2; the run has no best.pt)" in p.stdout
    (root / "tiny-none" / "last.pt").unlink()
    _one_line_error(_evaluate(["tiny-none"], env), "no checkpoint yet", "train or resume it")
