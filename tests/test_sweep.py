"""Sweeps (mnistviz.sweep, issue 22): the search-space grammar and its refusals, a sweep's trials as run folders,
pruning, resuming a stopped sweep, and two workers sharing one PostgreSQL study.

Trials train real trainer processes on the tiny data (conftest's tiny_env), a few seconds each."""
from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import pytest

from conftest import ROOT, free_port, wait_for
from mnistviz import runs, sweep

@pytest.fixture(autouse=True)
def no_storage_env(monkeypatch):
    monkeypatch.delenv("MNISTVIZ_SWEEP_STORAGE", raising=False)


def cli(*args, check=True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "mnistviz.sweep", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def load(name: str, url: str):
    return optuna.load_study(study_name=name, storage=sweep.open_storage(url))


def sqlite_url(root: Path) -> str:
    return f"sqlite:///{root / '_sweeps.db'}"


# ---------- the search space ----------

def test_space_is_parsed_with_types():
    fixed = sweep.parse_sets(["epochs=1", "limit_train=2000", "val_size=500", "nesterov=false"])
    assert fixed == {"epochs": 1, "limit_train": 2000, "val_size": 500, "nesterov": False}
    space = sweep.parse_space(["lr=loguniform(1e-3,0.3)", "batch_size=choice(64,128)", "model=choice(fast,lenet5)",
                               "weight_decay=uniform(0, 0.001)", "label_smoothing=uniform(0,0.1)",
                               "augment=choice(none,light)", "optimizer=choice(sgd,adamw)",
                               "schedule=choice(none,onecycle)"], fixed)
    assert space["lr"] == {"kind": "loguniform", "low": 1e-3, "high": 0.3}
    assert space["batch_size"] == {"kind": "choice", "values": [64, 128]}
    assert space["model"] == {"kind": "choice", "values": ["fast", "lenet5"]}
    assert space["weight_decay"] == {"kind": "uniform", "low": 0.0, "high": 0.001}
    assert sweep.parse_space(["epochs=int(1,3)"]) == {"epochs": {"kind": "int", "low": 1, "high": 3}}
    assert sweep.grid_size(sweep.parse_space(["epochs=int(1,3)", "batch_size=choice(64,128)"])) == 6


@pytest.mark.parametrize("spec, says", [
    ("lr=uniform(0.1,0.1)", "empty"),
    ("lr=loguniform(0.3,1e-3)", "inverted"),
    ("lr=loguniform(0,0.1)", "above 0"),
    ("weight_decay=loguniform(-1,0.1)", "above 0"),
    ("lr=uniform(0.1,20)", "at most 10"),
    ("model=choice(fast,nosuchnet)", "unknown model"),
    ("batch_size=uniform(16,64)", "whole numbers"),
    ("batch_size=choice(64,6.5)", "whole number"),
    ("lr=int(1,3)", "any number"),
    ("model=uniform(1,2)", "choice"),
    ("seed=int(0,3)", "cannot be searched"),
    ("lr=normal(0,1)", "unknown kind"),
    ("lr 0.1", "NAME=KIND"),
    ("lr=choice()", "at least one"),
    ("epochs=int(1,2,3)", "two bounds"),
])
def test_bad_space_is_one_sentence(spec, says):
    with pytest.raises(sweep.SweepError, match=says):
        sweep.parse_space([spec])


def test_bad_sets_and_duplicates():
    for sets, says in ((["epochs=0"], "epochs must be at least 1"), (["epochs=two"], "whole number"),
                       (["name=x"], "unknown setting"), (["epochs"], "FIELD=VALUE"), (["lr=1", "lr=2"], "twice")):
        with pytest.raises(sweep.SweepError, match=says):
            sweep.parse_sets(sets)
    with pytest.raises(sweep.SweepError, match="also fixed"):
        sweep.parse_space(["lr=uniform(0.1,0.2)"], {"lr": 0.1})
    with pytest.raises(sweep.SweepError, match="twice"):
        sweep.parse_space(["lr=uniform(0.1,0.2)", "lr=uniform(0.1,0.3)"])


def _exits_2(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        sweep.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("python -m mnistviz.sweep: error: "), err
    return err


def test_bad_input_exits_2_and_changes_nothing(tiny_env, capsys):
    create = ["create", "s", "--trials", "3", "--runs-dir", str(tiny_env)]
    assert "empty" in _exits_2(capsys, create + ["--space", "lr=uniform(0.2,0.2)"])
    assert "log range" in _exits_2(capsys, create + ["--space", "lr=loguniform(0,0.2)"])
    assert "6 points, more than the 3 trials" in _exits_2(
        capsys, create + ["--sampler", "grid", "--space", "epochs=int(1,3)", "--space", "batch_size=choice(64,128)"])
    assert "continuous range" in _exits_2(capsys, create + ["--sampler", "grid", "--space", "lr=uniform(0.1,0.2)"])
    assert "cannot open the sweep storage postgresql://u:***@127.0.0.1" in _exits_2(
        capsys, create + ["--space", "lr=uniform(0.1,0.2)", "--storage",
                          f"postgresql://u:secret@127.0.0.1:{free_port()}/nodb"])
    assert "no sweep named 'nope'" in _exits_2(capsys, ["status", "nope", "--runs-dir", str(tiny_env)])
    assert "no sweep named 'nope'" in _exits_2(capsys, ["work", "nope", "--runs-dir", str(tiny_env)])
    assert list(tiny_env.iterdir()) == []  # no database, no run folder

    assert sweep.main(create + ["--space", "lr=uniform(0.1,0.2)"]) == 0
    capsys.readouterr()
    assert "exists already" in _exits_2(capsys, create + ["--space", "lr=uniform(0.1,0.3)"])
    assert load("s", sqlite_url(tiny_env)).user_attrs["mnistviz"]["space"]["lr"]["high"] == 0.2  # the first one
    assert "no sweep named 'nope'" in _exits_2(capsys, ["status", "nope", "--runs-dir", str(tiny_env)])
    assert sweep.list_sweeps(tiny_env)[0]["sweep"] == "s"
    grid = sweep.create("g", 10, ["epochs=int(1,3)"], [], tiny_env, sampler="grid")
    assert grid["planned"] == 3  # a grid's trials: each of its points once


# ---------- a sweep's trials are runs ----------

@pytest.fixture(scope="module")
def sweep3(tiny_data, tmp_path_factory):
    """One 3-trial sweep shared by the next two tests (each trial is a trainer process: a few seconds): two trials
    sampled by TPE from a range that learns (on this data an lr from 0.2 up may not: two such trials left a median
    too low for the pruner to stop the third), then, in a second `work`, a third enqueued with an lr that cannot
    learn and 8 planned epochs, for the median pruner to stop. Returns the runs folder."""
    root = tmp_path_factory.mktemp("sweep3")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNISTVIZ_DATA", str(tiny_data))
        mp.delenv("MNISTVIZ_SWEEP_STORAGE", raising=False)
        assert sweep.main(["create", "s3", "--trials", "3", "--space", "lr=loguniform(0.05,0.12)",  # the CLI in-process
                           "--space", "epochs=int(2,3)", "--set", "limit_train=300", "--set", "batch_size=50",
                           "--set", "val_size=50", "--pruner", "median", "--runs-dir", str(root)]) == 0
        sweep.work("s3", root, max_trials=2)
        with pytest.warns(UserWarning, match="out of range"):  # Optuna runs an enqueued value outside the space
            sweep.enqueue("s3", {"lr": 1e-6, "epochs": 8}, root)
            sweep.work("s3", root)
    return root


def test_three_trial_sweep_makes_three_runs(sweep3, monkeypatch, tiny_data):
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    trials = load("s3", sqlite_url(sweep3)).get_trials()
    assert len(trials) == 3 and all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert sorted(p.name for p in runs.run_folders(sweep3)) == ["s3-t0", "s3-t1", "s3-t2"]
    for t in trials:
        run = runs.get_run(t.user_attrs["run"], sweep3)
        cfg = run.config()
        assert (cfg["sweep"], cfg["trial"], run.name) == ("s3", t.number, f"s3-t{t.number}")
        assert cfg["lr"] == t.params["lr"] and cfg["epochs"] == t.params["epochs"]
        assert (cfg["limit_train"], cfg["val_size"], cfg["batch_size"]) == (300, 50, 50)
        assert run.status()["status"] == ("completed" if t.state.name == "COMPLETE" else "pruned")
        if t.state.name == "COMPLETE":  # the objective: the best validation accuracy of the run
            assert t.value == max(r["val_acc"] for r in run.epoch_records())
            assert len(run.epoch_records()) == cfg["epochs"]
    assert all(0.05 <= t.params["lr"] <= 0.12 for t in trials[:2])  # sampled from the space

    st = json.loads(cli("status", "s3", "--json", "--runs-dir", str(sweep3)).stdout.strip().splitlines()[-1])
    assert [(e["number"], e["state"], e["value"], e["run"]) for e in st["trials"]] == \
        [(t.number, t.state.name.lower(), t.value, f"s3-t{t.number}") for t in trials]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert st["best"]["number"] == max(complete, key=lambda t: t.value).number
    assert st["best"] in st["trials"] and st["finished"] == 3


def test_pruner_stops_a_clearly_worse_trial(sweep3):
    good0, good1, bad = load("s3", sqlite_url(sweep3)).get_trials()
    assert bad.params == {"lr": 1e-6, "epochs": 8} and bad.state.name == "PRUNED"
    run = runs.get_run(bad.user_attrs["run"], sweep3)
    assert run.status()["status"] == "pruned" and run.config()["epochs"] == 8
    epochs = [r["epoch"] for r in run.epoch_records()]
    assert 1 <= len(epochs) < 8 and epochs == list(range(1, len(epochs) + 1))  # it keeps the epochs it trained
    assert run.last_ckpt.exists() and bad.intermediate_values == {
        r["epoch"]: r["val_acc"] for r in run.epoch_records() if r["epoch"] in bad.intermediate_values}


def test_resuming_a_stopped_sweep_repeats_no_trial(tiny_env):
    sweep.create("r", 2, ["epochs=int(1,3)"], ["limit_train=300", "batch_size=25", "val_size=50", "lr=0.1"],
                 tiny_env, pruner="none")
    for epochs in (1, 3):  # a short trial 0; trial 1 long enough to be stopped inside
        sweep.enqueue("r", {"epochs": epochs}, tiny_env)
    worker = subprocess.Popen([sys.executable, "-m", "mnistviz.sweep", "work", "r", "--runs-dir", str(tiny_env)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t1 = tiny_env / "r-t1"
        wait_for(lambda: t1.is_dir() and runs.Run(t1).raw_status().get("status") == "running", 240,
                 "trial 1's trainer to start")
        trainer = runs.Run(t1).raw_status()["pid"]
        os.kill(trainer, signal.SIGSTOP)  # hold it inside its first epochs, so the stop lands mid-training
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        os.kill(trainer, signal.SIGCONT)
        out, err = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 1 and "continues the sweep" in err, err
    assert runs.Run(t1).status()["status"] == "stopped"
    study = load("r", sqlite_url(tiny_env))
    first = study.get_trials()
    assert [t.state.name for t in first] == ["COMPLETE", "FAIL", "WAITING"]
    assert first[1].user_attrs["interrupted"] is True and first[2].user_attrs["resumes"] == "r-t1"
    t0_status = runs.Run(tiny_env / "r-t0").raw_status()

    sweep.work("r", tiny_env)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]  # no new trial beyond the retry
    assert trials[2].params == first[1].params == {"epochs": 3} and trials[2].user_attrs["run"] == "r-t1"
    assert sorted(p.name for p in runs.run_folders(tiny_env)) == ["r-t0", "r-t1"]
    assert runs.Run(tiny_env / "r-t0").raw_status() == t0_status  # the finished trial did not run again
    resumed = runs.Run(t1)
    assert resumed.status()["status"] == "completed"
    assert [r["epoch"] for r in resumed.epoch_records()] == [1, 2, 3]
    assert sweep.status("r", tiny_env)["finished"] == 2


def proc_state(pid: int) -> str:
    """R, S, T (stopped)... from /proc; "gone" once the process has been reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_a_trial_is_told_once_its_trainer_writes_completed_not_once_it_has_exited(tiny_env):
    """The trainer's exit (Python and torch tearing down) overlaps the next trial, as queued runs overlap: here the
    trainer is held (SIGSTOP) right after it writes `completed`, and the worker still finishes the sweep."""
    import threading

    sweep.create("x", 1, ["lr=choice(0.1)"], ["limit_train=300", "batch_size=50", "val_size=50", "epochs=1"],
                 tiny_env, pruner="none")
    held = []

    def hold():
        t0, end = runs.Run(tiny_env / "x-t0"), time.monotonic() + 240
        while time.monotonic() < end:
            st = t0.raw_status() if t0.path.is_dir() else {}
            if st.get("status") == "completed":
                os.kill(st["pid"], signal.SIGSTOP)
                held.append(st["pid"])
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=hold, daemon=True)
    watcher.start()
    done = []
    worker = threading.Thread(target=lambda: done.append(sweep.work("x", tiny_env)), daemon=True)
    worker.start()
    try:
        watcher.join(240)
        assert held, "the trainer never wrote completed"
        # held before it could exit (a signal lands a moment after kill returns)
        wait_for(lambda: proc_state(held[0]) == "T", 10, "the trainer to be held")
        worker.join(60)
        assert done, "the worker waited for its held trainer to exit"
        assert [t.state.name for t in load("x", sqlite_url(tiny_env)).get_trials()] == ["COMPLETE"]
    finally:
        for pid in held:
            os.kill(pid, signal.SIGCONT)


def test_a_killed_workers_trial_goes_to_the_next_worker_on_its_host(tiny_env):
    sweep.create("k", 2, ["lr=uniform(0.05,0.2)"], ["epochs=1"], tiny_env)
    study = load("k", sqlite_url(tiny_env))
    gone = subprocess.Popen(["true"])
    gone.wait()  # a worker killed with -9: its trial stays RUNNING, its pid is dead
    t = study.ask()
    t.suggest_float("lr", 0.05, 0.2)
    t.set_user_attr("worker", {"host": socket.gethostname(), "pid": gone.pid})
    t.set_user_attr("run", "k-t0")
    other = study.ask()  # a live worker's trial (this process) is left alone
    other.suggest_float("lr", 0.05, 0.2)
    other.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getppid()})
    nxt = sweep._next_trial(study, study.user_attrs["mnistviz"], sqlite_url(tiny_env), "k")
    assert nxt.number == 2 and nxt.params == t.params and nxt.user_attrs["resumes"] == "k-t0"
    states = [s.state.name for s in study.get_trials()]
    assert states == ["FAIL", "RUNNING", "RUNNING"] and study.get_trials()[0].user_attrs["interrupted"] is True
    assert sweep._next_trial(study, study.user_attrs["mnistviz"], sqlite_url(tiny_env), "k") is None  # 2 of 2 taken


# ---------- PostgreSQL: workers on several machines ----------

def _as_postgres() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no postgres user to run a PostgreSQL server as")
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="module")
def postgres_url():
    """$MNISTVIZ_TEST_POSTGRES (.ci/run starts a server), else a throwaway cluster of our own on a free port."""
    url = os.environ.get("MNISTVIZ_TEST_POSTGRES")
    if url:
        yield url
        return
    initdb = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1:]), None)
    if not initdb:
        pytest.skip("no PostgreSQL server: set MNISTVIZ_TEST_POSTGRES to one's URL, or install PostgreSQL (initdb)")
    pg_ctl, as_user = str(Path(initdb).parent / "pg_ctl"), _as_postgres()
    d = Path(tempfile.mkdtemp(prefix="mnistviz-pg-"))
    if as_user:
        shutil.chown(d, "postgres", "postgres")
    port = free_port()

    def run(*argv):
        p = subprocess.run(as_user + list(argv), capture_output=True, text=True, timeout=120)
        if p.returncode:
            shutil.rmtree(d, ignore_errors=True)
            pytest.skip(f"could not start a PostgreSQL server ({Path(argv[0]).name}): "
                        f"{(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    run(initdb, "-D", str(d / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(pg_ctl, "-D", str(d / "data"), "-l", str(d / "log"), "-w", "-t", "60",
        "-o", f"-p {port} -k {d} -c listen_addresses=127.0.0.1", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [pg_ctl, "-D", str(d / "data"), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_url):
    """A fresh database on the server for one test, dropped after it."""
    import psycopg

    name = f"mnistviz_sweep_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base, _, _ = postgres_url.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_two_workers_share_one_postgres_study(tiny_env, tmp_path, postgres_db):
    sweep.create("pg", 3, ["lr=loguniform(0.02,0.3)"], ["limit_train=300", "batch_size=50", "val_size=50", "epochs=1"],
                 storage=postgres_db, pruner="none")
    machines = [tmp_path / "machine-a", tmp_path / "machine-b"]  # each worker its own runs folder, as on two hosts
    workers = [subprocess.Popen([sys.executable, "-m", "mnistviz.sweep", "work", "pg", "--storage", postgres_db,
                                 "--runs-dir", str(m)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for m in machines]
    try:
        results = [w.communicate(timeout=300) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert [w.returncode for w in workers] == [0, 0], results
    trials = load("pg", postgres_db).get_trials()
    assert [t.number for t in trials] == [0, 1, 2] and {t.state.name for t in trials} == {"COMPLETE"}
    made = sorted((p.name, m.name) for m in machines for p in runs.run_folders(m))
    assert [name for name, _ in made] == ["pg-t0", "pg-t1", "pg-t2"]  # each trial ran once, on one machine
    for t in trials:
        machine = dict(made)[t.user_attrs["run"]]
        run = runs.get_run(t.user_attrs["run"], tmp_path / machine)
        assert run.status()["status"] == "completed" and run.config()["trial"] == t.number
        assert t.user_attrs["runs_dir"] == str(tmp_path / machine)
    # each worker's last line is the sweep's status when it ended: the one that ended last saw all 3 trials done
    ends = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert max(e["finished"] for e in ends) == 3 and all("postgresql://" in e["storage"] for e in ends)


# ---------- the Sweeps page ----------

def test_trials_table_has_a_row_per_trial_and_a_column_per_parameter():
    st = {"objective": "val_acc", "trials": [
        {"number": 0, "state": "complete", "value": 0.9, "run": "s-t0", "params": {"lr": 0.1}, "seconds": 12.5},
        {"number": 1, "state": "fail", "value": None, "run": "s-t1", "params": {"lr": 0.2, "epochs": 3},
         "interrupted": True},
        {"number": 2, "state": "running", "value": None, "run": None, "params": {}, "worker_gone": "gone"},
        {"number": 3, "state": "running", "value": None, "run": "s-t3", "params": {}}]}
    table = sweep.trials_table(st)
    assert list(table.columns) == ["trial", "state", "val_acc", "seconds", "run", "lr", "epochs"]
    assert table["state"].tolist() == ["complete", "interrupted", "worker gone", "running"]
    assert table["lr"].tolist()[:2] == [0.1, 0.2] and table["epochs"].tolist()[1] == 3
    assert table["seconds"].tolist()[0] == 12.5


def test_status_says_when_a_running_trials_worker_is_gone(tiny_env, monkeypatch):
    """On this host by its process; on another by its heartbeat in the storage (here stale after a second)."""
    sweep.create("w", 3, ["lr=uniform(0.05,0.2)"], ["epochs=1"], tiny_env)
    study = load("w", sqlite_url(tiny_env))
    gone = subprocess.Popen(["true"])
    gone.wait()
    workers = [{"host": socket.gethostname(), "pid": gone.pid}, {"host": socket.gethostname(), "pid": os.getpid()},
               {"host": "elsewhere", "pid": 1}]
    for w in workers:
        t = study.ask()
        t.suggest_float("lr", 0.05, 0.2)
        t.set_user_attr("worker", w)
        study._storage.record_heartbeat(t._trial_id)
    gone_of = [e.get("worker_gone") for e in sweep.status("w", tiny_env)["trials"]]
    assert f"pid {gone.pid} on this machine) is gone" in gone_of[0] and gone_of[1:] == [None, None]
    monkeypatch.setattr(sweep, "GRACE_S", 1)
    time.sleep(2.1)  # SQLite's clock has whole seconds
    gone_of = [e.get("worker_gone") for e in sweep.status("w", tiny_env)["trials"]]
    assert gone_of[1] is None and "no heartbeat from its worker on elsewhere" in gone_of[2]


def _chart(at, i=0) -> dict:
    return json.loads(at.get("plotly_chart")[i].proto.spec)


def test_sweeps_page_shows_the_trials_charts_and_selects_the_best_run(tiny_env, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from mnistviz import train

    monkeypatch.chdir(ROOT)
    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/sweeps.py").run()
    assert not at.exception and any("No sweeps yet" in i.value for i in at.info)
    assert any("python -m mnistviz.sweep work" in c.value for c in at.code)

    sweep.create("pg-page", 3, ["lr=loguniform(0.01,0.3)", "batch_size=choice(32,64)"], ["epochs=2"], tiny_env)
    study = load("pg-page", sqlite_url(tiny_env))
    trials = []
    for i, (curve, state) in enumerate((([0.3, 0.5], "COMPLETE"), ([0.6, 0.93], "COMPLETE"), ([0.2], "PRUNED"))):
        t = study.ask()
        t.suggest_float("lr", 0.01, 0.3, log=True)
        t.suggest_categorical("batch_size", [32, 64])
        t.set_user_attr("run", f"pg-page-t{i}")
        train.create_run(train.Config(name=f"pg-page-t{i}", epochs=1), tiny_env).write_status(status="completed")
        for epoch, v in enumerate(curve, 1):
            t.report(v, epoch)
        trials.append((t, curve, state))
    study.tell(trials[0][0], 0.5)
    at.session_state["sweep_tab"] = "Importances"
    at.run()
    assert any("need at least 2 finished trials to compare; this sweep has 1" in i.value for i in at.info)
    for t, curve, state in trials[1:]:
        study.tell(t, curve[-1] if state == "COMPLETE" else None, state=getattr(optuna.trial.TrialState, state))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    imp = _chart(at)["data"][0]  # fANOVA's importances of both searched parameters
    assert imp["type"] == "bar" and sorted(imp["y"]) == ["batch_size", "lr"] and abs(sum(imp["x"]) - 1) < 1e-6

    table = at.dataframe[0].value
    assert table["trial"].tolist() == [0, 1, 2] and table["state"].tolist() == ["complete", "complete", "pruned"]
    assert "93.00%" in [m.value for m in at.metric] and any("3 of 3 trials done" in m.value for m in at.markdown)
    at.session_state["sweep_tab"] = "Parallel coordinates"
    at.run()
    par = _chart(at)["data"][0]
    assert par["type"] == "parcoords" and [d["label"] for d in par["dimensions"]] == \
        ["lr (log)", "batch_size", "validation accuracy"]
    assert par["dimensions"][2]["values"] == [0.5, 0.93] and par["line"]["color"] == [0.5, 0.93]  # complete ones
    at.session_state["sweep_tab"] = "Learning curves"
    at.run()
    lines = _chart(at)["data"]
    assert [len(t["x"]) for t in lines if t.get("name")] == [2, 2, 1]  # the pruned one stops after epoch 1
    assert lines[2]["line"]["dash"] == "dash" and lines[3]["marker"]["symbol"] == "x"
    link = at.get("page_link")[0].proto  # Compare the top 3: here the 2 finished ones, best first
    assert (link.page, link.label, link.query_string) == ("compare", "Compare the top 2",
                                                          "runs=pg-page-t1%2Cpg-page-t0")
    at.button(key="sweep_best:pg-page-t1").click().run()
    assert at.session_state["run"] == "pg-page-t1" and at.query_params["run"] in ("pg-page-t1", ["pg-page-t1"])
