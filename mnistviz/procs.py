"""Which process a run folder's status.json points at, and whether it is still ours: the trainer (pid) and the
dashboard's launch of it (launcher_pid). A pid from an old status.json may belong to an unrelated process by now
(the trainer was killed, the pid reused, e.g. after a container restart), so liveness alone is not enough.

A "running" run counts as running while its pid is alive AND that process is our trainer (its command line runs
mnistviz.train), or, where that cannot be told (no /proc, or training inside another program such as a notebook),
while its heartbeat is younger than HEARTBEAT_STALE_S. The trainer beats during steps (every train.BEAT_S) but not
while it evaluates and checkpoints at an epoch's end, which can take long for a big model: the command line is the
primary signal, so a healthy `python -m mnistviz.train` is never declared dead however long that takes.
"""
from __future__ import annotations

import math
import os
import time

HEARTBEAT_STALE_S = 120
TRAINER_MARKS = ("mnistviz.train", "mnistviz/train.py")


def pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is dead for us
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def pid_cmdline(pid) -> list[str] | None:
    """The arguments process `pid` was started with, or None when they cannot be read (no /proc)."""
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except (OSError, TypeError, ValueError):
        return None


def is_trainer(pid) -> bool | None:
    """Is process `pid` alive and running mnistviz.train? True / False, or None when it is alive but its
    command line cannot be read."""
    if not pid_alive(pid):
        return False
    args = pid_cmdline(pid)
    if args is None:
        return None
    return any(mark in a for a in args for mark in TRAINER_MARKS)


def _finite(v) -> bool:
    """A number that is not NaN or infinite (an int of any size is finite: no float conversion)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (isinstance(v, int) or math.isfinite(v))


def heartbeat_fresh(st: dict, now: float | None = None) -> bool:
    """status.json was written by its trainer less than HEARTBEAT_STALE_S ago ("heartbeat", else "updated")."""
    beats = [v for v in (st.get("heartbeat"), st.get("updated")) if _finite(v)]
    return bool(beats) and (now or time.time()) - max(beats) < HEARTBEAT_STALE_S


def trainer_running(st: dict) -> bool:
    """A status.json's pid is alive and is our trainer: its command line runs mnistviz.train, or (where that
    cannot be read, or it trains inside another program) its heartbeat is fresh."""
    pid = st.get("pid")
    # the heartbeat first: fresh while a run trains, so the command line is read only when it is stale (an epoch
    # end's evaluation) or the pid is not ours
    return pid_alive(pid) and (heartbeat_fresh(st) or is_trainer(pid) is True)


def trainer_gone(st: dict) -> str | None:
    """Why the trainer of a status.json that says running is gone, in a sentence; None while it trains."""
    if trainer_running(st):
        return None
    why = "the training process ended without saying so (killed or crashed)"
    if pid_alive(st.get("pid")):
        why += f"; its process id {st['pid']} now belongs to another program"
    return why


def launcher_alive(name: str, st: dict) -> bool:
    """The launch of run `name` (jobs' `sh -c ... mnistviz.train ...`, later `python -m mnistviz.jobs tick
    --finished NAME`) is still alive: the pid lives and its command line names the run and mnistviz, so a pid
    reused by an unrelated process is not taken for it. Where the command line cannot be read: pid liveness."""
    pid = st.get("launcher_pid")
    if not pid_alive(pid):
        return False
    args = pid_cmdline(pid)
    return args is None or (name in args and any("mnistviz" in a for a in args))


def in_use(name: str, st: dict) -> bool:
    """Run `name`, whose status.json is `st`, is training (our trainer alive) or starting (its launch alive)."""
    if st.get("status") == "running":
        return trainer_running(st)
    if st.get("status") == "queued":
        return launcher_alive(name, st)
    return False
