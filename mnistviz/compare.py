"""Two or more runs side by side: curves, config differences, per-class accuracy, disagreements, robustness, and a
verdict on two of them with paired tests on the same test images (McNemar's exact test; scipy's binomtest).

Plain Python (numpy/pandas/torch); the Compare page (pages/compare.py) is layout over these functions.
Predictions come from the run store (`analysis.run_predictions`), robustness re-evaluates each run's best
checkpoint (`runs.load_model`) on deterministically distorted copies of the first test images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import analysis
from .evaluate import predict_logits
from .runs import Run, RunError, load_model

# config.json fields that say nothing about the recipe
IGNORED_CONFIG = ("name", "created", "pair", "preset")
SPLITS = (("train", "train"), ("validation", "val"), ("test", "test"))
METRICS = ("accuracy", "loss")

# distortion -> strengths (0 = the plain test set) and the unit a strength is measured in
DISTORTIONS = {"shift": (0, 2, 4, 6), "rotate": (0, 15, 30, 45), "thicken": (0, 1, 2)}
UNITS = {"shift": "pixels", "rotate": "degrees", "thicken": "pixels of dilation"}
ROBUSTNESS_IMAGES = 2000


class CompareError(ValueError):
    """Runs that cannot be compared the asked way; str() says why."""


# ---------- choosing runs ----------

def default_selection(summaries: list[dict]) -> list[str]:
    """The most recent augmented / normal pair (the newest two runs sharing a `pair` id, augmented first),
    else the two newest completed runs, else the two newest runs with a finished epoch. `summaries` as
    from runs.list_runs(): newest first. May return fewer than two names."""
    usable = [s for s in summaries if (s.get("epochs_done") or 0) > 0]
    for s in usable:
        if s.get("pair"):
            mates = [m for m in usable if m.get("pair") == s["pair"]][:2]
            if len(mates) == 2:
                mates.sort(key=lambda m: (m.get("augment") in (None, "none")))  # augmented first, stable
                return [m["name"] for m in mates]
    done = [s["name"] for s in usable if s.get("status") == "completed"]
    if len(done) >= 2:
        return done[:2]
    return [s["name"] for s in usable][:2]


def parse_run_list(value: str | None, names: list[str]) -> tuple[list[str], list[str]]:
    """`?runs=a,b` -> (known names in the given order without repeats, unknown names)."""
    known, unknown = [], []
    for n in (value or "").split(","):
        n = n.strip()
        if not n:
            continue
        if n in names:
            if n not in known:
                known.append(n)
        elif n not in unknown:
            unknown.append(n)
    return known, unknown


# ---------- curves and tables ----------

def epoch_curves(records: dict[str, list[dict]]) -> pd.DataFrame:
    """Tidy per-epoch curves: columns run, epoch, split (train / validation / test), metric (accuracy / loss),
    value. `records` maps run name -> Run.epoch_records(). Missing values (e.g. no validation set) are left out."""
    rows = []
    for name, recs in records.items():
        for r in recs:
            for split, key in SPLITS:
                for metric, suffix in (("accuracy", "acc"), ("loss", "loss")):
                    v = r.get(f"{key}_{suffix}")
                    if v is not None and isinstance(v, (int, float)) and math.isfinite(v):
                        rows.append((name, int(r["epoch"]), split, metric, float(v)))
    return pd.DataFrame(rows, columns=["run", "epoch", "split", "metric", "value"])


def config_differences(configs: dict[str, dict]) -> pd.DataFrame:
    """Config fields whose values differ between runs: index field, one column per run (values as text).
    Empty (no rows) when the recipes are the same."""
    fields = sorted({k for c in configs.values() for k in c} - set(IGNORED_CONFIG))
    rows = {}
    for f in fields:
        vals = [c.get(f, "—") for c in configs.values()]
        if any(v != vals[0] for v in vals[1:]):
            rows[f] = ["—" if v is None else str(v) for v in vals]
    df = pd.DataFrame.from_dict(rows, orient="index", columns=list(configs))
    df.index.name = "field"
    return df


def summary_row(name: str, config: dict, status: str | None, records: list[dict]) -> dict:
    """Final and best metrics of one run from its epoch records."""
    scored = [r for r in records if r.get("test_acc") is not None]
    last = records[-1] if records else {}
    best = max(scored, key=lambda r: (r["test_acc"], -r["epoch"])) if scored else {}
    speeds = [r["images_per_s"] for r in records if r.get("images_per_s")]
    return {
        "run": name, "model": config.get("model"), "augment": config.get("augment"), "status": status,
        "epochs": len(records), "planned epochs": config.get("epochs"),
        "final test acc": last.get("test_acc"), "final test loss": last.get("test_loss"),
        "best test acc": best.get("test_acc"), "best epoch": best.get("epoch"),
        "test loss at best": best.get("test_loss"), "final val acc": last.get("val_acc"),
        "train seconds": last.get("train_seconds"),
        "images/s": float(np.mean(speeds)) if speeds else None,
    }


def summary_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run (index run): model, augment, status, epochs, final and best test accuracy and loss,
    training seconds, mean images/s. Raises RunError for an unreadable run folder."""
    rows = [summary_row(r.name, r.config(), r.status().get("status"), r.epoch_records()) for r in runs]
    return pd.DataFrame(rows).set_index("run")


CSV_DIGITS = 6  # significant digits of a float in the CSV exports


def _round_significant(x, digits: int = CSV_DIGITS):
    """`x` to `digits` significant digits, never rounding away its integer part (a timestamp keeps its seconds);
    anything that is not a finite float is returned as it is."""
    if not isinstance(x, (float, np.floating)) or not math.isfinite(x) or x == 0:
        return x
    return round(float(x), max(digits - 1 - math.floor(math.log10(abs(x))), 0))


def csv_bytes(df: pd.DataFrame, index: bool = True) -> bytes:
    """`df` as CSV with its float columns rounded to CSV_DIGITS significant digits, so values stored as float32
    read 0.986 and not 0.9860000014305115. The DataFrame itself is left untouched."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]) or pd.api.types.is_object_dtype(out[col]):
            out[col] = out[col].map(_round_significant)
    return out.to_csv(index=index).encode()


def epochs_csv(runs: list[Run]) -> bytes:
    """Every epoch record of the runs as CSV, one row per (run, epoch), floats rounded (see csv_bytes)."""
    rows = [{"run": r.name, **rec} for r in runs for rec in r.epoch_records()]
    return csv_bytes(pd.DataFrame(rows), index=False)


# ---------- the verdict: which run is more accurate, and is it more than noise ----------

ALPHA = 0.05  # a difference counts as "more than noise" when its paired test gives p below this
DISTORTED = "shifted, rotated and thickened digits"


def _pct(v: float) -> str:
    return f"{v:.2%}"


@dataclass(frozen=True)
class Paired:
    """A paired comparison of A and B on the same images. n: images; acc_a / acc_b: accuracies (fractions);
    a_better / b_better: images on which A does better than B and the reverse (the discordant pairs); p: the
    two-sided exact binomial test of a_better against b_better at 1/2 (1.0 when there are none)."""
    n: int
    acc_a: float
    acc_b: float
    a_better: int
    b_better: int
    p: float


def sign_test(a_better: int, b_better: int) -> float:
    """Two-sided exact test that A and B are equally good, given only the pairs they disagree on: under that
    hypothesis each disagreement goes either way with probability 1/2 (McNemar's exact test, a sign test)."""
    from scipy.stats import binomtest  # only the Compare page needs scipy

    n = a_better + b_better
    return 1.0 if n == 0 else float(binomtest(a_better, n, 0.5).pvalue)


def mcnemar(labels, probs_a, probs_b) -> Paired:
    """McNemar's exact test on the test images: A's and B's predictions (probs N x 10) on the same `labels`.
    Raises CompareError with a sentence when they were not scored on the same number of images."""
    labels = np.asarray(labels, dtype=np.int64)
    _same_length(labels, probs_a, probs_b)
    ok_a = analysis.predictions(probs_a)[0] == labels
    ok_b = analysis.predictions(probs_b)[0] == labels
    a, b = int((ok_a & ~ok_b).sum()), int((ok_b & ~ok_a).sum())
    n = len(labels)
    return Paired(n, float(ok_a.mean()) if n else math.nan, float(ok_b.mean()) if n else math.nan, a, b,
                  sign_test(a, b))


def distorted_sign_test(right_a, right_b) -> Paired:
    """A paired test on distorted images. `right_a` / `right_b`: bool (versions x N), whether the run gets each
    distorted version of each test image right (robustness_outcomes). The versions of one image are not
    independent trials, so the test counts images, not versions: an image counts for A when A gets more of its
    versions right than B does. acc_a / acc_b are the share of all distorted versions right."""
    ra, rb = np.asarray(right_a, bool), np.asarray(right_b, bool)
    if ra.shape != rb.shape or ra.ndim != 2:
        raise CompareError(f"the robustness results of the two runs do not match ({ra.shape} and {rb.shape})")
    ka, kb = ra.sum(0), rb.sum(0)
    a, b = int((ka > kb).sum()), int((kb > ka).sum())
    return Paired(ra.shape[1], float(ra.mean()) if ra.size else math.nan,
                  float(rb.mean()) if rb.size else math.nan, a, b, sign_test(a, b))


def p_text(p: float) -> str:
    """"p = 0.30", "p = 0.012", "p < 0.001"; never rounded across ALPHA (0.0499 is not shown as 0.05)."""
    if p < 0.001:
        return "p < 0.001"
    if p > 0.995:
        return "p = 1"
    text = f"{p:.2g}" if p < 0.1 else f"{p:.2f}"
    if (p < ALPHA) != (float(text) < ALPHA):
        text = f"{p:.4f}"
    return f"p = {text}"


def _finding(t: Paired, names: dict, where: str, test: str, what: str, better: str) -> str:
    """One sentence on `t`: who is ahead on `where` and whether `test` says it is more than noise."""
    if t.n == 0:
        return f"On {where} there is nothing to compare: no images."
    if t.a_better == t.b_better == 0:
        return (f"On {where} A and B get exactly the same images right ({_pct(t.acc_a)}): no disagreements, "
                f"so no difference.")
    counts = f"{max(t.a_better, t.b_better)} vs {min(t.a_better, t.b_better)} {what}"
    w = "A" if t.a_better > t.b_better else "B"
    hi, lo = (t.acc_a, t.acc_b) if w == "A" else (t.acc_b, t.acc_a)
    if t.a_better == t.b_better or hi < lo:  # (on distorted images the image count and the accuracy can disagree)
        return (f"On {where} neither is ahead: {_pct(t.acc_a)} vs {_pct(t.acc_b)}, {counts}, {test} {p_text(t.p)}: "
                f"no clear difference on {where}.")
    stats = f"{_pct(hi)} vs {_pct(lo)}, {counts}, {test} {p_text(t.p)}"
    if t.p < ALPHA:
        return f"On {where} {w} ({names[w]}) {better}: {stats}: more than noise."
    return f"On {where} {w} ({names[w]}) scores higher, {stats}: no clear difference on {where}."


def clean_finding(a: str, b: str, clean: Paired | str) -> str:
    """The verdict's sentence on clean test images: `clean` from mcnemar, or a sentence saying why there is none."""
    if isinstance(clean, str):
        return clean
    return _finding(clean, {"A": a, "B": b}, "clean images", "McNemar's exact test",
                    "disagreements (images only one of them gets right)", "is more accurate")


def distorted_finding(a: str, b: str, distorted: Paired | str) -> str:
    """The verdict's sentence on distorted digits: `distorted` from distorted_sign_test, or why there is none."""
    if isinstance(distorted, str):
        return distorted
    return _finding(distorted, {"A": a, "B": b}, DISTORTED, "sign test over images",
                    "images where one gets more of the distorted versions right", "holds up better")


def verdict(a: str, b: str, clean: Paired | str, distorted: Paired | str) -> list[str]:
    """The Compare page's verdict on A vs B in two sentences: on clean test images, then on distorted ones."""
    return [clean_finding(a, b, clean), distorted_finding(a, b, distorted)]


# ---------- predictions ----------

def load_predictions(runs: list[Run]) -> tuple[np.ndarray | None, dict[str, np.ndarray], dict[str, str]]:
    """(labels, {run: probs at its best epoch}, {run: why it was left out}). Runs must share one test set:
    a run whose labels differ from the first usable run's is left out with a reason."""
    labels, probs, problems = None, {}, {}
    for run in runs:
        try:
            y, p = analysis.run_predictions(run)
        except RunError as e:
            problems[run.name] = str(e)
            continue
        if labels is None:
            labels, first = y, run.name
        elif len(y) != len(labels) or not np.array_equal(y, labels):
            problems[run.name] = (f"run {run.name} was tested on a different test set ({len(y)} images) than "
                                  f"{first} ({len(labels)} images), so its predictions cannot be compared")
            continue
        probs[run.name] = p
    return labels, probs, problems


def per_class_accuracy(labels, probs: dict[str, np.ndarray]) -> pd.DataFrame:
    """index digit 0-9, one column per run: share of that digit's test images the run gets right."""
    cols = {name: analysis.per_class_metrics(labels, analysis.predictions(p)[0])["accuracy"]
            for name, p in probs.items()}
    df = pd.DataFrame(cols)
    df.index.name = "digit"
    return df


def confusion_difference(labels, probs_a, probs_b) -> np.ndarray:
    """Confusion counts of A minus those of B (10 x 10 int, rows true digit, columns predicted).
    On the diagonal, positive means A gets more of that digit right; off it, A makes that mistake more."""
    _same_length(labels, probs_a, probs_b)
    return (analysis.confusion_matrix(labels, analysis.predictions(probs_a)[0])
            - analysis.confusion_matrix(labels, analysis.predictions(probs_b)[0]))


def better_for_a(diff) -> np.ndarray:
    """A confusion difference (A minus B) turned into "how much better A does" in every cell: the diagonal as it
    is (A gets more right), the rest negated (A makes that mistake less often). For colouring the difference
    with one meaning everywhere; the signed counts themselves stay those of confusion_difference."""
    d = np.asarray(diff)
    return np.where(np.eye(len(d), dtype=bool), d, -d)


def disagreements(labels, probs_a, probs_b) -> pd.DataFrame:
    """Test images exactly one of the two runs gets right.

    Columns: index (test image), label, pred_a, conf_a, pred_b, conf_b, right ("A" or "B").
    Rows with right == "A" come first; within each group the loser's most confident mistakes first."""
    labels = np.asarray(labels, dtype=np.int64)
    _same_length(labels, probs_a, probs_b)
    pa, ca = analysis.predictions(probs_a)
    pb, cb = analysis.predictions(probs_b)
    ok_a, ok_b = pa == labels, pb == labels
    keep = ok_a != ok_b
    df = pd.DataFrame({"index": np.flatnonzero(keep), "label": labels[keep],
                       "pred_a": pa[keep], "conf_a": ca[keep].astype(np.float64),
                       "pred_b": pb[keep], "conf_b": cb[keep].astype(np.float64),
                       "right": np.where(ok_a[keep], "A", "B")})
    loser_conf = np.where(df["right"] == "A", df["conf_b"], df["conf_a"])
    order = np.lexsort((df["index"].to_numpy(), -loser_conf, (df["right"] == "B").to_numpy()))
    return df.iloc[order].reset_index(drop=True)


def _same_length(labels, *probs):
    n = len(labels)
    for p in probs:
        if len(p) != n:
            raise CompareError(f"the runs were tested on different test sets ({n} and {len(p)} images); "
                               f"their predictions cannot be compared image by image")


# ---------- robustness ----------

def distort(images: torch.Tensor, kind: str, strength: float) -> torch.Tensor:
    """A deterministic distortion of N x 1 x H x W floats in [0, 1] (strength 0 returns the images unchanged).

    shift:   move each image by `strength` pixels, right / down / left / up in turn (image i takes direction i % 4)
    rotate:  rotate each image by `strength` degrees about its centre, clockwise for even i, anticlockwise for odd i
    thicken: dilate the strokes by `strength` pixels (max-pooling with a (2s+1) square window)
    """
    if kind not in DISTORTIONS:
        raise ValueError(f"unknown distortion {kind!r}; choose one of {', '.join(DISTORTIONS)}")
    if strength < 0:
        raise ValueError(f"distortion strength must be at least 0, got {strength}")
    if strength == 0 or len(images) == 0:
        return images
    n, _, h, w = images.shape
    if kind == "thicken":
        s = int(strength)
        return F.max_pool2d(images, 2 * s + 1, stride=1, padding=s)
    zero = torch.zeros(n)
    if kind == "shift":
        d = torch.arange(n) % 4
        dx = torch.where(d == 0, 1.0, torch.where(d == 2, -1.0, 0.0)) * strength
        dy = torch.where(d == 1, 1.0, torch.where(d == 3, -1.0, 0.0)) * strength
        theta = torch.stack([torch.stack([zero + 1, zero, -2 * dx / w], 1),
                             torch.stack([zero, zero + 1, -2 * dy / h], 1)], 1)
    else:
        sign = 1 - 2 * (torch.arange(n) % 2).float()
        a = torch.deg2rad(sign * float(strength))
        cos, sin = torch.cos(a), torch.sin(a)
        # the grid maps output -> input pixels; with rows counted downwards this turns the content clockwise by a
        theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), (n, 1, h, w), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _as_float(images: torch.Tensor) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images.unsqueeze(1).float().div(255) if images.ndim == 3 else images.float().div(255)
    return images.float()


def robustness(models: dict[str, torch.nn.Module], images: torch.Tensor, labels: torch.Tensor,
               distortions: dict[str, tuple] = DISTORTIONS) -> pd.DataFrame:
    """Accuracy of each model on distorted copies of `images` (uint8 N x 28 x 28 or float N x 1 x 28 x 28).
    Tidy DataFrame: run, distortion, strength, accuracy (fraction). Each distorted set is made once and
    shared by the models."""
    return robustness_outcomes(models, images, labels, distortions)[0]


def robustness_outcomes(models: dict[str, torch.nn.Module], images: torch.Tensor, labels: torch.Tensor,
                        distortions: dict[str, tuple] = DISTORTIONS) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """`robustness`'s table, and per model which distorted images it gets right: bool (versions x N), one row per
    distorted condition (strength > 0) in the table's order, for a paired test (distorted_sign_test)."""
    x, y = _as_float(images), torch.as_tensor(labels, dtype=torch.int64)
    if len(x) != len(y) or len(x) == 0:
        raise CompareError(f"robustness needs test images and as many labels (got {len(x)} and {len(y)})")
    rows, right = [], {name: [] for name in models}
    for kind, strengths in distortions.items():
        for s in strengths:
            xd = distort(x, kind, s)
            for name, model in models.items():
                ok = predict_logits(model, xd).argmax(1) == y
                rows.append((name, kind, s, ok.double().mean().item()))
                if s > 0:
                    right[name].append(ok.numpy())
    table = pd.DataFrame(rows, columns=["run", "distortion", "strength", "accuracy"])
    return table, {name: np.array(r, dtype=bool).reshape(len(r), len(y)) for name, r in right.items()}


def run_robustness(run_dirs: list[str | Path], images: torch.Tensor, labels: torch.Tensor,
                   n: int = ROBUSTNESS_IMAGES, distortions: dict[str, tuple] = DISTORTIONS) -> pd.DataFrame:
    """`robustness` for runs' best checkpoints on the first `n` images. Raises RunError for a run whose
    checkpoint cannot be loaded."""
    models = {Path(d).name: load_model(d) for d in run_dirs}
    return robustness(models, images[:n], labels[:n], distortions)


def run_robustness_outcomes(run_dirs: list[str | Path], images: torch.Tensor, labels: torch.Tensor,
                            n: int = ROBUSTNESS_IMAGES, distortions: dict[str, tuple] = DISTORTIONS):
    """`robustness_outcomes` for runs' best checkpoints on the first `n` images. Raises RunError for a run whose
    checkpoint cannot be loaded."""
    models = {Path(d).name: load_model(d) for d in run_dirs}
    return robustness_outcomes(models, images[:n], labels[:n], distortions)
