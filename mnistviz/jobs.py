"""Training as separate OS processes, one at a time, from a first-in first-out queue kept on disk.

The dashboard never trains in its own process: `submit()` makes the run folder (status queued), appends
its name to `<runs>/_queue.json` and calls `tick()`. `tick()` starts the next queued run when no training
is running, as a detached process (its own session, so a browser refresh or a Streamlit restart leaves
it alone):

    sh -c 'python -m mnistviz.train --resume NAME --runs-dir ROOT --no-progress; python -m mnistviz.jobs tick ...'

The trailing `jobs tick` starts the next queued run as soon as this one ends, so the queue moves with no
browser open; pages call `tick()` too (harmless: every tick holds `<runs>/_queue.lock`). Nothing here
keeps state in memory: "is something running" is read from the run folders' status.json (status, and that its
pid is still this run's trainer or launch: procs.identify, the one identity check that Stop uses too), so a
restarted app, a second tab or this module in another process all see the same thing. A trainer holds its run
folder's lock (procs.hold_run) for its whole life, so a launch and a CLI `--resume` of the same run never both train. The run folders are the source of
truth for the queue too: an unreadable `_queue.json` is rebuilt from the runs whose status is queued.
"""
from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from . import data, device, lrfind, procs, runs, sweep, train
from .runs import Run, RunError

QUEUE_FILE = "_queue.json"
LOCK_FILE = "_queue.lock"
LOG_FILE = "train.log"
RESUMABLE = ("stopped", "interrupted", "failed")

_children: dict[int, subprocess.Popen] = {}  # launched from this process, polled so they never linger as zombies
_children_lock = threading.Lock()


def max_jobs() -> int:
    """Trainings allowed at once: $MNISTVIZ_MAX_JOBS, default 1 (each one uses every core)."""
    try:
        return max(1, int(os.environ.get("MNISTVIZ_MAX_JOBS", "1")))
    except ValueError:
        return 1


# ---------- the queue file ----------

@contextmanager
def _locked(root: Path):
    """Serialize queue changes across threads (Streamlit sessions) and processes (flock on a lock file)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_queue(root: Path) -> list[str] | None:
    """The queue file's names; [] when there is no file; None when it cannot be read (torn, garbage, a
    directory...): then the queue is rebuilt from the run folders (_queued_runs)."""
    try:
        q = runs.read_json(root / QUEUE_FILE)
    except FileNotFoundError:
        return []
    except (OSError, ValueError):  # IsADirectoryError, PermissionError, torn or non-UTF-8 JSON
        return None
    names = q.get("queue") if isinstance(q, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    return names


def _queued_runs(root: Path) -> list[str]:
    """The runs whose status is queued and that were not launched yet, oldest first (by config created)."""
    waiting = []
    for run in map(Run, runs.run_folders(root)):
        raw = run.raw_status()
        if raw.get("status") != "queued" or raw.get("launcher_pid"):
            continue
        try:
            runs.check_name(run.name)
        except RunError:
            continue  # a folder renamed by hand: listed as broken, never started
        try:
            cfg = run.config()
            created = float(cfg.get("created") or 0)
        except RunError:
            cfg, created = {}, float("inf")  # still queued: its start fails with the reason in its status
        if cfg.get("sweep"):
            continue  # a sweep's trial, made by its worker a moment before it trains it: never the queue's
        waiting.append((created, run.name))
    return [n for _, n in sorted(waiting)] + [sweep_entry(n) for n in _sweep_jobs(root, "queued")]


def _write_queue(root: Path, names: list[str]) -> None:
    path = root / QUEUE_FILE
    if path.is_dir() and not path.is_symlink():  # cannot be replaced by a file: keep it, beside, as it is
        path.rename(root / f"{QUEUE_FILE}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}")
    runs.atomic_write_json(path, {"queue": names})


def _current_queue(root: Path) -> tuple[list[str], str | None]:
    """(names, note). Call under _locked(root). An unreadable queue file is rebuilt from the runs whose status is
    queued and written back; `note` then says so, in a sentence for the user."""
    names = _read_queue(root)
    if names is not None:
        return names, None
    names = _queued_runs(root)
    what = f"the {len(names)} run(s) marked queued ({', '.join(names)}), oldest first" if names else \
        "the runs marked queued (there are none)"
    try:
        _write_queue(root, names)
    except OSError as e:
        return names, (f"The training queue file {root / QUEUE_FILE} cannot be read nor rewritten ({e}); fix its "
                       f"permissions or remove it: meanwhile the queue is {what}.")
    return names, f"The training queue file {root / QUEUE_FILE} could not be read, so it was rebuilt from {what}."


def repair_queue(root=None) -> str | None:
    """Rebuild an unreadable queue file from the run folders; a sentence saying so, or None if it was fine."""
    root = runs.runs_dir(root)
    if not root.is_dir() or _read_queue(root) is not None:
        return None
    with _locked(root):
        return _current_queue(root)[1]


def queue(root=None) -> list[str]:
    """Names waiting to start, first to start first (from the run folders when the queue file is unreadable)."""
    root = runs.runs_dir(root)
    names = _read_queue(root)
    return names if names is not None else _queued_runs(root)


# ---------- what is running ----------

def _busy(run: Run, raw: dict | None = None) -> bool:
    """Training (status running, our trainer alive) or starting (launched by us, launcher still alive)."""
    return procs.in_use(run.path, raw if raw is not None else run.raw_status())


def running(root=None) -> list[str]:
    """Names of the runs training (or starting) now, most recently started first."""
    root = runs.runs_dir(root)
    out = []
    for run in map(Run, runs.run_folders(root)):
        raw = run.raw_status()
        if _busy(run, raw):
            out.append((raw.get("started") or raw.get("launched") or 0, run.name))
    return [n for _, n in sorted(out, reverse=True)]


def active(root=None) -> str | None:
    """The run training now (or being started), or None."""
    names = running(root)
    return names[0] if names else None


# ---------- starting the next one ----------

def _reap() -> None:
    with _children_lock:
        for pid, proc in list(_children.items()):
            if proc.poll() is not None:
                del _children[pid]


def _log_tail(run: Run) -> str | None:
    return _log_tail_of(run.path / LOG_FILE)


def _log_tail_of(path: Path) -> str | None:
    """A log's last line that speaks of an error, else its last line."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or [None])[-1]


def _settle_dead_launches(root: Path, finished: str | None = None) -> None:
    """A run we launched whose trainer ended before training started (bad config, missing data): failed,
    with the log's last error. `finished` names a run whose trainer is known to have ended (the launcher's
    own follow-up tick, while the launcher process itself is still alive)."""
    for run in map(Run, runs.run_folders(root)):
        raw = run.raw_status()
        if raw.get("status") != "queued" or not raw.get("launcher_pid"):
            continue
        if run.name == finished or not procs.launcher_alive(run.path, raw):
            why = _log_tail(run) or "the training process ended before it started"
            run.write_status(status="failed", error=why, launcher_pid=None, launcher_start=None, ended=time.time())


def _launch(run: Run, root: Path) -> int:
    """Start `python -m mnistviz.train --resume NAME` detached; after it ends, the same shell ticks the queue."""
    py = sys.executable
    script = ('"$0" -m mnistviz.train --resume "$1" --runs-dir "$2" --no-progress; '
              'exec "$0" -m mnistviz.jobs tick --runs-dir "$2" --finished "$1"')
    log = open(run.path / LOG_FILE, "ab")
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", script, py, run.name, str(root)],
                                cwd=runs.PROJECT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    finally:
        log.close()
    with _children_lock:
        _children[proc.pid] = proc
    # the launch's identity (procs.identify): its pid and start time; its command line names the run and runs folder
    run.write_status(status="queued", launcher_pid=proc.pid, launcher_start=procs.start_time(proc.pid),
                     launched=time.time())
    return proc.pid


def tick(root=None, finished: str | None = None, finished_sweep: str | None = None,
         exit_code: int | None = None) -> str | None:
    """Start the next queued run (or sweep trial) if fewer than max_jobs() are training. Returns the queue entry
    started, or None. `finished`: a run whose training process has just ended (passed by the launcher);
    `finished_sweep`, `exit_code`: a sweep whose worker has just ended, and how."""
    root = runs.runs_dir(root)
    _reap()
    if not root.is_dir():
        return None
    with _locked(root):
        _settle_dead_launches(root, finished)
        _settle_sweeps(root, finished_sweep, exit_code)
        names, _ = _current_queue(root)
        # a range test waiting for its turn goes first: it takes seconds, and someone is watching the form for it
        if not names or _slots_taken(root) + len(lrfind_busy(root)) >= max_jobs():
            return None
        started, keep = None, []
        for name in names:
            if started is None:
                sweep_name = _sweep_name(name)
                if sweep_name is not None:
                    job = sweep_job(sweep_name, root)
                    if job and job["state"] == "queued":
                        _launch_sweep(root, sweep_name, job)
                        started = name
                    continue
                try:
                    run = runs.get_run(name, root)
                    ok = run.raw_status().get("status") == "queued"
                except RunError:
                    ok = False  # deleted or renamed meanwhile: drop it
                if ok:
                    _launch(run, root)
                    started = name
                continue
            keep.append(name)
        try:
            _write_queue(root, keep)
        except OSError:
            pass  # an unwritable queue file: the statuses say the same (_queued_runs); repair_queue tells the user
        return started


# ---------- what pages call ----------

def _enqueue(root: Path, names: list[str]) -> None:
    with _locked(root):
        q, _ = _current_queue(root)
        _write_queue(root, q + [n for n in names if n not in q])


def _check_ready(cfg: train.Config) -> None:
    errors = train.validate(cfg)
    if errors:
        raise RunError("; ".join(errors.values()))
    try:
        device.resolve(cfg.device)  # a device this machine lacks: said now, not as a failed run later
    except device.DeviceError as e:
        raise RunError(str(e)) from None
    if data.find_mnist() is None:  # the dashboard never downloads: say where the files go instead
        raise data.MNISTMissing(data.missing_message())


def submit(cfg: train.Config, root=None) -> Run:
    """Create the run (queued), put it at the end of the queue and start it if nothing is training.
    Raises RunError (invalid config, name taken, a queue that cannot be updated) or data.MNISTMissing; nothing
    is created then."""
    root = runs.runs_dir(root)
    _check_ready(cfg)
    if cfg.name and (root / cfg.name).exists():
        raise RunError(f"a run named {cfg.name!r} exists; pick another name")
    run = train.create_run(cfg, root)
    _enqueue_new(root, [run])
    tick(root)
    return run


def _enqueue_new(root: Path, made: list[Run]) -> None:
    """Queue runs just created; when the queue cannot be updated, remove them (never queued, never started)."""
    try:
        _enqueue(root, [r.name for r in made])
    except OSError as e:  # e.g. a runs folder that cannot be written
        for r in made:
            shutil.rmtree(r.path, ignore_errors=True)
        raise RunError(f"the training queue in {root} cannot be updated ({e}); nothing was launched") from None


def pair_augment(augment: str) -> str:
    """The augmentation of a pair's augmented half: the level asked for, or "standard" when that is "none"."""
    return augment if augment != "none" else "standard"


def pair_names(name: str, augment: str) -> tuple[str, str]:
    """The run names submit_pair gives a pair called `name`: (augmented, normal)."""
    return f"{name}-{pair_augment(augment)}", f"{name}-none"


def submit_pair(cfg: train.Config, root=None) -> tuple[Run, Run]:
    """The same config twice, with augmentation (cfg.augment, or "standard" if it is "none") and without,
    sharing one `pair` id; queued augmented first. Returns (augmented_run, normal_run)."""
    root = runs.runs_dir(root)
    pair = cfg.pair or f"pair-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    created = cfg.created or time.time()
    names = pair_names(cfg.name, cfg.augment) if cfg.name else (None, None)
    configs = [dataclasses.replace(cfg, augment=augment, pair=pair, name=name, created=created)
               for augment, name in zip((pair_augment(cfg.augment), "none"), names)]
    for c in configs:  # check both before creating either
        _check_ready(c)
        if c.name and (root / c.name).exists():
            raise RunError(f"a run named {c.name!r} exists; pick another name")
    made = []
    try:
        for c in configs:
            made.append(train.create_run(c, root))
    except RunError:  # lost a race for a name: leave no half pair behind (never queued, so never started)
        for r in made:
            shutil.rmtree(r.path, ignore_errors=True)
        raise
    _enqueue_new(root, made)
    tick(root)
    return made[0], made[1]


def stop(name: str, root=None) -> str:
    """Stop a run: a queued one leaves the queue (status stopped); a training one gets SIGTERM and
    checkpoints before it exits (status stopped, written by the trainer). Returns a sentence for the user."""
    root = runs.runs_dir(root)
    run = runs.get_run(name, root)
    with _locked(root):
        raw = run.raw_status()
        status = run.status().get("status")
        if status == "queued":
            _write_queue(root, [n for n in _current_queue(root)[0] if n != name])
            # launched, still starting, and the launch is ours (pid, start time, run): end it (trainer + shell)
            if procs.may_signal(run.path, raw, "launcher_pid"):
                try:
                    os.killpg(raw["launcher_pid"], signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
            run.write_status(status="stopped", launcher_pid=None, launcher_start=None, ended=time.time())
            msg = f"{name} removed from the queue."
        elif status == "running":
            pid = raw.get("pid")
            if not procs.may_signal(run.path, raw):  # not known to be this run's trainer: never signalled
                what = ("trains it inside another program, where SIGTERM would end that program"
                        if procs.is_trainer(run.path, raw) else "is not known to be its trainer")
                raise RunError(f"run {name} trains inside process {pid}, which {what}, so it is not signalled "
                               f"from here; stop it where it was started")
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            msg = f"Stopping {name}: it saves a checkpoint at the current step, then you can resume it."
        else:
            raise RunError(f"run {name} is {status}, not queued or running; nothing to stop")
    if status == "queued":
        tick(root)
    return msg


def resume(name: str, root=None) -> Run:
    """Queue a stopped, interrupted or failed run to continue from its last checkpoint (or from scratch if
    it never reached one)."""
    root = runs.runs_dir(root)
    run = runs.get_run(name, root)
    status = run.status().get("status")
    if status not in RESUMABLE:
        what = {"completed": "completed; there is nothing to resume",
                "queued": "already queued", "running": "still running"}.get(status, status)
        raise RunError(f"run {name} is {what}")
    cfg = train.Config.from_dict(run.config())
    _check_ready(cfg)
    run.write_status(status="queued", pid=None, pid_start=None, launcher_pid=None, launcher_start=None)
    _enqueue(root, [name])
    tick(root)
    return run


# ---------- sweeps in the queue ----------
# A sweep started from the dashboard waits in the same queue as runs, as the entry "sweep:NAME" (a run name has no
# ":"). Its launch is a sweep worker (sweep_work: `python -m mnistviz.jobs sweep-work`), whose trials are run folders
# like any other; it runs trials until none is left or something else waits in the queue. Then the launcher's
# follow-up tick puts the sweep at the end of the queue again while trials are left, so runs launched meanwhile take
# their turn between two trials, and a sweep alone in the queue pays for one worker's start, not one a trial. What the
# dashboard knows of a sweep it runs is <runs>/_sweepjobs/NAME.json: its state (SWEEP_STATES), its launch's pid and
# start time (as a run's launcher_pid), the storage URL when it is not the default, and the last error.

SWEEP_PREFIX = "sweep:"
SWEEP_DIR = "_sweepjobs"
SWEEP_STATES = ("queued", "running", "stopped", "interrupted", "failed", "done")


def sweep_entry(name: str) -> str:
    return SWEEP_PREFIX + name


def _sweep_name(entry: str) -> str | None:
    return entry[len(SWEEP_PREFIX):] if entry.startswith(SWEEP_PREFIX) else None


def sweep_job(name: str, root=None) -> dict | None:
    """The dashboard's record of sweep `name` in this runs folder, or None when it never ran it here."""
    root = runs.runs_dir(root)
    try:
        job = runs.read_json(root / SWEEP_DIR / f"{runs.check_name(name)}.json")
    except (OSError, ValueError, RunError):
        return None
    return job if isinstance(job, dict) and job.get("state") in SWEEP_STATES else None


def sweep_jobs(root=None) -> list[dict]:
    """The dashboard's records of the sweeps it ran in this runs folder."""
    root = runs.runs_dir(root)
    d = root / SWEEP_DIR
    return [j for j in (sweep_job(p.stem, root) for p in sorted(d.glob("*.json")) if d.is_dir()) if j]


def _sweep_jobs(root: Path, state: str) -> list[str]:
    d = root / SWEEP_DIR
    names = sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []
    return [n for n in names if (sweep_job(n, root) or {}).get("state") == state]


def _write_job(root: Path, name: str, **fields) -> dict:
    (root / SWEEP_DIR).mkdir(exist_ok=True)
    job = {**(sweep_job(name, root) or {}), **fields, "sweep": name, "updated": time.time()}
    # a storage URL with a password in it: the record is this user's alone (a runs folder others can read)
    secret = bool(job.get("storage")) and sweep.masked(job["storage"]) != job["storage"]
    runs.atomic_write_json(root / SWEEP_DIR / f"{name}.json", job, private=secret)
    return job


def _sweep_launch_alive(root: Path, job: dict) -> bool:
    # the launch's command line names the sweep and the runs folder, as a run's launch names the run
    return bool(job.get("launcher_pid")) and procs.launcher_alive(root / job["sweep"], job)


def _slots_taken(root: Path) -> int:
    """Trainings running or starting: the runs (running()), and each sweep whose worker is alive but whose trial's
    trainer is not among them (starting, or between two trials)."""
    busy = running(root)
    training_sweeps = set()
    for n in busy:
        try:
            training_sweeps.add(Run(root / n).config().get("sweep"))
        except RunError:
            pass
    return len(busy) + sum(1 for n in _sweep_jobs(root, "running") if n not in training_sweeps
                           and _sweep_launch_alive(root, sweep_job(n, root) or {}))


def _sweep_after_worker(root: Path, name: str, job: dict, code: int | None) -> dict:
    """A sweep's worker ended with exit status `code`: what the sweep's state is now."""
    if code == 0:
        try:
            st = sweep.status(name, root, job.get("storage"))
        except sweep.SweepError as e:
            return {"state": "failed", "error": str(e)}
        taken = st["finished"] + sum(e["state"] == "running" and not e.get("worker_gone") for e in st["trials"])
        return {"state": "queued" if taken < st["planned"] else "done", "error": None}
    if code == 1:  # SIGTERM or Ctrl-C: its trial checkpointed and waits in the study to be resumed
        return {"state": "stopped", "error": None}
    if code == 2:
        return {"state": "failed", "error": _log_tail_of(root / SWEEP_DIR / f"{name}.log") or "bad input"}
    return {"state": "interrupted", "error": f"its worker ended without saying so (exit status {code}: killed?)"}


def _settle_sweeps(root: Path, finished: str | None, code: int | None) -> None:
    """Call under _locked(root). The sweep whose worker just ended (the launcher's follow-up) goes on, ends or fails;
    a running sweep whose launch is gone unannounced (its shell killed too) is interrupted; Resume continues both."""
    for name in _sweep_jobs(root, "running"):
        job = sweep_job(name, root) or {}
        if name == finished:
            job = _write_job(root, name, launcher_pid=None, launcher_start=None,
                             **_sweep_after_worker(root, name, job, code))
            if job["state"] == "queued":
                q, _ = _current_queue(root)
                _write_queue(root, q + [sweep_entry(name)])
        elif not _sweep_launch_alive(root, job):
            _write_job(root, name, state="interrupted", launcher_pid=None, launcher_start=None,
                       error="its worker ended without saying so (killed, or the machine restarted)")


def _launch_sweep(root: Path, name: str, job: dict) -> None:
    """Start one trial of the sweep, detached; after it ends, the same shell ticks the queue with its exit status.
    A storage URL given in the dashboard goes through the environment, not the command line (which `ps` shows)."""
    script = ('"$0" -m mnistviz.jobs sweep-work --sweep "$1" --runs-dir "$2"; '
              'exec "$0" -m mnistviz.jobs tick --runs-dir "$2" --finished-sweep "$1" --exit-code "$?"')
    env = {**os.environ, **({"MNISTVIZ_SWEEP_STORAGE": job["storage"]} if job.get("storage") else {})}
    with open(root / SWEEP_DIR / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(["/bin/sh", "-c", script, sys.executable, name, str(root)], cwd=runs.PROJECT,
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    with _children_lock:
        _children[proc.pid] = proc
    _write_job(root, name, state="running", launcher_pid=proc.pid, launcher_start=procs.start_time(proc.pid),
               launched=time.time(), error=None)


def sweep_work(name: str, root=None) -> int:
    """The queue's sweep worker: trials of sweep `name` until none is left, SIGTERM (the trial checkpoints and goes
    back into the study), or another entry waits in the queue (after at least one trial). Its exit status: 0, 1
    (stopped), 2 (bad input: the reason on stderr)."""
    root = runs.runs_dir(root)
    stop = procs.StopRequested()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        sweep.work(name, root, stop=stop, until=lambda: bool(queue(root)))
    except sweep.SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if stop.is_set() else 0


def submit_sweep(name: str, storage: str | None = None, root=None) -> dict:
    """Queue sweep `name` (made with sweep.create, in `storage` or the default one) to run its trials here, one per
    turn of the queue. Also continues a stopped, interrupted, failed or finished one. Returns its record."""
    root = runs.runs_dir(root)
    runs.check_name(name)
    if data.find_mnist() is None:
        raise data.MNISTMissing(data.missing_message())
    with _locked(root):
        job = sweep_job(name, root)
        if job and job["state"] in ("queued", "running"):
            raise RunError(f"sweep {name} is {job['state']} already")
        keep = job.get("storage") if job and storage is None else storage
        job = _write_job(root, name, state="queued", storage=keep, error=None, launcher_pid=None,
                         launcher_start=None)
        q, _ = _current_queue(root)
        _write_queue(root, q + [sweep_entry(name)])
    tick(root)
    return job


def stop_sweep(name: str, root=None) -> str:
    """Stop sweep `name` here: out of the queue if it waits; else its launch (shell, worker, trainer) gets SIGTERM:
    the trainer checkpoints, the worker puts the trial back in the study to resume. A sentence for the user."""
    root = runs.runs_dir(root)
    with _locked(root):
        job = sweep_job(name, root)
        if not job or job["state"] not in ("queued", "running"):
            raise RunError(f"sweep {name} is {job['state'] if job else 'not run from here'}; nothing to stop")
        if job["state"] == "queued":
            _write_queue(root, [n for n in _current_queue(root)[0] if n != sweep_entry(name)])
            _write_job(root, name, state="stopped")
            return f"Sweep {name} removed from the queue; Resume puts it back."
        _write_job(root, name, state="stopped")  # first: the launch's follow-up tick must not queue it again
        if procs.may_signal(root / name, job, "launcher_pid"):
            try:
                os.killpg(job["launcher_pid"], signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
    return (f"Stopping sweep {name}: its current trial saves a checkpoint and goes back into the study; Resume "
            f"continues the sweep from there.")


# ---------- learning-rate range tests (mnistviz.lrfind): short jobs that take turns with the trainings ----------
# Each is a folder <runs>/_lrfind/ID (request.json, status.json, result.json), started at once as its own detached
# process, which waits while a training runs (lrfind_turn); trainings queued meanwhile wait for it (tick).

LRFIND_DIR = "_lrfind"
LRFIND_KEEP = 20  # the newest range tests kept; older folders are removed by the next submit
LRFIND_REQUEST, LRFIND_RESULT = "request.json", "result.json"


def lrfind_dir(root=None) -> Path:
    return runs.runs_dir(root) / LRFIND_DIR


def lrfind_job(job_id: str, root=None) -> Run:
    """The range test `job_id` (a Run over its folder: status.json as a run's). RunError for a bad or unknown id."""
    path = lrfind_dir(root) / runs.check_name(job_id)
    if not path.is_dir():
        raise RunError(f"no learning-rate range test {job_id!r} (removed, or made with another runs folder)")
    return Run(path)


def _lrfind_alive(job: Run, raw: dict) -> bool:
    return raw.get("status") in ("queued", "running") and procs.launcher_alive(job.path, raw)


def lrfind_busy(root=None, status: str | None = None) -> list[str]:
    """The range tests waiting or running (with `status`: only those in it) whose process is alive."""
    folder = lrfind_dir(root)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.iterdir()):
        job = Run(path)
        raw = job.raw_status() if path.is_dir() else {}
        if (status is None or raw.get("status") == status) and _lrfind_alive(job, raw):
            out.append(path.name)
    return out


def lrfind_turn(root, job: Run) -> str | None:
    """Called by a waiting range test: when nothing trains and no other test runs, mark it running (under the
    queue's lock, so a tick cannot start a training meanwhile) and return None; else what it waits for."""
    root = runs.runs_dir(root)
    with _locked(root):
        training = running(root)
        if training:
            return training[0]
        other = [j for j in lrfind_busy(root, "running") if j != job.name]
        if other:
            return f"range test {other[0]}"
        job.write_status(status="running", started=time.time(), behind=None)
        return None


def submit_lrfind(cfg: train.Config, steps: int, start_lr: float, end_lr: float, root=None) -> Run:
    """Start a range test of `cfg` as a detached process (`python -m mnistviz.jobs lrfind --job ID`, run_lrfind); it
    waits behind a training. Returns its job (a Run over its folder). RunError (bad settings) or data.MNISTMissing."""
    root = runs.runs_dir(root)
    problem = lrfind.check(steps, start_lr, end_lr) or "; ".join(lrfind.config_problems(cfg).values())
    if problem:
        raise RunError(problem)
    if data.find_mnist() is None:
        raise data.MNISTMissing(data.missing_message())
    folder = lrfind_dir(root)
    _prune_lrfind(folder)
    job = Run(folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}")
    try:
        job.path.mkdir(parents=True)
        runs.atomic_write_json(job.path / LRFIND_REQUEST, {"config": dataclasses.asdict(cfg), "steps": steps,
                                                    "start_lr": start_lr, "end_lr": end_lr})
        job.write_status(status="queued", submitted=time.time())
        log = open(job.path / LOG_FILE, "ab")
    except OSError as e:
        shutil.rmtree(job.path, ignore_errors=True)
        raise RunError(f"the range test cannot be started: {runs.write_error(e, job.path)}") from None
    with log, _locked(root):  # no tick between the start and the status that makes it count as busy
        proc = subprocess.Popen([sys.executable, "-m", "mnistviz.jobs", "lrfind", "--job", job.name, "--jobs-dir",
                                 str(folder)], cwd=runs.PROJECT, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        with _children_lock:
            _children[proc.pid] = proc
        job.write_status(launcher_pid=proc.pid, launcher_start=procs.start_time(proc.pid))
    return job


def run_lrfind(path: Path, stop: procs.StopRequested) -> int:
    """The range test in folder `path` (its own process): wait for the turn (lrfind_turn), run it, write result.json
    (atomically, as it goes) and the status (done, stopped, failed); then move the training queue on. Exit code."""
    job, root = Run(path), path.parent.parent
    try:
        req = runs.read_json(path / LRFIND_REQUEST)
        cfg = train.Config.from_dict(req["config"])
        while (behind := lrfind_turn(root, job)) is not None:
            job.write_status(status="queued", behind=behind, heartbeat=time.time())
            if stop.event.wait(1.0):
                job.write_status(status="stopped", ended=time.time())
                return 0
        save = (lambda r: runs.atomic_write_json(path / LRFIND_RESULT, r))
        result = lrfind.range_test(cfg, req["steps"], req["start_lr"], req["end_lr"], stop=stop, progress=save)
        save(result)
        job.write_status(status="done" if result["ended"] != "stopped" else "stopped", ended=time.time())
        return 0
    except (RunError, data.MNISTMissing, OSError, KeyError, TypeError, ValueError) as e:
        job.write_status(status="failed", error=f"{type(e).__name__}: {e}" if isinstance(e, KeyError) else str(e),
                         ended=time.time())
        return 1
    finally:
        try:
            tick(root)  # trainings that queued meanwhile waited for this test
        except (RunError, OSError):
            pass  # a queue that cannot be updated: the pages say so, and their next tick starts it


def lrfind_state(job: Run) -> dict:
    """status.json of a range test, its status "interrupted" (with why) when its process is gone unfinished."""
    raw = job.raw_status()
    if raw.get("status") in ("queued", "running") and not _lrfind_alive(job, raw):
        raw = {**raw, "status": "interrupted", "error": _log_tail(job) or "the range test's process ended early"}
    return raw


def stop_lrfind(job: Run) -> None:
    """SIGTERM to a range test's process, when it is ours (procs.may_signal); it saves what it found and ends."""
    raw = job.raw_status()
    if _lrfind_alive(job, raw) and procs.may_signal(job.path, raw, "launcher_pid"):
        try:
            os.kill(raw["launcher_pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass


def _prune_lrfind(folder: Path) -> None:
    if not folder.is_dir():
        return
    for path in sorted(p for p in folder.iterdir() if p.is_dir())[:-(LRFIND_KEEP - 1)]:  # names sort by time
        job = Run(path)
        if not _lrfind_alive(job, job.raw_status()):
            shutil.rmtree(path, ignore_errors=True)


# ---------- CLI: the launcher's follow-up, and a look at the queue ----------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mnistviz.jobs", description="The dashboard's training queue.")
    p.add_argument("command", choices=("tick", "status", "sweep-work", "lrfind"),
                   help="tick: start the next queued run if nothing is training; status: print queue and active run; "
                        "sweep-work: the queue's worker of a sweep (--sweep NAME); "
                        "lrfind: a range test submitted by the dashboard (submit_lrfind)")
    p.add_argument("--sweep", help="sweep-work: the sweep's name")
    p.add_argument("--runs-dir", help="runs folder (default: $MNISTVIZ_RUNS or checkpoints/)")
    p.add_argument("--finished", help=argparse.SUPPRESS)  # the launcher: this run's trainer has ended
    p.add_argument("--finished-sweep", help=argparse.SUPPRESS)  # ... this sweep's worker has ended
    p.add_argument("--exit-code", type=int, help=argparse.SUPPRESS)  # ... with this exit status
    p.add_argument("--job", help=argparse.SUPPRESS)       # lrfind: the range test's folder name ...
    p.add_argument("--jobs-dir", help=argparse.SUPPRESS)  # ... in this folder (<runs>/_lrfind)
    args = p.parse_args(argv)
    if args.command == "lrfind":
        stop = procs.StopRequested()  # SIGTERM (Cancel, jobs.stop_lrfind): it saves what it found and ends
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        return run_lrfind(Path(args.jobs_dir) / args.job, stop)
    if args.command == "tick":
        started = tick(args.runs_dir, finished=args.finished, finished_sweep=args.finished_sweep,
                       exit_code=args.exit_code)
        print(json.dumps({"started": started}))
    elif args.command == "sweep-work":
        if not args.sweep:
            p.error("sweep-work needs --sweep NAME")
        return sweep_work(args.sweep, args.runs_dir)
    else:
        print(json.dumps({"active": active(args.runs_dir), "queue": queue(args.runs_dir)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
