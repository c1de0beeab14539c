"""Suspicious labels: which MNIST test images' given labels are probably wrong, from the runs' stored predictions only.

Stored test predictions are out-of-sample by construction, which is all confident learning needs. cleanlab ranks
them where it is installed (`cleanlab.filter.find_label_issues`); otherwise a plain self-confidence ranking (the
given label's probability, lowest first) among the images the models get wrong.

    python -m mnistviz.labels RUN [RUN ...] [--top K] [--json]
"""
from __future__ import annotations

import json
import sys

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
    if find is not None and len(np.unique(labels)) == probs.shape[1]:
        # confident learning: per-class thresholds decide which labels are issues; ranked by self-confidence
        order = np.asarray(find(labels, probs / probs.sum(1, keepdims=True),
                                return_indices_ranked_by="self_confidence"), np.int64)
        used = "cleanlab.filter.find_label_issues (confident learning), ranked by self-confidence"
    else:
        wrong = np.flatnonzero(probs.argmax(1) != labels)
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
