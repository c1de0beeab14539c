"""My digits: the user's own handwriting, saved from the Draw page, to measure models on.

The set is one file, ``<runs folder>/_mydigits/digits.npz`` (the run store ignores names starting with
"_"), holding
  images   uint8 N x 28 x 28  the preprocessed drawings exactly as the model saw them (white on black)
  labels   uint8 N            the digit the user says each one is
  created  float64 N          when each was saved (Unix time)
It is written whole and atomically; the same file is what Export downloads and Import reads back.
Reading never unpickles (``allow_pickle=False``) and checks sizes before decompressing, so an uploaded
file can be refused with a sentence, never run code or fill the memory.
"""
from __future__ import annotations

import io
import time
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import analysis
from .evaluate import predict_logits
from .runs import PROJECT, Run, RunError, atomic_write_bytes, list_runs, runs_dir

SET_DIR = "_mydigits"
SET_FILE = "digits.npz"
MAX_DIGITS = 100_000                     # ~80 MB of images: far more than anyone draws by hand
MAX_UNPACKED = MAX_DIGITS * 28 * 28 * 2  # bytes a set may unpack to (all arrays together)
DEFAULT_MODEL = PROJECT / "checkpoints" / "default"


class MyDigitsError(ValueError):
    """A saved or uploaded set that cannot be used; str() says what is wrong and what to do."""


@dataclass
class DigitSet:
    images: np.ndarray   # uint8 N x 28 x 28
    labels: np.ndarray   # int64 N
    created: np.ndarray  # float64 N

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def empty(cls) -> "DigitSet":
        return cls(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64), np.zeros(0, np.float64))

    def counts(self) -> np.ndarray:
        """How many saved digits of each class (length 10)."""
        return np.bincount(self.labels, minlength=10)

    def float_images(self) -> np.ndarray:
        """N x 28 x 28 float32 in [0, 1]."""
        return self.images.astype(np.float32) / 255.0


def set_path(root: Path | None = None) -> Path:
    return runs_dir(root) / SET_DIR / SET_FILE


# ---------- the file format ----------

def to_bytes(ds: DigitSet) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, images=ds.images.astype(np.uint8), labels=ds.labels.astype(np.uint8),
                        created=ds.created.astype(np.float64))
    return buf.getvalue()


def parse(data: bytes, source: str = "the file") -> DigitSet:
    """A set from .npz bytes, validated; raises MyDigitsError naming `source` and what is wrong."""
    bad = f"{source} is not a My digits set"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            unpacked = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        raise MyDigitsError(f"{bad} (not an .npz archive; export one from the Draw page)") from None
    if unpacked > MAX_UNPACKED:
        raise MyDigitsError(f"{bad}: it unpacks to {unpacked / 1e6:.0f} MB, more than {MAX_DIGITS:,} digits")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # a damaged member, pickled objects, ...: all the same to the user
        raise MyDigitsError(f"{bad} (it cannot be read: {e})") from None
    for key in ("images", "labels"):
        if key not in arrays:
            raise MyDigitsError(f"{bad}: it has no '{key}' array (it has {', '.join(sorted(arrays)) or 'none'})")
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise MyDigitsError(f"{bad}: images must be N x 28 x 28, got shape {images.shape}")
    if labels.shape != (len(images),):
        raise MyDigitsError(f"{bad}: {len(images)} images but labels of shape {labels.shape}")
    if images.dtype == np.uint8:
        pass
    elif np.issubdtype(images.dtype, np.floating) and np.isfinite(images).all() and \
            (images.size == 0 or (images.min() >= 0 and images.max() <= 1)):
        images = np.round(images * 255).astype(np.uint8)
    else:
        raise MyDigitsError(f"{bad}: images must be uint8 (0-255) or floats in [0, 1], got {images.dtype}")
    if not np.issubdtype(labels.dtype, np.integer) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise MyDigitsError(f"{bad}: labels must be digits 0-9")
    created = arrays.get("created")
    if created is None or created.shape != labels.shape or not np.issubdtype(created.dtype, np.number):
        created = np.zeros(len(labels), np.float64)
    return DigitSet(np.ascontiguousarray(images), labels.astype(np.int64), created.astype(np.float64))


# ---------- the saved set ----------

def load(path: Path | None = None) -> DigitSet:
    """The saved set (empty when none has been saved yet); MyDigitsError when the file is damaged."""
    path = Path(path) if path is not None else set_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return DigitSet.empty()
    except OSError as e:
        raise MyDigitsError(f"the saved My digits set {path} cannot be read ({e})") from None
    try:
        return parse(data, source=f"the saved set {path}")
    except MyDigitsError as e:
        raise MyDigitsError(f"{e}. Set it aside to start a new set (the file is kept), or import a good copy.") \
            from None


def save(ds: DigitSet, path: Path | None = None) -> None:
    path = Path(path) if path is not None else set_path()
    if len(ds) > MAX_DIGITS:
        raise MyDigitsError(f"a set holds at most {MAX_DIGITS:,} digits")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, to_bytes(ds))


def to_uint8(image28) -> np.ndarray:
    a = np.asarray(image28)
    if a.shape != (28, 28):
        raise ValueError(f"expected a 28 x 28 image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.copy()
    return np.round(np.clip(a.astype(np.float32), 0, 1) * 255).astype(np.uint8)


def check_label(label) -> int:
    try:
        value = int(label)
    except (TypeError, ValueError):
        raise MyDigitsError(f"the label must be a digit 0-9, got {label!r}") from None
    if value != label or not 0 <= value <= 9:
        raise MyDigitsError(f"the label must be a digit 0-9, got {label!r}")
    return value


def add(image28, label, path: Path | None = None, now: float | None = None) -> DigitSet:
    """Append one 28 x 28 image (float in [0, 1] or uint8) with its label to the saved set; returns the set."""
    label = check_label(label)
    ds = load(path)
    img = to_uint8(image28)
    ds = DigitSet(np.concatenate([ds.images, img[None]]), np.append(ds.labels, label),
                  np.append(ds.created, time.time() if now is None else now))
    save(ds, path)
    return ds


def remove(indices, path: Path | None = None) -> DigitSet:
    """Delete the digits at `indices` from the saved set; returns the set."""
    ds = load(path)
    keep = np.ones(len(ds), bool)
    idx = np.asarray(list(indices), dtype=np.int64)
    keep[idx[(idx >= 0) & (idx < len(ds))]] = False
    ds = DigitSet(ds.images[keep], ds.labels[keep], ds.created[keep])
    save(ds, path)
    return ds


def import_bytes(data: bytes, path: Path | None = None, replace: bool = False,
                 source: str = "the uploaded file") -> tuple[DigitSet, int]:
    """Read an exported set and add it to the saved one (or replace it). Returns (the new set, how many
    digits came in). A damaged saved set is replaced only when replace=True."""
    incoming = parse(data, source=source)
    if replace:
        ds = incoming
    else:
        ds = load(path)
        ds = DigitSet(np.concatenate([ds.images, incoming.images]), np.concatenate([ds.labels, incoming.labels]),
                      np.concatenate([ds.created, incoming.created]))
    save(ds, path)
    return ds, len(incoming)


def set_aside(path: Path | None = None) -> Path | None:
    """Rename a (damaged) saved set to digits.broken-<time>.npz beside it, so a new set can start and
    nothing is lost. Returns the new name, or None when there was no file."""
    path = Path(path) if path is not None else set_path()
    if not path.exists():
        return None
    target = path.with_name(f"{path.stem}.broken-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}")
    path.rename(target)
    return target


# ---------- models and evaluation ----------

def model_choices(root: Path | None = None, include: str | None = None) -> list[dict]:
    """Models to draw with and evaluate: the bundled default (checkpoints/default) first, then every
    completed run of the runs folder, newest first; `include` names one more run of the runs folder to list
    even if it has not completed (the run selected in the sidebar), as long as it has a checkpoint.
    Each: {name, label, path, stamp, source} with source "built in" or "your runs". Labels are unique: the
    bundled model says "built in", and a run named like another choice (a run called "default") says
    "your runs"."""
    good, _ = list_runs(root)
    out, seen = [], set()

    def entry(name, path, summary, source):
        acc = summary.get("best_test_acc")
        status = summary.get("status")
        parts = [summary.get("model"), f"{acc:.2%} test" if acc is not None else None,
                 status if status != "completed" else None]
        return {"name": name, "detail": ", ".join(x for x in parts if x), "path": str(path),
                "stamp": Run(Path(path)).checkpoint_stamp(), "source": source}

    default = DEFAULT_MODEL.resolve()
    listed = {Path(r["path"]).resolve(): r for r in good}
    if default not in listed and default.is_dir():
        try:
            summary = Run(default).summary()
            if summary["status"] == "completed":
                out.append(entry("default", default, summary, "built in"))
                seen.add(default)
        except RunError:
            pass
    elif default in listed and listed[default]["status"] == "completed":
        out.append(entry(listed[default]["name"], default, listed[default], "built in"))
        seen.add(default)
    for path, r in listed.items():
        if path in seen:
            continue
        if r["status"] == "completed" or (r["name"] == include and Run(path).checkpoint_stamp() > 0):
            out.append(entry(r["name"], path, r, "your runs"))
    clash = {name for name, k in Counter(c["name"] for c in out).items() if k > 1}
    for c in out:
        tags = [c["source"]] if c["source"] == "built in" or c["name"] in clash else []
        tags += [c.pop("detail")] if c["detail"] else []
        c["label"] = f"{c['name']} ({', '.join(tags)})" if tags else c["name"]
    return out


def evaluate_set(model: torch.nn.Module, ds: DigitSet) -> dict:
    """A model on the set: {accuracy, confusion (10 x 10 counts, rows = true), preds, probs, wrong (indices)}."""
    if len(ds) == 0:
        return {"accuracy": None, "confusion": np.zeros((10, 10), np.int64), "preds": np.zeros(0, np.int64),
                "probs": np.zeros((0, 10), np.float32), "wrong": np.zeros(0, np.int64)}
    logits = predict_logits(model, torch.from_numpy(ds.images))
    probs = torch.softmax(logits, 1).numpy()
    preds = probs.argmax(1).astype(np.int64)
    return {"accuracy": analysis.accuracy(ds.labels, preds),
            "confusion": analysis.confusion_matrix(ds.labels, preds),
            "preds": preds, "probs": probs, "wrong": np.flatnonzero(preds != ds.labels)}
