"""Hyperparameter sweeps: an Optuna study whose trials are ordinary runs. `python -m mnistviz.sweep --help`.

Optuna owns the search (TPE, random or grid sampling), the pruning (median or Hyperband on each epoch's validation
accuracy) and the storage: SQLite in the runs folder (`<runs>/_sweeps.db`) by default, or a PostgreSQL URL
(`--storage` or $MNISTVIZ_SWEEP_STORAGE) shared by workers on several machines. What is ours: the search-space
grammar, and running each trial as `python -m mnistviz.train --resume RUN` in its own process while reading its
metrics.jsonl, so a trial is a run folder like any other (same files, same pages) and a pruned trial keeps its epochs.

    python -m mnistviz.sweep create lr-bs --trials 20 --space 'lr=loguniform(1e-3,0.3)' \\
        --space 'batch_size=choice(64,128)' --set epochs=1 --set limit_train=2000 --set val_size=500
    python -m mnistviz.sweep work lr-bs         # on each machine, as many at once as you like
    python -m mnistviz.sweep status lr-bs --json

A trial's run is named `<sweep>-t<number>`, and its config.json holds `sweep` and `trial` besides the Config fields.
Stopping a worker (Ctrl-C, SIGTERM) stops its trial's trainer, which checkpoints; the trial is marked failed with
`interrupted` and a new trial with the same parameters is enqueued that resumes the same run folder, so the next
`work` continues the sweep where it was and no trial runs twice. A worker that died without warning (kill -9) has its
trial treated the same way by the next worker: on this host as soon as its process is gone, on any host once its
heartbeat (recorded in the storage every HEARTBEAT_S) is GRACE_S old; `status` says so of such a trial meanwhile.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

from . import procs, runs
from .cli import Parser
from .config import Config, validate

DB_FILE = "_sweeps.db"
ATTR = "mnistviz"          # the study's user attribute that holds the sweep's definition
POLL_S = 0.01              # how often a worker looks at its trainer's metrics.jsonl (a stat; read when changed)
MAX_TRIALS = 10000
HEARTBEAT_S = 10           # a worker records its trial's heartbeat (in the storage, by the database's clock) this often
GRACE_S = 120              # a running trial of another host with no heartbeat for this long has lost its worker
# what --space may search: the training hyperparameters (the data split, seed and logging stay fixed)
SEARCHABLE = ("model", "optimizer", "lr", "momentum", "batch_size", "epochs", "augment", "weight_decay",
              "label_smoothing", "schedule")
NOT_SETTABLE = ("name", "preset", "pair", "created")
KINDS = ("choice", "uniform", "loguniform", "int")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
COUNTED = ("COMPLETE", "PRUNED", "FAIL")  # states that use up one of the sweep's trials (an interrupted FAIL does not)
_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
# Searches to start from (the Train page's "preset search"): a training preset, settings fixed on top of it, a space
SEARCHES = {
    "lenet5-lr-batch": dict(title="lr x batch size for LeNet-5", preset="lenet5-sgd", trials=12, sampler="tpe",
                            pruner="median", sets={"epochs": 3, "val_size": 5000},
                            space=["lr=loguniform(0.001,0.3)", "batch_size=choice(32,64,128)"]),
    "augment-levels": dict(title="augmentation levels", preset="default", trials=4, sampler="grid", pruner="none",
                           sets={"epochs": 4, "val_size": 5000},
                           space=["augment=choice(none,light,standard,strong)"]),
}
_SPEC_RE = re.compile(r"^\s*([A-Za-z_]+)\s*=\s*([a-z]+)\s*\((.*)\)\s*$")


class SweepError(ValueError):
    """Bad input the user can fix; str() is one sentence that says what to do."""


# ---------- the search space ----------

def _field_type(name: str):
    default = getattr(Config(), name)
    if name == "target_accuracy":
        return float
    return type(default) if default is not None else str


def _parse_value(name: str, text: str, where: str):
    """One value for Config field `name` from its text, typed like the field."""
    typ, t = _field_type(name), text.strip().strip("'\"")
    try:
        if typ is bool:
            if t.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return t.lower() in ("true", "1", "yes")
        if typ is int:
            return int(t)
        if typ is float:
            if name == "target_accuracy" and t.lower() == "none":
                return None
            v = float(t)
            if not math.isfinite(v):
                raise ValueError
            return v
    except ValueError:
        kind = {bool: "true or false", int: "a whole number", float: "a number"}[typ]
        raise SweepError(f"{where}: {name.replace('_', ' ')} must be {kind} (got {t!r})") from None
    if not t:
        raise SweepError(f"{where}: {name.replace('_', ' ')} must not be empty")
    return t


def _check_value(name: str, value, fixed: dict, where: str) -> None:
    """The value must make a valid Config with the fixed settings (the trainer's own validate())."""
    cfg = Config.from_dict({**dataclasses.asdict(Config()), **fixed, name: value})
    err = validate(cfg).get(name)
    if err:
        raise SweepError(f"{where}: {err}")


def parse_sets(items: list[str]) -> dict:
    """--set FIELD=VALUE ... -> {field: typed value}, each checked with config.validate."""
    fixed = {}
    for item in items or []:
        name, eq, text = item.partition("=")
        name = name.strip()
        if not eq:
            raise SweepError(f"--set {item!r}: write FIELD=VALUE, e.g. --set epochs=2")
        if name not in _FIELDS or name in NOT_SETTABLE:
            ok = ", ".join(f for f in _FIELDS if f not in NOT_SETTABLE)
            raise SweepError(f"--set {item!r}: unknown setting {name!r}; use one of {ok}")
        if name in fixed:
            raise SweepError(f"--set {name} is given twice; keep one")
        fixed[name] = _parse_value(name, text, f"--set {item}")
    errors = validate(Config.from_dict({**dataclasses.asdict(Config()), **fixed}))
    if errors:
        raise SweepError("--set: " + "; ".join(errors.values()))
    return fixed


def parse_space(items: list[str], fixed: dict | None = None, labels: dict | None = None) -> dict:
    """--space 'NAME=choice(a,b)|uniform(lo,hi)|loguniform(lo,hi)|int(lo,hi)' ... -> {name: {"kind", ...}}
    (plain JSON, kept in the study). Raises SweepError with one sentence for each kind of bad input; `labels`
    (field -> a form's label) names the field in it instead of the --space text."""
    fixed = fixed or {}
    space = {}
    for item in items or []:
        where = f"--space {item.strip()}"
        m = _SPEC_RE.match(item)
        if not m:
            raise SweepError(f"{where}: write NAME=KIND(...), e.g. 'lr=loguniform(1e-3,0.3)' or "
                             f"'batch_size=choice(64,128)'; KIND is one of {', '.join(KINDS)}")
        name, kind, args = m.group(1), m.group(2), [a for a in m.group(3).split(",")]
        where = (labels or {}).get(name, where)
        if name not in SEARCHABLE:
            raise SweepError(f"{where}: {name!r} cannot be searched; search one of {', '.join(SEARCHABLE)} "
                             f"(fix the rest with --set)")
        if name in space:
            raise SweepError(f"{where}: {name} is searched twice; keep one --space for it")
        if name in fixed:
            raise SweepError(f"{where}: {name} is also fixed with --set; keep one of the two")
        if kind not in KINDS:
            raise SweepError(f"{where}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        typ = _field_type(name)
        if kind == "choice":
            if not m.group(3).strip():
                raise SweepError(f"{where}: give at least one value, e.g. {name}=choice(a,b)")
            values = [_parse_value(name, a, where) for a in args]
            if len(set(values)) != len(values):
                raise SweepError(f"{where}: a value is listed twice")
            for v in values:
                _check_value(name, v, fixed, where)
            space[name] = {"kind": "choice", "values": values}
            continue
        if typ is str or typ is bool:
            raise SweepError(f"{where}: {name} is a name, not a number; search it with {name}=choice(...)")
        if typ is int and kind != "int":
            raise SweepError(f"{where}: {name.replace('_', ' ')} takes whole numbers; use {name}=int(lo,hi) "
                             f"or {name}=choice(...)")
        if typ is float and kind == "int":
            raise SweepError(f"{where}: {name.replace('_', ' ')} takes any number; use uniform(lo,hi) or "
                             f"loguniform(lo,hi)")
        if len(args) != 2:
            raise SweepError(f"{where}: a range takes two bounds, {kind}(low,high)")
        lo, hi = (_parse_value(name, a, where) for a in args)
        if lo >= hi:
            raise SweepError(f"{where}: the range is {'empty' if lo == hi else 'inverted'}; "
                             f"give a low bound below the high one")
        if kind == "loguniform" and lo <= 0:
            raise SweepError(f"{where}: a log range must stay above 0 (it runs from {lo}); "
                             f"give a positive low bound or use uniform(...)")
        for v in (lo, hi):
            _check_value(name, v, fixed, where)
        space[name] = {"kind": kind, "low": lo, "high": hi}
    return space


def grid_of(space: dict) -> dict[str, list]:
    """The grid sampler's points for each parameter: choices, or every whole number of an int range."""
    grid = {}
    for name, d in space.items():
        if d["kind"] == "choice":
            grid[name] = list(d["values"])
        elif d["kind"] == "int":
            grid[name] = list(range(d["low"], d["high"] + 1))
        else:
            raise SweepError(f"a grid cannot search the continuous range {name}={d['kind']}(...): give "
                             f"{name}=choice(...) values, or use the tpe or random sampler")
    return grid


def grid_size(space: dict) -> int:
    return math.prod(len(v) for v in grid_of(space).values()) if space else 1


# ---------- storage ----------

def storage_url(storage: str | None = None, runs_dir=None) -> str:
    """--storage, else $MNISTVIZ_SWEEP_STORAGE, else SQLite in the runs folder."""
    url = storage or os.environ.get("MNISTVIZ_SWEEP_STORAGE")
    return url or f"sqlite:///{runs.runs_dir(runs_dir) / DB_FILE}"


def _is_postgres(url: str) -> bool:
    return url.split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def _engine_url(url: str) -> str:
    """SQLAlchemy's URL: postgresql:// goes through psycopg 3 (SQLAlchemy's default driver there is psycopg2)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise SweepError(f"--storage {masked(url)} is not a URL; give postgresql://USER@HOST:PORT/DB or "
                         f"sqlite:///PATH")
    if _is_postgres(url):
        return "postgresql+psycopg://" + rest
    if scheme == "sqlite":
        return url
    raise SweepError(f"--storage {masked(url)}: use a postgresql:// or sqlite:/// URL")


def _libpq_url(url: str) -> str:
    return "postgresql://" + url.partition("://")[2]


def masked(url: str) -> str:
    """The URL with its password hidden, for messages and status output."""
    return re.sub(r"(://[^/:@]+:)[^/@]*@", r"\1***@", url)


def _sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None


def open_storage(url: str, create: bool = False):
    """Optuna's RDBStorage for the URL. Without `create`, a SQLite file that does not exist is not made."""
    import optuna

    engine_url = _engine_url(url)
    path = _sqlite_path(url)
    if path is not None:
        if not create and not path.exists():
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"connect_args": {"timeout": 60}}
    else:
        kwargs = {"connect_args": {"connect_timeout": 5}, "pool_pre_ping": True}
    try:  # heartbeats: how a worker on another host is known to be gone (see _worker_gone)
        with warnings.catch_warnings():  # heartbeat_interval is "experimental" since Optuna 2.9: said on every call
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(engine_url, engine_kwargs=kwargs, skip_compatibility_check=False,
                                              heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except Exception as e:  # unreachable server, wrong password, unknown database: one sentence, nothing made
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SweepError(f"cannot open the sweep storage {masked(url)}: {reason}; check the URL and that the "
                         f"server is running and reachable") from None


def _definition(storage, name: str, url: str) -> tuple[int, dict]:
    if storage is None:
        raise SweepError(f"no sweep named {name!r}: {masked(url)} holds no sweeps yet; make one with "
                         f"`python -m mnistviz.sweep create {name} ...`")
    try:
        sid = storage.get_study_id_from_name(name)
    except KeyError:
        raise SweepError(f"no sweep named {name!r} in {masked(url)}; see `python -m mnistviz.sweep list` or make "
                         f"it with `python -m mnistviz.sweep create {name} ...`") from None
    spec = storage.get_study_user_attrs(sid).get(ATTR)
    if not isinstance(spec, dict):
        raise SweepError(f"study {name!r} in {masked(url)} was not made by mnistviz.sweep (no definition); "
                         f"give its sweeps another name")
    return sid, spec


def _sampler(spec: dict):
    import optuna

    if spec["sampler"] == "random":
        return optuna.samplers.RandomSampler()
    if spec["sampler"] == "grid":
        class Grid(optuna.samplers.GridSampler):
            # its after_trial calls study.stop() once the grid is used up, which only works inside optimize();
            # the sweep already stops at its trial count, which create() set to the grid's size
            def after_trial(self, study, trial, state, values):
                pass
        return Grid(grid_of(spec["space"]))
    return optuna.samplers.TPESampler()


def _pruner(spec: dict):
    import optuna

    if spec["pruner"] == "median":  # few trials per sweep here: judge from the second finished trial on
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if spec["pruner"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource="auto", reduction_factor=3)
    return optuna.pruners.NopPruner()


def _study(name: str, url: str):
    import optuna

    storage = open_storage(url)
    _, spec = _definition(storage, name, url)
    return optuna.load_study(study_name=name, storage=storage, sampler=_sampler(spec), pruner=_pruner(spec)), spec


@contextlib.contextmanager
def _claim_lock(url: str, name: str):
    """One worker at a time counts the trials and asks for the next one, so a sweep never runs more than its
    trials: a PostgreSQL advisory lock (held by its own connection), or a file lock beside the SQLite file."""
    if _is_postgres(url):
        import psycopg

        with psycopg.connect(_libpq_url(url), autocommit=True, connect_timeout=5) as conn:
            key = zlib.crc32(f"mnistviz.sweep:{name}".encode())
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        return
    path = _sqlite_path(url)
    if path is None:
        yield
        return
    with open(str(path) + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------- create, enqueue, status, list ----------

def create(name: str, trials: int, space: list[str], sets: list[str] | None = None, runs_dir=None,
           storage: str | None = None, sampler: str = "tpe", pruner: str = "median",
           labels: dict | None = None) -> dict:
    """Validate everything, then make the study. Returns the sweep's status dict. `labels`: see parse_space."""
    import optuna

    try:
        runs.check_name(name)
    except runs.RunError:
        raise SweepError(f"invalid sweep name {name!r}: use 1-90 letters, digits, '.', '_' or '-', starting with "
                         f"a letter or digit (its trials' runs are named {name}-t0, {name}-t1, ...)") from None
    if len(name) > 90:
        raise SweepError(f"sweep name {name!r} is too long: use at most 90 characters")
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_TRIALS:
        raise SweepError(f"--trials must be a whole number from 1 to {MAX_TRIALS} (got {trials})")
    if sampler not in SAMPLERS:
        raise SweepError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise SweepError(f"unknown pruner {pruner!r}; use one of {', '.join(PRUNERS)}")
    fixed = parse_sets(sets or [])
    parsed = parse_space(space, fixed, labels)
    if not parsed:
        raise SweepError("give at least one --space to search, e.g. --space 'lr=loguniform(1e-3,0.3)'")
    if sampler == "grid":
        points = grid_size(parsed)
        if points > trials:
            raise SweepError(f"the grid has {points} points, more than the {trials} trials asked for; ask for "
                             f"{points} trials or give fewer choices")
        trials = points  # each point once: more trials would repeat points
    base = Config.from_dict({**dataclasses.asdict(Config()), **fixed})
    spec = {"trials": trials, "space": parsed, "fixed": fixed, "space_text": [s.strip() for s in space],
            "sampler": sampler, "pruner": pruner, "objective": "val_acc" if base.val_size > 0 else "test_acc",
            "created": time.time()}
    url = storage_url(storage, runs_dir)
    st = open_storage(url, create=True)
    try:
        study = optuna.create_study(study_name=name, storage=st, direction="maximize", load_if_exists=False)
    except optuna.exceptions.DuplicatedStudyError:
        raise SweepError(f"a sweep named {name!r} exists already in {masked(url)}; pick another name, or run "
                         f"`python -m mnistviz.sweep work {name}` to continue it") from None
    study.set_user_attr(ATTR, spec)
    return status(name, runs_dir, storage)


def enqueue(name: str, params: dict, runs_dir=None, storage: str | None = None) -> None:
    """Ask for a trial with these parameters next (Optuna's enqueue_trial): e.g. a known-good recipe to compare."""
    study, spec = _study(name, storage_url(storage, runs_dir))
    for k in params:
        if k not in spec["space"]:
            raise SweepError(f"{k!r} is not searched by sweep {name}; it searches {', '.join(spec['space'])}")
        _check_value(k, params[k], spec["fixed"], f"--param {k}={params[k]}")
    study.enqueue_trial(params)


def _entry(t, stale: set, now: float) -> dict:
    start, end = t.datetime_start, t.datetime_complete
    e = {"number": t.number, "state": t.state.name.lower(), "value": t.value, "run": t.user_attrs.get("run"),
         "params": t.params or t.system_attrs.get("fixed_params", {}),  # a waiting trial: what was enqueued
         "seconds": None if start is None else round((end.timestamp() if end else now) - start.timestamp(), 1),
         "curve": sorted(t.intermediate_values.items())}  # [epoch, objective] as reported
    for k in ("interrupted", "error", "resumes"):
        if t.user_attrs.get(k) is not None:
            e[k] = t.user_attrs[k]
    if t.state.name == "RUNNING":
        gone = _worker_gone(t, stale)
        if gone:
            e["worker_gone"] = gone
    return e


def _worker_gone(t, stale: set) -> str | None:
    """Why a RUNNING trial's worker is known to be gone, in a few words; None while it may still be working. On this
    host its process is looked at (pid and start time); on another, the trial's heartbeat in the storage."""
    w = t.user_attrs.get("worker") or {}
    pid = w.get("pid")
    if w.get("host") == socket.gethostname():
        if not procs.pid_alive(pid):
            return f"its worker (pid {pid} on this machine) is gone"
        if w.get("start") is not None and procs.start_time(pid) not in (None, w["start"]):
            return f"its worker (pid {pid} on this machine) is gone; the pid belongs to another program now"
        return None
    if t._trial_id in stale:
        return f"no heartbeat from its worker on {w.get('host') or 'another machine'} for over {GRACE_S} s"
    return None


def _stale(study) -> set:
    """Ids of the study's RUNNING trials whose heartbeat is older than GRACE_S (by the database's clock; trials of
    workers that never beat are not among them)."""
    rdb = getattr(study._storage, "_backend", study._storage)  # load_study wraps the RDBStorage in a cache
    try:
        return set(rdb._get_stale_trial_ids(study._study_id))  # Optuna's own check, as fail_stale_trials uses
    except (AttributeError, AssertionError):
        return set()


def _counted(t) -> bool:
    return t.state.name in COUNTED and not t.user_attrs.get("interrupted")


def status(name: str, runs_dir=None, storage: str | None = None) -> dict:
    url = storage_url(storage, runs_dir)
    study, spec = _study(name, url)
    trials = study.get_trials(deepcopy=False)
    stale = _stale(study) if any(t.state.name == "RUNNING" for t in trials) else set()
    entries = [_entry(t, stale, time.time()) for t in trials]
    done = [e for e in entries if e["state"] == "complete" and e["value"] is not None]
    return {"sweep": name, "storage": masked(url), "planned": spec["trials"], "objective": spec["objective"],
            "sampler": spec["sampler"], "pruner": spec["pruner"], "space": spec["space_text"], "fixed": spec["fixed"],
            "search": spec["space"],
            "finished": sum(_counted(t) for t in trials), "trials": entries,
            "best": max(done, key=lambda e: e["value"]) if done else None}


def list_sweeps(runs_dir=None, storage: str | None = None) -> list[dict]:
    import optuna

    url = storage_url(storage, runs_dir)
    st = open_storage(url)
    if st is None:
        return []
    out = []
    for s in optuna.get_all_study_summaries(st, include_best_trial=True):
        spec = s.user_attrs.get(ATTR) or {}
        out.append({"sweep": s.study_name, "planned": spec.get("trials"), "trials": s.n_trials,
                    "best": s.best_trial.value if s.best_trial else None, "mnistviz": bool(spec)})
    return out


def trials_table(st: dict):
    """A sweep's status as a table for the Sweeps page: one row per trial, its parameters as columns."""
    import pandas as pd

    names = [k for e in st["trials"] for k in e["params"]]
    cols = ["trial", "state", st["objective"], "seconds", "run", *dict.fromkeys(names)]
    rows = [{"trial": e["number"], "state": shown_state(e), st["objective"]: e["value"], "seconds": e.get("seconds"),
             "run": e["run"], **e["params"]} for e in st["trials"]]
    return pd.DataFrame(rows, columns=cols)


def shown_state(e: dict) -> str:
    """A trial's state as a person reads it: an interrupted FAIL (it runs again) and a RUNNING trial whose worker is
    gone are said so."""
    return "interrupted" if e.get("interrupted") else "worker gone" if e.get("worker_gone") else e["state"]


# ---------- work: run trials ----------

def _worker_id() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": procs.start_time(os.getpid())}


def _suggest(trial, name: str, d: dict):
    if d["kind"] == "choice":
        return trial.suggest_categorical(name, d["values"])
    if d["kind"] == "int":
        return trial.suggest_int(name, d["low"], d["high"])
    return trial.suggest_float(name, d["low"], d["high"], log=d["kind"] == "loguniform")


def _interrupt(study, number: int, params: dict, run_name: str | None) -> None:
    """A trial whose worker stopped: FAIL with `interrupted`, and its parameters enqueued again to resume its run.
    (Optuna's tell() takes no user attributes, so the flag goes through the storage.)"""
    import optuna

    study._storage.set_trial_user_attr(study._storage.get_trial_id_from_study_id_trial_number(
        study._study_id, number), "interrupted", True)
    study.tell(number, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial(params, user_attrs={"resumes": run_name, "retry_of": number}, skip_if_exists=False)


def _reclaim_dead(study) -> None:
    """RUNNING trials whose worker is gone (_worker_gone: killed with -9 on this host, or silent for GRACE_S on
    another): handled as interrupted, so their parameters run again, resuming their run where it is here."""
    import optuna

    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    stale = _stale(study) if running else set()
    for t in running:
        if _worker_gone(t, stale):
            _interrupt(study, t.number, t.params, t.user_attrs.get("run"))


def _next_trial(study, spec: dict, url: str, name: str):
    """The next trial to run, or None when the sweep's trials are all finished or taken by other workers."""
    import optuna

    with _claim_lock(url, name):
        _reclaim_dead(study)
        trials = study.get_trials(deepcopy=False)
        counted = sum(_counted(t) for t in trials)
        running = sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)
        if counted + running >= spec["trials"]:
            return None
        with warnings.catch_warnings():  # "heartbeat is supposed to be used with optimize": we beat ourselves
            warnings.simplefilter("ignore", UserWarning)
            trial = study.ask()
        study._storage.record_heartbeat(trial._trial_id)
        trial.set_user_attr("worker", _worker_id())
        for k, d in spec["space"].items():
            _suggest(trial, k, d)
        return trial


def _stop_orphan(run: runs.Run, wait_s: float = 120) -> None:
    """The trainer of a killed worker's trial may still run (or be held by SIGSTOP): stop it as jobs.stop does,
    so its run can be resumed."""
    raw = run.raw_status()
    pid = raw.get("pid")
    if run.status().get("status") != "running" or not procs.may_signal(run.path, raw):
        return
    for sig in (signal.SIGTERM, signal.SIGCONT):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
    end = time.monotonic() + wait_s
    while run.status().get("status") == "running" and time.monotonic() < end:
        time.sleep(0.2)


def _trial_run(trial, name: str, spec: dict, root: Path) -> runs.Run:
    """The trial's run folder: the interrupted run it resumes, or a new one named <sweep>-t<number>."""
    from . import train

    resumes = trial.user_attrs.get("resumes")
    if resumes:
        try:
            run = runs.get_run(resumes, root)
            _stop_orphan(run)
            if run.status().get("status") in ("stopped", "interrupted", "failed", "queued", "completed"):
                return run  # (completed: by its trainer, which went on after its worker was killed)
        except runs.RunError:
            pass  # its folder is on another machine, or gone: start the same parameters afresh
    base = {**dataclasses.asdict(Config()), **spec["fixed"], **trial.params}
    run_name, k = f"{name}-t{trial.number}", 1
    while (root / run_name).exists():  # a leftover of an older sweep of the same name
        k += 1
        run_name = f"{name}-t{trial.number}-{k}"
    run = train.create_run(Config.from_dict({**base, "name": run_name, "created": 0.0}), root)
    runs.atomic_write_json(run.config_file, {**run.config(), "sweep": name, "trial": trial.number})
    return run


def _signal(proc, sig) -> None:
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass


def run_trial(study, trial, name: str, spec: dict, root: Path, stop: procs.StopRequested) -> str:
    """Train the trial's run in a child trainer, report each epoch, prune or finish. Returns the trial's end:
    complete, pruned, fail or interrupted."""
    run = _trial_run(trial, name, spec, root)
    trial.set_user_attr("run", run.name)
    trial.set_user_attr("runs_dir", str(root))
    metric = spec["objective"]
    if run.status().get("status") == "completed":  # a killed worker's trainer went on and finished it: use that
        for r in run.epoch_records():
            if r.get(metric) is not None:
                trial.report(r[metric], r["epoch"])
        return _settle(study, trial, run, None, metric, False, stop)
    with open(run.path / "train.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mnistviz.train", "--resume", run.name, "--runs-dir",
                                 str(root), "--no-progress"], cwd=runs.PROJECT, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        pruned = _watch(study, trial, run, proc, metric, stop)
    except BaseException:
        _signal(proc, signal.SIGTERM)
        _signal(proc, signal.SIGCONT)
        proc.wait()
        raise
    if proc.poll() is None:  # completed, still exiting: reaped beside the next trial rather than waited for
        threading.Thread(target=proc.wait, daemon=True).start()
    return _settle(study, trial, run, proc, metric, pruned, stop)


def _watch(study, trial, run: runs.Run, proc, metric: str, stop: procs.StopRequested) -> bool:
    """Until the trainer ends, or has written `completed` (its exit, a second or so of Python and torch tearing
    down, then overlaps the next trial's start, as queued runs overlap): report each new epoch's objective, prune
    (SIGTERM) when the pruner says so, pass on a stop, beat the trial's heartbeat. Returns whether it was pruned."""
    reported, pruned, signalled, seen, beat, status_seen = 0, False, False, None, time.monotonic(), None
    while True:
        finished = proc.poll() is not None
        if not finished and not pruned:
            status_now = _stamp(run.status_file)
            if status_now != status_seen:
                status_seen = status_now
                finished = run.raw_status().get("status") == "completed"  # _finish's last write
        if time.monotonic() - beat >= HEARTBEAT_S:
            study._storage.record_heartbeat(trial._trial_id)
            beat = time.monotonic()
        now = _stamp(run.metrics_file)  # the records are read only when it changed: the poll is frequent
        new = []
        if now != seen or finished:
            seen = now
            new = [r for r in run.epoch_records() if r["epoch"] > reported and r.get(metric) is not None]
        if new and not pruned:
            if not finished:
                _signal(proc, signal.SIGSTOP)  # hold the trainer while the storage decides: no epoch slips by
            try:
                for r in new:
                    trial.report(r[metric], r["epoch"])
                    reported = r["epoch"]
                    if trial.should_prune():
                        pruned = True
                        _signal(proc, signal.SIGTERM)  # as jobs.stop: the trainer checkpoints, writes stopped
                        break
            finally:
                if not finished:
                    _signal(proc, signal.SIGCONT)
        if finished:
            return pruned
        if stop.is_set() and not signalled:
            signalled = True
            _signal(proc, signal.SIGTERM)
        time.sleep(POLL_S)


def _stamp(path: Path) -> tuple | None:
    """(size, mtime) of a file, None while there is none: what changes when it is written."""
    try:
        s = os.stat(path)
    except FileNotFoundError:
        return None
    return s.st_size, s.st_mtime_ns


def _settle(study, trial, run: runs.Run, proc, metric: str, pruned: bool, stop: procs.StopRequested) -> str:
    """Tell the study how the trial's trainer ended (`proc` None: it ended before this worker took the trial)."""
    import optuna

    st = run.status()
    state = st.get("status")
    if state == "completed":
        values = [r[metric] for r in run.epoch_records() if r.get(metric) is not None]
        if values:
            study.tell(trial, max(values))
            return "complete"
        trial.set_user_attr("error", f"run {run.name} has no {metric} in its epoch records")
    elif pruned and state == "stopped":
        run.write_status(status="pruned")
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return "pruned"
    elif state == "stopped" or (stop.is_set() and state in ("queued", "interrupted")):
        if not stop.is_set():
            stop()  # its trainer was stopped by hand (the Runs page's Stop): the sweep stops with it, resumably
        _interrupt(study, trial.number, trial.params, run.name)
        return "interrupted"
    else:
        code = proc.returncode if proc else None
        trial.set_user_attr("error", st.get("error") or f"the trainer exited with code {code} "
                                                        f"(see {run.path / 'train.log'})")
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return "fail"


def work(name: str, runs_dir=None, storage: str | None = None, stop: procs.StopRequested | None = None,
         max_trials: int | None = None, until=None) -> dict:
    """Run the sweep's trials until none is left (or `stop` is set, or this worker ran max_trials, or `until()` says
    so after a trial: the dashboard's queue has something else waiting)."""
    from .data import MNISTMissing, find_mnist, load_mnist

    url = storage_url(storage, runs_dir)
    study, spec = _study(name, url)
    try:  # before any trial: missing data must not fail every trial (found: each trainer loads it itself)
        if find_mnist() is None:
            load_mnist()  # downloads it, or says where to put the files
    except MNISTMissing as e:
        raise SweepError(str(e)) from None
    root = runs.runs_dir(runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    stop = stop or procs.StopRequested()
    ran = 0
    while not stop.is_set() and (max_trials is None or ran < max_trials):
        trial = _next_trial(study, spec, url, name)
        if trial is None:
            break
        end = run_trial(study, trial, name, spec, root, stop)
        ran += 1
        print(f"trial {trial.number}: {end} ({trial.params})", file=sys.stderr, flush=True)
        if until is not None and until():
            break
    return status(name, runs_dir, storage)


# ---------- CLI ----------

def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m mnistviz.sweep",
               description="Hyperparameter sweeps: an Optuna study whose trials are ordinary runs.")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)

    def common(q):
        q.add_argument("--runs-dir", help="runs folder (default: $MNISTVIZ_RUNS or checkpoints/)")
        q.add_argument("--storage", help="study storage URL, e.g. postgresql://user@host/db (default: "
                                         "$MNISTVIZ_SWEEP_STORAGE, else sqlite in the runs folder)")

    c = sub.add_parser("create", help="make a sweep")
    c.add_argument("name")
    c.add_argument("--trials", type=int, required=True, help="how many trials the sweep runs")
    c.add_argument("--space", action="append", default=[], metavar="NAME=KIND(...)",
                   help=f"a searched hyperparameter: choice(a,b,..), uniform(lo,hi), loguniform(lo,hi), int(lo,hi); "
                        f"one of {', '.join(SEARCHABLE)}")
    c.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a fixed setting")
    c.add_argument("--sampler", default="tpe", choices=SAMPLERS)
    c.add_argument("--pruner", default="median", choices=PRUNERS)
    common(c)
    w = sub.add_parser("work", help="run the sweep's trials until none is left")
    w.add_argument("name")
    w.add_argument("--max-trials", type=int, help="stop after this many trials of this worker")
    common(w)
    q = sub.add_parser("enqueue", help="ask for a trial with these parameters next (e.g. a known-good recipe)")
    q.add_argument("name")
    q.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", required=True)
    common(q)
    s = sub.add_parser("status", help="the sweep's trials and its best")
    s.add_argument("name")
    s.add_argument("--json", action="store_true", help="one JSON object as the last line")
    common(s)
    ls = sub.add_parser("list", help="the sweeps in the storage")
    ls.add_argument("--json", action="store_true")
    common(ls)
    return p


def _print_status(st: dict) -> None:
    print(f"sweep {st['sweep']} ({st['storage']}): {st['finished']} of {st['planned']} trials done, "
          f"objective {st['objective']}, sampler {st['sampler']}, pruner {st['pruner']}")
    for e in st["trials"]:
        v = "" if e["value"] is None else f"{e['value']:.4f}"
        print(f"  {e['number']:>4}  {e['state']:<9} {v:>7}  {e['run'] or '-':<24} {e['params']}")
    if st["best"]:
        print(f"best: trial {st['best']['number']} ({st['best']['run']}) {st['best']['value']:.4f} "
              f"{st['best']['params']}")


def main(argv=None) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    p = _parser()
    args = p.parse_args(argv)
    try:
        if args.cmd == "create":
            st = create(args.name, args.trials, args.space, args.set, args.runs_dir, args.storage,
                        args.sampler, args.pruner)
            print(f"made sweep {args.name}: {st['planned']} trials; run `python -m mnistviz.sweep work "
                  f"{args.name}` on each machine", file=sys.stderr)
            print(json.dumps(st))
        elif args.cmd == "work":
            stop = procs.StopRequested()
            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
            st = work(args.name, args.runs_dir, args.storage, stop, args.max_trials)
            if stop.is_set():
                print(f"stopped; `python -m mnistviz.sweep work {args.name}` continues the sweep", file=sys.stderr)
            print(json.dumps(st))
            return 1 if stop.is_set() else 0
        elif args.cmd == "enqueue":
            params = {}
            for item in args.param:
                k, eq, v = item.partition("=")
                if not eq or k.strip() not in SEARCHABLE:
                    raise SweepError(f"--param {item!r}: write NAME=VALUE for a searched hyperparameter")
                params[k.strip()] = _parse_value(k.strip(), v, f"--param {item}")
            enqueue(args.name, params, args.runs_dir, args.storage)
            print(f"enqueued {params} in sweep {args.name}", file=sys.stderr)
        elif args.cmd == "status":
            st = status(args.name, args.runs_dir, args.storage)
            if args.json:
                print(json.dumps(st))
            else:
                _print_status(st)
        else:
            rows = list_sweeps(args.runs_dir, args.storage)
            if args.json:
                print(json.dumps(rows))
            else:
                for r in rows:
                    print(f"{r['sweep']:<24} {r['planned']} trials planned, {r['trials']} made (waiting and "
                          f"interrupted ones included), best {r['best']}")
    except SweepError as e:
        p.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
