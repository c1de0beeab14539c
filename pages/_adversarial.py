"""Adversarial digits (layout over mnistviz.adversarial): on Feature maps, the smallest FGSM or PGD step that changes
the model's prediction of the chosen test image; on Compare, each run's accuracy against the step's size (FGSM),
beside the shift / rotate / thicken check. Epsilon is in grey levels of 0-255 throughout."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from mnistviz import adversarial, charts, data, inspect, runs
from pages._shared import all_cores_unless_training, one_core

NAMES = {"fgsm": "FGSM (one step)", "pgd": f"PGD ({adversarial.PGD_STEPS} steps)"}


@st.cache_data(max_entries=32, show_spinner=False)
def _flip(path: str, stamp: float, index: int, method: str, _model, _image) -> adversarial.Flip:
    """Cached per (run checkpoint version, image, method); the model and image are named by those, not hashed."""
    return adversarial.smallest_flip(_model, _image, method)


def _difference_figure(diff: np.ndarray, eps: int) -> go.Figure:
    lim = max(1, eps)
    fig = go.Figure(go.Heatmap(z=diff, colorscale="RdBu_r", zmin=-lim, zmax=lim, showscale=True,
                               colorbar=dict(thickness=10, title=dict(text="levels", side="right")),
                               hovertemplate="x %{x}, y %{y}: %{z:+.0f} grey levels<extra></extra>"))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", visible=False)
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_layout(height=190, width=230, margin=dict(l=0, r=0, t=0, b=0))
    return fig


def adversarial_tab(run: runs.Run, model, image, index: int, true: int) -> None:
    """The smallest step of the chosen attack that changes the prediction of test image `index` (uint8 28 x 28)."""
    method = st.radio("Attack", adversarial.METHODS, horizontal=True, key="fm_adv_method",
                      format_func=lambda m: NAMES[m],
                      help="FGSM: every pixel moved by epsilon at once, up or down as the loss's gradient says "
                           "(Goodfellow et al. 2015). PGD: several smaller such steps, never further than epsilon "
                           "from the image (Madry et al. 2018): finds smaller flips, slower.")
    one_core()
    flip = _flip(str(run.path), run.checkpoint_stamp(), index, method, model, image)
    if flip.eps is None:
        st.info(f"No {NAMES[method]} step up to 255 grey levels changes the model's prediction of image {index} "
                f"(it stays {flip.pred}).")
        return
    eps = flip.eps
    st.markdown(f"The smallest {NAMES[method]} step that changes the prediction: **ε = {eps} grey levels** of 255 "
                f"({eps / 255:.3f} of the pixel range; no pixel moves by more). The model predicted **{flip.pred}** "
                f"({flip.probs[flip.pred]:.1%}) and now predicts **{flip.adv_pred}** "
                f"({flip.adv_probs[flip.adv_pred]:.1%}); at ε = {eps - 1} it still predicts {flip.pred}.")
    adv = (flip.adversarial[0, 0].numpy() * 255).round().astype(np.uint8)
    with st.container(horizontal=True, gap="medium"):
        st.image(inspect.enlarge(np.asarray(image), 190), caption=f"test image {index} (true {true})",
                 output_format="PNG", width=190)
        st.image(inspect.enlarge(adv, 190), caption=f"perturbed by ε = {eps}", output_format="PNG", width=190)
        with st.container(width=240):
            st.plotly_chart(_difference_figure(flip.difference, eps), key=f"fm_adv_diff_{method}", width="content",
                            config={"displayModeBar": False})
            st.caption("The change: red brighter, blue darker.")
    with st.container(horizontal=True, gap="medium"):
        for title, probs, pred, key in (("Before", flip.probs, flip.pred, "before"),
                                        ("After", flip.adv_probs, flip.adv_pred, "after")):
            with st.container(width=320):
                st.markdown(f"**{title}**: predicted {pred}")
                st.plotly_chart(charts.probability_bars(probs, true, pred, height=180), key=f"fm_adv_{key}",
                                config={"displayModeBar": False})
    st.caption("Blue bar: the true digit; red: a wrong prediction. For every run's accuracy against ε over the test "
               "set, see Compare's robustness check.")


@st.cache_data(show_spinner="Attacking the test images (FGSM)…", max_entries=8)
def _curve(run_dirs: tuple[str, ...], stamps: tuple[float, ...], data_root: str):
    mnist = data.load_mnist(data_root, download=False)
    with all_cores_unless_training():
        return adversarial.run_accuracy_curve(list(run_dirs), mnist.test_images, mnist.test_labels)


def curve_figure(df, colors: dict) -> go.Figure:
    fig = go.Figure([go.Scatter(x=d.epsilon, y=d.accuracy, mode="lines+markers", name=name,
                                line=dict(color=colors.get(name)),
                                hovertemplate=f"{name}<br>ε %{{x}} grey levels: %{{y:.2%}}<extra></extra>")
                     for name, d in df.groupby("run", sort=False)])
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=30, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, title_text="run"),
                      xaxis=dict(title="FGSM ε (grey levels of 255)", tickvals=list(adversarial.CURVE_EPS)),
                      yaxis=dict(title="accuracy", tickformat=".0%", range=[0, 1.02]))
    return fig


def adversarial_curve(ready: list[runs.Run], colors: dict, requested: bool) -> None:
    """Compare: each run's test accuracy against the FGSM step, once the robustness check was asked for."""
    if not requested or not ready or data.find_mnist() is None:
        return
    st.markdown("**Against adversarial steps (FGSM)**")
    key = (tuple(str(r.path) for r in ready), tuple(r.checkpoint_stamp() for r in ready), str(data.data_root()))
    try:
        df = _curve(*key)
    except (runs.RunError, data.MNISTMissing, ValueError) as e:
        st.error(f"The adversarial check failed: {e}")
        return
    st.plotly_chart(curve_figure(df, colors), key="compare_adversarial", config={"displayModeBar": False})
    st.caption(f"Each run's best checkpoint on the first {adversarial.CURVE_IMAGES:,} test images, every pixel moved "
               f"by ε grey levels against the true digit (FGSM, through that run's own gradients). Augmentation "
               f"teaches shifts and rotations, not this: a curve that falls fast means small, invisible changes fool "
               f"the model.")
