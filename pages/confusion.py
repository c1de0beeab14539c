"""Confusion: which digits a run mixes up, epoch by epoch, and the images in any cell."""
from functools import partial

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from mnistviz import analysis
from mnistviz.charts import digit_grid
from pages._shared import image_up_close, keep, kept, predictions_or_stop, run_with_predictions

MAX_TILES = 128
CELL = "cf_cell"  # (true, predicted) picked by clicking the heatmap or the most-confused table
IMAGE = "cf_image"  # the test image picked in the cell's grid (plain keys: they outlive a visit to another page)
# Widths in px: rows of fixed-width blocks wrap onto the next line when the page is narrow (at 900 px the main
# area is ~440 px wide, at 1400 px ~940: two blocks side by side). A plotly chart squeezed narrower than its
# figure keeps its height (blank space) or, with a locked aspect, stretches its axes: so nothing here is wider.
BLOCK = 440


st.title("Confusion")
run, epochs, best = run_with_predictions("see its confusion matrix")

top = st.container(horizontal=True, gap="medium")
EPOCH = f"cf_epoch_{run.name}"
if len(epochs) > 1:
    kept(EPOCH, best)
    if st.session_state[EPOCH] not in epochs:
        st.session_state[EPOCH] = best
    with top.container(width=BLOCK):
        epoch = st.select_slider("Epoch (slide to watch it change over training)", epochs, key=EPOCH,
                                 format_func=lambda e: f"{e} (best)" if e == best else str(e))
    keep(EPOCH)
else:
    epoch = epochs[0]
    top.caption(f"Predictions stored for epoch {epoch} only.", width=BLOCK)
kept("cf_norm", False)
normalize = top.toggle("Row-normalized", key="cf_norm", width="content",
                       help="Show each cell as a share of the test images of its row's digit (the colours always "
                            "are: the share of each digit predicted as each class).")
keep("cf_norm")
labels, probs = predictions_or_stop(run, epoch, epochs)
preds, conf = analysis.predictions(probs)
top.metric("Test accuracy", f"{analysis.accuracy(labels, preds):.2%}",
           f"{int((labels != preds).sum()):,} wrong of {len(labels):,}", delta_color="off",
           delta_arrow="off", width="content")

counts = analysis.confusion_matrix(labels, preds)
rate = analysis.confusion_matrix(labels, preds, normalize=True)


def on_cell_click() -> None:
    points = st.session_state["cf_heatmap"].selection.points
    if points:
        st.session_state[CELL] = divmod(int(points[0]["customdata"]), 10)
        st.session_state[IMAGE] = None


def on_pair_pick(pairs) -> None:
    rows = st.session_state["cf_pairs"].selection.rows
    if rows:
        r = pairs.iloc[rows[0]]
        st.session_state[CELL] = (int(r["true"]), int(r["predicted"]))
        st.session_state[IMAGE] = None


def on_tile_pick(key: str) -> None:
    points = st.session_state[key].selection.points
    st.session_state[IMAGE] = int(points[0]["customdata"]) if points else None


digits = list(range(10))
# Colour is the row-normalized rate in both modes (the share of a digit's images predicted as each class), so a
# pale diagonal cell means a digit the model gets wrong more often, never just a digit with fewer test images;
# the numbers are counts, or the same rates with "Row-normalized". Reds: mistakes; blues: the diagonal.
diag = np.eye(10, dtype=bool)
text = np.array([[(f"{rate[t, p]:.1%}" if normalize else f"{counts[t, p]}") if counts[t, p] else ""
                  for p in digits] for t in digits], dtype=object)
bar = dict(orientation="h", thickness=8, len=0.48, yanchor="top", y=-0.02, tickformat=".1%", nticks=4,
           title=dict(side="top", font=dict(size=11)))
fig = go.Figure(go.Heatmap(
    z=rate * ~diag, x=digits, y=digits, colorscale="Reds", zmin=0, text=np.where(diag, "", text),
    texttemplate="%{text}", hoverinfo="skip", xgap=1, ygap=1,
    colorbar={**bar, "x": 0, "xanchor": "left", "title": {**bar["title"], "text": "mistakes: share of the row"}}))
fig.add_trace(go.Heatmap(
    z=np.where(diag, rate, np.nan), x=digits, y=digits, hoverinfo="skip",
    colorscale=[[0, "#deebf7"], [0.5, "#6baed6"], [1, "#08306b"]],  # Blues, its palest still a visible cell
    text=np.where(diag, text, ""), texttemplate="%{text}", xgap=1, ygap=1,
    colorbar={**bar, "x": 1, "xanchor": "right", "title": {**bar["title"], "text": "right: share of the row"}}))
tt, pp = np.meshgrid(digits, digits, indexing="ij")
# heatmap cells cannot be clicked through plotly selection, so an invisible marker sits on every cell
fig.add_trace(go.Scatter(
    x=pp.ravel(), y=tt.ravel(), mode="markers", customdata=tt.ravel() * 10 + pp.ravel(),
    marker=dict(size=30, symbol="square", opacity=0.01, color="white"),
    hovertext=[f"true {t}, predicted {p}: {counts[t, p]} image{'s' if counts[t, p] != 1 else ''} "
               f"({rate[t, p]:.1%} of the {t}s)" for t, p in zip(tt.ravel(), pp.ravel())],
    hoverinfo="text"))
# a square matrix whatever the chart's width: the axes keep their ranges and the plot area shrinks instead
# (constrain="domain"); without it the y axis grows to fill the height (-9 to 17 on a narrow page)
fig.update_xaxes(title="predicted digit", dtick=1, side="top", range=[-0.5, 9.5], constrain="domain",
                 showgrid=False, zeroline=False, fixedrange=True)
fig.update_yaxes(title="true digit", dtick=1, range=[9.5, -0.5], scaleanchor="x", constrain="domain",
                 showgrid=False, zeroline=False, fixedrange=True)
fig.update_layout(height=500, margin=dict(l=0, r=0, t=40, b=60), showlegend=False, dragmode=False,
                  clickmode="event+select", plot_bgcolor="white")
cell = st.session_state.get(CELL)
if cell is not None:  # the picked cell, outlined: a click shows where it landed
    fig.add_shape(type="rect", x0=cell[1] - 0.5, x1=cell[1] + 0.5, y0=cell[0] - 0.5, y1=cell[0] + 0.5,
                  xref="x", yref="y", layer="above", line=dict(color="#111111", width=3))


def clear_cell() -> None:
    st.session_state[CELL] = st.session_state[IMAGE] = None


def show_cell(t: int, p: int):
    """The picked cell's images as a grid (most confident first); returns (images, the picked image or None)."""
    idx = analysis.cell_indices(labels, preds, t, p)
    head = st.container(horizontal=True, vertical_alignment="center")
    head.subheader(f"True {t}, predicted {p}: {len(idx)} image{'s' if len(idx) != 1 else ''}", anchor=False,
                   width="content")
    head.button("Close", key="cf_cell_close", icon=":material/close:", type="tertiary", on_click=clear_cell)
    if len(idx) == 0:
        st.info("No test images in this cell.")
        return None, None
    images, missing = analysis.test_images_for(labels)
    if missing:
        st.warning(f"{missing} The test-image indices in this cell: {', '.join(map(str, idx[:MAX_TILES]))}.")
        return None, None
    shown = idx[np.argsort(-conf[idx], kind="stable")][:MAX_TILES]  # most confident first
    picked = st.session_state.get(IMAGE)
    picked = int(picked) if picked is not None and picked in shown else None
    if len(idx) > MAX_TILES:
        st.caption(f"The {MAX_TILES} most confident of {len(idx)}.")
    grid = digit_grid(images[shown], titles=[f"#{i} {conf[i]:.0%}" for i in shown],
                      highlight=np.full(len(shown), t != p), ids=shown, cols=8, tile_px=54, selected=picked)
    key = f"cf_grid_{t}_{p}"
    st.plotly_chart(grid, key=key, on_select=partial(on_tile_pick, key), selection_mode="points",
                    width="content", config={"displayModeBar": False})
    st.caption("Title: test-image index and confidence. Click an image to look at it.")
    return images, picked


# the matrix and the tables side by side, or the tables under the matrix on a narrow page; a picked cell's images
# (and the image picked among them) go at the top of the second block, beside the matrix where the eye is
row = st.container(horizontal=True, gap="medium")
with row.container(width=BLOCK):
    st.plotly_chart(fig, key="cf_heatmap", on_select=on_cell_click, selection_mode="points", width="stretch",
                    config={"displayModeBar": False})
    st.caption("Rows: true digit; columns: predicted digit. Colour: the share of the row's test images in the "
               "cell (hover for both numbers). Click a cell to see its images beside the matrix.")
with row.container(width=BLOCK):
    if cell is not None:
        t, p = cell
        images, picked = show_cell(t, p)
        if picked is not None:
            with st.container(border=True):
                image_up_close(run.name, picked, images[picked], probs[picked], t, int(preds[picked]), "cf_probs")
    st.subheader("Most confused", anchor=False)
    pairs = analysis.most_confused(labels, preds, k=10)
    if pairs.empty:
        st.success("No mistakes at this epoch.")
    else:
        st.dataframe(pairs, hide_index=True, key="cf_pairs", on_select=partial(on_pair_pick, pairs),
                     selection_mode="single-row")
        st.caption("Pick a row to see its images.")
    st.subheader("Per digit", anchor=False)
    metrics = analysis.per_class_metrics(labels, preds)
    st.dataframe(metrics.style.format({c: "{:.2%}" for c in ("accuracy", "precision", "recall", "f1")},
                                      na_rep="–"))
    st.caption("A digit's accuracy is the share of its test images classified correctly (the same number as its "
               "recall); precision is the share of predictions of that digit that were right.")
