"""Confusion: which digits a run mixes up, epoch by epoch, and the images in any cell."""
from functools import partial

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from mnistviz import analysis
from mnistviz.charts import digit_grid
from mnistviz.runs import RunError
from views._shared import run_with_predictions

MAX_TILES = 128
CELL = "cf_cell"  # (true, predicted) picked by clicking the heatmap or the most-confused table

st.title("Confusion")
run, epochs, best = run_with_predictions("see its confusion matrix")

top = st.columns([3, 1, 1])
if len(epochs) > 1:
    epoch = top[0].select_slider("Epoch (slide to watch it change over training)", epochs, value=best,
                                 key=f"cf_epoch_{run.name}",
                                 format_func=lambda e: f"{e} (best)" if e == best else str(e))
else:
    epoch = epochs[0]
    top[0].caption(f"Predictions stored for epoch {epoch} only.")
normalize = top[1].toggle("Row-normalized", key="cf_norm", help="Each row divided by the number of test images "
                          "of that digit: the share of each digit predicted as each class.")
try:
    labels, probs = analysis.run_predictions(run, epoch)
except RunError as e:
    st.warning(str(e))
    st.stop()
preds, conf = analysis.predictions(probs)
top[2].metric("Test accuracy", f"{analysis.accuracy(labels, preds):.2%}",
              f"{int((labels != preds).sum()):,} wrong of {len(labels):,}", delta_color="off",
              delta_arrow="off")

counts = analysis.confusion_matrix(labels, preds)
z = analysis.confusion_matrix(labels, preds, normalize=True) if normalize else counts


def on_cell_click() -> None:
    points = st.session_state["cf_heatmap"].selection.points
    if points:
        st.session_state[CELL] = divmod(int(points[0]["customdata"]), 10)


def on_pair_pick(pairs) -> None:
    rows = st.session_state["cf_pairs"].selection.rows
    if rows:
        r = pairs.iloc[rows[0]]
        st.session_state[CELL] = (int(r["true"]), int(r["predicted"]))


digits = list(range(10))
# heatmap cells cannot be clicked through plotly selection, so an invisible marker sits on every cell
tt, pp = np.meshgrid(digits, digits, indexing="ij")
off = z * (1 - np.eye(10))  # colour by the off-diagonal so mistakes stand out next to a full diagonal
text = np.array([[(f"{v:.1%}" if normalize else f"{int(v)}") if counts[t, p] else "" for p, v in enumerate(row)]
                 for t, row in enumerate(z)], dtype=object)
diag = np.eye(10, dtype=bool)
fig = go.Figure(go.Heatmap(z=off, x=digits, y=digits, colorscale="Reds", text=np.where(diag, "", text),
                           texttemplate="%{text}", showscale=False, hoverinfo="skip", xgap=1, ygap=1))
fig.add_trace(go.Heatmap(z=np.where(diag, z, np.nan), x=digits, y=digits, colorscale="Blues", showscale=False,
                         hoverinfo="skip", text=np.where(diag, text, ""), texttemplate="%{text}", xgap=1, ygap=1))
fig.add_trace(go.Scatter(
    x=pp.ravel(), y=tt.ravel(), mode="markers", customdata=tt.ravel() * 10 + pp.ravel(),
    marker=dict(size=34, symbol="square", opacity=0.01, color="white"),
    hovertext=[f"true {t}, predicted {p}: {counts[t, p]} images" for t, p in zip(tt.ravel(), pp.ravel())],
    hoverinfo="text"))
fig.update_xaxes(title="predicted digit", dtick=1, side="top", range=[-0.5, 9.5], constrain="domain",
                 showgrid=False, zeroline=False)
fig.update_yaxes(title="true digit", dtick=1, range=[9.5, -0.5], scaleanchor="x", showgrid=False, zeroline=False)
fig.update_layout(height=480, width=520, margin=dict(l=0, r=0, t=40, b=0), showlegend=False, dragmode=False,
                  clickmode="event+select", plot_bgcolor="white")

left, right = st.columns([1, 1])
with left:
    st.plotly_chart(fig, key="cf_heatmap", on_select=on_cell_click, selection_mode="points", width="content",
                    config={"displayModeBar": False})
    st.caption("Rows: true digit; columns: predicted digit. Click a cell to see its images.")
with right:
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

cell = st.session_state.get(CELL)
if cell is not None:
    t, p = cell
    idx = analysis.cell_indices(labels, preds, t, p)
    st.subheader(f"True {t}, predicted {p}: {len(idx)} image{'s' if len(idx) != 1 else ''}", anchor=False)
    if len(idx) == 0:
        st.info("No test images in this cell.")
    else:
        images, missing = analysis.test_images_for(labels)
        if missing:
            st.warning(f"{missing} The test-image indices in this cell: "
                       f"{', '.join(map(str, idx[:MAX_TILES]))}.")
        else:
            shown = idx[np.argsort(-conf[idx], kind="stable")][:MAX_TILES]  # most confident first
            if len(idx) > MAX_TILES:
                st.caption(f"The {MAX_TILES} most confident of {len(idx)}.")
            grid = digit_grid(images[shown], titles=[f"#{i} {conf[i]:.0%}" for i in shown],
                              highlight=np.full(len(shown), t != p), ids=shown, cols=10, tile_px=72)
            ev = st.plotly_chart(grid, key=f"cf_grid_{t}_{p}", on_select="rerun", selection_mode="points",
                                 width="content")
            picked = ev.selection.points[0]["customdata"] if ev and ev.selection.points else None
            if picked is None:
                st.caption("Title: test-image index and confidence. Click an image for a link to its feature maps.")
            else:
                st.page_link("views/feature_maps.py", label=f"Feature maps of image {picked}",
                             icon=":material/layers:", query_params={"run": run.name, "index": str(picked)})
