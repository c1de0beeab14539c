"""Suspicious labels: the test images whose given label is probably wrong, ranked from the runs' stored predictions,
and a review of each that applies to every run (layout only: mnistviz.labels ranks, mnistviz.reviews keeps reviews)."""
from pathlib import Path

import streamlit as st

from mnistviz import analysis, charts, inspect, runs
from mnistviz import labels as lab
from mnistviz import reviews as rv
from pages._reviews import ERROR, review_buttons, run_accuracy
from pages._shared import keep, kept, md

CARD = 214  # px: the cards wrap into as many columns as the page is wide
RUNS, TOP = "lb_runs", "lb_top"


@st.cache_data(max_entries=8, show_spinner="Ranking the test images…")
def ranked(chosen: tuple, top: int) -> dict:
    """lab.report of the runs at these paths, once per version of their predictions ((path, stamp) pairs)."""
    return lab.report([runs.Run(Path(p)) for p, _ in chosen], top)


def _flash(key: str, e: Exception) -> None:
    st.session_state[key] = str(e)


def _aside() -> None:
    try:
        moved = rv.set_aside()
    except OSError as e:
        _flash(ERROR, e)
    else:
        st.session_state["lb_msg"] = f"Moved the damaged reviews file to {moved}." if moved else None


def card(s: dict, image, labels, done: rv.Review | None, locked: bool, several: bool) -> None:
    """One suspect: the image, its given label, what the run(s) predict, the label's probability over the epochs, and
    its review (the buttons, or the verdict with an Undo)."""
    i, given = s["index"], s["label"]
    if image is not None:
        st.image(inspect.enlarge(image, 84), output_format="PNG")
    st.markdown(f"**#{i}** · given **{given}** · predicted **{s['predicted']}** ({s['probability']:.0%})")
    if several:
        st.caption(" · ".join(f"{md(b['run'])}: {b['predicted']} ({b['probability']:.0%})" for b in s["by_run"]))
    st.image(charts.sparkline_svg([(b["run"], b["history"]) for b in s["by_run"]]),
             caption=f"p(label {given}) by epoch")
    review_buttons("lb", labels, i, s["predicted"], done, locked)


def transfer(saved: rv.Reviews, damaged: bool) -> None:
    """Export and import, as My digits on the Draw page."""
    st.subheader("Reviews", anchor=False)
    wrong = sum(r.verdict == "wrong" for r in saved.values())
    train = sum(r.scope == "train" for r in saved.values())
    st.caption(f"{len(saved)} review{'s' if len(saved) != 1 else ''} ({wrong} say the label is wrong"
               + (f"; {train} of training images, made on the Training cartography page" if train else "")
               + f"), kept in {md(rv.reviews_path())}. They apply to every run evaluated on the test set they were "
               f"made on.")
    if saved:
        st.download_button("Export reviews (.json)", lambda: rv.to_bytes(saved), file_name="label-reviews.json",
                           mime="application/json", icon=":material/download:", key="lb_export")
    up = st.file_uploader("Import reviews exported from mnistviz (.json)", type=["json"], key="lb_upload")
    replace = st.radio("Imported reviews", ["add to mine", "replace mine"], horizontal=True,
                       key="lb_mode") == "replace mine"
    if up is not None and st.button("Import", key="lb_import", disabled=damaged and not replace):
        try:
            new, n_in = rv.import_bytes(up.getvalue(), replace=replace, source=f"'{up.name}'")
        except (rv.ReviewError, OSError) as e:
            st.error(md(e), icon=":material/error:")
        else:
            st.session_state["lb_msg"] = f"Imported {n_in} reviews from {up.name}: {len(new)} saved."
            st.rerun()
    if damaged:
        st.caption("The saved reviews file is damaged: importing can only replace it.")


st.title("Suspicious labels")
st.caption("Test images whose given label is probably wrong, ranked from the runs' stored test predictions (no run "
           "trained on these images). Review them: a review applies to every run, and the pages that show test "
           "accuracy then show it on the reviewed labels too.")
st.page_link("pages/cartography.py", label="Training images whose labels look wrong: Training cartography",
             icon=":material/map:")
sources = lab.sources()
if not sources:
    st.info("No run has stored test predictions, and the bundled default model (checkpoints/default) is missing: "
            "train one on the Train page.")
    st.stop()
by_path = {s["path"]: s for s in sources}
kept(RUNS, [sources[0]["path"]])  # the bundled default model when it is there
st.session_state[RUNS] = [p for p in st.session_state[RUNS] if p in by_path] or [sources[0]["path"]]
top_row = st.container(horizontal=True, gap="medium", vertical_alignment="bottom")
chosen = top_row.multiselect("Runs (several: their probabilities averaged)", list(by_path), key=RUNS, width=440,
                             format_func=lambda p: by_path[p]["label"])
keep(RUNS)
kept(TOP, 30)
top = int(top_row.number_input("Suspects", 1, 200, step=10, key=TOP, width=140))
keep(TOP)
if not chosen:
    st.info("Pick at least one run above.")
    st.stop()
chosen_runs = [runs.Run(Path(p)) for p in chosen]
try:
    rep = ranked(tuple((p, lab.stamp(r)) for p, r in zip(chosen, chosen_runs)), top)
except runs.RunError as e:
    st.warning(f"{md(e)}.")
    st.stop()
labels = rep["labels"]
st.caption(f"Ranked by {rep['method']}.")

try:
    saved, damaged = rv.load(), None
except rv.ReviewError as e:
    saved, damaged = {}, str(e)
if damaged:
    st.error(md(damaged), icon=":material/error:")
    st.button("Set the damaged file aside and start anew", key="lb_aside", on_click=_aside)
for key, show in (("lb_msg", st.info), (ERROR, st.error)):
    if msg := st.session_state.pop(key, None):
        show(md(msg))
for p, r in zip(chosen, chosen_runs):
    res = run_accuracy(p)
    if res:
        st.markdown(f"**{md(r.name)}**: test accuracy {rv.accuracy_text(res)} (epoch {res['epoch']})")

here = rv.applying(saved, labels)
found = rep["suspects"]
n_done = sum(s["index"] in here for s in found)
n_wrong = sum(s["index"] in here and here[s["index"]].verdict == "wrong" for s in found)
st.caption(f"{len(found)} suspects, most suspicious first; {n_done} reviewed ({n_wrong} wrong, {n_done - n_wrong} "
           f"right). The chart: the given label's probability after each epoch (one line per run).")
images, missing = analysis.test_images_for(labels)
if missing:
    st.warning(f"{md(missing)} The cards show the indices without images.")
grid = st.container(horizontal=True, gap="small")
for s in found:
    with grid.container(width=CARD, border=True):
        card(s, None if images is None else images[s["index"]], labels, here.get(s["index"]), damaged is not None,
             len(chosen) > 1)
st.divider()
transfer(saved, damaged is not None)
