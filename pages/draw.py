"""Draw a digit: live classification on a canvas, what the model sees, and My digits (layout only).

Each stroke reruns only the drawing fragment (the canvas sends its image on mouse-up), which prepares
the drawing the way MNIST was made (mnistviz.preprocess) and classifies it with the picked model.
"""
from __future__ import annotations

import importlib
import threading
from pathlib import Path

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from mnistviz import charts, mydigits, preprocess
from mnistviz import inspect as look
from pages._shared import (all_cores_unless_training, cached_model, counted, one_core, selected_run,
                           selected_run_name)

CANVAS_PX = 280
SHOW_PX = 168  # the 28 x 28 input is shown 6x, pixel-sharp


@st.cache_resource(show_spinner=False)
def warm_up_imports() -> None:
    """Import captum (1-5 s) in the background once per server, so the first drawing's attribution does not
    hold up the next stroke or a Clear."""
    threading.Thread(target=importlib.import_module, args=("captum.attr",), daemon=True).start()


def sharp(image: np.ndarray, px_wide: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so the browser shows pixels instead of a blur."""
    k = max(1, px_wide // image.shape[1])
    return np.clip(np.kron(image, np.ones((k, k), np.float32)), 0, 1)


# The canvas's own toolbar (undo, redo) shows only while the pointer is over the canvas, and people missed it: this
# button, beside Clear, presses the toolbar's Undo (the canvas then sends its drawing without the last stroke, which
# is classified as after a stroke). It is greyed out while the canvas has nothing to undo.
_UNDO_HTML = ('<button type="button" class="mv-undo" disabled><svg viewBox="0 0 24 24" width="18" height="18" '
              'fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" '
              'aria-hidden="true"><path d="M9 14 4 9l5-5"/><path d="M4 9h10.5a5.5 5.5 0 0 1 0 11H11"/></svg>'
              'Undo last stroke</button>')
_UNDO_CSS = """.mv-undo { font: inherit; display: inline-flex; align-items: center; gap: 0.5rem; min-height: 2.5rem;
  padding: 0.25rem 0.75rem; border-radius: 0.5rem; border: 1px solid rgba(49, 51, 63, 0.2); background: transparent;
  color: inherit; cursor: pointer; }
.mv-undo:hover:not(:disabled) { border-color: currentColor; }
.mv-undo:disabled { opacity: 0.4; cursor: not-allowed; }"""
_UNDO_JS = r"""
export default function ({ parentElement }) {
  const button = parentElement.querySelector("button");
  let target = null;
  const find = () => {  // the toolbar's Undo, in the canvas component's shadow DOM (a new one after Clear)
    if (target && target.isConnected) return target;
    target = null;
    for (const host of document.querySelectorAll("div")) {
      const undo = host.shadowRoot && host.shadowRoot.querySelector('button[aria-label="Undo"]');
      if (undo) { target = undo; break; }
    }
    return target;
  };
  const sync = () => { const undo = find(); button.disabled = !undo || undo.disabled; };
  button.addEventListener("click", () => {
    const undo = find();
    if (undo && !undo.disabled) undo.click();
    setTimeout(sync, 50);
  });
  sync();
  const timer = setInterval(sync, 400);
  return () => clearInterval(timer);
}
"""
_undo_button = st.components.v2.component("mnistviz_canvas_undo", html=_UNDO_HTML, css=_UNDO_CSS, js=_UNDO_JS,
                                          isolate_styles=True)


def bump_canvas() -> None:
    """A new key gives a fresh, empty canvas (and a fresh label picker)."""
    st.session_state["draw_n"] = st.session_state.get("draw_n", 0) + 1


def get_model(choice: dict | None):
    if choice is None:
        return None
    try:
        return cached_model(choice["path"], choice["stamp"])
    except ValueError as e:  # RunError (missing or broken checkpoint), or a config naming an unknown model
        st.error(f"The model {choice['name']} cannot be loaded: {e}. Pick another one.")
        return None


def probability_chart(probs: np.ndarray) -> go.Figure:
    top = int(probs.argmax())
    fig = go.Figure(go.Bar(x=[str(d) for d in range(10)], y=probs,
                           marker_color=["#d62728" if d == top else "#7f7f7f" for d in range(10)],
                           text=[f"{p:.0%}" if p >= 0.01 else "" for p in probs], textposition="outside",
                           hovertemplate="digit %{x}: %{y:.2%}<extra></extra>"))
    fig.update_layout(height=230, margin=dict(l=0, r=0, t=10, b=0), yaxis=dict(range=[0, 1.12], tickformat=".0%"),
                      xaxis=dict(type="category", title="digit"))
    return fig


def attribution_chart(attr: np.ndarray, signed: bool) -> go.Figure:
    if signed:
        lim = float(np.abs(attr).max()) or 1.0
        fig = px.imshow(attr, color_continuous_scale="RdBu_r", zmin=-lim, zmax=lim)
    else:
        fig = px.imshow(attr, color_continuous_scale="Inferno", zmin=0)
    fig.update_layout(height=280, margin=dict(l=0, r=0, t=0, b=0), coloraxis_colorbar=dict(thickness=10))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def what_the_model_sees(model, image: np.ndarray, digit: int) -> None:
    st.subheader("What the model sees")
    a, b = st.columns([1, 2])
    with a:
        method = st.radio("Attribution", look.METHODS, horizontal=True, key="draw_attr",
                          format_func=lambda m: m.replace("_", " "),
                          help="Saliency: how much each pixel's change moves the predicted digit's score. "
                               "Integrated gradients: each pixel's share of the score, from a black image "
                               "(red pushes towards the digit, blue away).")
        attr = look.attribution(model, image, target=digit, method=method)
        st.plotly_chart(attribution_chart(attr, signed=(method == "integrated_gradients")),
                        key="draw_attr_chart", config={"displayModeBar": False})
        st.caption(f"Which pixels made it a {digit}.")
    with b:
        maps = look.feature_map_stages(look.stage_outputs(model, image))
        if not maps:
            st.info("This model has no convolutional stages to show.")
            return
        names = [n for n, _, _ in maps]
        default = next((i for i, (_, t, _) in enumerate(maps) if t not in ("Conv2d", "BatchNorm2d")), 0)
        name = st.selectbox("Stage", names, index=default, key="draw_stage",
                            format_func=lambda n: f"{n} ({dict((m, t) for m, t, _ in maps)[n]})")
        out = dict((n, o) for n, _, o in maps)[name][0]
        if look.single_values(out):  # 1 x 1 maps: one value per unit, as bars on one scale
            st.plotly_chart(charts.unit_bars(out.flatten().numpy(), height=220), key="draw_units",
                            config={"displayModeBar": False})
            st.caption(f"{name}: {out.shape[0]} units of one value each for your drawing (blue: the 5 strongest; "
                       f"hover for a unit's value)")
            return
        grid = look.image_grid(out, nrow=8)
        st.image(sharp(grid, 640), clamp=True,
                 caption=f"{name}: {out.shape[0]} maps of {out.shape[1]} x {out.shape[2]} for your drawing "
                         f"(each scaled to its own range; bright = strong)", output_format="PNG")


def save_drawing(image: np.ndarray, n: int) -> None:
    """Save the current drawing with the label the user gives."""
    label = st.pills("True label", list(range(10)), key=f"draw_label_{n}",
                     help="What you meant to draw: saved with the 28 x 28 image to My digits.")
    if st.button("Save to My digits", disabled=label is None, key=f"draw_save_{n}", icon=":material/save:"):
        try:
            ds = mydigits.add(image, label)
        except mydigits.MyDigitsError as e:
            st.error(str(e))
            return
        st.session_state["draw_saved"] = f"Saved a {label}: My digits now holds {len(ds)}."
        bump_canvas()
        st.rerun()  # the whole page: the My digits list below changes


@st.fragment
def drawing(model, model_name: str | None) -> None:
    one_core()  # a fragment's rerun runs in a thread of its own, without the shell
    n = st.session_state.get("draw_n", 0)
    left, right = st.columns([1, 1.3], gap="large")
    with left:
        pen = st.slider("Pen width", 8, 40, 20, key="draw_pen")
        try:
            from streamlit_drawable_canvas import st_canvas

            result = st_canvas(stroke_width=pen, stroke_color="#FFFFFF", background_color="#000000",
                               height=CANVAS_PX, width=CANVAS_PX, drawing_mode="freedraw", update_streamlit=True,
                               return_image_data=True, key=f"draw_canvas_{n}")
            pixels = result.image_data
        except Exception as e:  # the component missing or broken: say so, the rest of the page works
            st.error(f"The drawing canvas cannot be shown ({type(e).__name__}: {e}). "
                     f"Install it with `pip install streamlit-drawable-canvas`.")
            pixels = None
        with st.container(horizontal=True, vertical_alignment="center"):
            st.button("Clear", on_click=bump_canvas, key="draw_clear", icon=":material/delete:")
            _undo_button(key="draw_undo")
        st.caption("Hover over the canvas for its toolbar: undo, redo, edit.")
    image = preprocess.canvas_to_mnist(pixels) if pixels is not None else None
    with right:
        if msg := st.session_state.pop("draw_saved", None):
            st.success(msg)
        if image is None:
            st.info("Draw a digit 0-9 on the black canvas with the mouse (or a finger). "
                    "It is classified each time you lift the pen.", icon=":material/draw:")
            return
        if model is None:
            st.image(sharp(image, SHOW_PX), caption="What the model would receive (28 x 28)", output_format="PNG")
            return
        probs = preprocess.classify(model, image)
        digit = int(probs.argmax())
        m1, m2, m3 = st.columns([1, 1, 1.2])
        m1.metric("Prediction", digit)
        m2.metric("Confidence", f"{probs[digit]:.0%}")
        m3.image(sharp(image, SHOW_PX), caption="The model's input, 28 x 28", output_format="PNG")
        if preprocess.is_unsure(probs):
            second = int(np.argsort(probs)[-2])
            st.warning(f"Unsure: {model_name} gives {digit} only {probs[digit]:.0%} (next: {second} at "
                       f"{probs[second]:.0%}). Try drawing it bigger, clearer or with a thicker pen.",
                       icon=":material/help:")
        st.plotly_chart(probability_chart(probs), key="draw_probs", config={"displayModeBar": False})
        save_drawing(image, n)
    what_the_model_sees(model, image, digit)


def my_digits(choices: list[dict], default_path: str | None) -> None:
    st.subheader("My digits")
    st.caption(f"Your own handwriting, saved from the canvas above, to measure models on. "
               f"Kept in {mydigits.set_path()}.")
    try:
        ds = mydigits.load()
    except mydigits.MyDigitsError as e:
        st.error(str(e), icon=":material/error:")
        if st.button("Set the damaged file aside and start a new set", key="mydigits_aside"):
            moved = mydigits.set_aside()
            st.session_state["mydigits_msg"] = f"Moved the damaged set to {moved}." if moved else None
            st.rerun()
        ds = None
    if msg := st.session_state.pop("mydigits_msg", None):
        st.info(msg)
    # only the open tab is computed: a set may hold up to mydigits.MAX_DIGITS digits
    tabs = st.tabs(["Saved", "Evaluate a model", "Export / import"], key="mydigits_tab", on_change="rerun")
    if tabs[0].open:
        with tabs[0]:
            saved_tab(ds)
    if tabs[1].open:
        with tabs[1]:
            evaluate_tab(ds, choices, default_path)
    if tabs[2].open:
        with tabs[2]:
            transfer_tab(ds)


PAGE_DIGITS = 200  # tiles of the saved set drawn at once


def saved_tab(ds) -> None:
    if ds is not None and len(ds) == 0:
        st.info("No saved digits yet: draw one above, pick its true label and press Save to My digits.")
    elif ds is not None:
        counts = ds.counts()
        pages = max(1, -(-len(ds) // PAGE_DIGITS))
        page = 1
        if st.session_state.get("mydigits_page", 1) > pages:  # the set shrank (deleted, replaced) since
            st.session_state["mydigits_page"] = pages
        if pages > 1:
            page = int(st.number_input(f"Page (of {pages:,}; {PAGE_DIGITS} digits a page, newest first)", 1,
                                       pages, key="mydigits_page"))
        first = (page - 1) * PAGE_DIGITS
        order = np.argsort(-ds.created, kind="stable")[first:first + PAGE_DIGITS]  # newest first
        st.caption(f"{counted(len(ds), 'digit')}: " + ", ".join(f"{d}: {c:,}" for d, c in enumerate(counts)) +
                   (f". Showing {first + 1:,}-{first + len(order):,}" if pages > 1 else "") +
                   ". Click tiles to select them for deletion.")
        fig = charts.digit_grid(ds.images[order], titles=[str(v) for v in ds.labels[order]], ids=order,
                                cols=12, tile_px=56)
        event = st.plotly_chart(fig, on_select="rerun", selection_mode="points", key="mydigits_grid",
                                config={"displayModeBar": False})
        picked = sorted({int(p["customdata"]) for p in (event.selection.points if event else [])
                         if "customdata" in p})
        if picked and st.button(f"Delete {len(picked)} selected", key="mydigits_delete"):
            try:
                mydigits.remove(picked)
            except mydigits.MyDigitsError as e:
                st.error(str(e))
            else:
                st.rerun()


MISREAD_SHOWN = 120


@st.cache_data(max_entries=4, show_spinner=False)
def _evaluated(path: str, stamp, set_stamp, _model, _ds) -> dict:
    """mydigits.evaluate_set, once per model checkpoint and version of the saved set (a full set takes seconds)."""
    with all_cores_unless_training():
        return mydigits.evaluate_set(_model, _ds)


def _set_stamp():
    try:
        st_ = mydigits.set_path().stat()
        return st_.st_mtime_ns, st_.st_size
    except OSError:
        return None


def evaluate_tab(ds, choices: list[dict], default_path: str | None) -> None:
    if ds is None or len(ds) == 0:
        st.info("Save some digits first; then any completed run can be measured on them here.")
    elif not choices:
        st.info("No completed model to evaluate: train one on the Train page.")
    else:
        paths = [c["path"] for c in choices]
        by_path = {c["path"]: c for c in choices}
        path = st.selectbox("Model to evaluate", paths, format_func=lambda p: by_path[p]["label"],
                            index=paths.index(default_path) if default_path in paths else 0,
                            key="mydigits_model")
        model = get_model(by_path[path])
        if model is not None:
            with st.spinner(f"Evaluating {counted(len(ds), 'digit')}..."):
                res = _evaluated(path, by_path[path]["stamp"], _set_stamp(), model, ds)
            c1, c2 = st.columns([1, 2])
            c1.metric("Accuracy on my digits", f"{res['accuracy']:.1%}",
                      help=f"{len(ds) - len(res['wrong'])} of {len(ds)} right")
            fig = px.imshow(res["confusion"], text_auto=True, color_continuous_scale="Blues",
                            labels=dict(x="predicted", y="true", color="digits"),
                            x=[str(d) for d in range(10)], y=[str(d) for d in range(10)])
            fig.update_layout(height=380, margin=dict(l=0, r=0, t=10, b=0), coloraxis_showscale=False)
            fig.update_xaxes(dtick=1)
            fig.update_yaxes(dtick=1)
            c2.plotly_chart(fig, key="mydigits_confusion", config={"displayModeBar": False})
            wrong = res["wrong"]
            if len(wrong):
                c1.caption("Misread (true → predicted)" + (
                    f", the first {MISREAD_SHOWN} of {len(wrong):,}:" if len(wrong) > MISREAD_SHOWN else ":"))
                wrong = wrong[:MISREAD_SHOWN]
                with c1:
                    st.plotly_chart(charts.digit_grid(
                        ds.images[wrong], titles=[f"{ds.labels[i]}→{res['preds'][i]}" for i in wrong],
                        highlight=np.ones(len(wrong), bool), cols=6, tile_px=48), key="mydigits_wrong",
                        config={"displayModeBar": False})


def transfer_tab(ds) -> None:
    if ds is not None and len(ds):
        # made when clicked, not on every rerun (a full set compresses for seconds)
        st.download_button("Export My digits (.npz)", lambda: mydigits.to_bytes(ds), file_name="mydigits.npz",
                           mime="application/octet-stream", icon=":material/download:", key="mydigits_export")
    up = st.file_uploader("Import a set exported from mnistviz (.npz)", type=["npz"], key="mydigits_upload")
    replace = st.radio("Imported digits", ["add to my set", "replace my set"], horizontal=True,
                       key="mydigits_mode") == "replace my set"
    if up is not None and st.button("Import", key="mydigits_import", disabled=(ds is None and not replace)):
        try:
            new, n_in = mydigits.import_bytes(up.getvalue(), replace=replace, source=f"'{up.name}'")
        except mydigits.MyDigitsError as e:
            st.error(str(e), icon=":material/error:")
        else:
            st.session_state["mydigits_msg"] = (f"Imported {counted(n_in, 'digit')} from {up.name}: the set holds "
                                                f"{len(new)}.")
            st.rerun()
    if ds is None:
        st.caption("The saved set is damaged: importing can only replace it.")


def pick_model(choices: list[dict]) -> dict:
    """The Model picker. It opens on the run selected in the sidebar when that run has a checkpoint that loads,
    else on the bundled default (the first choice). The user's own pick stays while they are on this page; a
    different run picked in the sidebar, or coming back to the page, opens it on the sidebar's run again."""
    paths = [c["path"] for c in choices]
    by_path = {c["path"]: c for c in choices}
    run = selected_run()
    if (st.session_state.get("_draw_model_for") != selected_run_name()
            or st.session_state.get("draw_model") not in by_path):
        start, note = paths[0], None
        mine = next((c for c in choices if run is not None and c["source"] == "your runs"
                     and Path(c["path"]) == run.path.resolve()), None)
        if mine is not None:
            try:
                cached_model(mine["path"], mine["stamp"])
                start = mine["path"]
            except ValueError as e:
                note = (f"The run selected in the sidebar, {mine['name']}, cannot be loaded ({e}); "
                        f"drawing with {by_path[start]['name']} instead.")
        st.session_state["draw_model"] = start  # before the widget exists: allowed, and it shows the pick
        st.session_state["_draw_model_for"] = selected_run_name()
        st.session_state["_draw_model_note"] = (start, note)
    path = st.selectbox("Model", paths, format_func=lambda p: by_path[p]["label"], key="draw_model",
                        help="Opens on the run selected in the sidebar (the bundled default when that run has no "
                             "usable checkpoint); any completed run can be picked.")
    shown, note = st.session_state.get("_draw_model_note", (None, None))
    if note and path == shown:
        st.caption(note)
    return by_path[path]


st.title("Draw a digit")
warm_up_imports()
choices = mydigits.model_choices(include=selected_run_name())
choice = None
if not choices:
    st.warning("No model to classify with: the bundled default model (checkpoints/default) is missing and no run "
               "has completed. Train one on the Train page; the canvas still shows what a model would receive.")
else:
    choice = pick_model(choices)
model = get_model(choice)
drawing(model, choice["name"] if choice else None)
st.divider()
my_digits(choices, choice["path"] if choice else None)
