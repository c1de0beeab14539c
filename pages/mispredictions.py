"""Mispredictions: wrong test predictions batch by batch, the worst images, and one image up close."""
import streamlit as st

from mnistviz import analysis
from mnistviz.charts import digit_grid, wrong_per_batch_bars
from pages._shared import image_up_close, keep, kept, predictions_or_stop, run_with_predictions

MAX_TILES = 256  # one grid image stays quick to draw; narrow the filters to see the rest
# Widths in px: rows of fixed-width blocks wrap onto the next line when the page is narrow (at 900 px the main
# area is ~440 px wide, at 1400 px ~940: two blocks side by side). The grid is drawn at a fixed size, so it
# must fit 440 px: a plotly chart squeezed narrower keeps its height and shrinks into blank space.
BLOCK = 440


st.title("Mispredictions")
run, epochs, best = run_with_predictions("look at its mispredictions")

top = st.container(horizontal=True, gap="medium")
EPOCH, BS = f"mp_epoch_{run.name}", f"mp_bs_{run.name}"
if len(epochs) > 1:
    kept(EPOCH, best)
    if st.session_state[EPOCH] not in epochs:
        st.session_state[EPOCH] = best
    with top.container(width=BLOCK):
        epoch = st.select_slider("Epoch", epochs, key=EPOCH,
                                 format_func=lambda e: f"{e} (best)" if e == best else str(e))
    keep(EPOCH)
else:
    epoch = epochs[0]
    top.caption(f"Predictions stored for epoch {epoch} only.", width=BLOCK)
labels, probs = predictions_or_stop(run, epoch, epochs)
n = len(labels)
if n == 0:
    st.warning(f"Run {run.name} stored predictions for an empty test set.")
    st.stop()

cfg_bs = run.config().get("batch_size")
default_bs = cfg_bs if isinstance(cfg_bs, int) and 1 <= cfg_bs <= n else min(32, n)
kept(BS, default_bs)
if not 1 <= st.session_state[BS] <= n:
    st.session_state[BS] = default_bs
bs = int(top.number_input("Test batch size", 1, n, key=BS, width=160,
                          help="Default: the run's training batch size (32 splits 10,000 images into 313 batches)."))
keep(BS)
table = analysis.prediction_table(labels, probs, bs)
wrong = analysis.wrong_per_batch(labels, table["predicted"].to_numpy(), bs)
n_batches = len(wrong)
top.metric("Wrong", f"{int(wrong.sum()):,} of {n:,}", f"{1 - wrong.sum() / n:.2%} accuracy", delta_color="off",
           delta_arrow="off", width="content")

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
# (kept() only right before its widget is drawn: a value put in the state of a widget that the run then does
# not draw outlives the widget's own value, and would come back instead of it later)
# a first visit opens where the mistakes are: the batch with the most wrong, showing the wrong ones (batch 0 with
# everything shown read "0 wrong of 32"); what the session holds wins
worst = int(wrong.argmax())
for key, default in ((BATCH, worst), ("mp_view", "Batch"), ("mp_show", "wrong" if wrong.any() else "all"),
                     ("mp_true", []), ("mp_pred", []), (IMAGE, None)):
    kept(key, default)
current = st.session_state[BATCH]
if not 0 <= current < n_batches:
    st.warning(f"Batch {current} does not exist at batch size {bs}; showing batch {n_batches - 1}.")
    current = st.session_state[BATCH] = n_batches - 1
bars = wrong_per_batch_bars(wrong, current, bs)
st.plotly_chart(bars, key="mp_bars", on_select=on_bar_click, selection_mode="points", config={"displayModeBar": False})

c = st.container(horizontal=True, gap="medium", vertical_alignment="bottom")
c.button("Batch with the most wrong", on_click=set_batch, args=(worst,), disabled=not wrong.any(),
         help=f"batch {worst}: {int(wrong[worst])} wrong" if wrong.any() else "no wrong predictions")
c.number_input("Batch", 0, n_batches - 1, key=BATCH, width=160)
view = c.radio("View", ["Batch", "Top losses"], horizontal=True, key="mp_view", width="content",
               help="Top losses: the whole test set, highest loss first.")

f = st.container(horizontal=True, gap="medium")
show = f.radio("Show", analysis.SHOW, horizontal=True, key="mp_show", width="content")
true_f = f.multiselect("True digit", list(range(10)), key="mp_true", width=200)
pred_f = f.multiselect("Predicted digit", list(range(10)), key="mp_pred", width=200)
for key in (BATCH, "mp_view", "mp_show", "mp_true", "mp_pred"):
    keep(key)

if view == "Batch":
    b = st.session_state[BATCH]
    rows = analysis.batch_rows(table, b, bs)
    st.subheader(f"Batch {b}", anchor=False)
    st.caption(f"Test images {b * bs}–{b * bs + len(rows) - 1}: {int(wrong[b])} wrong of {len(rows)}.")
else:
    if n > 8:
        kept("mp_top_k", min(32, n))
        st.session_state["mp_top_k"] = min(max(st.session_state["mp_top_k"], 8), min(MAX_TILES, n))
        k = st.slider("Images", 8, min(MAX_TILES, n), step=8, key="mp_top_k", width=BLOCK)
        keep("mp_top_k")
    else:
        k = n
    rows = analysis.top_losses(labels, probs)
    rows = table.loc[rows["index"]]  # same rows, highest loss first, with the 'correct' column
    st.subheader("Top losses", anchor=False)
    st.caption("The whole test set sorted by loss (−log probability of the true digit), highest first.")
rows = analysis.filter_predictions(rows, show, true_f, pred_f)
if view != "Batch":
    rows = rows.head(k)

# the grid and the chosen image side by side, or the image under the grid on a narrow page
below = st.container(horizontal=True, gap="medium")
left, right = below.container(width=BLOCK), below.container(width=BLOCK)
with left:
    if rows.empty:
        st.info("No images match: change 'Show' or the digit filters.")
    else:
        shown = rows.head(MAX_TILES)
        if len(rows) > MAX_TILES:
            st.caption(f"Showing the first {MAX_TILES} of {len(rows)}: narrow the filters to see the rest.")
        titles = [f"{t}→{p} {c:.0%}" for t, p, c in shown[["true", "predicted", "confidence"]].itertuples(index=False)]
        if images is not None:
            big = len(shown) > 64  # smaller tiles, same ~430 px width (BLOCK): drawn at full size, never squeezed
            fig = digit_grid(images[shown["index"].to_numpy()], titles=titles, highlight=~shown["correct"].to_numpy(),
                             ids=shown["index"], cols=10 if big else 8, tile_px=43 if big else 54,
                             selected=st.session_state.get(IMAGE))
            st.plotly_chart(fig, key="mp_grid", on_select=on_tile_click, selection_mode="points", width="content",
                            config={"displayModeBar": False})
            st.caption("Red frame: wrong. Title: true → predicted, confidence. Click an image to look at it.")
        # a toggle rather than a collapsed expander: an expander's content renders (and loads the grid's
        # JavaScript) even while it is closed, and the page's first render does not need it
        if images is not None:
            kept("mp_as_table", False)
            as_table = st.toggle("Show as a table", key="mp_as_table")
            keep("mp_as_table")
        if images is None or as_table:
            st.dataframe(shown.drop(columns=["batch"]), hide_index=True,
                         column_config={"confidence": st.column_config.NumberColumn(format="percent"),
                                        "loss": st.column_config.NumberColumn(format="%.3f")})

with right:
    options = [None] + rows["index"].head(MAX_TILES).tolist()
    if st.session_state.get(IMAGE) not in options:
        st.session_state[IMAGE] = None
    # (None is the kept state's "nothing picked", which a selectbox shows as its placeholder)
    i = st.selectbox("Image", options, key=IMAGE, placeholder="click one in the grid",
                     format_func=lambda v: "click one in the grid" if v is None else
                     f"#{v}: {labels[v]} predicted {table['predicted'].iat[v]}")
    keep(IMAGE)
    if i is not None:
        i = int(i)
        pred, true = int(table["predicted"].iat[i]), int(labels[i])
        with st.container(border=True):
            image_up_close(run.name, i, None if images is None else images[i], probs[i], true, pred, "mp_probs",
                           more=f", loss {table['loss'].iat[i]:.3f}")
