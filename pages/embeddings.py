"""Embeddings: the test images as a model's stage sees them, projected to 2-D (PCA, t-SNE, UMAP)."""
import numpy as np
import streamlit as st

from mnistviz import data, embeddings as E, runs
from mnistviz.charts import digit_grid
from pages._shared import (all_cores_unless_training, hover_pictures, image_up_close, keep, kept, md,
                           selected_run_or_stop)

SIZES = [500, 1000, 2000, 5000, 10000]
COLOURS = ["true digit", "predicted digit", "right or wrong"]
MAX_TILES = 256
ABOUT = {
    "pca": "PCA: the two directions along which the activations vary most, a linear view. Distances and directions "
           "are faithful to the data (as far as two axes can be); classes that overlap here may still be separable "
           "in the full space.",
    "tsne": "t-SNE keeps each point's nearest neighbours together: tight clusters mean the stage groups those "
            "images. The distances between clusters, their sizes and their shapes mean little, and a different "
            "seed moves them.",
    "umap": "UMAP, like t-SNE, keeps neighbourhoods together, and keeps somewhat more of the global layout; still, "
            "read cluster sizes and the gaps between clusters with care.",
}


@st.cache_resource(max_entries=8, show_spinner=False)
def weights_model(run_path: str, weights_path: str, stamp: float):
    """One loaded model per weights file version (path + modification time)."""
    return E.load_weights(runs.Run(run_path), weights_path)


def on_plot_select() -> None:
    """A click picks one point (shown up close); a lasso or box picks a group (shown as a grid)."""
    sel = st.session_state[PLOT].selection
    ids = [int(p["customdata"]) for p in sel.points if p.get("customdata") is not None]
    if sel.lasso or sel.box:
        st.session_state[GROUP] = ids
    elif ids:
        st.session_state[PICKED] = ids[0]


def on_tile_click() -> None:
    points = st.session_state["emb_grid"].selection.points
    if points:
        st.session_state[PICKED] = int(points[0]["customdata"])


st.title("Embeddings")
run = selected_run_or_stop()
try:
    choices = E.weight_choices(run)
    model_name = run.config()["model"]
except runs.RunError as e:
    st.warning(f"{md(e)}. Embeddings need the run's saved weights: pick another run, or resume or retrain this one.")
    st.stop()
try:
    mnist = data.load_mnist(download=False)
except data.MNISTMissing as e:
    st.warning(f"{md(e)} Embeddings are made of the test images.")
    st.stop()
images, labels = mnist.test_images, mnist.test_labels.numpy()

PLOT, PICKED, GROUP = f"emb_plot_{run.name}", f"emb_picked_{run.name}", f"emb_group_{run.name}"
top = st.container(horizontal=True, gap="medium", vertical_alignment="bottom")
if len(choices) > 1:
    EPOCH = f"emb_epoch_{run.name}"
    keys = [w.key for w in choices]
    kept(EPOCH, keys[-1])
    if st.session_state[EPOCH] not in keys:
        st.session_state[EPOCH] = keys[-1]
    with top.container(width=320):
        key = st.select_slider("Epoch", keys, key=EPOCH, format_func=lambda k: k.split("-")[-1].lstrip("0"))
    keep(EPOCH)
    weights = choices[keys.index(key)]
else:
    weights = choices[0]
try:
    model = weights_model(str(run.path), str(weights.path), weights.path.stat().st_mtime)
except (runs.RunError, OSError) as e:
    st.warning(f"{md(e)}. Pick another run, or retrain this one.")
    st.stop()

stages = E.stage_names(model)
STAGE = f"emb_stage_{run.name}"
kept(STAGE, E.default_stage(model))
if st.session_state[STAGE] not in stages:
    st.session_state[STAGE] = E.default_stage(model)
last = stages[-1]
stage = top.selectbox("Stage", stages, key=STAGE, width=220,
                      format_func=lambda s: f"{s} (input of {last})" if s == E.default_stage(model)
                      else f"{s} (the input pixels)" if s == stages[0] else s,
                      help="Whose activations to project. Default: what the last layer reads.")
keep(STAGE)
for key, default in (("emb_method", "pca"), ("emb_colour", COLOURS[0]), ("emb_n", 2000), ("emb_seed", 0)):
    kept(key, default)
method = top.radio("Method", list(E.METHODS), key="emb_method", horizontal=True, width="content",
                   format_func=E.METHODS.get)
n_max = len(labels)
sizes = sorted({min(s, n_max) for s in SIZES})
if st.session_state["emb_n"] not in sizes:
    st.session_state["emb_n"] = min(2000, n_max) if min(2000, n_max) in sizes else sizes[-1]
n = top.select_slider("Test images", sizes, key="emb_n", width=220, format_func=lambda v: f"{v:,}",
                      help="A sample with each digit in its share of the test set; all of them at the top.")
seed = int(top.number_input("Seed", 0, 2**31 - 1, key="emb_seed", width=110,
                            help="Chooses the sample and starts t-SNE / UMAP: the same seed gives the same picture."))
colour = top.radio("Colour by", COLOURS, key="emb_colour", horizontal=True, width="content")
for key in (STAGE, "emb_method", "emb_colour", "emb_n", "emb_seed"):
    keep(key)

st.caption(f"Run {md(run.name)}: model {md(model_name)}, weights of "
           + (md(weights.label) if len(choices) > 1
              else f"{md(weights.label)}; the run kept no per-epoch weights, so this is the only one shown")
           + ".")

e = E.load_cached(run, weights, stage, method, min(n, n_max), seed, labels)
note = None
if e is None:
    with st.status(f"Computing the {E.METHODS[method]} of {min(n, n_max):,} images at {stage}...",
                   expanded=method != "pca") as status:
        bar = st.progress(0.0, text="starting")
        with all_cores_unless_training():
            e, note = E.embedding(run, weights, model, stage, method, images, labels, n, seed,
                                  progress=lambda f, text: bar.progress(min(max(f, 0.0), 1.0), text=text))
        status.update(label=f"{E.METHODS[method]} of {len(e.indices):,} images computed in "
                            f"{e.meta['seconds']:.1f} s", state="complete", expanded=False)
if note:
    st.info(note)

idx, probs = e.indices, e.probs
true, pred = labels[idx], probs.argmax(1)
conf = probs[np.arange(len(idx)), pred]
fig = E.figure(e.coords, idx, true, pred, conf, hover_pictures(str(mnist.root), n_max)[idx], colour)
st.plotly_chart(fig, key=PLOT, on_select=on_plot_select, selection_mode=("points", "box", "lasso"),
                config={"displayModeBar": True, "modeBarButtonsToRemove": ["toImage"]})
right = float((true == pred).mean())
extra = (f" The two axes keep {e.meta['explained_variance']:.0%} of the activations' variance."
         if "explained_variance" in e.meta else "")
st.caption(f"{ABOUT[method]}{extra} {len(idx):,} test images, {e.meta['dims']:,} values each at {stage}; "
           f"{right:.1%} predicted right. Hover a point for its digit; click one to see it up close; "
           f"draw round a group with the lasso (toolbar) to see its images.")
if method != "pca" and e.meta["dims"] > E.PRE_DIMS:
    st.caption(f"{E.METHODS[method]} starts from the activations' first {E.PRE_DIMS} principal components.")



def probs_of(ids: list[int]) -> np.ndarray:
    """The probabilities of these test images: the sample's, else (a selection made on another sample) computed."""
    pos = {int(i): k for k, i in enumerate(idx)}
    missing = [i for i in ids if i not in pos]
    more = dict(zip(missing, E.activations(model, images[missing], stages[-1])[1])) if missing else {}
    return np.array([probs[pos[i]] if i in pos else more[i] for i in ids]).reshape(len(ids), 10)


# ---- the picked point and the lasso's group ----
group = [i for i in st.session_state.get(GROUP) or [] if 0 <= i < n_max]
picked = st.session_state.get(PICKED)
below = st.container(horizontal=True, gap="medium")
if group:
    with below.container(width=440):
        st.subheader(f"{len(group):,} selected", anchor=False)
        shown = group[:MAX_TILES]
        sp = probs_of(shown).argmax(1)
        wrong = sp != labels[shown]
        if len(group) > MAX_TILES:
            st.caption(f"The first {MAX_TILES} of {len(group):,}.")
        titles = [f"{labels[i]}→{p}" for i, p in zip(shown, sp)]
        st.plotly_chart(digit_grid(images.numpy()[shown], titles=titles, highlight=wrong, ids=shown, cols=8,
                                   tile_px=54, selected=picked), key="emb_grid", on_select=on_tile_click,
                        selection_mode="points", width="content", config={"displayModeBar": False})
        counts = np.bincount(labels[group], minlength=10)
        st.caption("True digits: " + ", ".join(f"{d}: {c}" for d, c in enumerate(counts) if c)
                   + f". {int(wrong.sum())} of {len(shown)} shown predicted wrong (red frame). "
                   "Click an image to see it up close.")
        st.button("Clear the selection", key=f"emb_clear_{run.name}",
                  on_click=lambda: st.session_state.update({GROUP: None}))
if picked is not None and 0 <= picked < n_max:
    with below.container(width=440):
        p = probs_of([picked])[0]
        with st.container(border=True):
            image_up_close(run.name, int(picked), images[picked].numpy(), p, int(labels[picked]), int(p.argmax()),
                           "emb_probs")
