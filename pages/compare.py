"""Compare runs: two or more runs side by side (augmented vs normal by default). Layout only; see mnistviz/compare.py."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from mnistviz import charts, compare, data, jobs, runs, train
from pages._shared import all_cores_unless_training, all_runs, launch_made, launch_repeated, md

PALETTE = qualitative.Plotly
PNG = {"toImageButtonOptions": {"format": "png", "scale": 2}, "displaylogo": False}


def png_config(name: str) -> dict:
    return {**PNG, "toImageButtonOptions": {**PNG["toImageButtonOptions"], "filename": f"compare-{name}"}}


def pair_launcher(reason: str) -> None:
    st.info(f"{reason} Launch an augmented + normal pair: the default recipe trained twice, once with standard "
            f"augmentation and once without, in the background. Come back here when they have finished "
            f"(the Runs page shows their progress).", icon=":material/compare:")
    if st.button("Launch an augmented + normal pair", type="primary", key="compare_launch_pair"):
        cfg = train.Config()
        again = launch_repeated(("compare_pair", cfg))
        if again:  # a double click: one pair
            st.warning(f"A pair was just queued ({', '.join(again)}); nothing more was launched.")
            return
        try:
            aug_run, plain_run = jobs.submit_pair(cfg)
        except (runs.RunError, data.MNISTMissing, OSError) as e:
            st.error(f"Could not queue the pair: {e}")
        else:
            launch_made(("compare_pair", cfg), [aug_run.name, plain_run.name])
            st.success(f"Queued {aug_run.name} (augmented) and {plain_run.name} (normal). "
                       f"They train one after the other; this page will offer them once they have an epoch done.")


def curves_figure(curves, colors) -> go.Figure:
    splits = [s for s, _ in compare.SPLITS]
    fig = make_subplots(rows=2, cols=3, shared_yaxes="rows", horizontal_spacing=0.03, vertical_spacing=0.12,
                        subplot_titles=[f"{s} {m}" for m in compare.METRICS for s in splits])
    for name, color in colors.items():
        shown = False
        for r, metric in enumerate(compare.METRICS, 1):
            for c, split in enumerate(splits, 1):
                d = curves[(curves.run == name) & (curves.metric == metric) & (curves.split == split)]
                if d.empty:
                    continue
                fig.add_trace(go.Scatter(x=d.epoch, y=d.value, mode="lines+markers", name=name, legendgroup=name,
                                         showlegend=not shown, line=dict(color=color),
                                         hovertemplate=f"{name}<br>epoch %{{x}}<br>{split} {metric} %{{y:.4f}}"
                                                       f"<extra></extra>"), row=r, col=c)
                shown = True
    fig.update_yaxes(tickformat=".1%", row=1)
    fig.update_xaxes(dtick=max(1, math.ceil(curves.epoch.max() / 10)))
    fig.update_xaxes(title_text="epoch", row=2)
    fig.update_layout(height=580, margin=dict(l=10, r=10, t=70, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.06, x=0, title_text="run"))
    return fig


def per_class_figure(table, colors) -> go.Figure:
    fig = go.Figure([go.Bar(x=table.index, y=table[name], name=name, marker_color=colors[name],
                            hovertemplate=f"{name}<br>digit %{{x}}: %{{y:.2%}}<extra></extra>")
                     for name in table.columns])
    lo = float(table.min().min()) if table.notna().any().any() else 0.0
    fig.update_layout(barmode="group", height=340, margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(title="digit", dtick=1), legend=dict(orientation="h", y=1.12, x=0),
                      yaxis=dict(title="accuracy", tickformat=".1%", range=[max(0.0, lo - (1 - lo) * 0.3 - 0.005), 1]))
    return fig


CONFUSION_PX = 400  # the difference heatmap's width: square cells, a readable colour bar, also on a narrow window


def confusion_figure(diff, a: str, b: str) -> go.Figure:
    """The confusion difference A minus B, coloured by which run does better (blue: A, red: B) in every cell:
    more of a digit right on the diagonal, a mistake made less often elsewhere. The cells and the hover keep
    the real signed counts of A minus B."""
    diff = np.asarray(diff)
    better = compare.better_for_a(diff)
    lim = max(1, int(np.abs(diff).max()))

    def verdict(v):
        return f"better for A ({a})" if v > 0 else f"better for B ({b})" if v < 0 else "no difference"

    hover = [[f"true {t}, predicted {p} ({'right' if t == p else 'a mistake'})<br>"
              f"{a} minus {b}: {diff[t, p]:+d} image{'' if abs(diff[t, p]) == 1 else 's'}<br>{verdict(better[t, p])}"
              for p in range(10)] for t in range(10)]
    text = [[f"{v:+d}" if v else "0" for v in row] for row in diff.tolist()]
    fig = go.Figure(go.Heatmap(
        z=better, x=list(range(10)), y=list(range(10)), colorscale="RdBu", zmid=0, zmin=-lim, zmax=lim,
        text=text, texttemplate="%{text}", customdata=hover, hovertemplate="%{customdata}<extra></extra>",
        colorbar=dict(orientation="h", thickness=12, len=1, x=0.5, xanchor="center", y=-0.04, yanchor="top",
                      tickvals=[-lim, 0, lim], ticktext=[f"B by {lim}", "same", f"A by {lim}"],
                      title=dict(text="◀ better for B · better for A ▶", side="top"))))
    fig.update_layout(width=CONFUSION_PX, height=CONFUSION_PX + 90, margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(title="predicted", dtick=1, side="top", constrain="domain"),
                      yaxis=dict(title="true", dtick=1, autorange="reversed", scaleanchor="x"))
    return fig


def robustness_figure(df, colors) -> go.Figure:
    kinds = list(compare.DISTORTIONS)
    fig = make_subplots(rows=1, cols=len(kinds), shared_yaxes=True, horizontal_spacing=0.04, subplot_titles=kinds)
    for name, color in colors.items():
        for c, kind in enumerate(kinds, 1):
            d = df[(df.run == name) & (df.distortion == kind)]
            fig.add_trace(go.Scatter(x=d.strength, y=d.accuracy, mode="lines+markers", name=name, legendgroup=name,
                                     showlegend=c == 1, line=dict(color=color),
                                     hovertemplate=f"{name}<br>{kind} %{{x}}: %{{y:.2%}}<extra></extra>"), row=1, col=c)
            fig.update_xaxes(title_text=compare.UNITS[kind], tickvals=list(compare.DISTORTIONS[kind]), row=1, col=c)
    fig.update_yaxes(tickformat=".0%", title_text="accuracy", row=1, col=1)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=70, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.12, x=0, title_text="run"))
    return fig


@st.cache_data(show_spinner="Evaluating the runs on distorted test images…", max_entries=8)
def robustness_table(run_dirs: tuple[str, ...], stamps: tuple[float, ...], data_root: str):
    """Cached per (runs, checkpoint mtimes, data root): a retrained checkpoint gets a fresh result."""
    mnist = data.load_mnist(data_root, download=False)
    with all_cores_unless_training():
        return compare.run_robustness(list(run_dirs), mnist.test_images, mnist.test_labels)


def test_images(labels):
    """The MNIST test images the runs were scored on, or None with a sentence shown."""
    if data.find_mnist() is None:
        st.info(f"The images cannot be shown: {data.missing_message()} The numbers above do not need them.")
        return None
    try:
        mnist = data.load_mnist(download=False)
    except data.MNISTMissing as e:
        st.info(f"The images cannot be shown: {e}")
        return None
    if len(mnist.test_labels) != len(labels) or not (mnist.test_labels.numpy() == labels).all():
        st.warning(f"The MNIST test set in {mnist.root} ({len(mnist.test_labels)} images) is not the one these runs "
                   f"were scored on ({len(labels)} images), so their images are not shown.")
        return None
    return mnist.test_images


def gallery(df, images, right: str, a: str, b: str, limit: int, key: str) -> None:
    """Images that run `right` ("A" or "B") gets right and the other gets wrong, with both confidences."""
    wrong = "B" if right == "A" else "A"
    names = {"A": a, "B": b}
    part = df[df.right == right]
    if part.empty:
        st.caption("None.")
        return
    shown = part.head(limit)
    if images is not None:
        idx, label = shown["index"].tolist(), shown["label"].tolist()
        pred = {k: shown[f"pred_{k.lower()}"].tolist() for k in names}
        conf = {k: shown[f"conf_{k.lower()}"].tolist() for k in names}
        titles = [f"{label[i]}: {wrong}{pred[wrong][i]} {conf[wrong][i]:.0%}" for i in range(len(idx))]
        hover = [f"test image {idx[i]}, true {label[i]}<br>"
                 + "<br>".join(f"{k} {names[k]}: {pred[k][i]} ({conf[k][i]:.1%})" for k in names)
                 for i in range(len(idx))]
        fig = charts.digit_grid(images[idx].numpy(), titles=titles, ids=idx, cols=7, tile_px=72)
        fig.data[-1].hovertext = hover
        st.plotly_chart(fig, key=key, width="content", config=png_config(key))
        st.caption(f"Above each digit: its true label, then {wrong}'s wrong guess and {wrong}'s confidence in it; "
                   f"hover for both runs. Most confident mistakes first"
                   + (f"; the first {limit} of {len(part)}." if len(part) > limit else "."))
    table = shown.rename(columns={"index": "test image", "pred_a": f"{a} predicts", "conf_a": f"{a} confidence",
                                  "pred_b": f"{b} predicts", "conf_b": f"{b} confidence"}).drop(columns="right")
    with st.expander(f"{len(shown)} rows as a table", expanded=images is None):
        st.dataframe(table, hide_index=True, column_config={
            f"{a} confidence": st.column_config.NumberColumn(format="percent"),
            f"{b} confidence": st.column_config.NumberColumn(format="percent")})


@st.cache_data(show_spinner="Checking A and B on distorted test images…", max_entries=16)
def pair_outcomes(run_dirs: tuple[str, str], stamps: tuple[float, float], data_root: str):
    """The robustness table and who gets each distorted image right, for the verdict's pair. Cached per pair (and
    checkpoint mtimes, data root): it runs on every visit, so only a retrained checkpoint pays the seconds again.
    On the page's one core (unlike the check of other runs on request): it runs while the browser draws the page."""
    mnist = data.load_mnist(data_root, download=False)
    return compare.run_robustness_outcomes(list(run_dirs), mnist.test_images, mnist.test_labels)


def pair_robustness(pair: list) -> tuple[tuple | None, str | None, bool]:
    """(robustness table and outcomes of A and B, None, False), or (None, why not, whether that is an error)."""
    missing = [r.name for r in pair if r.checkpoint_stamp() <= 0]
    if missing:
        return None, f"No robustness check yet: {' and '.join(missing)} has no checkpoint.", False
    if data.find_mnist() is None:
        return None, f"The robustness check needs the test images: {data.missing_message()}", False
    try:
        return pair_outcomes(tuple(str(r.path) for r in pair), tuple(r.checkpoint_stamp() for r in pair),
                             str(data.data_root())), None, False
    except (runs.RunError, data.MNISTMissing, compare.CompareError) as e:
        return None, f"The robustness check failed: {e}", True


def show_verdict(box, labels, probs: dict, problems: dict, pair: list):
    """The verdict on A and B at the top of the page: which is more accurate on clean test images and whether that
    is more than noise. Returns the slot for its sentence on distorted digits (finish_verdict fills it once the
    robustness check, seconds, has run at the end of the page), or None when there is no verdict."""
    with box.container(border=True):
        if len(probs) < 2:
            why = " ".join(f"{m[0].upper()}{m[1:]}." for m in problems.values())
            st.markdown(f"**No verdict**: it needs two runs with stored test predictions. {md(why)}")
            return None
        a, b = (r.name for r in pair)
        try:
            clean = compare.mcnemar(labels, probs[a], probs[b])
        except compare.CompareError as e:
            clean = f"{str(e)[0].upper()}{str(e)[1:]}."
        st.markdown(f"**Verdict: A = {md(a)} vs B = {md(b)}**")
        st.markdown(md(compare.clean_finding(a, b, clean)))
        slot = st.empty()
        slot.markdown(f"On {compare.DISTORTED}: checking A and B (a few seconds)…")
        shown = "; ".join(f"{k} {', '.join(str(s) for s in v[1:])}" for k, v in compare.DISTORTIONS.items())
        n = len(labels)
        st.caption(f"Each run at its best epoch (the best test acc under Metrics): its stored predictions on the "
                   f"{n:,} test images, and its best checkpoint on distorted copies of the first "
                   f"{min(n, compare.ROBUSTNESS_IMAGES):,} ({shown}). Paired tests on the same images: McNemar's "
                   f"exact test counts the images only one run gets right; a difference is more than noise at "
                   f"p < {compare.ALPHA}.")
    return slot


def finish_verdict(slot, pair: list, rob, rob_problem: str | None) -> None:
    """The verdict's sentence on distorted digits: a sign test on the pair's robustness check, or why there is none."""
    a, b = (r.name for r in pair)
    distorted = rob_problem if rob is None else compare.distorted_sign_test(rob[1][a], rob[1][b])
    slot.markdown(md(compare.distorted_finding(a, b, distorted)))


# ---------------------------------------------------------------- page

st.title("Compare runs")
verdict_box = st.container()  # filled once the runs are read: the first thing under the title
st.caption("Curves, metrics, per-digit accuracy, disagreements and robustness of two or more runs. "
           "Each run keeps one colour on the whole page.")

good, broken = all_runs()
names = [r["name"] for r in good]
if len(names) < 2:
    pair_launcher(f"Comparing needs at least two runs; there {'is' if len(names) == 1 else 'are'} "
                  f"{len(names) or 'none'} in {runs.runs_dir()}.")
    st.stop()

summaries = {r["name"]: r for r in good}
from_url = ",".join(st.query_params.get_all("runs"))
if from_url:
    initial, unknown = compare.parse_run_list(from_url, names)
    if unknown:
        st.warning(f"No run named {md(', '.join(unknown))} (from the address bar); it is left out.")
else:
    initial = compare.default_selection(good)
selected = st.multiselect(
    "Runs to compare", names, default=initial, key="compare_runs",
    format_func=lambda n: f"{n} · {summaries[n]['model']} · augment {summaries[n]['augment']} · {summaries[n]['status']}",
    help="The first two are A and B in the pairwise sections. Default: the newest augmented + normal pair.")
if ",".join(selected) != from_url:
    st.query_params["runs"] = ",".join(selected)

if len(selected) < 2:
    pair_launcher("Pick at least two runs above to compare them.")
    st.stop()

sel = [runs.Run(summaries[n]["path"]) for n in selected]  # listed runs, by path (never get_run on a folder name)
colors = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(selected)}
try:
    summary = compare.summary_table(sel)
    configs = {r.name: r.config() for r in sel}
    records = {r.name: r.epoch_records() for r in sel}
except runs.RunError as e:
    st.error(f"{e}. Pick other runs, or fix or delete that folder on the Runs page.")
    st.stop()
empty = [n for n, recs in records.items() if not recs]
if empty:
    st.info(f"{', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no finished epoch yet, so no curves or "
            f"metrics; come back when training has got further.")
labels, probs, problems = compare.load_predictions(sel)
pair = [r for r in sel if r.name in probs][:2]  # A and B: the first two selected runs with predictions
verdict_slot = show_verdict(verdict_box, labels, probs, problems, pair)
models = {c["model"] for c in configs.values()}
if len(models) > 1:
    st.caption(f"Different architectures ({', '.join(sorted(models))}): everything below still compares, "
               f"as all runs answer the same test set.")

# --- curves
st.subheader("Curves per epoch")
curves = compare.epoch_curves(records)
if curves.empty:
    st.info("None of the selected runs has a finished epoch yet.")
else:
    st.plotly_chart(curves_figure(curves, colors), key="compare_curves", config=png_config("curves"))
    if not (curves.split == "validation").any():
        st.caption("No validation curves: these runs were trained with no validation set (val size 0).")
    augments = {n: configs[n].get("augment") or "none" for n in selected}
    if len(set(augments.values())) > 1:
        augmented = [n for n, v in augments.items() if v != "none"]
        its = "its" if len(augmented) == 1 else "their"
        st.caption(f"Train accuracy is measured on the images each run trained on: augmented (harder) ones for "
                   f"{', '.join(augmented)}, so {its} train curve sits lower. Compare the test curves: every run "
                   f"answers the same plain test images.")

# --- tables
st.subheader("Metrics")
pct = st.column_config.NumberColumn(format="percent")
st.dataframe(summary, column_config={
    "final test acc": pct, "best test acc": pct, "final val acc": pct,
    "final test loss": st.column_config.NumberColumn(format="%.4f"),
    "test loss at best": st.column_config.NumberColumn(format="%.4f"),
    "train seconds": st.column_config.NumberColumn(format="%.1f"),
    "images/s": st.column_config.NumberColumn(format="%.0f")})
diff = compare.config_differences(configs)
if diff.empty:
    st.caption("Same recipe: the configs differ only in name, pair and creation time.")
else:
    st.markdown("**Config differences**")
    st.dataframe(diff)
c1, c2, _ = st.columns([1, 1, 2])
c1.download_button("Summary (CSV)", compare.csv_bytes(summary), file_name="compare-summary.csv", mime="text/csv",
                   icon=":material/download:")
c2.download_button("Every epoch (CSV)", compare.epochs_csv(sel), file_name="compare-epochs.csv", mime="text/csv",
                   icon=":material/download:")

# --- predictions: per class, confusion difference, disagreements
for msg in problems.values():
    st.warning(f"{msg}. It is left out of the per-digit and disagreement sections.")
if probs:
    st.subheader("Accuracy per digit")
    st.caption("From each run's stored test predictions at its best epoch.")
    per_class = compare.per_class_accuracy(labels, probs)
    st.plotly_chart(per_class_figure(per_class, colors), key="compare_per_class", config=png_config("per-digit"))
    with st.expander("As a table"):
        st.dataframe(per_class, column_config={n: pct for n in per_class.columns})

if len(probs) >= 2:
    a, b = list(probs)[:2]
    st.subheader(f"A = {a} vs B = {b}")
    st.caption("The first two selected runs (with predictions); reorder the selection above to change them.")
    # side by side when the page is wide enough, the heatmap above the disagreements on a narrow window
    # (columns would squeeze it into a thin strip)
    with st.container(horizontal=True, gap="medium"):
        left = st.container(width=CONFUSION_PX)
        right = st.container(width="stretch")
    with left:
        st.markdown("**Confusion matrix of A minus that of B**")
        st.plotly_chart(confusion_figure(compare.confusion_difference(labels, probs[a], probs[b]), a, b),
                        key="compare_confusion", width="content", config=png_config("confusion-difference"))
        st.caption(f"Numbers: A's count minus B's. Colour: which run does better, in every cell. Blue: better for "
                   f"A ({a}): more of that digit right on the diagonal, that mistake made less often elsewhere. "
                   f"Red: better for B ({b}).")
    with right:
        st.markdown("**Disagreements**: test images one run gets right and the other wrong")
        dis = compare.disagreements(labels, probs[a], probs[b])
        n_a, n_b = int((dis.right == "A").sum()), int((dis.right == "B").sum())
        m1, m2, m3 = st.columns(3)
        m1.metric("A right, B wrong", n_a)
        m2.metric("B right, A wrong", n_b)
        m3.metric("Net for A", f"{n_a - n_b:+d}", help="images; positive means A gets more right")
        limit = st.slider("Images per gallery", 7, 70, 28, step=7, key="compare_limit")
        images = test_images(labels) if len(dis) else None
        ta, tb = st.tabs([f"{a} right, {b} wrong ({n_a})", f"{b} right, {a} wrong ({n_b})"])
        with ta:
            gallery(dis, images, "A", a, b, limit, "compare_gallery_a")
        with tb:
            gallery(dis, images, "B", a, b, limit, "compare_gallery_b")

# --- robustness
st.subheader("Robustness to distortions")
strengths = "; ".join(f"{k} {', '.join(str(s) for s in v[1:])} {compare.UNITS[k]}" for k, v in compare.DISTORTIONS.items())
st.caption(f"Each run's best checkpoint evaluated on the first {compare.ROBUSTNESS_IMAGES:,} test images, plain and "
           f"distorted ({strengths}). A and B are checked for the verdict at the top; other runs take a few seconds "
           f"each, on request. Results are kept until a checkpoint changes.")
ready = [r for r in sel if r.checkpoint_stamp() > 0]
if len(ready) < len(sel):
    st.caption(f"Left out (no checkpoint yet): {', '.join(r.name for r in sel if r not in ready)}.")
# A and B are checked on every visit, for the verdict (last on the page: everything above shows meanwhile)
rob, rob_problem, rob_failed = pair_robustness(pair) if len(pair) == 2 else (None, None, False)
if verdict_slot is not None:
    finish_verdict(verdict_slot, pair, rob, rob_problem)
table = rob[0] if rob is not None else None
if rob_problem:
    (st.error if rob_failed else st.info)(rob_problem)
if rob is not None:
    others = [r for r in ready if r.name not in {p.name for p in pair}]
else:  # no pair result: the button checks every run, unless the pair's problem (shown above) would stop it too
    others = [] if rob_problem else ready
if others:  # the other runs on request: seconds each
    label = f"Add the other {len(others)} run{'s' if len(others) > 1 else ''}" if rob is not None else \
        "Run the robustness check"
    key = (tuple(str(r.path) for r in ready), tuple(r.checkpoint_stamp() for r in ready), str(data.data_root()))
    if st.button(label, key="compare_robust"):
        st.session_state["compare_robust_for"] = key
    if st.session_state.get("compare_robust_for") == key:
        if data.find_mnist() is None:
            st.info(f"The robustness check needs the test images: {data.missing_message()}")
        else:
            try:
                table = robustness_table(*key)
            except (runs.RunError, data.MNISTMissing, compare.CompareError) as e:
                st.error(f"The robustness check failed: {e}")
if table is not None:
    st.plotly_chart(robustness_figure(table, {n: colors[n] for n in table.run.unique()}), key="compare_robustness",
                    config=png_config("robustness"))
    st.download_button("Robustness (CSV)", compare.csv_bytes(table, index=False), file_name="compare-robustness.csv",
                       mime="text/csv", icon=":material/download:")
