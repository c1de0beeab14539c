"""mnistviz.export: the TensorBoard event files a run writes as it trains, the CSV and TensorBoard conversions of
`python -m mnistviz.export`, and its bad inputs."""
import csv
import io
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, TINY
from mnistviz import export, runs, train


def events(path):
    """{tag: [(step, value, wall time)]} and the hparams plugin's content, read back by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    scalars = {t: [(e.step, e.value, e.wall_time) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    return scalars, acc.PluginTagToContent("hparams")


def expected(run):
    """{tag: [(step, value, time)]} as metrics.jsonl says."""
    want = {}
    for rec in run.metrics():
        kind, step, when, values = export.scalars(rec)
        for tag, v in values.items():
            want.setdefault(tag, []).append((step, v, when))
    return want


def same(got, want):
    assert set(got) == set(want)
    for tag in want:
        assert [s for s, _, _ in got[tag]] == [s for s, _, _ in want[tag]], tag
        assert [v for _, v, _ in got[tag]] == pytest.approx([v for _, v, _ in want[tag]], rel=1e-6), tag
        assert [w for _, _, w in got[tag]] == pytest.approx([w for _, _, w in want[tag]], abs=1e-3), tag


def test_a_run_trained_with_tensorboard_installed_has_its_metrics_as_event_files(fixture_runs):
    pytest.importorskip("tensorboard")
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = runs.Run(fixture_runs / "tiny-aug")
    assert len(list(run.path.glob(export.EVENTS))) == 1
    got, hp = events(run.path)
    want = expected(run)
    assert {"step/train_loss", "step/lr", "epoch/test_acc", "epoch/val_loss", "epoch/epoch"} <= set(want)
    assert len(want["epoch/test_acc"]) == 2 and "step/step" not in want and "step/time" not in want
    same(got, want)
    start = plugin_data_pb2.HParamsPluginData.FromString(hp["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["augment"].string_value == "standard" and start.hparams["lr"].number_value == 0.2
    assert start.hparams["epochs"].number_value == 2 and "name" not in start.hparams


def test_the_event_files_follow_metrics_jsonl_when_resume_cut_it_back(fixture_runs, tmp_path):
    pytest.importorskip("tensorboard")
    run = runs.Run(shutil.copytree(fixture_runs / "tiny-none", tmp_path / "tiny-none"))
    first_epoch_end = run.epoch_records()[0]["step"]
    run.truncate_metrics(first_epoch_end)            # what --resume does after a kill in epoch 2
    log = export.TensorBoardLog(run)                 # a new trainer process: its first sync
    log.sync()
    run.append_metrics([{"step": first_epoch_end + 1, "train_loss": 0.5, "time": 1.8e9}])
    assert log.sync() == 1
    log.close()
    assert len(list(run.path.glob(export.EVENTS))) == 1   # the earlier process's file is gone
    got, _ = events(run.path)
    same(got, expected(run))
    assert max(s for s, _, _ in got["step/train_loss"]) == first_epoch_end + 1


def test_without_tensorboard_a_run_trains_as_before_and_export_says_how_to_get_it(tiny_env, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    assert not export.tensorboard_available()
    run = train.create_run(train.Config(**{**TINY, "epochs": 1, "limit_train": 100, "name": "plain"}), tiny_env)
    assert train.train_run(run)["status"] == "completed"
    assert not list(run.path.glob(export.EVENTS))
    with pytest.raises(SystemExit) as e:
        export.main([str(run.path), "--format", "tensorboard"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.splitlines() == [err] and "pip install tensorboard" in err


def test_a_tensorboard_file_that_cannot_be_written_does_not_fail_the_run(tiny_env, capfd):
    pytest.importorskip("tensorboard")
    run = train.create_run(train.Config(**{**TINY, "epochs": 1, "limit_train": 100, "name": "blocked"}), tiny_env)
    (run.path / "events.out.tfevents.in-the-way").mkdir()   # the old event file to remove is a folder
    assert train.train_run(run)["status"] == "completed"
    err = capfd.readouterr().err
    assert "TensorBoard files of run blocked not written further" in err and "--format tensorboard" in err
    assert len(run.epoch_records()) == 1


def test_csv_export_holds_every_record(fixture_runs, tmp_path, capsys):
    run = runs.Run(shutil.copytree(fixture_runs / "tiny-none", tmp_path / "tiny-none"))
    assert export.main([str(run.path), "--format", "csv"]) == 0
    assert str(run.path / "metrics.csv") in capsys.readouterr().out
    rows = list(csv.DictReader(open(run.path / "metrics.csv")))
    recs = run.metrics()
    assert len(rows) == len(recs) and list(rows[0])[:3] == ["kind", "step", "epoch"]
    assert [r["kind"] for r in rows] == ["epoch" if "epoch" in r else "step" for r in recs]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert [float(r["test_acc"]) for r in epochs] == [r["test_acc"] for r in run.epoch_records()]
    assert all(r["test_acc"] == "" for r in rows if r["kind"] == "step")
    assert export.main([str(run.path), "--format", "csv", "--out", "-"]) == 0
    assert list(csv.DictReader(io.StringIO(capsys.readouterr().out))) == rows
    out = tmp_path / "elsewhere.csv"
    assert export.main(["tiny-none", "--runs-dir", str(tmp_path), "--format", "csv", "--out", str(out)]) == 0
    assert out.read_bytes() == (run.path / "metrics.csv").read_bytes()


@pytest.fixture
def bad_runs(fixture_runs, tmp_path):
    shutil.copytree(fixture_runs / "tiny-none", tmp_path / "good")
    (tmp_path / "empty").mkdir()
    return tmp_path


BAD = [
    (["ghost", "--format", "csv"], "no run named 'ghost'"),
    (["good", "--format", "xml"], "invalid choice"),
    (["good"], "--format"),
    (["good", "--format", "tensorboard", "--out", "x"], "--out is for --format csv"),
    (["empty", "--format", "csv"], "no metrics to export"),
    (["good", "--format", "csv", "--out", "/nonexistent/dir/m.csv"], "cannot write m.csv in /nonexistent/dir"),
]


@pytest.mark.parametrize("args,says", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line(bad_runs, args, says, capsys):
    before = sorted(p.name for p in (bad_runs / "good").iterdir())
    with pytest.raises(SystemExit) as e:
        export.main([*args, "--runs-dir", str(bad_runs)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.splitlines() == [err] and err.startswith("python -m mnistviz.export: error:")
    assert says in err
    assert sorted(p.name for p in (bad_runs / "good").iterdir()) == before


def test_a_run_being_trained_is_not_converted(fixture_runs, tmp_path, capsys):
    run = runs.Run(shutil.copytree(fixture_runs / "tiny-none", tmp_path / "busy"))
    before = {p.name: p.stat().st_mtime_ns for p in run.path.glob(export.EVENTS)}
    # another process holds the run folder, as its trainer does
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from mnistviz import procs; "
                               "hold = procs.hold_run(sys.argv[1]); hold.__enter__(); print('held', flush=True); "
                               "time.sleep(60)",
                               str(run.path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit) as e:
            export.main([str(run.path), "--format", "tensorboard"])
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.splitlines() == [err]
    assert f"run busy is being trained by pid {holder.pid}: its trainer writes its TensorBoard files itself" in err
    assert {p.name: p.stat().st_mtime_ns for p in run.path.glob(export.EVENTS)} == before


def test_the_command_line_converts_a_run_made_before(fixture_runs, tmp_path):
    pytest.importorskip("tensorboard")
    run = runs.Run(shutil.copytree(fixture_runs / "tiny-none", tmp_path / "old"))
    for f in run.path.glob(export.EVENTS):  # a run made before the trainer wrote event files
        f.unlink()
    cmd = [sys.executable, "-m", "mnistviz.export", "old", "--runs-dir", str(tmp_path), "--format", "tensorboard"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"wrote {len(run.metrics())} records of run old to {run.path}"
    same(events(run.path)[0], expected(run))
