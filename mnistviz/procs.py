"""Which process a run folder's status.json points at, and whether it is still ours: the trainer (pid) and the
dashboard's launch of it (launcher_pid). A pid from an old status.json may belong to an unrelated process by now
(the trainer was killed, the pid reused, e.g. after a container restart), and a copied run folder (`cp -r a b`)
names a's trainer in b's status.json: liveness, or a command line that mentions mnistviz, is not enough.

identify() is the one check, used by Stop, delete, the queue and "running": a process is this run's trainer (OURS)
only if its pid, its start time (recorded in status.json as pid_start: /proc/PID/stat's starttime, or psutil's
create_time where there is no /proc) and the run folder it holds all match. The trainer holds its run folder by an
exclusive flock on the folder's LOCK_NAME for its whole life (hold_run); "holds" is read from the process's open
files (/proc/PID/fd), or where those cannot be read, from the run_dir it recorded. The launch (launcher_pid,
launcher_start) holds no lock: its command line names the run and the runs folder it launches.

A status.json that records no start time (written by an older version, or by training inside another program such
as a notebook) cannot be checked: such a process (UNKNOWN) counts as training while its heartbeat is fresh or its
command line is `python -m mnistviz.train`, and is never signalled. A trainer the check confirms is running however
long it goes without a beat (an epoch end's evaluation of a big model can take minutes).
"""
from __future__ import annotations

import errno
import fcntl
import math
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

HEARTBEAT_STALE_S = 120
HEARTBEAT_AHEAD_S = 5  # a heartbeat further in the future than this is stale (a clock jump, a hand edit)
TRAINER_MARKS = ("mnistviz.train", "mnistviz/train.py")
LOCK_NAME = ".lock"  # in the run folder: flock'ed by its trainer while it lives

OURS, OTHER, UNKNOWN, GONE = "ours", "other", "unknown", "gone"
START_KEYS = {"pid": "pid_start", "launcher_pid": "launcher_start"}
# what status.json records with each pid, about that pid: stale once another pid is written without them
IDENTITY = {"pid": ("pid_start", "run_dir", "sigterm_stops"), "launcher_pid": ("launcher_start",)}
HAS_PROC = os.path.isdir("/proc/self")


def pid_alive(pid) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is dead for us
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _psutil():
    try:
        import psutil
        return psutil
    except ImportError:
        return None


def start_time(pid) -> int | float | None:
    """When process `pid` started: /proc/PID/stat's field 22 (starttime, clock ticks since boot), or psutil's
    create_time (seconds) where there is no /proc; None when it cannot be read (no such process, no way to tell)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    if HAS_PROC:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return int(f.read().rsplit(")", 1)[1].split()[19])  # fields after "(comm)" start at field 3
        except (OSError, IndexError, ValueError):
            return None
    ps = _psutil()
    if ps is None:
        return None
    try:
        return ps.Process(pid).create_time()
    except Exception:  # NoSuchProcess, AccessDenied, ...
        return None


def pid_cmdline(pid) -> list[str] | None:
    """The arguments process `pid` was started with, or None when they cannot be read."""
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except (OSError, TypeError, ValueError, OverflowError):
        pass
    ps = None if HAS_PROC else _psutil()
    if ps is not None:
        try:
            return list(ps.Process(int(pid)).cmdline())
        except Exception:
            return None
    return None


def _holds(pid: int, path: Path, st: dict) -> bool | None:
    """Does process `pid` hold run folder `path` (have its lock file open)? None when that cannot be told."""
    lock = path / LOCK_NAME
    try:
        want = os.stat(lock)
    except OSError:
        return False  # no lock file: no trainer ever held this folder (a copy without it)
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        fds = None
    if fds is not None:
        for fd in fds:
            try:
                s = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if (s.st_dev, s.st_ino) == (want.st_dev, want.st_ino):
                return True
        return False
    ps = None if HAS_PROC else _psutil()
    if ps is not None:
        try:
            real = os.path.realpath(lock)
            return any(os.path.realpath(f.path) == real for f in ps.Process(pid).open_files())
        except Exception:
            pass
    # the open files cannot be read: the folder the trainer said it holds
    return st.get("run_dir") == os.path.realpath(path) if st.get("run_dir") else None


def _launches(args: list[str] | None, path: Path) -> bool | None:
    """Is a command line jobs' launch of run folder `path`: its arguments name the run and its runs folder
    (`sh -c ... NAME ROOT`, later `python -m mnistviz.jobs tick --runs-dir ROOT --finished NAME`)?"""
    if args is None:
        return None
    root = os.path.realpath(path.parent)
    return path.name in args and any(a == root or (a.startswith("/") and os.path.realpath(a) == root)
                                     for a in args)


def identify(path, st: dict, key: str = "pid") -> str:
    """Whose is process st[key] (key "pid": the trainer; "launcher_pid": the dashboard's launch) for the run folder
    `path`? OURS: it is this run's (safe to signal); OTHER: alive, but its start time or the folder it holds is not
    the one recorded (a reused pid, a copied folder); GONE: no such process; UNKNOWN: alive, but status.json records
    no start time (an older version, training inside another program), or nothing can be read on this system."""
    pid = st.get(key)
    if not pid_alive(pid):
        return GONE
    path = Path(path)
    recorded = st.get(START_KEYS[key])
    if recorded is None or isinstance(recorded, bool) or not isinstance(recorded, (int, float)):
        if key == "pid" and _holds(pid, path, {}) is True:
            return OURS  # an older trainer does not record its start: holding this very folder's lock is enough
        return UNKNOWN
    now = start_time(pid)
    if now is None:
        return UNKNOWN  # no /proc, no psutil: cannot be told
    if not math.isclose(now, recorded, rel_tol=0, abs_tol=1e-3):
        return OTHER  # the pid was reused: another process
    if key == "pid":
        holds = _holds(pid, path, st)
    else:
        holds = _launches(pid_cmdline(pid), path)
    if holds is None:
        return UNKNOWN
    return OURS if holds else OTHER


def _finite(v) -> bool:
    """A number that is not NaN or infinite (an int of any size is finite: no float conversion)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (isinstance(v, int) or math.isfinite(v))


def heartbeat_fresh(st: dict, now: float | None = None) -> bool:
    """status.json was written by its trainer less than HEARTBEAT_STALE_S ago ("heartbeat", else "updated"), and
    not more than HEARTBEAT_AHEAD_S in the future: a beat from the future (a clock jump, a hand edit) would keep a
    dead run alive for ever."""
    beats = [v for v in (st.get("heartbeat"), st.get("updated")) if _finite(v)]
    if not beats:
        return False
    age = (now or time.time()) - max(beats)
    return -HEARTBEAT_AHEAD_S <= age < HEARTBEAT_STALE_S


def _runs_trainer(args: list[str] | None) -> bool:
    """A command line that is `python -m mnistviz.train ...` (the argument pair, not a substring anywhere)."""
    return bool(args) and any(a == "-m" and b == "mnistviz.train" for a, b in zip(args, args[1:]))


def trainer_running(path, st: dict) -> bool:
    """The trainer status.json names trains run folder `path`: identify() says it is ours; or, where that cannot be
    told (UNKNOWN), its heartbeat is fresh or it runs `python -m mnistviz.train`."""
    who = identify(path, st, "pid")
    if who == OURS:
        return True
    return who == UNKNOWN and (heartbeat_fresh(st) or _runs_trainer(pid_cmdline(st.get("pid"))))


def trainer_gone(path, st: dict) -> str | None:
    """Why the trainer of a status.json that says running is gone, in a sentence; None while it trains."""
    if trainer_running(path, st):
        return None
    why = "the training process ended without saying so (killed or crashed)"
    if pid_alive(st.get("pid")):
        why += f"; its process id {st['pid']} now belongs to another program"
    return why


def launcher_alive(path, st: dict) -> bool:
    """The launch of run folder `path` (jobs' `sh -c ... mnistviz.train ...`, later `python -m mnistviz.jobs tick
    --finished NAME`) is still alive: identify() says it is ours; or, for a status.json without its start time,
    the pid lives and its command line names the run and mnistviz."""
    who = identify(path, st, "launcher_pid")
    if who == OURS:
        return True
    if who != UNKNOWN:
        return False
    args = pid_cmdline(st.get("launcher_pid"))
    return args is None or (Path(path).name in args and any("mnistviz" in a for a in args))


def is_trainer(path, st: dict) -> bool:
    """Process st["pid"] is run folder `path`'s trainer, as far as can be told (identify() says OURS)."""
    return identify(path, st, "pid") == OURS


def may_signal(path, st: dict, key: str = "pid") -> bool:
    """May Stop send SIGTERM to process st[key]? Only when identify() says it is this run's: the trainer also when
    SIGTERM is known to stop it (sigterm_stops: the CLI's handler, not a notebook's kernel). Where nothing can be
    read (no /proc, no psutil), as before identities existed: a live pid."""
    who = identify(path, st, key)
    if who == UNKNOWN and not HAS_PROC and _psutil() is None:
        return True
    return who == OURS and (key != "pid" or st.get("sigterm_stops") is True)


def in_use(path, st: dict) -> bool:
    """Run folder `path`, whose status.json is `st`, is training (our trainer alive) or starting (its launch alive)."""
    if st.get("status") == "running":
        return trainer_running(path, st)
    if st.get("status") == "queued":
        return launcher_alive(path, st)
    return False


# ---------- the run folder's lock ----------

class RunHeld(Exception):
    """Another process holds the run folder's lock: it is training it. str() says which pid."""

    def __init__(self, name: str, pid: int | None):
        self.pid = pid
        super().__init__(f"run {name} is being trained by pid {pid}" if pid else
                         f"run {name} is being trained by another process")


_held: dict[str, list] = {}  # real path -> [fd, count]: this process's holds (train_run inside main's)
_held_lock = threading.Lock()


def _holder(fd: int) -> int | None:
    """The pid the holder wrote into the lock file (just after it took the lock: give it a moment)."""
    for _ in range(50):
        try:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.02)
    return None


class StopRequested:
    """Set by SIGTERM / SIGINT or by a caller: the training loop (or a sweep worker's trial) checkpoints and exits at
    the next step. Here, not in train, so that a sweep worker uses it without importing torch."""
    def __init__(self):
        self.event = threading.Event()

    def __call__(self, *_):
        self.event.set()

    def is_set(self):
        return self.event.is_set()


@contextmanager
def hold_run(path):
    """Hold run folder `path` for training: an exclusive flock on its LOCK_NAME, holding our pid, until the block
    ends (the kernel drops it when the process dies, however it dies). Re-entrant within this process. Raises
    RunHeld, without touching the folder otherwise, when another process holds it."""
    key = os.path.realpath(path)
    with _held_lock:
        if key in _held:
            _held[key][1] += 1
        else:
            # 0o666: a normal file under the umask, like every run file
            fd = os.open(os.path.join(key, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                pid = _holder(fd) if e.errno in (errno.EAGAIN, errno.EACCES) else None
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise RunHeld(Path(key).name, pid) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            _held[key] = [fd, 1]
    try:
        yield
    finally:
        with _held_lock:
            _held[key][1] -= 1
            if not _held[key][1]:
                fd = _held.pop(key)[0]
                os.close(fd)  # closing drops the flock


def identity_fields(path, sigterm_stops: bool) -> dict:
    """What a trainer records about itself in status.json, for identify(): its pid and start time, the folder it
    holds, and whether SIGTERM stops it (the CLI's handler; a notebook's kernel would just die of it)."""
    pid = os.getpid()
    return {"pid": pid, "pid_start": start_time(pid), "run_dir": os.path.realpath(path),
            "sigterm_stops": bool(sigterm_stops)}
