"""Label reviews: a person's verdict on a test image's given label ("wrong: it is a 6", or "right"), and the test
accuracy of any run on the labels so corrected.

The reviews are one file, ``<runs folder>/_label_reviews.json`` (the run store ignores names starting with "_"), and
apply to every run: they are about the data, not a model. Each review names the test set it was made on (a hash of
its labels, `test_set_id`), the image's index in it and the label it was given then, so a run evaluated on another
test set (a tiny one in the tests, another data folder) is never "corrected" by them. Reviews of training images
(the Training cartography page) live in the same file, keyed apart: their set is `train_set_id` of the training
labels, which starts with "train-" and so is never a test set's id; their index is the image's position in the
MNIST training set. They change no accuracy figure. The file is JSON:

    {"kind": "mnistviz label reviews", "version": 1,
     "reviews": [{"test_set": "3f0c...", "index": 1234, "given": 5, "verdict": "wrong", "label": 6, "time": ...}]}

It is written whole and atomically under a lock (several browser sessions may review at once); Export downloads the
same bytes and Import reads them back. A file that cannot be read is reported in one sentence and never overwritten:
set it aside (renamed beside it, nothing lost) or import a good copy.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .analysis import N_CLASSES, predictions, run_predictions
from .runs import Run, atomic_write_bytes, runs_dir

REVIEWS_FILE = "_label_reviews.json"
TRAIN_PREFIX = "train-"  # of a training set's id; a test set's id is hex digits alone
SCOPES = ("test", "train")
KIND, VERSION = "mnistviz label reviews", 1
VERDICTS = ("wrong", "right")
MAX_BYTES = 20_000_000  # ~150,000 reviews: far more than anyone reviews by hand; an import is refused above it


class ReviewError(ValueError):
    """A reviews file or review that cannot be used; str() is one sentence saying what is wrong and what to do."""


@dataclass(frozen=True)
class Review:
    test_set: str        # test_set_id() of the test labels it was made on, or train_set_id() of the training labels
    index: int           # position in that test set
    given: int           # the label the image had
    verdict: str         # "wrong" or "right"
    label: int | None    # the digit it really is, when wrong
    time: float = 0.0    # when it was made (Unix time)

    @property
    def scope(self) -> str:
        """ "train" for a review of a training image, "test" otherwise."""
        return "train" if self.test_set.startswith(TRAIN_PREFIX) else "test"


Reviews = dict  # (test_set, index) -> Review


def reviews_path(root=None) -> Path:
    return runs_dir(root) / REVIEWS_FILE


def test_set_id(labels) -> str:
    """A short fingerprint of a test set's labels: reviews apply only to runs stored with the same labels."""
    a = np.ascontiguousarray(np.asarray(labels, np.uint8))
    return hashlib.sha256(len(a).to_bytes(8, "little") + a.tobytes()).hexdigest()[:16]


def train_set_id(labels) -> str:
    """The id of a training set (all its labels, as MNIST stores them): "train-" and the fingerprint."""
    return TRAIN_PREFIX + test_set_id(labels)


def set_id(labels, scope: str = "test") -> str:
    if scope not in SCOPES:
        raise ValueError(f"a review is of a test or a training image, not of {scope!r}")
    return train_set_id(labels) if scope == "train" else test_set_id(labels)


# ---------- the file format ----------

def to_bytes(reviews: Reviews) -> bytes:
    items = sorted(reviews.values(), key=lambda r: (r.test_set, r.index))
    return (json.dumps({"kind": KIND, "version": VERSION, "reviews": [asdict(r) for r in items]}, indent=1)
            + "\n").encode()


def _digit(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < N_CLASSES


def _review(d, n: int) -> Review:
    """Review number n of a file, checked; ValueError saying what is wrong with it."""
    if not isinstance(d, dict):
        raise ValueError(f"review {n} is not an object")
    ts, index, given, verdict, label = (d.get(k) for k in ("test_set", "index", "given", "verdict", "label"))
    if not isinstance(ts, str) or not ts or not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError(f"review {n} has no test set or no index")
    what = f"review {n} ({'training' if ts.startswith(TRAIN_PREFIX) else 'test'} image {index})"
    if not _digit(given) or verdict not in VERDICTS:
        raise ValueError(f"{what} needs a given digit and a verdict 'wrong' or 'right'")
    if verdict == "wrong" and (not _digit(label) or label == given):
        raise ValueError(f"{what} says the label {given} is wrong but names no other digit")
    t = d.get("time", 0.0)
    return Review(ts, index, given, verdict, label if verdict == "wrong" else None,
                  float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else 0.0)


def parse(data: bytes, source: str = "the file") -> Reviews:
    """Reviews from a file's bytes, validated; ReviewError naming `source` and what is wrong."""
    bad = f"{source} is not a label reviews file"
    if len(data) > MAX_BYTES:
        raise ReviewError(f"{bad}: it holds {len(data) / 1e6:.0f} MB, more than any set of reviews")
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ReviewError(f"{bad} (it is not JSON: {e}); export one from the Suspicious labels page") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND or not isinstance(doc.get("reviews"), list):
        raise ReviewError(f"{bad} (no '{KIND}' header with a list of reviews)")
    if doc.get("version") != VERSION:
        raise ReviewError(f"{bad} of a version this mnistviz reads (version {doc.get('version')!r}, reads {VERSION})")
    out = {}
    for n, d in enumerate(doc["reviews"]):
        try:
            r = _review(d, n)
        except ValueError as e:
            raise ReviewError(f"{bad}: {e}") from None
        out[(r.test_set, r.index)] = r  # a later review of the same image wins
    return out


# ---------- the saved file ----------

def load(path=None) -> Reviews:
    """The saved reviews ({} when there are none yet); ReviewError when the file is damaged or unreadable."""
    path = Path(path) if path is not None else reviews_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ReviewError(f"the label reviews file {path} cannot be read ({e.strerror or e})") from None
    try:
        return parse(data, source=f"the saved reviews {path}")
    except ReviewError as e:
        raise ReviewError(f"{e}. Set it aside to start anew (the file is kept), or import a good copy.") from None


def stamp(path=None):
    """(mtime_ns, size) of the reviews file, None without one: with a run's stamp, a cache key."""
    try:
        s = (Path(path) if path is not None else reviews_path()).stat()
        return s.st_mtime_ns, s.st_size
    except OSError:
        return None


@contextmanager
def _changing(path=None, start_empty: bool = False):
    """Load, let the caller change the dict, save it: under an flock, so reviews made at once in two browser
    sessions are both kept. A damaged file raises (ReviewError) and is left as it is, unless `start_empty` (a
    replacing import), which does not read it."""
    path = Path(path) if path is not None else reviews_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            reviews = {} if start_empty else load(path)
            yield reviews
            atomic_write_bytes(path, to_bytes(reviews))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def review(labels, index: int, verdict: str, label: int | None = None, path=None, now: float | None = None,
           scope: str = "test") -> Review:
    """Record a verdict on test image `index` of the test set whose labels are `labels` (scope "train": training
    image `index` of the training set whose labels are `labels`): "wrong" (it is a `label`) or "right". Replaces an
    earlier review of that image."""
    labels = np.asarray(labels)
    ts = set_id(labels, scope)
    if not isinstance(index, (int, np.integer)) or not 0 <= index < len(labels):
        what = "training" if scope == "train" else "test"
        raise ReviewError(f"{what} image {index!r} is not in this {what} set of {len(labels):,} images")
    given = int(labels[index])
    if verdict not in VERDICTS:
        raise ReviewError(f"a review says the label is 'wrong' or 'right', not {verdict!r}")
    if verdict == "wrong" and (not _digit(label) or label == given):
        raise ReviewError(f"a label reviewed wrong needs the digit it really is (0-9, not the given {given})")
    r = Review(ts, int(index), given, verdict, int(label) if verdict == "wrong" else None,
               time.time() if now is None else now)
    with _changing(path) as reviews:
        reviews[(r.test_set, r.index)] = r
    return r


def unreview(labels, index: int, path=None, scope: str = "test") -> None:
    """Withdraw the review of test image `index` (scope "train": training image; nothing when there is none)."""
    ts = set_id(labels, scope)
    with _changing(path) as reviews:
        reviews.pop((ts, int(index)), None)


def import_bytes(data: bytes, replace: bool = False, path=None,
                 source: str = "the uploaded file") -> tuple[Reviews, int]:
    """Read an exported file and add its reviews to the saved ones (an image reviewed in both: the imported review)
    or replace them. Returns (the reviews now saved, how many came in). A damaged saved file is replaced only when
    replace=True."""
    incoming = parse(data, source=source)
    with _changing(path, start_empty=replace) as reviews:
        reviews.update(incoming)
    return reviews, len(incoming)


def set_aside(path=None) -> Path | None:
    """Rename a (damaged) reviews file to _label_reviews.broken-<time>.json beside it, so a new one can start and
    nothing is lost. Returns the new name, or None when there was no file."""
    path = Path(path) if path is not None else reviews_path()
    if not path.exists():
        return None
    target = path.with_name(f"{path.stem}.broken-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
    path.rename(target)
    return target


# ---------- what the reviews change ----------

def applying(reviews: Reviews, labels, scope: str = "test") -> dict[int, Review]:
    """test index -> its review, for the reviews made on this test set (same labels, index in range, same given
    label); scope "train": training index -> its review, for this training set."""
    labels = np.asarray(labels)
    ts = set_id(labels, scope)
    return {r.index: r for r in reviews.values()
            if r.test_set == ts and r.index < len(labels) and int(labels[r.index]) == r.given}


def reviewed_wrong(reviews: Reviews, labels) -> dict[int, int]:
    """test index -> the digit it really is, for the images of this test set whose label was reviewed wrong."""
    return {i: r.label for i, r in applying(reviews, labels).items() if r.verdict == "wrong"}


def corrected_labels(labels, reviews: Reviews) -> tuple[np.ndarray, int]:
    """(the labels with every label reviewed wrong replaced by the digit it is, how many were replaced)."""
    out = np.array(labels, dtype=np.int64)
    fix = reviewed_wrong(reviews, labels)
    if fix:
        out[list(fix)] = list(fix.values())
    return out, len(fix)


def corrected_accuracy(labels, preds, reviews: Reviews) -> dict:
    """Test accuracy on the given labels and on the reviewed ones: {accuracy, corrected_accuracy, corrected (labels
    changed), reviewed (reviews of this test set, "right" ones too)}."""
    labels, preds = np.asarray(labels, np.int64), np.asarray(preds, np.int64)
    fixed, n = corrected_labels(labels, reviews)
    nan = float("nan")
    return {"accuracy": float((preds == labels).mean()) if len(labels) else nan,
            "corrected_accuracy": float((preds == fixed).mean()) if len(labels) else nan,
            "corrected": n, "reviewed": len(applying(reviews, labels))}


def run_accuracy(run: Run, reviews: Reviews, epoch: int | None = None) -> dict:
    """corrected_accuracy of a run's stored test predictions after `epoch` (default: its best), plus "epoch".
    RunError when the run has no readable predictions."""
    if epoch is None:
        epochs, best = run.pred_epochs(), run.best_epoch()
        epoch = best if best in epochs else (epochs[-1] if epochs else None)
    labels, probs = run_predictions(run, epoch)
    return {**corrected_accuracy(labels, predictions(probs)[0], reviews), "epoch": epoch}


def accuracy_text(res: dict) -> str:
    """ "99.35%, 99.44% with 9 labels corrected" (the first figure alone when no label was corrected)."""
    text = f"{res['accuracy']:.2%}"
    n = res["corrected"]
    if n:
        text += f", {res['corrected_accuracy']:.2%} with {n} label{'s' if n != 1 else ''} corrected"
    return text
