"""What a sweep costs and what it buys, side by side in one run.

1. Overhead: the same K LeNet-5 trainings (K learning rates, --epochs, --limit-train) run
   a. one by one with `python -m mnistviz.train` (the baseline),
   b. as the K trials of one `python -m mnistviz.sweep work` (a grid over the same learning rates, no pruner),
   c. through the dashboard's queue as K runs (jobs.submit each),
   d. through the dashboard's queue as one sweep (jobs.submit_sweep),
   in interleaved rounds (a b c d, a b c d, ...) so that all four share the machine's drift. Prints the wall seconds
   per training and the ratios b/a and d/c (the goal: at most 1.05), and the CPU seconds of every process involved
   per training (RUSAGE_CHILDREN: robust where other work shares the machine).
2. Payoff: the seed preset lenet5-sgd trained for --payoff-epochs against the best of a --payoff-trials sweep of its
   learning rate and batch size (TPE, median pruner; the objective is the validation accuracy) at the same epochs;
   prints both runs' test accuracy.

    MNISTVIZ_DATA=../shared/data python bench/sweep_overhead.py [--rounds 2 --trials 3 --epochs 1 --limit-train 10000]
        [--payoff-trials 8 --payoff-epochs 2 | --no-payoff]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mnistviz import config, jobs, runs, sweep  # noqa: E402

LENET = config.preset_config("lenet5-sgd")


VAL_SIZE = 5000


def _sets(epochs: int, limit: int, **more) -> dict:
    return {**LENET, "epochs": epochs, "limit_train": limit, "val_size": VAL_SIZE, **more}


def _searched(epochs: int, limit: int) -> dict:
    """The fixed settings of a sweep over lr: the same as the runs', but lr."""
    return {k: v for k, v in _sets(epochs, limit).items() if k != "lr"}


def _cli(*args) -> dict:
    p = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"{' '.join(args[:3])} failed: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {}


def one_by_one(root: Path, lrs, epochs, limit) -> float:
    t = time.perf_counter()
    for i, lr in enumerate(lrs):
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in _sets(epochs, limit, lr=lr).items()
                 if not isinstance(v, bool)]
        _cli("-m", "mnistviz.train", *flags, "--no-nesterov", "--name", f"r{i}", "--runs-dir", str(root),
             "--no-progress")
    return time.perf_counter() - t


def _create(root: Path, name: str, trials: int, space: list[str], sets: dict, sampler: str, pruner: str) -> None:
    """In this process: no child's CPU time is counted for it."""
    sweep.create(name, trials, space, [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sets.items()],
                 root, sampler=sampler, pruner=pruner)


def _first_trial(root: Path, name: str) -> float:
    """When the sweep's first trial's run was made (its config's `created`): the end of the worker's start."""
    return json.loads((root / f"{name}-t0" / "config.json").read_text())["created"]


def as_sweep(root: Path, lrs, epochs, limit) -> tuple[float, float]:
    """(seconds from the first trial's start to the worker's end, the worker's start before it)."""
    _create(root, "s", len(lrs), [f"lr=choice({','.join(map(str, lrs))})"], _searched(epochs, limit), "grid", "none")
    t = time.time()
    _cli("-m", "mnistviz.sweep", "work", "s", "--runs-dir", str(root))
    first = _first_trial(root, "s")
    return time.time() - first, first - t


def _until_idle(root: Path, done) -> None:
    while not done():
        jobs.tick(root)
        time.sleep(0.05)


def _launches_reaped(root: Path) -> None:
    """Until every launch of the queue (its shell, trainer and follow-up tick) has ended and been waited for, so that
    their CPU time is in this process's RUSAGE_CHILDREN."""
    while jobs._children:
        jobs.tick(root)
        time.sleep(0.05)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def queue_runs(root: Path, lrs, epochs, limit) -> float:
    t = time.perf_counter()
    made = [jobs.submit(config.Config(**_sets(epochs, limit, lr=lr), name=f"q{i}"), root) for i, lr in enumerate(lrs)]
    _until_idle(root, lambda: all(r.status().get("status") == "completed" for r in made))
    spent = time.perf_counter() - t
    _launches_reaped(root)  # untimed: the last follow-up tick
    return spent


def queue_sweep(root: Path, lrs, epochs, limit) -> tuple[float, float]:
    """As as_sweep, through the queue: until every trial's run has completed, as queue_runs waits."""
    _create(root, "qs", len(lrs), [f"lr=choice({','.join(map(str, lrs))})"], _searched(epochs, limit), "grid",
            "none")
    t = time.time()
    jobs.submit_sweep("qs", root=root)

    def finished():
        made = [runs.Run(p) for p in runs.run_folders(root)]
        return len(made) == len(lrs) and all(r.status().get("status") == "completed" for r in made)
    _until_idle(root, lambda: finished() or jobs.sweep_job("qs", root)["state"] in ("failed", "interrupted"))
    end = time.time()
    if not finished():
        sys.exit(f"the queued sweep ended {jobs.sweep_job('qs', root)}")
    _until_idle(root, lambda: jobs.sweep_job("qs", root)["state"] == "done")  # its worker's last words, untimed
    _launches_reaped(root)
    first = _first_trial(root, "qs")
    return end - first, first - t


def overhead(args) -> None:
    lrs = [0.01 * (i + 1) for i in range(args.trials)]
    ways = {"a. one by one (CLI)": one_by_one, "b. one sweep worker (CLI)": as_sweep,
            "c. queue, runs one by one": queue_runs, "d. queue, one sweep": queue_sweep}
    per, start, cpu = {w: [] for w in ways}, {w: [] for w in ways}, {w: [] for w in ways}
    for r in range(args.rounds):
        for w, fn in ways.items():
            with tempfile.TemporaryDirectory() as tmp:
                c0 = _children_cpu()
                got = fn(Path(tmp), lrs, args.epochs, args.limit_train)
                cpu[w].append((_children_cpu() - c0) / len(lrs))
                spent, once = got if isinstance(got, tuple) else (got, 0.0)
                per[w].append(spent / len(lrs))
                start[w].append(once)
        print(f"round {r + 1}: " + ", ".join(f"{w[:2]} {v[-1]:.2f} s ({cpu[w][-1]:.2f} s CPU)" for w, v in per.items()),
              flush=True)
    med = {w: statistics.median(v) for w, v in per.items()}
    print(f"\nwall seconds per training (median of {args.rounds} rounds; {args.trials} LeNet-5 trainings of "
          f"{args.epochs} epoch(s) on {args.limit_train or 60000} images, {VAL_SIZE} for validation; a sweep's from "
          f"its first trial on, its worker's start once before it):")
    for w, v in med.items():
        once = f"; + worker start {statistics.median(start[w]):.2f} s once" if any(start[w]) else ""
        print(f"  {w:<28} {v:6.2f}   (rounds: {', '.join(f'{x:.2f}' for x in per[w])}{once})")
    keys = list(ways)
    print(f"  sweep / one by one, CLI:   {med[keys[1]] / med[keys[0]]:.3f}")
    print(f"  sweep / one by one, queue: {med[keys[3]] / med[keys[2]]:.3f}")
    mcpu = {w: statistics.median(v) for w, v in cpu.items()}
    print("\nCPU seconds per training, every process of it (the trainer; the sweep's worker, its start included; the "
          "queue's shells and follow-up ticks), median:")
    for w, v in mcpu.items():
        print(f"  {w:<28} {v:6.2f}   (rounds: {', '.join(f'{x:.2f}' for x in cpu[w])})")
    print(f"  sweep / one by one, CLI:   {mcpu[keys[1]] / mcpu[keys[0]]:.3f}")
    print(f"  sweep / one by one, queue: {mcpu[keys[3]] / mcpu[keys[2]]:.3f}")


def payoff(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        limit = args.payoff_limit_train
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in _sets(args.payoff_epochs, limit).items()
                 if not isinstance(v, bool)]
        seed = _cli("-m", "mnistviz.train", *flags, "--no-nesterov", "--name", "preset", "--runs-dir", str(root),
                    "--no-progress")
        preset_s = time.perf_counter() - t
        sets = {k: v for k, v in _searched(args.payoff_epochs, limit).items() if k != "batch_size"}
        _create(root, "pay", args.payoff_trials, ["lr=loguniform(0.001,0.3)", "batch_size=choice(32,64,128)"], sets,
                "tpe", "median")
        t = time.perf_counter()
        st = _cli("-m", "mnistviz.sweep", "work", "pay", "--runs-dir", str(root))
        sweep_s = time.perf_counter() - t
        best = st["best"]
        best_run = runs.get_run(best["run"], root)
        best_test = max(r["test_acc"] for r in best_run.epoch_records())
        seed_val = max(r["val_acc"] for r in runs.get_run("preset", root).epoch_records())
        states = [e["state"] for e in st["trials"]]
    print(f"\nLeNet-5 at {args.payoff_epochs} epoch(s) on {args.payoff_limit_train or 'all the'} training images, "
          f"{VAL_SIZE:,} held out for validation:")
    print(f"  seed preset lenet5-sgd (lr 0.01, batch 32): test {seed['best_test_accuracy']:.2%}, "
          f"validation {seed_val:.2%}  ({preset_s:.0f} s)")
    print(f"  best of a {len(states)}-trial sweep (trial {best['number']}: lr {best['params']['lr']:.4g}, batch "
          f"{best['params']['batch_size']}): test {best_test:.2%}, validation {best['value']:.2%}  ({sweep_s:.0f} s; "
          f"{states.count('complete')} complete, {states.count('pruned')} pruned)")
    gain = best_test - seed["best_test_accuracy"]
    print(f"  gain: {gain * 100:+.2f} points of test accuracy; test errors "
          f"{(1 - seed['best_test_accuracy']) * 10000:.0f} -> {(1 - best_test) * 10000:.0f} of 10,000")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--trials", type=int, default=3, help="trainings per way and round")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit-train", type=int, default=10000)
    ap.add_argument("--val-size", type=int, default=5000, help="validation images of every training")
    ap.add_argument("--payoff-trials", type=int, default=8)
    ap.add_argument("--payoff-limit-train", type=int, default=0, help="payoff: training images (0 = all)")
    ap.add_argument("--payoff-epochs", type=int, default=2)
    ap.add_argument("--no-payoff", action="store_true")
    ap.add_argument("--no-overhead", action="store_true")
    args = ap.parse_args()
    global VAL_SIZE
    VAL_SIZE = args.val_size
    if not os.environ.get("MNISTVIZ_DATA"):
        print("note: MNISTVIZ_DATA is not set; using data/", file=sys.stderr)
    os.environ.pop("MNISTVIZ_SWEEP_STORAGE", None)
    print(f"machine: {os.cpu_count()} CPU cores; python {sys.version.split()[0]}", flush=True)
    if not args.no_overhead:
        overhead(args)
    if not args.no_payoff:
        payoff(args)


if __name__ == "__main__":
    main()
