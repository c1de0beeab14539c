"""Embeddings: what a model's stage makes of the test images, projected to 2-D (PCA, t-SNE or UMAP).

A model is an nn.Sequential of named stages (models.py), so the activations after any stage come from one forward
pass. The default stage is the input of the last layer (the "penultimate layer"): the features the classifier
reads. t-SNE and UMAP start from the first PRE_DIMS principal components, as their authors advise for inputs of
many dimensions (and for speed). Projections are deterministic for a seed, and kept in the run folder
(`.embeddings/`), keyed by weights, stage, method, sample size and seed, so a second visit is a file read.
scikit-learn (t-SNE) and umap-learn (UMAP) are imported only when those methods run.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .runs import Run, RunError, atomic_save, load_checkpoint

METHODS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
PRE_DIMS = 50
SMALL = 2000  # points: below this t-SNE runs on one thread (see _threads)
CACHE_DIR = ".embeddings"   # in the run folder; a dot name, so git and the runs list pass it by
FORMAT = 1                  # of the cache files: a file of another format is computed again

Progress = Callable[[float, str], None]  # (fraction done 0..1, what it is doing)


# ---------- which weights, which stage, which images ----------

@dataclass(frozen=True)
class Weights:
    key: str      # "best", or "epoch-003": part of the cache file names
    label: str    # what the page says
    path: Path
    epoch: int | None


def weight_choices(run: Run) -> list[Weights]:
    """The run's per-epoch weights (epochs/epoch_NNN.pt), oldest first, when it kept them; otherwise its best
    checkpoint (best.pt, or last.pt without one), labelled so. RunError when it has no checkpoint at all."""
    kept = sorted(run.epochs_dir.glob("epoch_[0-9][0-9][0-9].pt"))
    if kept:
        return [Weights(f"epoch-{p.stem[6:]}", f"epoch {int(p.stem[6:])}", p, int(p.stem[6:])) for p in kept]
    from .evaluate import checkpoint_info

    info = checkpoint_info(run.path)
    return [Weights("best", info["about"], run.model_checkpoint(), info["epoch"])]


def load_weights(run: Run, path) -> nn.Sequential:
    """The run's model with the weights in `path` (a checkpoint of the run) loaded, in eval mode; RunError with a
    sentence when they cannot be read or do not fit."""
    from .models import build

    name = run.config()["model"]
    try:
        model = build(name)
    except ValueError as e:
        raise RunError(f"run {run.name}: {e}") from None
    try:
        model.load_state_dict(load_checkpoint(Path(path))["model"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise RunError(f"run {run.name}: {Path(path).name} does not fit model {name} ({e})") from None
    return model.eval()


def stage_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_children()]


def default_stage(model: nn.Module) -> str:
    """The input of the last layer: the stage before it, passing over dropout (the same values in eval mode)."""
    stages = list(model.named_children())[:-1]
    while len(stages) > 1 and isinstance(stages[-1][1], nn.Dropout):
        stages.pop()
    return stages[-1][0]


def stratified_sample(labels, n: int, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of n of the images, each class in its share of the whole (largest remainders), chosen at
    random within its class for the seed; all of them when n >= their number."""
    labels = np.asarray(labels)
    total = len(labels)
    if n >= total:
        return np.arange(total)
    if n < 1:
        raise ValueError(f"sample size must be at least 1, got {n}")
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * n / total
    take = np.floor(share).astype(int)
    take[np.argsort(-(share - take), kind="stable")[:n - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))


@torch.no_grad()
def activations(model: nn.Module, images: torch.Tensor, stage: str,
                batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(the stage's outputs flattened, N x D float32; the model's class probabilities, N x 10 float32) for uint8
    images N x 28 x 28, in eval mode. Batches fill one array: a conv stage of 10,000 images is hundreds of MB."""
    names = stage_names(model)
    if stage not in names:
        raise ValueError(f"the model has no stage {stage!r}; it has {', '.join(names)}")
    feats, probs = None, np.empty((len(images), 10), np.float32)
    # channels-last halves the CPU's time in the convolutions and poolings of one-channel digits; on a copy, as
    # the pages share their loaded model between threads
    net = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    for i in range(0, len(images), batch_size):
        h = images[i:i + batch_size].unsqueeze(1).float().div_(255).contiguous(memory_format=torch.channels_last)
        for name, layer in net.named_children():
            h = layer(h)
            if name == stage:
                f = h.flatten(1)
                if feats is None:
                    feats = np.empty((len(images), f.shape[1]), np.float32)
                feats[i:i + len(f)] = f.numpy()
        probs[i:i + len(h)] = torch.softmax(h.float(), 1).numpy()
    return (feats if feats is not None else np.zeros((0, 1), np.float32)), probs


# ---------- projections ----------

def pca(x, k: int = 2, seed: int = 0) -> np.ndarray:
    """The first k principal components' scores (N x k float32), by torch's randomized PCA with a few power
    iterations on a fixed seed (deterministic); each axis signed so its largest value is positive (an SVD's signs
    are arbitrary)."""
    t = torch.as_tensor(np.asarray(x, np.float32))
    t = t - t.mean(0)
    k = min(k, *t.shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, _, v = torch.pca_lowrank(t, q=min(k + 10, *t.shape), center=False, niter=6)
    z = (t @ v[:, :k]).numpy()
    if len(z):
        z *= np.where(z[np.abs(z).argmax(0), range(z.shape[1])] < 0, -1, 1)
    return np.ascontiguousarray(z, dtype=np.float32)


def explained_variance(x, coords) -> float:
    """The share of the features' total variance that the 2-D coordinates keep (meaningful for PCA)."""
    x = np.asarray(x, np.float64)
    total = float(x.var(0).sum())
    return float(np.asarray(coords, np.float64).var(0).sum() / total) if total > 0 else 0.0


def project(x, method: str, seed: int = 0, progress: Progress | None = None) -> np.ndarray:
    """N x D features -> N x 2 float32 coordinates by `method` (METHODS), the same for the same seed."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    x = np.asarray(x, np.float32)
    report = progress or (lambda f, s: None)
    if method == "pca" or len(x) < 4:  # t-SNE and UMAP need a few neighbours to work with
        return pca(x, 2, seed)
    if x.shape[1] > PRE_DIMS:
        report(0.0, f"PCA to {PRE_DIMS} dimensions")
        x = pca(x, PRE_DIMS, seed)
    return (_tsne if method == "tsne" else _umap)(x, seed, report)


def _tsne(x: np.ndarray, seed: int, report: Progress) -> np.ndarray:
    report(0.01, "t-SNE: loading scikit-learn")
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=2, perplexity=min(30.0, (len(x) - 1) / 3), init="pca", random_state=seed,
                verbose=2)
    report(0.02, "t-SNE: finding each point's neighbours")
    # scikit-learn reports t-SNE's iterations only by printing them ("[t-SNE] Iteration 50: error = ...")
    step = re.compile(r"\[t-SNE\] Iteration (\d+):")

    def line(text: str) -> None:
        m = step.match(text)
        if m:
            report(0.05 + 0.95 * int(m[1]) / tsne.max_iter, f"t-SNE: iteration {m[1]} of {tsne.max_iter}")
    with printed_lines(line), _threads(len(x)):
        return tsne.fit_transform(x).astype(np.float32)


def _umap(x: np.ndarray, seed: int, report: Progress) -> np.ndarray:
    report(0.01, "UMAP: loading umap-learn")
    import umap

    epochs = re.compile(r"(\d+)\s*/\s*(\d+)")
    phases = {"Construct fuzzy simplicial set": (0.1, "joining the neighbourhoods (the first UMAP since the app "
                                                      "started compiles umap-learn's code first)"),
              "Construct embedding": (0.3, "laying out the points")}

    def line(text: str) -> None:  # umap-learn's verbose prints: its phases, and every tenth of its epochs
        m = epochs.search(text)
        if m and text.startswith("completed"):
            report(0.3 + 0.7 * int(m[1]) / max(int(m[2]), 1), f"UMAP: epoch {m[1]} of {m[2]}")
        for start, (f, what) in phases.items():
            if start in text:
                report(f, f"UMAP: {what}")
    # the neighbours by scikit-learn (exact, and quick at this size): umap-learn's own search (pynndescent) is
    # compiled by numba in every new process, which took longer than the whole projection
    from sklearn.neighbors import NearestNeighbors

    k = min(15, len(x) - 1)
    report(0.02, "UMAP: finding each point's neighbours")
    dists, ind = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(x)  # each point its own first neighbour
    # random_state makes UMAP deterministic (and single-threaded); verbose also draws a tqdm bar on stderr: not that
    # 200 epochs (umap-learn's own number above 10,000 points; it takes 500 below) from the principal components (an
    # informative start, which Kobak & Linderman 2021 found as good as the spectral one): both to stay quick
    reducer = umap.UMAP(n_components=2, n_neighbors=k, random_state=seed, n_epochs=200, init="pca", n_jobs=1,
                        precomputed_knn=(ind, dists), verbose=True, tqdm_kwds={"disable": True})
    with printed_lines(line), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "precomputed_knn", UserWarning)  # "transform will be unavailable": unused
        return reducer.fit_transform(x).astype(np.float32)


def _threads(n: int):
    """OpenMP threads for t-SNE's gradient: one for small inputs, else as many as torch has (the page gives torch
    one thread while a training runs). Each of its thousand iterations starts and joins its threads, and a thread
    that another process has descheduled holds every iteration up (figures: docs/performance.md)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1 if n < SMALL else torch.get_num_threads(), user_api="openmp")


class _LineSink(io.TextIOBase):
    """A file object that hands each line (or tqdm's carriage-return update) written to it to `on_line`."""

    def __init__(self, on_line: Callable[[str], None]):
        self.on_line, self.buf = on_line, ""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.buf += s
        *done, self.buf = re.split(r"[\r\n]", self.buf)
        for text in done:
            if text.strip():
                self.on_line(text.strip())
        return len(s)


class _ThreadRouted(io.TextIOBase):
    """sys.stdout while projections run: what a thread that asked for its lines prints goes to its sink; what
    every other thread prints goes to the stdout this replaced."""

    def __init__(self, base):
        self.base, self.sinks = base, {}

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        sink = self.sinks.get(threading.get_ident())
        return sink.write(s) if sink is not None else self.base.write(s)

    def flush(self) -> None:
        if threading.get_ident() not in self.sinks:
            self.base.flush()


_ROUTE_LOCK = threading.Lock()


@contextlib.contextmanager
def printed_lines(on_line: Callable[[str], None]):
    """Hand the lines this thread prints (a library's progress) to on_line while the block runs; other threads
    print as before. The dashboard runs a thread per browser session, so sys.stdout itself stays shared."""
    me = threading.get_ident()
    with _ROUTE_LOCK:
        if not isinstance(sys.stdout, _ThreadRouted):
            sys.stdout = _ThreadRouted(sys.stdout)
        sys.stdout.sinks[me] = _LineSink(on_line)
    try:
        yield
    finally:
        with _ROUTE_LOCK:
            route = sys.stdout
            if isinstance(route, _ThreadRouted):
                route.sinks.pop(me, None)
                if not route.sinks:
                    sys.stdout = route.base


# ---------- one embedding, cached in the run folder ----------

@dataclass
class Embedding:
    indices: np.ndarray     # test-set indices of the points
    coords: np.ndarray      # N x 2 float32
    probs: np.ndarray       # N x 10 float32: the same weights' class probabilities
    meta: dict = field(default_factory=dict)  # method, stage, weights, seconds, explained variance (PCA)
    cached: bool = False    # read from the run folder


def cache_path(run: Run, weights: Weights, stage: str, method: str, n: int, seed: int) -> Path:
    return run.path / CACHE_DIR / f"{weights.key}_{stage}_{method}_n{n}_s{seed}.npz"


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_mtime_ns, st.st_size]


def load_cached(run: Run, weights: Weights, stage: str, method: str, n: int, seed: int,
                labels) -> Embedding | None:
    """The stored embedding when it was made from these very weights (the checkpoint's time and size) for these
    test labels; None otherwise (not made yet, other weights since, an unreadable file)."""
    path = cache_path(run, weights, stage, method, n, seed)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            e = Embedding(z["indices"], z["coords"], z["probs"].astype(np.float32), meta, cached=True)
        fresh = meta.get("format") == FORMAT and meta.get("stamp") == _stamp(weights.path)
    except (OSError, ValueError, KeyError):
        return None
    labels = np.asarray(labels)
    if not fresh or len(e.indices) != len(e.coords) or e.indices.max(initial=-1) >= len(labels) \
            or meta.get("labels") != _labels_digest(labels[e.indices]):
        return None
    return e


def _labels_digest(labels) -> str:
    import hashlib

    return hashlib.sha1(np.asarray(labels, np.uint8).tobytes()).hexdigest()[:16]


def compute(model: nn.Module, weights: Weights, stage: str, method: str, images: torch.Tensor, labels,
            n: int, seed: int = 0, progress: Progress | None = None) -> Embedding:
    """Project the stage's activations of a stratified sample of n test images (all when n >= their number)."""
    t0 = time.perf_counter()
    report = progress or (lambda f, s: None)
    labels = np.asarray(labels)
    idx = stratified_sample(labels, n, seed)
    report(0.0, f"activations of {len(idx):,} images at {stage}")
    feats, probs = activations(model, images[torch.as_tensor(idx)], stage)
    report(0.0, f"{METHODS[method]} of {len(idx):,} points of {feats.shape[1]:,} values")
    coords = project(feats, method, seed, report)
    meta = {"format": FORMAT, "method": method, "stage": stage, "weights": weights.label, "n": len(idx),
            "seed": seed, "dims": int(feats.shape[1]), "seconds": round(time.perf_counter() - t0, 3),
            "stamp": _stamp(weights.path), "labels": _labels_digest(labels[idx])}
    if method == "pca":
        meta["explained_variance"] = explained_variance(feats, coords)
    report(1.0, "done")
    return Embedding(idx, coords, probs, meta)


def save(run: Run, weights: Weights, e: Embedding) -> Path:
    """Store the embedding in the run folder (atomically), over one made from an older version of the same weights.
    Raises WriteError (an OSError) when the folder cannot be written."""
    m = e.meta
    path = cache_path(run, weights, m["stage"], m["method"], len(e.indices), m["seed"])
    path.parent.mkdir(exist_ok=True)
    atomic_save(lambda f: np.savez(f, indices=e.indices.astype(np.int32), coords=e.coords,
                                   probs=e.probs.astype(np.float16), meta=np.array(json.dumps(m))), path)
    return path


def embedding(run: Run, weights: Weights, model: nn.Module, stage: str, method: str, images: torch.Tensor,
              labels, n: int, seed: int = 0, progress: Progress | None = None) -> tuple[Embedding, str | None]:
    """(the embedding, None) from the run folder when stored, else computed and stored; the second item is a
    sentence when it could not be stored (a read-only run folder): it is then computed again next time."""
    n = min(n, len(labels))
    e = load_cached(run, weights, stage, method, n, seed, labels)
    if e is not None:
        return e, None
    e = compute(model, weights, stage, method, images, labels, n, seed, progress)
    try:
        save(run, weights, e)
    except OSError as err:
        return e, f"The projection could not be stored in the run folder ({err}), so it is computed on each visit."
    return e, None


# ---------- the digit in a hover label ----------

_DOTS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]])  # braille dot bits, 4 rows x 2 cols


def braille(images, threshold: int = 96) -> np.ndarray:
    """Digits (N x 28 x 28 uint8) as pictures that fit in a plotly hover label, which takes text only: each 7 lines
    of 14 braille characters (a character per 2 x 4 pixels, a dot where a pixel is inked), joined by <br>."""
    ink = np.asarray(images) > threshold
    n, h, w = ink.shape
    ink = np.pad(ink, ((0, 0), (0, -h % 4), (0, -w % 2)))
    cells = ink.reshape(n, ink.shape[1] // 4, 4, ink.shape[2] // 2, 2).transpose(0, 1, 3, 2, 4)
    codes = (0x2800 + (cells * _DOTS).sum((3, 4))).astype("<u4")   # N x 7 x 14 code points
    lines = np.ascontiguousarray(codes).view(f"<U{codes.shape[2]}")[..., 0]  # N x 7 strings
    return np.array(["<br>".join(rows) for rows in lines.tolist()], dtype=object)


# ---------- the figure ----------

DIGIT_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                 "#17becf"]  # plotly's D3 palette: ten colours told apart
# the hover label that shows a braille digit: monospace, so its dots line up; dark on white, so they show
HOVER_LABEL = dict(font=dict(family="monospace", size=14, color="#222"), bgcolor="white")


def figure(coords, indices, true, pred, confidence, pictures, colour_by: str = "true digit", height: int = 600):
    """A WebGL scatter (Scattergl: quick at 10,000 points) of the coordinates, one trace per digit (true or
    predicted: the legend hides and shows each) or right / wrong (the wrong drawn on top, larger). Each point
    carries its test index as customdata, for plotly's selection events; its hover label shows the digit in
    braille dots (`pictures`, from braille()) with true, predicted and confidence."""
    import plotly.graph_objects as go

    coords, indices = np.asarray(coords), np.asarray(indices)
    true, pred, confidence = np.asarray(true), np.asarray(pred), np.asarray(confidence)
    hover = np.array([f"#{i} · true {t} · predicted {p} ({c:.0%})<br>{pic}"
                      for i, t, p, c, pic in zip(indices, true, pred, confidence, pictures)], dtype=object)
    if colour_by == "right or wrong":
        groups = [("right", true == pred, "#9e9e9e", 4), ("wrong", true != pred, "#dc322f", 7)]
    else:
        by = true if colour_by == "true digit" else pred
        groups = [(str(d), by == d, DIGIT_COLOURS[d], 5) for d in range(10)]
    fig = go.Figure()
    for name, mask, colour, size in groups:
        fig.add_trace(go.Scattergl(x=coords[mask, 0], y=coords[mask, 1], mode="markers", name=name,
                                   customdata=indices[mask], text=hover[mask], hovertemplate="%{text}<extra></extra>",
                                   marker=dict(color=colour, size=size, opacity=0.75)))
    # plotly's default drag (zoom); the lasso is a toolbar button: with dragmode "lasso" a click selected nothing
    fig.update_layout(height=height, margin=dict(l=0, r=0, t=30, b=0), clickmode="event+select",
                      legend=dict(title=colour_by, itemsizing="constant"),
                      hoverlabel=HOVER_LABEL,
                      xaxis=dict(showticklabels=False, title=None), yaxis=dict(showticklabels=False, title=None))
    return fig
