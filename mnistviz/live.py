"""The live numbers of a training (no Streamlit): what the Train page shows every second, as plain data.

The page draws them once with the page; from then on its browser polls `snapshot` through the app's JSON route
(`/api/live?run=NAME`, app.py) and writes the new values into the same elements, so a second's refresh costs one
small HTTP request instead of a Streamlit rerun, which slowed a training on the same cores (docs/performance.md).
The page reruns only when something it draws beyond the numbers changed: the run's state, the
training / queue, or the first records of a run's chart (`changed`)."""
from __future__ import annotations

import json

from . import jobs, runs


def clock(seconds) -> str:
    """Seconds as m:ss, or XhMM past an hour; '–' for None."""
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds % 3600 // 60:02d}"


def eta(state, seconds) -> str:
    """The ETA of a run: m:ss while it trains, "estimating" until its trainer knows its rate (the first seconds of
    steps; a status without one), "–" when it is not training."""
    if state != "running":
        return "–"
    return "estimating" if seconds is None else clock(seconds)


def metrics_size(run: runs.Run) -> int:
    try:
        return run.metrics_file.stat().st_size
    except OSError:
        return 0


def stats(run: runs.Run, epochs: list[dict] | None = None) -> tuple[str, list[tuple]]:
    """(state, [(label, value[, note]), ...]) of a run: status, epoch, step, ETA, images/s, best test accuracy.
    `epochs`: the run's epoch records, when the caller has read them already."""
    cfg = run.config()
    status = run.status()
    state = status.get("status", "failed")
    if epochs is None:
        epochs = run.epoch_records()
    progress = f"{runs.progress_of(status, len(epochs), cfg.get('epochs')) or 0.0:.0%}"
    step, kept = status.get("global_step", 0), status.get("checkpoint_step")
    if state in ("interrupted", "failed") and isinstance(kept, (int, float)) and kept < step:
        progress = f"checkpoint at {kept:,.0f} ({progress})"
    ips = status.get("images_per_s") or (epochs[-1].get("images_per_s") if epochs else None)
    best = best_test_acc(epochs)
    return state, [
        ("Status", state, *device_note(status)),
        ("Epoch", f"{runs.epoch_shown(state, len(epochs), cfg.get('epochs'))} / {cfg.get('epochs')}"),
        ("Step", f"{step:,}", f"of {status.get('total_steps', 0):,} · {progress}"),
        ("ETA", eta(state, status.get("eta_s"))),
        ("Images/s", f"{ips:,.0f}" if ips else "–"),
        ("Best test acc", f"{best:.2%}" if best is not None else "–"),
    ]


def device_note(status: dict) -> tuple:
    """The Status cell's note: where the trainer runs, as it wrote it (("on cuda:0 (NVIDIA H100, 79 GiB)",)); ()
    before it said (queued) or for a run from before devices could be chosen."""
    dev, name = status.get("device"), status.get("device_name")
    if not isinstance(dev, str) or not dev:
        return ()
    return (f"on {dev}" + (f" ({name})" if isinstance(name, str) and name else ""),)


def best_test_acc(epochs: list[dict]) -> float | None:
    """The highest test accuracy of a run's epoch records, or None when none recorded one."""
    return max((r["test_acc"] for r in epochs if r.get("test_acc") is not None), default=None)


def sidebar_figures(epochs_done: int, best: float | None) -> dict:
    """The sidebar's figures of a run that move while it trains, as it writes them: {"epochs_done": "3",
    "best": "98.12%"}, or why there is no best ("none recorded" after epochs without a test, "no epoch yet")."""
    return {"epochs_done": str(epochs_done),
            "best": f"{best:.2%}" if best is not None else "none recorded" if epochs_done else "no epoch yet"}


def phase(state: str, name: str | None, busy: list) -> str:
    """The state as the Train page draws it: a queued run being started (busy()'s training, its trainer loading) is
    drawn as running already, so the page need not rerun when the trainer says "running", a second before its first
    step: that rerun took the browser's CPU from the training as it began. The sidebar says the same.
    `busy`: busy(), of which only the first item (the run training or being started now) is read."""
    return "running" if state == "queued" and name and busy[0] == name else state


def pair_of(run: runs.Run, root=None) -> list[dict]:
    """The augmented + normal pair `run` was trained in (jobs.submit_pair), augmented first as the queue starts them:
    [{"name", "state", "best"}, ...] (`best`: its best test accuracy or None); [] when `run` is not half of a pair or
    its mate is gone. Reads each run folder's config.json: for full reruns, not every second."""
    pair = run.config().get("pair")
    if not isinstance(pair, str) or not pair:
        return []
    mates = []
    for path in runs.run_folders(root):
        try:
            mate = runs.Run(path)
            cfg = mate.config()
            if cfg.get("pair") == pair:
                mates.append((cfg.get("augment") == "none", cfg.get("created") or 0, mate))
        except (runs.RunError, OSError):
            continue
    if len(mates) < 2:
        return []
    return [{"name": m.name, "state": m.status().get("status", "failed"), "best": best_test_acc(m.epoch_records())}
            for _, _, m in sorted(mates, key=lambda t: t[:2])]


def busy(root=None) -> list:
    """[the run training now or None, [the queue, first to start first]]."""
    return [jobs.active(root), list(jobs.queue(root))]


def snapshot(name: str | None, root=None, seen: dict | None = None) -> dict:
    """What the live view's browser polls: {"busy": busy()} and, for a run, "state", "stats" (as stats(); the Status of
    a run being started says "starting"), "phase" (as phase()), "metrics_size" (of metrics.jsonl), "epochs_done" and
    "sidebar" (sidebar_figures(), which the poller writes into the sidebar while the run trains);
    "state": "gone" when the run cannot be read. With `seen` (what the page drew), "rerun": changed(seen, snapshot).
    Also moves the queue on, as every refresh of the page did (jobs.tick)."""
    try:
        jobs.tick(root)
    except (runs.RunError, OSError):
        pass  # a runs folder that cannot be written: the page's sidebar says so
    out: dict = {"busy": busy(root)}
    if name:
        try:
            run = runs.get_run(name, root)
            epochs = run.epoch_records()
            out["state"], out["stats"] = stats(run, epochs)
            out["phase"] = phase(out["state"], name, out["busy"])
            if out["phase"] != out["state"]:  # launched, not in the queue any more: its trainer is loading
                out["stats"][0] = ("Status", "starting", *out["stats"][0][2:])
            out["metrics_size"] = metrics_size(run)
            out["epochs_done"] = len(epochs)
            out["sidebar"] = sidebar_figures(len(epochs), best_test_acc(epochs))
        except (runs.RunError, OSError):
            out["state"] = out["phase"] = "gone"
    if seen is not None:
        out["rerun"] = changed(seen, out)
    return out


SEEN_KEYS = ("busy", "phase", "state", "epochs_done", "metrics_size")


def parse_seen(text: str | None) -> dict | None:
    """The `seen=` of a poll (JSON of what the page drew), limited to the keys a page watches; None when it is
    missing or not such an object (broken, or nested deeper than json can read)."""
    if text is None:
        return None
    try:
        seen = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return {k: v for k, v in seen.items() if k in SEEN_KEYS} if isinstance(seen, dict) else None


def changed(seen: dict, now: dict) -> bool:
    """Whether the page must redraw more than the numbers: `now` (a snapshot) differs from `seen` in any key that
    `seen` holds. The Train page's numbers watch {"busy", "phase"}; its chart, while it shows its first few records,
    {"metrics_size"}; the Runs page {"busy", "state", "epochs_done"} of the run training."""
    return any(now.get(k) != v for k, v in seen.items())
