"""A run's metrics in other tools' formats: TensorBoard event files and CSV.

While a run trains, the trainer mirrors each metrics.jsonl record into TensorBoard event files in the run folder
(`to_tensorboard`, when the tensorboard package is installed; without it nothing changes), so
`tensorboard --logdir checkpoints` shows every run, its hyperparameters in the HParams tab. Runs made before, or
without the package, are converted by `python -m mnistviz.export RUN --format {csv,tensorboard}`.

The event files hold the same scalars as metrics.jsonl: every number of a step record as `step/<name>` and of an
epoch record as `epoch/<name>`, at the record's global step and time. metrics.jsonl stays the source of truth: each
trainer process writes an event file of its own from it, and the event files of an earlier process (whose records
--resume may have cut back) go when it starts.
"""
from __future__ import annotations

import importlib.util
import io
import math
import sys
from pathlib import Path

from . import procs
from .runs import Run, RunError, atomic_write_bytes

EVENTS = "events.out.tfevents.*"
AXES = ("step", "time")  # a record's x-axis and wall time, not scalars of their own
METRICS = ("epoch/test_acc", "epoch/val_acc", "epoch/test_loss", "epoch/train_loss")  # the HParams tab's columns
HPARAMS_SKIP = ("name", "created", "pair", "preset")


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def scalars(rec: dict) -> tuple[str, int | None, float | None, dict[str, float]]:
    """(kind "step" or "epoch", global step, wall time, {tag: value}) of one metrics.jsonl record: its finite
    numbers but the step and the time, each tagged with the kind."""
    kind = "epoch" if "epoch" in rec else "step"
    step, when = rec.get("step"), rec.get("time")
    values = {f"{kind}/{k}": float(v) for k, v in rec.items()
              if k not in AXES and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    ok = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)  # noqa: E731
    return kind, int(step) if ok(step) else None, float(when) if ok(when) else None, values


def hparams(config: dict) -> dict:
    """The config values TensorBoard's HParams tab takes (numbers, text, booleans), less the run's identity."""
    return {k: v for k, v in config.items()
            if k not in HPARAMS_SKIP and isinstance(v, (int, float, str, bool))}


class TensorBoardLog:
    """Event files of one run, written from its metrics.jsonl: `sync()` writes the records appended since the last
    call, `close()` syncs and closes. The first sync removes the run's older event files and writes all records."""

    def __init__(self, run: Run):
        self.run, self.writer, self.done = run, None, 0

    def _open(self) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        for old in self.run.path.glob(EVENTS):
            old.unlink()
        self.writer = SummaryWriter(log_dir=str(self.run.path), flush_secs=10)
        # the HParams tab: the config, and which scalars to show beside it
        for summary in hparams_summary(hparams(self.run.config()), {m: 0.0 for m in METRICS}):
            self.writer.file_writer.add_summary(summary)

    def sync(self) -> int:
        """Write the records appended since the last sync; returns how many."""
        if self.writer is None:
            self._open()
        records = self.run.metrics()
        for rec in records[self.done:]:
            _, step, when, values = scalars(rec)
            for tag, v in values.items():
                self.writer.add_scalar(tag, v, global_step=step, walltime=when)
        added, self.done = len(records) - self.done, len(records)
        self.writer.flush()
        return added

    def close(self) -> None:
        try:
            self.sync()
        finally:
            if self.writer is not None:
                self.writer.close()


_LIVE: dict[Path, TensorBoardLog | None] = {}  # run folder -> its log in this process (None: given up)


def to_tensorboard(run: Run, close: bool = False) -> None:
    """The trainer's hook, at every epoch's end and when it ends (close=True): mirror the run's new metrics
    records into its TensorBoard event files. Nothing without the tensorboard package; never raises: a failure
    (a full disk) is said once on stderr and the mirroring stops, the training goes on."""
    if not tensorboard_available():
        return
    if run.path not in _LIVE:
        _LIVE[run.path] = TensorBoardLog(run)
    log = _LIVE[run.path]
    if log is not None:
        try:
            log.close() if close else log.sync()
        except Exception as e:  # TensorBoard's files are a copy: losing them must not fail the run
            print(f"mnistviz: TensorBoard files of run {run.name} not written further ({type(e).__name__}: {e}); "
                  f"python -m mnistviz.export {run.name} --format tensorboard rewrites them", file=sys.stderr)
            _LIVE[run.path] = None
            try:
                log.writer and log.writer.close()
            except Exception:
                pass
    if close:
        _LIVE.pop(run.path, None)


def write_tensorboard(run: Run) -> int:
    """Rewrite the run's event files from its metrics.jsonl; returns the number of records. RunError when the
    tensorboard package is missing."""
    if not tensorboard_available():
        raise RunError("the tensorboard package is not installed: pip install tensorboard")
    log = TensorBoardLog(run)
    log.close()
    return log.done


def csv_bytes(records: list[dict]) -> bytes:
    """The records as CSV: a column `kind` (step or epoch), then step and epoch, then every other field in the
    order first seen; a field a record lacks is empty."""
    import csv

    cols = ["kind", "step", "epoch"]
    for rec in records:
        cols += [k for k in rec if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, cols, restval="", extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for rec in records:
        w.writerow({**rec, "kind": "epoch" if "epoch" in rec else "step"})
    return buf.getvalue().encode()


def _records(run: Run) -> list[dict]:
    records = run.metrics()
    if not records:
        raise RunError(f"run {run.name} has no metrics to export (metrics.jsonl is missing or empty)")
    return records


def parser():
    from .cli import Parser, _folder

    p = Parser(prog="python -m mnistviz.export",
               description="Write a run's metrics (metrics.jsonl) as CSV, or as TensorBoard event files in its folder.")
    p.add_argument("run", metavar="RUN", help="a run folder, or the name of a run in the runs folder")
    p.add_argument("--format", required=True, choices=("csv", "tensorboard"))
    p.add_argument("--out", type=_folder, help="csv: the file to write (default RUN/metrics.csv; - for stdout)")
    p.add_argument("--runs-dir", type=_folder,
                   help="runs folder for a run name (default: $MNISTVIZ_RUNS or checkpoints/)")
    return p


def main(argv=None) -> int:
    from .evaluate import resolve_run

    p = parser()
    args = p.parse_args(argv)
    if args.format == "tensorboard" and args.out:
        p.error("--out is for --format csv: TensorBoard's files go in the run folder")
    try:
        run = Run(resolve_run(args.run, args.runs_dir))
        records = _records(run)
        if args.format == "csv" and args.out == "-":
            sys.stdout.write(csv_bytes(records).decode())
            return 0
        if args.format == "csv":
            out = Path(args.out).expanduser() if args.out else run.path / "metrics.csv"
            atomic_write_bytes(out, csv_bytes(records))
        else:
            run.config()  # a broken config.json says so before anything is removed
            with procs.hold_run(run.path):  # as a trainer does: the two never write its event files at once
                write_tensorboard(run)
            out = run.path
    except procs.RunHeld as e:
        p.error(f"{e}: its trainer writes its TensorBoard files itself")
    except (RunError, OSError) as e:
        p.error(str(e))
    print(f"wrote {len(records)} records of run {run.name} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
