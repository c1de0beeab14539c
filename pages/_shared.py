"""Streamlit helpers shared by the pages (layout only; computation lives in mnistviz/)."""
from __future__ import annotations

import dataclasses
import gc
import html
import os
import re
import sys
import time
from contextlib import contextmanager

import pandas  # noqa: F401  (imported before the first freeze below, like everything the pages use)
import plotly.graph_objects  # noqa: F401
import streamlit as st
import torch

from mnistviz import analysis, charts, data, inspect, jobs, live, runs, train  # noqa: F401
from pages._live import SIDEBAR_EVERY_S, poller

# Streamlit runs a full gc.collect() after every script run; with torch, torchvision, pandas and plotly loaded it
# walks every long-lived object with the GIL held. gc.freeze() takes what exists now (modules, mostly) out of later
# collections, again whenever a page has imported more (docs/performance.md has the figures).
_frozen_at = 0  # len(sys.modules) at the last freeze


def freeze_imports() -> None:
    """Freeze what exists (after collecting what is garbage now) when modules were imported since the last time.
    Cheap on every run: once the pages have all been seen the module count stops changing."""
    global _frozen_at
    if len(sys.modules) != _frozen_at:
        _frozen_at = len(sys.modules)
        gc.collect()
        gc.freeze()


def one_core() -> None:
    """Give this script run's tensor work (a preview's augmentation, a model's forward pass) one thread.

    With a thread per core each small op waits for a half that the browser or a training has descheduled. The
    count is per OS thread and every script run and fragment rerun gets a thread of its own: so the shell calls this
    on every run, and a fragment that computes calls it too."""
    torch.set_num_threads(1)


@contextmanager
def all_cores_unless_training():
    """For a one-off computation of seconds (a robustness check): every core while no training runs (the trainer
    needs them), then back to one."""
    torch.set_num_threads(1 if jobs.active() else os.cpu_count() or 1)
    try:
        yield
    finally:
        one_core()


# A launch of the same settings again this soon after the last one is taken for a double click and refused (the
# page offers a "train again" button instead): each click on Train runs its callback, and two clicks 0.15 s apart
# made two identical runs.
REPEAT_WINDOW_S = 10.0


def same_settings(cfg: train.Config) -> tuple:
    """What makes two launches the same: every setting but the run name (the form clears it after a launch) and the
    creation time."""
    return tuple((k, v) for k, v in dataclasses.asdict(cfg).items() if k not in ("name", "created"))


def _launch_key(what):
    return tuple(same_settings(w) if isinstance(w, train.Config) else w for w in what)


def launch_repeated(what) -> list[str] | None:
    """The runs made by this session's last launch, if it was of the same `what` (a tuple: the button, and the
    Config it launches) less than REPEAT_WINDOW_S ago; else None."""
    last = st.session_state.get("_last_launch")
    if last and last[0] == _launch_key(what) and time.time() - last[2] < REPEAT_WINDOW_S:
        return last[1]
    return None


def launch_made(what, names: list[str]) -> None:
    st.session_state["_last_launch"] = (_launch_key(what), names, time.time())


# links and images need brackets, HTML and autolinks "<", LaTeX "$"; line-start syntax (#, -, 1.) needs a newline
_MARKDOWN = re.compile(r"([\\`*_\[\]<>~$&|])")
_AUTOLINK = re.compile(r"(?i)(https?|ftp|mailto|www|@)")  # what GFM turns into a link in plain text, escaped or not
WORD_JOINER = "\u2060"


def md(text) -> str:
    """`text` (a name from the URL or the disk, an error message) as literal text inside Streamlit markdown: every
    character markdown reads (links, images, emphasis, LaTeX) backslash-escaped, and an invisible word joiner after
    each start of an address, which GFM would otherwise make a link of."""
    return _MARKDOWN.sub(r"\\\1", _AUTOLINK.sub(r"\1" + WORD_JOINER, " ".join(str(text).splitlines())))


def counted(n: int, noun: str) -> str:
    """'1 digit', '2 digits', '1,200 digits'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


PICKER = "_run_picker"
NAME_FITS = 36  # characters of a run name the sidebar's Run box shows whole (shell.py: its width and font size)
GONE = "_run_gone"  # (the selected run that disappeared, the run shown instead)


def all_runs():
    """(runs, broken) from the run store; re-read on every rerun (it is a directory listing)."""
    return runs.list_runs()


def selected_run_name() -> str | None:
    return st.session_state.get("run")


def selected_run() -> runs.Run | None:
    """The run picked in the sidebar (kept in the URL as ?run=NAME), or None."""
    name = selected_run_name()
    if not name:
        return None
    try:
        return runs.get_run(name)
    except runs.RunError:
        return None


def selected_run_or_stop() -> runs.Run:
    """The selected run; with none, a sentence on how to get one, and the page stops."""
    run = selected_run()
    if run is None:
        st.info("No run selected: pick one in the sidebar, or train one on the Train page.")
        st.stop()
    return run


def select_run(name: str | None) -> None:
    """Make `name` the selected run on every page, and put it in the URL so a copied link reopens it."""
    st.session_state["run"] = name
    if name:
        if st.query_params.get("run") != name:
            st.query_params["run"] = name
    else:
        st.query_params.pop("run", None)


def _picked() -> None:
    name = st.session_state.get(PICKER)
    try:
        select_run(runs.check_name(name))
    except runs.RunError:  # never a stray label (see sidebar) in the URL
        pass


def sidebar(follow_training: bool = False) -> None:
    """Run picker and data status. The URL wins when it names a run (a pasted link); otherwise the session
    keeps the selection (a page switch clears the query string: it is put back here). `follow_training`: the page
    has no live poller of its own, so while the selected run trains or waits in the queue the sidebar mounts one that
    writes its figures and reruns the page when the training or queue changes."""
    try:
        queue_note = jobs.repair_queue()  # an unreadable _queue.json: rebuilt from the runs marked queued
        jobs.tick()  # any rerun keeps the training queue moving
    except (runs.RunError, OSError) as e:  # e.g. a runs folder that cannot be written
        queue_note = f"The training queue cannot be updated ({e}); nothing new starts until that is fixed."
    good, broken = all_runs()
    busy = live.busy()
    training, waiting = busy
    by_name = {r["name"]: r for r in good}
    names = list(by_name)
    url = st.query_params.get("run")
    current = st.session_state.get("run")
    unknown = None
    if url and url != current:
        if url in by_name:
            current = url
        else:
            unknown = url
    if current not in by_name:
        gone = current if current and not unknown else None  # selected in this session, gone since
        current = training if training in by_name else (names[0] if names else None)
        if gone:  # deleted in another tab, or its folder removed: said, until another run is picked
            st.session_state[GONE] = (gone, current)
    gone_note = st.session_state.get(GONE)
    if gone_note and gone_note[1] != current:
        gone_note = st.session_state[GONE] = None
    if st.session_state.get(PICKER) != current:
        st.session_state[PICKER] = current  # before the widget exists: allowed, and it shows the selection
    with st.sidebar:
        if unknown:
            st.warning(f"There is no run named {md(repr(unknown))}; showing {md(current or 'nothing')} instead.")
        elif gone_note:
            st.warning(f"Run {md(repr(gone_note[0]))} no longer exists (deleted, or its folder moved); showing "
                       f"{md(gone_note[1] or 'nothing')} instead.")
        if names:
            # options are the plain names: Streamlit 1.67's browser sends back the option's *label*, and a label
            # that changed since (say, one that carried the run's status) comes back as an unknown value
            st.selectbox("Run", names, key=PICKER, on_change=_picked,
                         help="Shared by every page and kept in the URL (?run=NAME).")
            r = by_name[current]
            fig = live.sidebar_figures(r["epochs_done"], r.get("best_test_acc"))
            if current == training:
                # while it trains, a live poller (pages/_live.py: the Train and Runs pages' own, or the one below)
                # rewrites these as its epochs end: the caption itself is redrawn only when the page reruns
                fig = {k: f'<span class="mv-side" data-run="{html.escape(current)}" data-side="{k}">{v}</span>'
                       for k, v in fig.items()}
            # a run being started shows as running, as the Train page draws it: this caption is not redrawn when its
            # trainer begins
            shown = live.phase(r["status"], current, [training])
            # a name longer than the box shows (every automatic one fits: a name of one's own may not) is cut
            # there: said whole above its figures
            whole = f"{md(current)}  \n" if len(current) > NAME_FITS else ""
            st.caption(f"{whole}**{shown}** · {html.escape(r['model'])} · augmentation "
                       f"{html.escape(str(r['augment']))} · {fig['epochs_done']}/{r['epochs']} epochs · best test "
                       f"accuracy {fig['best']}", unsafe_allow_html=current == training)
            if follow_training and current in (training, *waiting):
                poller("side_poll", current, {"busy": busy}, SIDEBAR_EVERY_S, stats=False, side=True)
        else:
            st.caption("No runs yet: launch one on the Train page.")
        if broken:
            st.caption(f"{len(broken)} broken run folder(s): see the Runs page.")
        if queue_note:
            st.warning(queue_note, icon=":material/queue:")
        if training or waiting:
            st.caption(f"Training: {training or 'nothing'}" + (f" · {len(waiting)} queued" if waiting else ""))
        root = data.data_root()
        found = data.find_mnist(root)
        if found:
            st.caption(f"MNIST: {found}")
        else:
            st.warning(data.missing_message(root), icon=":material/warning:")
    select_run(current)


def predictions_or_stop(run: runs.Run, epoch: int, epochs: list[int]):
    """(labels, probs) of the run's test predictions after `epoch`; otherwise a warning and the page stops. Each
    epoch's predictions are a file of their own: when one cannot be read the others may be, so say so."""
    try:
        return analysis.run_predictions(run, epoch)
    except runs.RunError as e:
        others = [x for x in epochs if x != epoch]
        st.warning(f"{e}." + (f" Pick another epoch above ({', '.join(map(str, others[:12]))}"
                              f"{', ...' if len(others) > 12 else ''}): each epoch's predictions are a file of "
                              f"their own." if others else ""))
        st.stop()


def image_up_close(run_name: str, index: int, image, probs, true: int, pred: int, key: str, more: str = "") -> None:
    """One test image up close: enlarged (when the images are there), true and predicted digit with the confidence
    (and `more`, e.g. ", loss 0.92"), the ten probabilities, and a link to its feature maps."""
    if image is not None:
        st.image(inspect.enlarge(image, 196), caption=f"test image {index}", output_format="PNG")
    verdict = "right" if pred == true else "wrong"
    st.markdown(f"**true {true}, predicted {pred}** ({verdict}, {probs[pred]:.1%} confident{more})")
    st.plotly_chart(charts.probability_bars(probs, true, pred), key=key, config={"displayModeBar": False})
    st.page_link("pages/feature_maps.py", label=f"Feature maps of image {index}", icon=":material/layers:",
                 query_params={"run": run_name, "index": str(index)})


def kept(key: str, default):
    """Streamlit forgets a widget's value when a rerun does not draw it (another page or tab is open, or the
    browser went to another page and back): restore it from a shadow copy right before the widget is made."""
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(f"_{key}", default)


def keep(key: str):
    """Record the widget's value in the shadow copy. Called after the widget is drawn rather than as its
    on_change, so values set by callbacks (a bar or tile click, a button) are kept too."""
    st.session_state[f"_{key}"] = st.session_state[key]


def require_mnist() -> bool:
    """On pages that need the images: say how to provide MNIST when it is missing. True when present."""
    if data.find_mnist() is None:
        st.error(data.missing_message(), icon=":material/dataset:")
        return False
    return True


@st.cache_resource(max_entries=2, show_spinner="Drawing the digits for the hover labels…")
def hover_pictures(root: str, n: int, split: str = "test"):
    """Every test (split "train": training) image as braille text for a scatter's hover labels, made once per data
    folder (`n`, the number of images, tells a changed folder apart). A resource, not data: the callers only index
    it, and cache_data would unpickle a copy (20 MB for the training set) on every rerun."""
    from mnistviz.embeddings import braille

    d = data.load_mnist(root, download=False)
    return braille((d.train_images if split == "train" else d.test_images).numpy())


@st.cache_resource(max_entries=8, show_spinner=False)
def cached_model(path: str, stamp: float):
    """One loaded model per checkpoint version (path + checkpoint mtime): a new best.pt loads afresh."""
    return runs.load_model(path)


def run_with_predictions(purpose: str) -> tuple[runs.Run, list[int], int]:
    """The selected run, its epochs with stored test predictions and its best one; otherwise a sentence
    that ends with `purpose` ("see its confusion matrix") and the page stops."""
    run = selected_run_or_stop()
    epochs = run.pred_epochs()
    if not epochs:
        st.warning(f"Run {run.name} has no stored test predictions (trained by an older version, or stopped before "
                   f"its first epoch ended): retrain it to {purpose}.")
        st.stop()
    best = run.best_epoch()
    return run, epochs, best if best in epochs else epochs[-1]
