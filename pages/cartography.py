"""Training cartography: the selected run's training images mapped by how it learned them (dataset cartography,
Swayamdipta et al., 2020), and the "hard to learn" corner, where wrong labels gather, with the review of the
Suspicious labels page (layout only: mnistviz.cartography computes, mnistviz.reviews keeps the reviews)."""
import numpy as np
import streamlit as st

from mnistviz import cartography as C, data, inspect, runs
from mnistviz import reviews as rv
from mnistviz.embeddings import stratified_sample
from pages._reviews import ERROR, review_buttons
from pages._shared import cached_model, counted, hover_pictures, keep, kept, md, selected_run_or_stop

CARD = 214  # px: the cards wrap into as many columns as the page is wide
SIZES = [5000, 10000, 20000, 60000]  # points in the scatter; each carries its digit as hover text
MAX_TOP = 200
COLOUR, SHOWN, TOP = "ct_colour", "ct_shown", "ct_top"


@st.cache_data(max_entries=4, show_spinner="Reading the recorded probabilities…")
def mapped(path: str, stamp: tuple) -> dict:
    """cartography.summary of the run's recorded epochs, once per version of them, with "epochs"."""
    epochs, probs = C.load(runs.Run(path))
    return {"epochs": epochs, **(C.summary(probs) if epochs else {})}


def predictions(run: runs.Run, images) -> tuple:
    """(predicted digits, their probabilities) of the run's best checkpoint for these images; (None, why) without
    one."""
    try:
        return C.predicted(cached_model(str(run.path), run.checkpoint_stamp()), images)
    except (runs.RunError, OSError) as e:
        return None, f"No predictions: {e}."


def card(item: dict, image, labels, done: rv.Review | None, locked: bool) -> None:
    """One hard-to-learn image: the image, its given label, what the run predicts now, where it sits on the map, and
    its review."""
    i, given, pred = item["index"], item["given"], item.get("predicted")
    st.image(inspect.enlarge(image, 84), output_format="PNG")
    st.markdown(f"**#{i}** · given **{given}**"
                + (f" · predicted **{pred}** ({item['probability']:.0%})" if pred is not None else ""))
    st.caption(f"confidence {item['confidence']:.2f} · variability {item['variability']:.2f} · p(label) over ½ in "
               f"{round(item['correctness'] * item['seen'])} of {item['seen']} epochs")
    review_buttons("ct", labels, i, pred, done, locked, scope="train")


@st.fragment
def corner(run: runs.Run, m: dict, indices, labels, images) -> None:
    """The hard-to-learn images, most suspicious first, each with its review (a fragment: a review reruns the grid,
    not the scatter above)."""
    st.subheader("Hard to learn", anchor=False)
    kept(TOP, 30)
    top = int(st.number_input("Images", 1, MAX_TOP, step=10, key=TOP, width=140))
    keep(TOP)
    pos = C.hard_to_learn(m["confidence"], m["variability"], top)
    try:
        saved, locked = rv.load(), False
    except rv.ReviewError as e:
        saved, locked = {}, True
        st.error(f"{md(e)} The Suspicious labels page can set it aside.", icon=":material/error:")
    if msg := st.session_state.pop(ERROR, None):
        st.error(md(msg))
    here = rv.applying(saved, labels, "train")
    ids = indices[pos]
    preds, probs = predictions(run, images[ids]) if len(pos) else (None, None)
    n_done = sum(int(i) in here for i in ids)
    n_wrong = sum(int(i) in here and here[int(i)].verdict == "wrong" for i in ids)
    st.caption(f"{counted(len(pos), 'training image')} with confidence under ½, nearest the corner of low confidence "
               f"and low variability first (by their sum): the run gave their label a low probability epoch after "
               f"epoch, as it does for a wrong label (or a digit hard to read). {n_done} reviewed ({n_wrong} wrong, "
               f"{n_done - n_wrong} right). Predicted: by the run's best checkpoint, on the image as it is stored."
               + (f" {md(probs)}" if preds is None and len(pos) else ""))
    grid = st.container(horizontal=True, gap="small")
    for k, (p, i) in enumerate(zip(pos, ids)):
        item = {"index": int(i), "given": int(labels[i]), "seen": int(m["seen"][p]),
                **{key: float(m[key][p]) for key in ("confidence", "variability", "correctness")}}
        if preds is not None:
            item.update(predicted=int(preds[k]), probability=float(probs[k]))
        with grid.container(width=CARD, border=True):
            card(item, images[i].numpy(), labels, here.get(int(i)), locked)


st.title("Training cartography")
run = selected_run_or_stop()
try:
    m = mapped(str(run.path), C.stamp(run))
    cfg = run.config()
except runs.RunError as e:
    st.warning(f"{md(e)}. Pick another run, or retrain this one.")
    st.stop()
if not m["epochs"]:
    st.info(f"Run {md(run.name)} recorded no probabilities of its training images (it was trained before mnistviz "
            f"recorded them, or is the bundled default model). Train a run on the Train page (the recording is on "
            f"by default) and pick it in the sidebar.")
    st.stop()
try:
    mnist = data.load_mnist(download=False)
    indices = C.train_indices(cfg, len(mnist.train_labels))
except (data.MNISTMissing, runs.RunError) as e:
    st.warning(f"{md(e)} The map is made of the training images.")
    st.stop()
n = len(m["confidence"])
if len(indices) != n:
    st.warning(f"Run {md(run.name)} recorded {n:,} training images, but the training set in {md(mnist.root)} gives "
               f"it {len(indices):,}: it was trained on other data. Point MNISTVIZ_DATA at the data it was trained on.")
    st.stop()
labels, images = mnist.train_labels.numpy(), mnist.train_images

epochs = m["epochs"]
augment = cfg.get("augment") not in (None, "none")
st.caption(
    f"Each point is one of run {md(run.name)}'s {n:,} training images, placed by the probability the run gave its "
    f"label as it trained on it, over {counted(len(epochs), 'recorded epoch')}: up, confidence (the mean); across, "
    f"variability (the standard deviation). Easy images sit top left, ambiguous ones to the right, and hard-to-learn "
    f"ones (often wrong labels) bottom left."
    + (f" The run augments its images ({md(cfg['augment'])}): these are the probabilities of the augmented images it "
       f"trained on." if augment else "")
    + (" Only one epoch was recorded, so variability is 0 for every image: train more epochs to spread them out."
       if len(epochs) == 1 else ""))
top = st.container(horizontal=True, gap="medium", vertical_alignment="bottom")
kept(COLOUR, C.COLOURS[0])
colour = top.radio("Colour by", C.COLOURS, key=COLOUR, horizontal=True, width="content",
                   help="correctness: the share of its epochs in which the label's probability was over ½ (the "
                        "label was then surely the prediction); digit: its given label.")
keep(COLOUR)
sizes = sorted({min(s, n) for s in SIZES})
shown_n = sizes[0]
if len(sizes) > 1:  # a training set of 5,000 images or fewer is shown whole
    kept(SHOWN, min(10000, n))
    if st.session_state[SHOWN] not in sizes:
        st.session_state[SHOWN] = min(10000, n)
    shown_n = top.select_slider("Images shown", sizes, key=SHOWN, width=260, format_func=lambda v: f"{v:,}",
                                help="A sample with each digit in its share, and every hard-to-learn image; all of "
                                     "them at the top (each point carries its digit for the hover: many are slow).")
    keep(SHOWN)
shown = np.union1d(stratified_sample(labels[indices], shown_n, seed=0),
                   C.hard_to_learn(m["confidence"], m["variability"], MAX_TOP))
pictures = hover_pictures(str(mnist.root), len(labels), "train")[indices[shown]]
fig = C.figure({k: m[k][shown] for k in ("confidence", "variability", "correctness")}, indices[shown],
               labels[indices[shown]], pictures, colour)
st.plotly_chart(fig, key=f"ct_plot_{run.name}", config={"displayModeBar": True, "modeBarButtonsToRemove": ["toImage"]})
st.caption(f"{len(shown):,} of {n:,} training images shown; hover a point for its digit.")
corner(run, m, indices, labels, images)
