"""Prediction history on the Mispredictions and Confusion pages (layout over mnistviz.history): one image's
probabilities at every stored epoch, the "learned late" and "forgotten" lists, and the confusion matrix or the
mispredictions grid played through the epochs (a plotly animation: it plays in the browser, with no rerun)."""
from __future__ import annotations

from functools import partial

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from mnistviz import charts, history, inspect, runs

MAX_FRAMES = 60  # epochs in an animation: evenly spaced, the first and last always in
MAX_PLAY_TILES = 64
LIST_TILES = 48
BLOCK = 440


def _stamps(run: runs.Run) -> tuple:
    """The predictions' files and their modification times: a new epoch (or a retrained run) loads afresh."""
    files = sorted(run.preds_dir.glob("epoch_*.npy")) + [run.path / "test_labels.npy"]
    out = []
    for f in files:
        try:
            out.append((f.name, f.stat().st_mtime))
        except OSError:
            pass
    return tuple(out)


@st.cache_resource(max_entries=4, show_spinner=False)
def _load(path: str, stamps: tuple) -> history.History:
    # cache_resource, not cache_data: the same object each rerun, not a copy (E x 10,000 x 10 floats)
    return history.load(runs.Run(path))


def load(run: runs.Run) -> history.History | None:
    """The run's history, or None with a note when it cannot be read (the page above has said why already)."""
    try:
        return _load(str(run.path), _stamps(run))
    except runs.RunError:
        return None


def _frame_epochs(epochs: list[int]) -> list[int]:
    if len(epochs) <= MAX_FRAMES:
        return list(epochs)
    pick = np.unique(np.linspace(0, len(epochs) - 1, MAX_FRAMES).round().astype(int))
    return [epochs[i] for i in pick]


def image_history(run: runs.Run, index: int, key: str) -> None:
    """Test image `index`'s probabilities at every stored epoch, and its story in a sentence."""
    h = load(run)
    if h is None or index >= len(h.labels):
        return
    if len(h.epochs) < 2:
        st.caption("Its history needs predictions of two epochs or more; this run stored one.")
        return
    st.plotly_chart(charts.prediction_history(h.epochs, h.probs[:, index], int(h.labels[index])), key=key,
                    config={"displayModeBar": False})
    st.caption("Through the epochs: " + history.story(h, index) + " Blue: the true digit's probability (a red dot "
               "where another was predicted); red dashes: the digits it was wrongly predicted as.")


def _rates(counts: np.ndarray) -> np.ndarray:
    rows = counts.sum(-1, keepdims=True)
    return np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)


def confusion_frame(counts: np.ndarray, worst: float) -> go.Figure:
    """A compact confusion matrix: colour the share of the row (mistakes red up to `worst`, the same in every frame;
    the diagonal blue), text the count."""
    rate = _rates(counts)
    diag = np.eye(10, dtype=bool)
    text = np.where(counts > 0, counts.astype(str), "")
    fig = go.Figure([
        go.Heatmap(z=np.where(diag, np.nan, rate), colorscale="Reds", zmin=0, zmax=max(0.01, worst),
                   text=np.where(diag, "", text), texttemplate="%{text}", showscale=False, xgap=1, ygap=1,
                   hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>"),
        go.Heatmap(z=np.where(diag, rate, np.nan), colorscale="Blues", zmin=0.5, zmax=1, text=np.where(diag, text, ""),
                   texttemplate="%{text}", showscale=False, xgap=1, ygap=1,
                   hovertemplate="true %{y}, right: %{text}<extra></extra>")])
    fig.update_xaxes(title="predicted digit", dtick=1, side="top", range=[-0.5, 9.5], constrain="domain",
                     fixedrange=True)
    fig.update_yaxes(title="true digit", dtick=1, range=[9.5, -0.5], scaleanchor="x", constrain="domain",
                     fixedrange=True)
    fig.update_layout(height=420, margin=dict(l=0, r=0, t=40, b=0), plot_bgcolor="white")
    return fig


def play_confusion(run: runs.Run) -> None:
    """The confusion matrix at every stored epoch, played in the browser."""
    h = load(run)
    if h is None or len(h.epochs) < 2:
        return
    # a toggle, not an expander: an expander's content is built and sent even while it is closed
    if st.toggle("Play the matrix through the epochs", key="hist_play_cf"):
        shown = _frame_epochs(h.epochs)
        cms = history.confusion_by_epoch(h)
        worst = float((_rates(cms) * ~np.eye(10, dtype=bool)).max())  # one colour scale for every epoch
        frames = [confusion_frame(cms[h.epochs.index(e)], worst) for e in shown]
        st.plotly_chart(charts.animate(frames, [str(e) for e in shown]), key=f"hist_play_cf_{run.name}",
                        config={"displayModeBar": False})
        st.caption("Press Play, or drag the slider: the counts of every cell at each stored epoch, coloured by the "
                   "share of the row on one scale for all of them."
                   + (f" {len(shown)} of the {len(h.epochs)} epochs, evenly spaced." if len(shown) < len(h.epochs)
                      else ""))


def play_grid(run: runs.Run, images, indices) -> None:
    """The test images `indices` (the grid above) as each stored epoch predicted them, played in the browser."""
    h = load(run)
    if h is None or len(h.epochs) < 2 or images is None or not len(indices):
        return
    idx = np.asarray(indices, dtype=np.int64)[:MAX_PLAY_TILES]
    if st.toggle("Play these images through the epochs", key="hist_play_mp"):
        shown = _frame_epochs(h.epochs)
        frames = []
        for e in shown:
            p = h.probs[h.epochs.index(e)][idx]
            pred = p.argmax(1)
            titles = [f"{t}→{q} {c:.0%}" for t, q, c in zip(h.labels[idx], pred, p[np.arange(len(idx)), pred])]
            frames.append(charts.digit_grid(images[idx], titles=titles, highlight=pred != h.labels[idx], ids=idx,
                                            cols=8, tile_px=52))
        st.plotly_chart(charts.animate(frames, [str(e) for e in shown]), key=f"hist_play_mp_{run.name}",
                        width="content", config={"displayModeBar": False})
        st.caption("The grid's images (the first 64) as each stored epoch predicted them: red frame, wrong at that "
                   "epoch; title, true → predicted and confidence. Press Play, or drag the slider.")


def _pick(key: str, state: str) -> None:
    points = st.session_state[key].selection.points
    st.session_state[state] = int(points[0]["customdata"]) if points else None


def learned_late_and_forgotten(run: runs.Run, images) -> None:
    """The run's "learned late" and "forgotten" test images (mnistviz.history), as a grid and a table; a click on
    an image shows its history."""
    h = load(run)
    if h is None:
        return
    # a section of the page of its own (across the run, not the epoch above): a header, above the page's subheaders
    st.header("Learned late, and forgotten", anchor=False, divider="gray")
    if len(h.epochs) < 2:
        st.caption("These lists need predictions of two epochs or more; this run stored one.")
        return
    late = history.late_epochs(len(h.epochs))
    kind = st.radio("List", ["Learned late", "Forgotten"], horizontal=True, key=f"hist_list_{run.name}",
                    label_visibility="collapsed")
    if kind == "Learned late":
        rows = history.learned_late(h)
        about = (f"Test images first predicted right only in the last {late} stored epoch{'s' * (late > 1)} "
                 f"(from epoch {h.epochs[-late]} on), and right at the last: latest first, then the least sure.")
        titles = [f"#{i} ep{e}" for i, e in zip(rows["index"], rows["first_right"])]
        wrong = np.zeros(len(rows), bool)
    else:
        rows = history.forgotten(h)
        about = ("Test images predicted right at one stored epoch and wrong at a later one (a forgetting event): "
                 "those still wrong at the last epoch first (red), then the most often forgotten.")
        titles = [f"#{i} {t}→{p}" for i, t, p in zip(rows["index"], rows["true"], rows["predicted"])]
        wrong = ~rows["right_at_end"].to_numpy()
    st.caption(f"{about} {len(rows):,} image{'s' * (len(rows) != 1)}.")
    if rows.empty:
        return
    state = f"hist_pick_{run.name}"
    below = st.container(horizontal=True, gap="medium")
    with below.container(width=BLOCK):
        shown = rows.head(LIST_TILES)
        if images is not None:
            key = f"hist_grid_{run.name}_{kind}"
            st.plotly_chart(charts.digit_grid(images[shown["index"].to_numpy()], titles=titles[:LIST_TILES],
                                              highlight=wrong[:LIST_TILES], ids=shown["index"], cols=8, tile_px=52,
                                              selected=st.session_state.get(state)),
                            key=key, on_select=partial(_pick, key, state), selection_mode="points", width="content",
                            config={"displayModeBar": False})
            st.caption(f"The first {len(shown)}" + (f" of {len(rows):,}" if len(rows) > len(shown) else "")
                       + ". Click an image to see its history.")
        # a toggle, as the page's own grid has: the table only on request (an expander's would be built closed too)
        if images is None or st.toggle("Show as a table", key=f"hist_table_{run.name}"):
            st.dataframe(rows, hide_index=True,
                         column_config={"p_true": st.column_config.NumberColumn("p(true) at the end",
                                                                                format="percent")})
    picked = st.session_state.get(state)
    if picked is not None and picked in set(rows["index"]):
        with below.container(width=BLOCK, border=True):
            if images is not None:
                st.image(inspect.enlarge(images[picked], 140), caption=f"test image {picked}", output_format="PNG")
            image_history(run, picked, f"hist_pick_chart_{run.name}")
