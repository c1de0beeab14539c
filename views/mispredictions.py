"""Mispredictions: wrong test predictions batch by batch, the worst images, and one image up close."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from mnistviz import analysis
from mnistviz.charts import digit_grid
from mnistviz.inspect import enlarge
from mnistviz.runs import RunError
from views._shared import run_with_predictions

MAX_TILES = 256  # one grid image stays quick to draw; narrow the filters to see the rest

st.title("Mispredictions")
run, epochs, best = run_with_predictions("look at its mispredictions")

top = st.columns([2, 1, 1])
if len(epochs) > 1:
    epoch = top[0].select_slider("Epoch", epochs, value=best, key=f"mp_epoch_{run.name}",
                                 format_func=lambda e: f"{e} (best)" if e == best else str(e))
else:
    epoch = epochs[0]
    top[0].caption(f"Predictions stored for epoch {epoch} only.")
try:
    labels, probs = analysis.run_predictions(run, epoch)
except RunError as e:
    st.warning(str(e))
    st.stop()
n = len(labels)
if n == 0:
    st.warning(f"Run {run.name} stored predictions for an empty test set.")
    st.stop()

cfg_bs = run.config().get("batch_size")
default_bs = cfg_bs if isinstance(cfg_bs, int) and 1 <= cfg_bs <= n else min(32, n)
bs = int(top[1].number_input("Test batch size", 1, n, default_bs, key=f"mp_bs_{run.name}",
                             help="Default: the run's training batch size (32 splits 10,000 images into 313 batches)."))
table = analysis.prediction_table(labels, probs, bs)
wrong = analysis.wrong_per_batch(labels, table["predicted"].to_numpy(), bs)
n_batches = len(wrong)
top[2].metric("Wrong", f"{int(wrong.sum()):,} of {n:,}", f"{1 - wrong.sum() / n:.2%} accuracy", delta_color="off",
              delta_arrow="off")

images, missing = analysis.test_images_for(labels)
if missing:
    st.warning(f"{missing} Until then the counts below work from the stored predictions, without images.")

BATCH, IMAGE = f"mp_batch_{run.name}_{bs}", "mp_image"


def set_batch(b: int) -> None:
    st.session_state[BATCH] = int(b)


def on_bar_click() -> None:
    points = st.session_state["mp_bars"].selection.points
    if points:
        set_batch(points[0]["x"])


def on_tile_click() -> None:
    points = st.session_state["mp_grid"].selection.points
    if points:
        st.session_state[IMAGE] = int(points[0]["customdata"])


# ---- wrong per batch ----
current = st.session_state.get(BATCH, 0)
if not 0 <= current < n_batches:
    st.warning(f"Batch {current} does not exist at batch size {bs}; showing batch {n_batches - 1}.")
    current = st.session_state[BATCH] = n_batches - 1
colors = ["#dc322f" if b == current else "#6c71c4" for b in range(n_batches)]
bars = go.Figure(go.Bar(x=np.arange(n_batches), y=wrong, marker_color=colors,
                        hovertemplate="batch %{x}: %{y} wrong<extra></extra>"))
bars.add_vrect(x0=current - 0.5, x1=current + 0.5, fillcolor="#dc322f", opacity=0.12, line_width=0)  # even at 0
bars.update_layout(height=220, margin=dict(l=0, r=0, t=10, b=0), xaxis_title=f"test batch ({bs} images each)",
                   yaxis_title="wrong", clickmode="event+select", dragmode=False, bargap=0.1)
st.plotly_chart(bars, key="mp_bars", on_select=on_bar_click, selection_mode="points", config={"displayModeBar": False})

worst = int(wrong.argmax())
c = st.columns([1, 1, 2])
c[0].button("Batch with the most wrong", on_click=set_batch, args=(worst,), disabled=not wrong.any(),
            help=f"batch {worst}: {int(wrong[worst])} wrong" if wrong.any() else "no wrong predictions")
c[1].number_input("Batch", 0, n_batches - 1, key=BATCH)
view = c[2].radio("View", ["Batch", "Top losses"], horizontal=True, key="mp_view",
                  help="Top losses: the whole test set, highest loss first.")

f = st.columns([3, 2, 2])
show = f[0].radio("Show", analysis.SHOW, index=2, horizontal=True, key="mp_show")
true_f = f[1].multiselect("True digit", list(range(10)), key="mp_true")
pred_f = f[2].multiselect("Predicted digit", list(range(10)), key="mp_pred")

if view == "Batch":
    b = st.session_state[BATCH]
    rows = analysis.batch_rows(table, b, bs)
    st.subheader(f"Batch {b}", anchor=False)
    st.caption(f"Test images {b * bs}–{b * bs + len(rows) - 1}: {int(wrong[b])} wrong of {len(rows)}.")
else:
    k = st.slider("Images", 8, min(MAX_TILES, n), min(32, n), step=8, key="mp_top_k") if n > 8 else n
    rows = analysis.top_losses(labels, probs)
    rows = table.loc[rows["index"]]  # same rows, highest loss first, with the 'correct' column
    st.subheader("Top losses", anchor=False)
    st.caption("The whole test set sorted by loss (−log probability of the true digit), highest first.")
rows = analysis.filter_predictions(rows, show, true_f, pred_f)
if view != "Batch":
    rows = rows.head(k)

left, right = st.columns([3, 2])
with left:
    if rows.empty:
        st.info("No images match: change 'Show' or the digit filters.")
    else:
        shown = rows.head(MAX_TILES)
        if len(rows) > MAX_TILES:
            st.caption(f"Showing the first {MAX_TILES} of {len(rows)}: narrow the filters to see the rest.")
        titles = [f"{t}→{p} {c:.0%}" for t, p, c in shown[["true", "predicted", "confidence"]].itertuples(index=False)]
        if images is not None:
            big = len(shown) > 64  # smaller tiles, same ~540 px width: fits the left column without shrinking
            fig = digit_grid(images[shown["index"].to_numpy()], titles=titles, highlight=~shown["correct"].to_numpy(),
                             ids=shown["index"], cols=10 if big else 8, tile_px=54 if big else 68)
            st.plotly_chart(fig, key="mp_grid", on_select=on_tile_click, selection_mode="points", width="content",
                            config={"displayModeBar": False})
            st.caption("Red frame: wrong. Title: true → predicted, confidence. Click an image to look at it.")
        # a toggle rather than a collapsed expander: an expander's content renders (and loads the grid's
        # JavaScript) even while it is closed, and the page's first render does not need it
        if images is None or st.toggle("Show as a table", key="mp_as_table"):
            st.dataframe(shown.drop(columns=["batch"]), hide_index=True,
                         column_config={"confidence": st.column_config.NumberColumn(format="percent"),
                                        "loss": st.column_config.NumberColumn(format="%.3f")})

with right:
    options = [None] + rows["index"].head(MAX_TILES).tolist()
    if st.session_state.get(IMAGE) not in options:
        st.session_state[IMAGE] = None
    i = st.selectbox("Image", options, key=IMAGE, format_func=lambda v: "click one in the grid" if v is None else
                     f"#{v}: {labels[v]} predicted {table['predicted'].iat[v]}")
    if i is not None:
        i = int(i)
        pred, true = int(table["predicted"].iat[i]), int(labels[i])
        with st.container(border=True):
            if images is not None:
                st.image(enlarge(images[i], 196), caption=f"test image {i}")
            verdict = "right" if pred == true else "wrong"
            st.markdown(f"**true {true}, predicted {pred}** ({verdict}, {probs[i, pred]:.1%} confident, "
                        f"loss {table['loss'].iat[i]:.3f})")
            colors = ["#268bd2" if d == true else "#dc322f" if d == pred else "#93a1a1" for d in range(10)]
            pf = go.Figure(go.Bar(x=list(range(10)), y=probs[i], marker_color=colors,
                                  hovertemplate="%{x}: %{y:.2%}<extra></extra>"))
            pf.update_layout(height=200, margin=dict(l=0, r=0, t=10, b=0), xaxis=dict(dtick=1, title="digit"),
                             yaxis=dict(range=[0, 1], title="probability", tickformat=".0%"))
            st.plotly_chart(pf, key="mp_probs")
            st.page_link("views/feature_maps.py", label=f"Feature maps of image {i}", icon=":material/layers:",
                         query_params={"run": run.name, "index": str(i)})
