"""The run store: one folder per run under checkpoints/ (or $MNISTVIZ_RUNS), the single source of truth.

A run folder holds
  config.json        the training config (see train.Config)
  status.json        queued / running / completed / stopped / failed / interrupted, pid, heartbeat, progress
  metrics.jsonl      append-only; step records carry "step", epoch records carry "epoch"
  last.pt            model + optimizer + scheduler + RNG state, for --resume
  best.pt            model weights at the best test accuracy so far
  test_labels.npy    the 10,000 test labels (uint8), so analysis needs no MNIST files
  preds/epoch_NNN.npy  float16 class probabilities for the 10,000 test images after epoch NNN

Every file except metrics.jsonl is written whole to a temp file in the same folder and renamed over
the old one, so a crash mid-write leaves the previous version. metrics.jsonl is appended one line per
write; a reader skips a torn last line.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

# process identity lives in procs; re-exported here, where pages, jobs and tests have long found it
from .procs import (HEARTBEAT_STALE_S, TRAINER_MARKS, heartbeat_fresh, in_use, is_trainer,  # noqa: F401
                    launcher_alive, pid_alive, pid_cmdline, trainer_gone, trainer_running)

PROJECT = Path(__file__).resolve().parent.parent
STATUSES = ("queued", "running", "completed", "stopped", "failed", "interrupted", "pruned")
ACTIVE = ("queued", "running")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # in full (fullmatch): "$" lets "abc\n" through


EPOCH_WEIGHTS = "epochs"  # a run's per-epoch weights, when it keeps them: epochs/epoch_NNN.pt ({"model": ...})

class RunError(ValueError):
    """A problem with a run the user can fix (bad name, missing or broken folder); str() says what."""


def runs_dir(override: str | os.PathLike | None = None) -> Path:
    d = override or os.environ.get("MNISTVIZ_RUNS") or (PROJECT / "checkpoints")
    return Path(d).expanduser().resolve()


def check_name(name: str) -> str:
    """A run name is one folder name: letters, digits, '.', '_', '-'; nothing that leaves the runs folder."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        raise RunError(f"invalid run name {name!r}: use 1-100 letters, digits, '.', '_' or '-', "
                       f"starting with a letter or digit")
    return name


def run_path(name: str, root: Path | None = None) -> Path:
    root = runs_dir(root)
    path = (root / check_name(name)).resolve()
    if path.parent != root:
        raise RunError(f"run name {name!r} would leave the runs folder")
    return path


# ---------- atomic writes ----------

class WriteError(OSError):
    """A run file that could not be written (a full disk, a read-only folder...). Its errno is the OSError's;
    str() is one sentence naming the folder and the file, without errno or traceback noise."""

    def __str__(self):
        return self.strerror


def write_error(e: OSError, path) -> WriteError:
    """e, raised while writing `path`, as a WriteError saying so in one sentence."""
    if isinstance(e, WriteError):
        return e
    path = Path(path)
    folder, name = path.parent, path.name
    if e.errno == errno.ENOSPC:
        msg = f"no space left on the device holding {folder} while writing {name}"
    elif e.errno == errno.EDQUOT:
        msg = f"disk quota exceeded on the device holding {folder} while writing {name}"
    elif e.errno == errno.EROFS:
        msg = f"{folder} is on a read-only file system: cannot write {name} there"
    elif e.errno in (errno.EACCES, errno.EPERM):
        msg = f"no permission to write {name} in {folder}"
    else:
        msg = f"cannot write {name} in {folder} ({e.strerror or e})"
    return WriteError(e.errno, msg.replace("\n", "\\n"), str(path))


def file_mode() -> int:
    """The mode of a normal new file under this process's umask (0o666 & ~umask): every run file gets it, the
    atomically written ones (mkstemp makes them 0o600) like metrics.jsonl (opened with 0o666)."""
    try:  # Linux: read it, rather than set and reset the process-wide umask while other threads create files
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


class _Recorded:
    """A file object that keeps the OSError of a failed write: torch.save turns it into a RuntimeError such as
    "unexpected pos 704 vs 598", which says nothing about a full disk."""

    def __init__(self, f):
        self._f, self.error = f, None

    def write(self, b):
        try:
            return self._f.write(b)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


def atomic_write_bytes(path: Path, data: bytes, private: bool = False) -> None:
    atomic_save(lambda f: f.write(data), path, private)


def atomic_write_json(path: Path, obj, private: bool = False) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode(), private)


def atomic_save(write, path: Path, private: bool = False) -> None:
    """Call write(file_object) into a temp file beside path, then rename it over path. A failed write (a full
    disk...) raises WriteError, leaving the old file as it was and no temp file. `private`: readable by this user only
    (0o600: a secret in it), else the umask's mode."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_error(e, path) from e
    try:
        os.fchmod(fd, 0o600 if private else file_mode())
        with os.fdopen(fd, "wb") as raw:
            f = _Recorded(raw)
            try:
                write(f)
            except Exception:
                if f.error is not None:
                    raise f.error from None
                raise
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise write_error(e, path) from e
        raise


def append_jsonl(path: Path, records: list[dict]) -> None:
    if not records:
        return
    data = memoryview("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask applies, as to any new file
    except OSError as e:
        raise write_error(e, path) from None
    try:
        size = os.fstat(fd).st_size
        while data:  # a write can be short (a disk filling up): the rest, until it fails
            data = data[os.write(fd, data):]
    except OSError as e:
        try:
            os.ftruncate(fd, size)  # no torn line left behind: the next append starts a line of its own
        except OSError:
            pass
        raise write_error(e, path) from None
    finally:
        os.close(fd)


# path -> (device, inode, bytes read, their last bytes, records, bad line numbers, lines read) of the complete
# lines read so far. The live view reads a run's metrics.jsonl every second while it grows (a 50-epoch run's is
# hundreds of KB, costly to parse each time): only the lines appended since are parsed. A file replaced (truncate_metrics writes a
# new one: another inode), shorter than what was read, or rewritten in place (its bytes before the end read differ)
# is read again from the start.
_JSONL: dict[str, tuple] = {}
_JSONL_LOCK = threading.Lock()
_EDGE = 64  # bytes compared to tell an appended file from a rewritten one


def _parse_jsonl_line(line: bytes):
    try:
        rec = json.loads(line)
    except ValueError:
        return None  # a torn line from a crash mid-append, or a damaged one
    return rec if isinstance(rec, dict) else None


def read_jsonl(path: Path, bad: list | None = None) -> list[dict]:
    """The JSON objects of a .jsonl file, one a line; a torn line (crash mid-append) or a line that is valid
    JSON but not an object (42, [1, 2]) is skipped. `bad`, if given, gets the numbers (from 1) of the skipped lines,
    except blank ones and an unfinished last line (no newline yet: being appended, or torn by a crash).
    The records are shared with later calls (see _JSONL): read them, do not change them."""
    key = str(path)
    try:
        with _JSONL_LOCK, open(path, "rb") as f:
            st = os.fstat(f.fileno())
            dev, ino, done, edge, recs, skipped, lines = _JSONL.get(key) or (None, None, 0, b"", [], [], 0)
            if done:
                f.seek(done - len(edge))
            if (dev, ino) != (st.st_dev, st.st_ino) or st.st_size < done or (done and f.read(len(edge)) != edge):
                f.seek(0)
                done, edge, recs, skipped, lines = 0, b"", [], [], 0
            tail = f.read()
            complete = tail.rfind(b"\n") + 1  # what follows the last newline is still being written
            if complete:
                recs, skipped = list(recs), list(skipped)
                for line in tail[:complete].split(b"\n")[:-1]:
                    lines += 1
                    rec = _parse_jsonl_line(line)
                    if rec is not None:
                        recs.append(rec)
                    elif line.strip():
                        skipped.append(lines)
                done += complete
                edge = (edge + tail[:complete])[-_EDGE:]
                _JSONL[key] = (st.st_dev, st.st_ino, done, edge, recs, skipped, lines)
    except FileNotFoundError:
        _JSONL.pop(key, None)
        return []
    out = list(recs)
    last = _parse_jsonl_line(tail[complete:]) if tail[complete:].strip() else None
    if last is not None:
        out.append(last)  # a last line without its newline that parses: a whole record (a hand-edited file)
    if bad is not None:
        bad.extend(skipped)
    return out


def load_npy(path: Path) -> np.ndarray:
    """A numeric .npy file, its header checked before anything is allocated: a header that claims more data than
    the file holds (4e9 rows in a 4 KB file: np.load would try to allocate 75 GB, a MemoryError) or another
    kind of data (text, objects) raises ValueError saying so. OSError when the file cannot be read."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unknown .npy version {version}")
        if dtype.kind not in "biuf" or dtype.hasobject:
            raise ValueError(f"it holds {dtype}, not numbers")
        need = math.prod(shape) * dtype.itemsize
        have = os.fstat(f.fileno()).st_size - f.tell()
        if need != have:
            raise ValueError(f"its header says {' x '.join(map(str, shape)) or 'one value'} of {dtype} "
                             f"({need:,} bytes) but the file holds {have:,} bytes")
        f.seek(0)
        return np.load(f, allow_pickle=False)


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v) -> bool:
    """A number that is not NaN or infinite (an int of any size is finite: no float conversion)."""
    return _number(v) and (isinstance(v, int) or math.isfinite(v))


# ---------- one run ----------

@dataclass
class Run:
    path: Path
    name: str = field(init=False)

    def __post_init__(self):
        self.path = Path(self.path)
        self.name = self.path.name

    # files
    @property
    def config_file(self): return self.path / "config.json"
    @property
    def status_file(self): return self.path / "status.json"
    @property
    def metrics_file(self): return self.path / "metrics.jsonl"
    @property
    def last_ckpt(self): return self.path / "last.pt"
    @property
    def best_ckpt(self): return self.path / "best.pt"
    @property
    def preds_dir(self): return self.path / "preds"
    @property
    def epochs_dir(self): return self.path / EPOCH_WEIGHTS

    def epoch_weights(self, epoch: int) -> Path:
        return self.epochs_dir / f"epoch_{epoch:03d}.pt"

    def config(self) -> dict:
        try:
            cfg = read_json(self.config_file)
        except FileNotFoundError:
            raise RunError(f"run {self.name}: config.json is missing") from None
        except ValueError as e:
            raise RunError(f"run {self.name}: config.json is not valid JSON ({e})") from None
        if not isinstance(cfg, dict) or "model" not in cfg:
            raise RunError(f"run {self.name}: config.json has no model")
        if not isinstance(cfg["model"], str) or not cfg["model"]:
            raise RunError(f"run {self.name}: config.json's model is {cfg['model']!r}, not a model name; "
                           f"write one such as \"fast\" there, or delete the run")
        created = cfg.get("created")
        if created is not None and not (_number(created) and 0 <= created < 9e9):
            raise RunError(f"run {self.name}: config.json's created is {created!r}, not a time in seconds since "
                           f"1970; write one such as {int(time.time())} there, or delete the run")
        return cfg

    def raw_status(self) -> dict:
        try:
            st = read_json(self.status_file)
            return st if isinstance(st, dict) else {"status": "failed", "error": "status.json is not an object"}
        except FileNotFoundError:
            return {"status": "failed", "error": "status.json is missing"}
        except ValueError as e:
            return {"status": "failed", "error": f"status.json is not valid JSON ({e})"}

    def status(self) -> dict:
        """The status file for display: a running run whose trainer is gone reported as interrupted (also when
        its old pid now belongs to another process), an unknown status as failed, badly typed numbers dropped."""
        st = self.raw_status()
        if st.get("status") not in STATUSES:
            what = f"status {st['status']!r}, which this version does not know" if "status" in st else "no status"
            st = {"status": "failed", "error": f"status.json has {what}; resume or delete the run"}
        for k in _STATUS_NUMBERS:
            if k in st and not _finite(st[k]):  # json reads Infinity and NaN: no ETA or rate can be made of them
                del st[k]
        if st.get("error") is not None and not isinstance(st["error"], str):
            st["error"] = str(st["error"])
        why = trainer_gone(self.path, st) if st.get("status") == "running" else None
        if why:
            st = {**st, "status": "interrupted", "error": st.get("error") or why}
        return st

    def write_status(self, **fields) -> dict:
        st = self.raw_status() if self.status_file.exists() else {}
        if fields.get("status") in ACTIVE:
            st.pop("error", None)  # a resumed run starts clean
        from .procs import IDENTITY
        for key, about in IDENTITY.items():  # a pid's start time etc. describe that pid, not one written over it
            if key in fields:
                for k in about:
                    if k not in fields:
                        st.pop(k, None)
        st.update(fields)
        st["updated"] = time.time()
        atomic_write_json(self.status_file, st)
        return st

    def metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_file)

    def unreadable_metric_lines(self) -> list[int]:
        """Numbers of the lines of metrics.jsonl that every reader skips (damaged, or not a JSON object)."""
        bad: list[int] = []
        read_jsonl(self.metrics_file, bad)
        return bad

    def epoch_records(self) -> list[dict]:
        """Epoch records (whole-number "epoch" from 1), keeping only numeric values: a value of another type
        (a hand-edited "test_acc": "0.9") is left out rather than crash every page that formats it."""
        out = []
        for r in self.metrics():
            e = r.get("epoch")
            if _finite(e) and (isinstance(e, int) or e.is_integer()) and e >= 1:
                out.append({**_numbers_only(r), "epoch": int(e)})
        return out

    def step_records(self) -> list[dict]:
        """Step records (a numeric "step", no "epoch"), keeping only numeric values."""
        return [_numbers_only(r) for r in self.metrics()
                if "epoch" not in r and _finite(r.get("step"))]

    def append_metrics(self, records: list[dict]) -> None:
        append_jsonl(self.metrics_file, records)

    def truncate_metrics(self, step: int) -> None:
        """Keep only records up to global step `step` (used by --resume after a crash)."""
        keep = [r for r in self.metrics() if not _number(r.get("step", 0)) or r.get("step", 0) <= step]
        atomic_write_bytes(self.metrics_file,
                           "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in keep).encode())

    # predictions
    def save_probs(self, epoch: int, probs: np.ndarray) -> None:
        self.preds_dir.mkdir(exist_ok=True)
        atomic_save(lambda f: np.save(f, probs.astype(np.float16)), self.preds_dir / f"epoch_{epoch:03d}.npy")

    def save_test_labels(self, labels: np.ndarray) -> None:
        atomic_save(lambda f: np.save(f, labels.astype(np.uint8)), self.path / "test_labels.npy")

    def pred_epochs(self) -> list[int]:
        if not self.preds_dir.is_dir():
            return []
        out = []
        for p in self.preds_dir.glob("epoch_*.npy"):
            try:
                out.append(int(p.stem.split("_")[1]))
            except (IndexError, ValueError):
                continue
        return sorted(out)

    def probs(self, epoch: int | None = None) -> np.ndarray:
        """N x 10 float32 test-set probabilities after `epoch` (default: the best epoch)."""
        epochs = self.pred_epochs()
        if not epochs:
            raise RunError(f"run {self.name} has no stored test predictions (trained by an older version, "
                           f"or stopped before its first epoch ended)")
        if epoch is None:
            epoch = self.best_epoch() or epochs[-1]
        if epoch not in epochs:
            raise RunError(f"run {self.name} has no stored predictions for epoch {epoch}; it has {epochs[0]}-{epochs[-1]}")
        try:
            p = load_npy(self.preds_dir / f"epoch_{epoch:03d}.npy")
        except (OSError, ValueError) as e:
            raise RunError(f"run {self.name}: predictions for epoch {epoch} cannot be read ({e})") from None
        if p.ndim != 2 or p.shape[1] != 10:
            raise RunError(f"run {self.name}: predictions for epoch {epoch} have shape {p.shape}, expected N x 10")
        return p.astype(np.float32)

    def test_labels(self) -> np.ndarray:
        path = self.path / "test_labels.npy"
        try:
            labels = load_npy(path)
        except FileNotFoundError:
            raise RunError(f"run {self.name} has no stored test labels (older format); retrain it") from None
        except (OSError, ValueError) as e:
            raise RunError(f"run {self.name}: its stored test labels cannot be read ({e}); retrain it") from None
        if labels.ndim != 1:
            raise RunError(f"run {self.name}: its stored test labels have shape {labels.shape}, expected N; "
                           f"retrain it")
        return labels.astype(np.int64)

    def model_checkpoint(self) -> Path:
        """The checkpoint load_model reads: best.pt, or last.pt when there is no best yet."""
        return self.best_ckpt if self.best_ckpt.exists() else self.last_ckpt

    def checkpoint_stamp(self) -> float:
        """Modification time of model_checkpoint() (0 when there is none): with the path, a cache key."""
        try:
            return self.model_checkpoint().stat().st_mtime
        except OSError:
            return 0.0

    def best_epoch(self) -> int | None:
        recs = [r for r in self.epoch_records() if r.get("test_acc") is not None]
        if not recs:
            return None
        return max(recs, key=lambda r: (r["test_acc"], -r["epoch"]))["epoch"]

    def summary(self) -> dict:
        """One row for a runs table. Raises RunError for a broken folder."""
        cfg = self.config()
        st = self.status()
        epochs = self.epoch_records()
        accs = [r["test_acc"] for r in epochs if r.get("test_acc") is not None]
        planned = cfg.get("epochs") if _number(cfg.get("epochs")) else None
        progress = progress_of(st, len(epochs), planned)
        secs = [r["train_seconds"] for r in epochs if _finite(r.get("train_seconds"))]
        return {
            "name": self.name, "model": cfg["model"], "augment": _text(cfg.get("augment")),
            "optimizer": _text(cfg.get("optimizer")), "epochs_done": len(epochs), "epochs": planned,
            "lr": cfg.get("lr") if _finite(cfg.get("lr")) else None,
            "batch_size": cfg.get("batch_size") if _number(cfg.get("batch_size")) else None,
            "progress": progress,
            "train_seconds": secs[-1] if secs else None,
            "best_test_acc": max(accs) if accs else None, "last_test_acc": accs[-1] if accs else None,
            "status": st.get("status"), "error": st.get("error"), "created": cfg.get("created"),
            "pair": _text(cfg.get("pair")), "path": str(self.path), "device": device_of(cfg, st),
        }


def device_of(cfg: dict, status: dict) -> str | None:
    """Where a run trains or trained: the device its trainer wrote into status.json (auto resolved, "cuda:0"),
    else the one its config asks for (a queued run: "auto"); a run made before devices could be chosen trained on
    the CPU."""
    return _text(status.get("device")) or _text(cfg.get("device")) or "cpu"


_STATUS_NUMBERS = ("pid", "launcher_pid", "heartbeat", "updated", "started", "launched", "ended", "epoch", "step",
                   "global_step", "total_steps", "steps_per_epoch", "epochs", "progress", "eta_s", "images_per_s",
                   "checkpoint_step")


def epoch_shown(state, finished: int, total) -> int:
    """The epoch in progress while a run trains (1 during the first), the finished ones otherwise: the Epoch the
    live numbers and the Runs table both show."""
    if state == "running" and not (isinstance(total, int) and finished >= total):
        return finished + 1
    return finished


def progress_of(status: dict, epochs_done: int, planned) -> float | None:
    """How far a run is, as a fraction of its planned steps, the same on every page: the trainer's step count while
    it trains and once it stopped (a stop checkpoints that very step) or completed; for a run that died (interrupted,
    failed) what its last checkpoint holds, which is where --resume continues (status.json says it just after each
    checkpoint: a kill between the two leaves it one checkpoint behind); whole epochs for a run without those
    figures (queued, or written by an older version)."""
    if status.get("status") in ("interrupted", "failed"):
        kept, total = status.get("checkpoint_step"), status.get("total_steps")
        progress = kept / total if _finite(kept) and _finite(total) and total > 0 else None
    else:
        progress = status.get("progress") if _finite(status.get("progress")) else None
    if progress is None and planned:
        progress = epochs_done / planned
    return None if progress is None else min(1.0, max(0.0, float(progress)))


def _numbers_only(rec: dict) -> dict:
    """A metrics record without its non-numeric values, and without accuracies that are not finite."""
    return {k: v for k, v in rec.items()
            if _number(v) and (_finite(v) or not k.endswith("_acc"))}


def _text(v) -> str | None:
    return v if v is None or isinstance(v, str) else str(v)


def bad_name_message(name: str) -> str:
    """Why a folder of the runs folder whose name is not a valid run name cannot be opened, and what to do."""
    better = re.sub(r"\.\.+", ".", re.sub(r"[^A-Za-z0-9._-]+", "-", name)).strip("-._")[:100]
    try:
        hint = f" (e.g. {check_name(better)})"
    except RunError:
        hint = ""
    return (f"the folder name {name!r} is not a valid run name: rename the folder{hint} using only letters, "
            f"digits, '.', '_' or '-', starting with a letter or digit")


def run_folders(root: Path | None = None) -> list[Path]:
    """Every folder of the runs folder that is a run, well-formed or not ("_" and "." names are ours)."""
    root = runs_dir(root)
    if not root.is_dir():
        return []
    return [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith((".", "_"))]


def list_runs(root: Path | None = None) -> tuple[list[dict], list[dict]]:
    """(runs, broken): summaries newest first, and {name, path, error} for folders that cannot be read."""
    good, broken = [], []
    for p in run_folders(root):
        try:
            check_name(p.name)
        except RunError:
            broken.append({"name": p.name, "path": str(p), "error": bad_name_message(p.name)})
            continue
        try:
            good.append(Run(p).summary())
        except RunError as e:
            broken.append({"name": p.name, "path": str(p), "error": str(e)})
        except Exception as e:  # anything else odd about one folder must not hide the others
            broken.append({"name": p.name, "path": str(p), "error": f"run {p.name}: unreadable ({e})"})
    good.sort(key=lambda r: r.get("created") or 0, reverse=True)
    return good, broken


def get_run(name: str, root: Path | None = None) -> Run:
    path = run_path(name, root)
    if not path.is_dir():
        raise RunError(f"no run named {name!r} in {runs_dir(root)}")
    return Run(path)


def delete_run(name: str, root: Path | None = None) -> None:
    run = get_run(name, root)
    if run.status().get("status") in ACTIVE:
        raise RunError(f"run {name} is {run.status()['status']}; stop it before deleting it")
    _delete(run.path)


def delete_folder(path, root: Path | None = None) -> None:
    """Delete a folder of the runs folder given by its path: for a broken folder, whose name may not even be a
    valid run name (so get_run and delete_run refuse it). Refused while a trainer or a launch still uses it."""
    root = runs_dir(root)
    path = Path(path)
    if path.name in ("", ".", "..") or path.parent.resolve() != root or not path.is_dir():
        raise RunError(f"{path} is not a folder of the runs folder {root}; nothing was deleted")
    if in_use(path, Run(path).raw_status()):
        raise RunError(f"the folder {path.name!r} is in use by a training process; wait for it to end, then "
                       f"delete the folder")
    _delete(path)


def _delete(path: Path) -> None:
    # rename first so a half-deleted folder never looks like a run
    trash = path.with_name(f".deleting-{re.sub(r'[^A-Za-z0-9._-]', '_', path.name)}-{os.getpid()}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


# ---------- checkpoints ----------

def save_checkpoint(path: Path, obj: dict) -> None:
    """Tensors are saved as CPU tensors: a checkpoint of a GPU run loads on a machine without that GPU."""
    atomic_save(lambda f: torch.save(on_cpu(obj), f), path)


def on_cpu(obj):
    """obj with every tensor in it (in dicts, lists, tuples) moved to the CPU; CPU tensors are not copied."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(on_cpu(v) for v in obj)
    return obj


def load_checkpoint(path: Path) -> dict:
    """weights_only=True: a checkpoint file can hold tensors and plain data, never code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunError(f"checkpoint {path} is missing") from None
    except Exception as e:
        raise RunError(f"checkpoint {path} cannot be loaded ({type(e).__name__}: {e})") from None


def load_model(run_dir) -> torch.nn.Module:
    """CONTRACT: the run's best checkpoint as a module in eval mode: N x 1 x 28 x 28 in [0, 1] -> logits."""
    from .models import MODELS, build

    run = Run(Path(run_dir))
    cfg = run.config()
    try:
        model = build(cfg["model"])
    except ValueError:  # e.g. a run made by another version of mnistviz
        raise RunError(f"run {run.name} uses the model {cfg['model']!r}, which this version of mnistviz does not "
                       f"have (it has {', '.join(MODELS)}); open it with the version that trained it, or retrain it") \
            from None
    state = load_checkpoint(run.model_checkpoint())
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as e:
        raise RunError(f"run {run.name}: checkpoint does not fit model {cfg['model']} ({e})") from None
    return model.eval()
