"""Suspicious labels: which MNIST test images' given labels are probably wrong, from the runs' stored predictions only.

Stored test predictions are out-of-sample by construction, which is all confident learning needs. cleanlab ranks
them where it is installed (`cleanlab.filter.find_label_issues`); otherwise a plain self-confidence ranking (the
given label's probability, lowest first) among the images the models get wrong.

    python -m mnistviz.labels RUN [RUN ...] [--top K] [--json]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .analysis import run_predictions
from .runs import Run, RunError

LAST_EPOCHS = 3  # a run's probabilities: the mean of its last stored epochs (steadier than the last alone)


def mean_probs(run: Run, last: int = LAST_EPOCHS) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probs N x 10): the mean of the run's last `last` stored epochs' test probabilities."""
    epochs = run.pred_epochs()
    if not epochs:
        raise RunError(f"run {run.name} has no stored test predictions (no epoch finished, or an older version)")
    labels, total = None, None
    for e in epochs[-last:]:
        lab, probs = run_predictions(run, e)
        labels, total = lab, probs.astype(np.float64) if total is None else total + probs
    return labels, (total / len(epochs[-last:])).astype(np.float32)


def ensemble(runs: list[Run], last: int = LAST_EPOCHS) -> tuple[np.ndarray, np.ndarray]:
    """(labels, probs): the runs' mean probabilities. RunError when their stored test sets differ."""
    if not runs:
        raise RunError("no run given")
    labels, probs = mean_probs(runs[0], last)
    for r in runs[1:]:
        lab, p = mean_probs(r, last)
        if len(lab) != len(labels) or not np.array_equal(lab, labels):
            raise RunError(f"runs {runs[0].name} and {r.name} stored different test sets ({len(labels)} and "
                           f"{len(lab)} labels): they cannot be ranked together")
        probs = probs + p
    return labels, probs / len(runs)


def _cleanlab():
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return None
    return find_label_issues


def rank(labels: np.ndarray, probs: np.ndarray, top: int | None = None, method: str = "auto") -> tuple[str, list[dict]]:
    """(method used, suspects most suspicious first): each {index, label, predicted, score}, score = 1 - the given
    label's probability. `method`: "cleanlab", "self-confidence", or "auto" (cleanlab where installed)."""
    labels = np.asarray(labels, np.int64)
    probs = np.asarray(probs, np.float64)
    given = probs[np.arange(len(labels)), labels]
    find = _cleanlab() if method in ("auto", "cleanlab") else None
    if method == "cleanlab" and find is None:
        raise RunError("cleanlab is not installed: pip install cleanlab")
    wrong = np.flatnonzero(probs.argmax(1) != labels)
    if find is not None and len(np.unique(labels)) == probs.shape[1]:
        # confident learning: per-class thresholds decide which labels are issues; ranked by self-confidence
        # n_jobs=1: 10,000 x 10 takes well under a second on one core, and a Pool forked from the dashboard's
        # multithreaded server process could deadlock
        order = np.asarray(find(labels, probs / probs.sum(1, keepdims=True), n_jobs=1,
                                return_indices_ranked_by="self_confidence"), np.int64)
        used = "cleanlab.filter.find_label_issues (confident learning), ranked by self-confidence"
        if top is None or len(order) < top:
            # a model trained with label smoothing is never very sure (the default model's probabilities stay under
            # 0.95), and the per-class thresholds (each class's mean self-confidence) then pass few labels or none:
            # the other wrong predictions follow, by self-confidence
            rest = wrong[~np.isin(wrong, order)]
            order = np.concatenate([order, rest[np.argsort(given[rest], kind="stable")]])
            used = (f"cleanlab.filter.find_label_issues (confident learning; {len(order) - len(rest)} flagged), then "
                    f"self-confidence among the other wrong predictions")
    else:
        order = wrong[np.argsort(given[wrong], kind="stable")]
        used = "self-confidence (the given label's probability, lowest first, among the wrong predictions)"
    if top is not None:
        order = order[:top]
    pred = probs.argmax(1)
    return used, [{"index": int(i), "label": int(labels[i]), "predicted": int(pred[i]),
                   "score": round(float(1 - given[i]), 6)} for i in order]


def suspects(runs: list[Run], top: int | None = None, method: str = "auto") -> dict:
    """What `python -m mnistviz.labels --json` prints: {"runs", "method", "suspects"}."""
    labels, probs = ensemble(runs)
    used, found = rank(labels, probs, top, method)
    return {"runs": [r.name for r in runs], "method": used, "suspects": found}


def history(run: Run, indices) -> tuple[list[int], np.ndarray]:
    """(the run's epochs with stored predictions, E x len(indices) x 10 probabilities of those test images)."""
    epochs = run.pred_epochs()
    idx = np.asarray(indices, np.int64)
    if not epochs:
        return epochs, np.zeros((0, len(idx), 10), np.float32)
    return epochs, np.stack([run_predictions(run, e)[1][idx] for e in epochs])


def report(runs: list[Run], top: int = 30, method: str = "auto") -> dict:
    """What the Suspicious labels page shows: {runs, method, labels (the test set's), suspects}, each suspect as in
    suspects() plus "probability" (of the predicted digit, averaged over the runs) and "by_run": per run its
    predicted digit, that digit's probability (its last epochs' mean) and "history", the given label's
    probability after each stored epoch as [(epoch, p), ...]."""
    labels, probs = ensemble(runs)
    used, found = rank(labels, probs, top, method)
    idx = [s["index"] for s in found]
    per_run = [(r.name, mean_probs(r)[1][idx], *history(r, idx)) for r in runs]
    for j, s in enumerate(found):
        s["probability"] = round(float(probs[s["index"], s["predicted"]]), 6)
        s["by_run"] = []
        for name, mean, epochs, hist in per_run:
            d = int(mean[j].argmax())
            given = hist[:, j, s["label"]]
            s["by_run"].append({"run": name, "predicted": d, "probability": round(float(mean[j, d]), 6),
                                "history": [(e, round(float(p), 6)) for e, p in zip(epochs, given)]})
    return {"runs": [r.name for r in runs], "method": used, "labels": labels, "suspects": found}


def sources(root=None) -> list[dict]:
    """The runs a ranking can use: the bundled default model (checkpoints/default) first, then every run of the runs
    folder with stored test predictions, newest first. Each {name, path, label}; labels are unique (the bundled
    model says "built in")."""
    from .runs import PROJECT, list_runs

    good, _ = list_runs(root)
    default = (PROJECT / "checkpoints" / "default").resolve()
    out = []
    if default.is_dir() and Run(default).pred_epochs():
        listed = any(Path(r["path"]).resolve() == default for r in good)
        out.append({"name": "default", "path": str(default), "label": "default" if listed else "default (built in)"})
    for r in good:
        path = Path(r["path"]).resolve()
        if path != default and Run(path).pred_epochs():
            acc = r.get("best_test_acc")
            out.append({"name": r["name"], "path": str(path),
                        "label": r["name"] + (f" ({acc:.2%} test)" if acc is not None else "")})
    return out


def stamp(run: Run) -> tuple:
    """Changes when the run stores another epoch's predictions: with its path, a cache key."""
    epochs = run.pred_epochs()
    try:
        last = (run.preds_dir / f"epoch_{epochs[-1]:03d}.npy").stat().st_mtime_ns if epochs else 0
    except OSError:
        last = 0
    return tuple(epochs), last


def main(argv=None) -> int:
    from .cli import Parser
    from .evaluate import resolve_run

    p = Parser(prog="python -m mnistviz.labels",
               description="Rank MNIST test images by how likely their given label is wrong, from stored predictions.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="a run name or folder (several: their average)")
    p.add_argument("--top", type=int, default=30, help="how many suspects (default 30)")
    p.add_argument("--json", action="store_true", help="the last stdout line is one JSON object")
    p.add_argument("--runs-dir", help="runs folder (default: $MNISTVIZ_RUNS or checkpoints/)")
    args = p.parse_args(argv)
    if args.top < 1:
        p.error(f"--top must be at least 1 (got {args.top})")
    try:
        chosen = [Run(resolve_run(r, args.runs_dir)) for r in args.runs]
        out = suspects(chosen, args.top)
    except (RunError, OSError, ValueError) as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{len(out['suspects'])} suspects, ranked by {out['method']}:")
        for s in out["suspects"]:
            print(f"  test image {s['index']:5d}: labelled {s['label']}, predicted {s['predicted']} "
                  f"(label probability {1 - s['score']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
