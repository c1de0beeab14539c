"""Data: class balance of train and test, samples beside their augmented versions, normalization figures."""
import streamlit as st

from mnistviz import augment, charts, data
from pages._shared import require_mnist



@st.cache_data(show_spinner="Computing pixel statistics...")
def _pixel_stats(root: str):
    return data.pixel_stats(data.load_mnist(root, download=False))


st.title("Data")
if not require_mnist():
    st.stop()
try:
    mnist = data.load_mnist(download=False)
except data.MNISTMissing as e:
    st.error(str(e))
    st.stop()
st.caption(f"{len(mnist.train_images):,} training and {len(mnist.test_images):,} test images from {mnist.root}")

st.subheader("Class distribution")
balance = data.class_balance(mnist)
left, right = st.columns([3, 2])
# st.bar_chart (vega-lite) rather than plotly here: the page then opens without loading plotly.js (~0.8 s)
left.bar_chart(balance[["train_pct", "test_pct"]].rename(columns={"train_pct": "train %", "test_pct": "test %"}),
               stack=False, x_label="digit", y_label="% of the split", color=[charts.SPLIT_COLORS["train"],
                                                                             charts.SPLIT_COLORS["test"]])
# a static table (ten rows): st.dataframe's grid would load its own JavaScript on the page's first render
# (the digit as a column: st.table hides an index that counts 0, 1, 2...)
right.table(balance.rename(columns={"train_count": "train", "train_pct": "train %",
                                   "test_count": "test", "test_pct": "test %"}).reset_index()
            .style.format({"train": "{:,}", "test": "{:,}", "train %": "{:.2f}", "test %": "{:.2f}"}), hide_index=True)

st.subheader("Samples and augmentation")
c1, c2, c3 = st.columns([2, 2, 1])
level = c1.selectbox("Augmentation level", [lv for lv in augment.LEVELS if lv != "none"], index=1,
                     key="data_level", persist_state="session",
                     help="The same levels the Train page offers; each sample is transformed differently.")
n = c2.slider("Samples", 8, 64, 24, step=8, key="data_n", persist_state="session")
c3.button("Reshuffle", icon=":material/shuffle:", width="stretch", key="data_reshuffle",
          on_click=lambda: st.session_state.update(data_seed=st.session_state.get("data_seed", 0) + 1))
st.caption(f"**{level}**: {augment.describe(level)}; each image draws its own amounts within these bounds, anew "
           f"every epoch.")
seed = st.session_state.get("data_seed", 0)
original, augmented = augment.preview(mnist.train_images, n=n, level=level, seed=seed)
g1, g2 = st.columns(2)
# plain images (torchvision's make_grid): nothing to click here, and an <img> draws far faster than a plotly figure
g1.image(charts.image_grid(original), caption="Original", width="stretch", clamp=True, output_format="PNG")
g2.image(charts.image_grid(augmented), caption=f"Augmented ({level}): the same images", width="stretch", clamp=True,
         output_format="PNG")

st.subheader("Normalization")
mean, std = _pixel_stats(str(mnist.root))
m1, m2, m3 = st.columns(3)
m1.metric("Mean used by every model", f"{data.MEAN:.4f}")
m2.metric("Std used by every model", f"{data.STD:.4f}")
m3.metric("Computed from these training images", f"{mean:.4f} / {std:.4f}")
st.caption("Every model's first stage is (x - mean) / std with the usual MNIST figures, so a checkpoint "
           "needs no separate preprocessing; the computed figures are this data's own (mean / std of pixels in [0, 1]).")
