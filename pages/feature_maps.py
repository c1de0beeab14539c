"""Feature maps: one test image through a run's model, stage by stage; its filters; what it looked at."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from mnistviz import analysis, charts, data, evaluate, inspect, runs
from pages._adversarial import adversarial_tab
from pages._shared import cached_model, keep, kept, md, selected_run_or_stop

INDEX = "fm_index"  # the widget key; the URL carries the same number as ?index=N
TABS = ["Feature maps", "Filters", "Class scores", "Attribution", "Adversarial"]


@st.cache_data(max_entries=16, show_spinner=False)
def weights_info(path: str, stamp: float) -> dict:
    """Which checkpoint the model came from (best.pt, or last.pt without one) and its epoch, per version."""
    return evaluate.checkpoint_info(path)


st.title("Feature maps")
run = selected_run_or_stop()

try:
    model = cached_model(str(run.path), run.checkpoint_stamp())
    model_name = run.config()["model"]
    weights = weights_info(str(run.path), run.checkpoint_stamp())
except runs.RunError as e:
    st.warning(f"{e}. Feature maps need the run's saved weights: pick another run, or resume or retrain this one.")
    st.stop()
st.caption(f"Run {run.name}: model {model_name}, weights from {weights['about']}.")

# ---- the test image ----
try:
    mnist = data.load_mnist(download=False)
except data.MNISTMissing as e:
    mnist = None
    st.warning(f"{e} Without the test images only the filters are shown.")

stored = None  # (labels, probs) of the best epoch, when the run has them for this test set
try:
    labels, probs = analysis.run_predictions(run)
    if mnist is not None and np.array_equal(labels, mnist.test_labels.numpy()):
        stored = labels, probs
except runs.RunError as e:
    st.info(f"{e}. The feature maps below come from the checkpoint and still work.")


def unit_bars(values: np.ndarray, name: str, top: int = 5) -> None:
    """A stage of 1 x 1 maps: one bar per unit (channel), on one scale, the strongest ones named."""
    st.plotly_chart(charts.unit_bars(values, top, height=170), key=f"fm_units_{name}",
                    config={"displayModeBar": False})
    st.caption("One value per unit; strongest (blue): "
               + ", ".join(f"{u} ({values[u]:.2f})" for u in charts.strongest_units(values, top))
               + ". Hover for any unit.")


def sync_url() -> None:
    st.query_params["index"] = str(st.session_state[INDEX])


def pick_random(n: int) -> None:
    st.session_state[INDEX] = int(np.random.default_rng().integers(n))
    sync_url()


if mnist is not None:
    n = len(mnist.test_images)
    raw = st.query_params.get("index")
    if raw is not None and raw != str(st.session_state.get(INDEX)):
        try:
            want = int(raw)
        except ValueError:
            st.warning(f"The image index {md(repr(raw))} in the address is not a whole number: showing image 0.")
            want = 0
        if not 0 <= want < n:
            clamped = min(max(want, 0), n - 1)
            st.warning(f"Image index {want} is out of range (the test set has {n:,} images, 0–{n - 1}): "
                       f"showing image {clamped}.")
            want = clamped
        st.session_state[INDEX] = want
        st.query_params["index"] = str(want)
    elif not 0 <= st.session_state.get(INDEX, 0) < n:
        st.session_state[INDEX] = 0

    c = st.columns([2, 1, 3])
    i = int(c[0].number_input(f"Test image (0–{n - 1})", 0, n - 1, key=INDEX, on_change=sync_url))
    c[1].button("Random image", on_click=pick_random, args=(n,), icon=":material/casino:")
    x = inspect.as_input(mnist.test_images[i])
    true = int(mnist.test_labels[i])
    logits, now = inspect.class_scores(model, x)
    pred = int(now.argmax())

    left, right = st.columns([1, 3])
    left.image(inspect.enlarge(mnist.test_images[i].numpy(), 168), caption=f"test image {i}", output_format="PNG")
    with right:
        verdict = "right" if pred == true else "wrong"
        st.markdown(f"**True {true}; the model predicts {pred}** ({verdict}, {now[pred]:.1%} confident).")
        if stored is not None:
            sp = int(stored[1][i].argmax())
            st.caption(f"Stored prediction at the best epoch: {sp} ({stored[1][i, sp]:.1%}).")

    # only the open tab's content is computed and sent (the first render carries no plotly chart);
    # the open tab is kept in the URL (?fm_tab=Filters) like the image index
    tabs = st.tabs(TABS, key="fm_tab", bind="query-params")
else:
    tabs = [None, st.container(), None, None, None]


def shown(tab) -> bool:
    return tab is not None and getattr(tab, "open", None) is not False  # a plain container (no MNIST): shown


# ---- filters (need no image) ----
if shown(tabs[1]):
    with tabs[1]:
        filters = inspect.conv_filters(model)
        if not filters:
            st.info(f"Model {model_name} has no convolution layers.")
        for name, w in filters.items():
            o, ci, k, _ = w.shape
            layout = "rows of 8 filters" if ci == 1 else "one row per filter, one column per input channel"
            st.markdown(f"**{name}**: {o} filters of {ci}×{k}×{k} ({layout}; each kernel on its own grey scale, "
                        f"white = largest weight)")
            grid = inspect.filter_grid(w)
            st.image(inspect.enlarge(grid, min(900, 12 * max(grid.shape))), output_format="PNG")

if mnist is None:
    st.stop()

# ---- feature maps after every conv / batch norm / activation / pooling stage ----
if shown(tabs[0]):
    with tabs[0]:
        outs = inspect.stage_outputs(model, x)
        stages = inspect.feature_map_stages(outs)
        kept("fm_scale_each", True)
        each = st.toggle("Each map on its own grey scale", key="fm_scale_each", on_change=keep, args=("fm_scale_each",),
                         help="On: every map stretched to its own range (shows its pattern). Off: one scale per "
                              "stage (shows which maps respond most).")
        units = any(inspect.single_values(o) for _, _, o in stages)
        st.caption("White = strongest output; a flat map shows as mid-grey."
                   + (" Stages whose maps are a single value (1×1) show one bar per unit instead, all on one scale."
                      if units else ""))
        cols = st.columns(2)
        for k, (name, kind, o) in enumerate(stages):
            c_, h, w_ = o.shape[1:]
            with cols[k % 2]:
                st.markdown(f"**{name}** · {kind} · {c_}×{h}×{w_}")
                if inspect.single_values(o):
                    unit_bars(o[0].flatten().numpy(), name)
                    continue
                grid = inspect.image_grid(o[0], nrow=16 if c_ > 32 else 8, scale_each=each)
                st.image(inspect.enlarge(grid, min(640, 8 * max(grid.shape))), output_format="PNG")

# ---- final layer ----
if shown(tabs[2]):
    with tabs[2]:
        last, layer = inspect.stages(model)[-1]
        colors = ["#268bd2" if d == true else "#dc322f" if d == pred else "#93a1a1" for d in range(10)]
        fig = go.Figure(go.Bar(x=list(range(10)), y=logits, marker_color=colors, customdata=now,
                               hovertemplate="digit %{x}: output %{y:.3f}, probability %{customdata:.2%}"
                                             "<extra></extra>"))
        fig.update_layout(height=300, margin=dict(l=0, r=0, t=30, b=0), title=f"{last} ({type(layer).__name__}) outputs",
                          xaxis=dict(dtick=1, title="digit"), yaxis_title="output (logit)")
        st.plotly_chart(fig, key="fm_logits")
        st.caption("Blue: the true digit; red: the prediction when it is wrong. Hover for the softmax probability.")

# ---- attribution ----
if shown(tabs[3]):
    with tabs[3]:
        a = st.columns([2, 1])
        kept("fm_method", inspect.METHODS[0])
        method = a[0].radio("Method", inspect.METHODS, horizontal=True, key="fm_method", on_change=keep,
                            args=("fm_method",), format_func=lambda m: m.replace("_", " ").capitalize())
        target = a[1].selectbox("Explain the score of digit", list(range(10)), index=pred, key=f"fm_target_{i}")
        attr = inspect.attribution(model, x, target=target, method=method)
        signed = method == "integrated_gradients"
        lim = float(np.abs(attr).max()) or 1.0
        heat = go.Figure(go.Heatmap(z=attr, colorscale="RdBu_r" if signed else "Reds", zmin=-lim if signed else 0,
                                    zmax=lim, hovertemplate="x %{x}, y %{y}: %{z:.4f}<extra></extra>"))
        heat.update_yaxes(autorange="reversed", scaleanchor="x", visible=False)
        heat.update_xaxes(visible=False, constrain="domain")
        heat.update_layout(height=340, width=380, margin=dict(l=0, r=0, t=0, b=0))
        b1, b2 = st.columns([1, 2])
        b1.image(inspect.enlarge(mnist.test_images[i].numpy(), 280), caption="input", output_format="PNG")
        b2.plotly_chart(heat, key="fm_attr", width="content")
        st.caption("Saliency: how much each pixel changes the digit's score (|gradient|). Integrated gradients: "
                   "each pixel's share of the score relative to a black image; red adds, blue subtracts.")

# ---- adversarial: the smallest step that changes the prediction (pages/_adversarial.py) ----
if shown(tabs[4]):
    with tabs[4]:
        adversarial_tab(run, model, mnist.test_images[i].numpy(), i, true)
