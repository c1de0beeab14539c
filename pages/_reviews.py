"""Label reviews on the pages that show test accuracy or test images (layout only; mnistviz.reviews computes): each
helper is called with a line or two from its page and shows nothing while no review applies."""
from __future__ import annotations

import streamlit as st

from mnistviz import reviews as rv
from mnistviz import runs
from pages._shared import md

MARK = "*"  # after a grid tile's title: its label was reviewed wrong (the caption under the grid says what it is)
ERROR = "lb_error"  # a review that could not be saved: the page that drew the buttons shows it at its next run


def _review(labels, index: int, verdict: str, digit_key: str | None = None, scope: str = "test") -> None:
    try:
        rv.review(labels, index, verdict, st.session_state.get(digit_key) if digit_key else None, scope=scope)
    except (rv.ReviewError, OSError) as e:  # a damaged file (the buttons are off then), a full disk
        st.session_state[ERROR] = str(e)


def _unreview(labels, index: int, scope: str = "test") -> None:
    try:
        rv.unreview(labels, index, scope=scope)
    except (rv.ReviewError, OSError) as e:
        st.session_state[ERROR] = str(e)


def review_buttons(prefix: str, labels, index: int, suggested: int | None, done: rv.Review | None, locked: bool,
                   scope: str = "test") -> None:
    """An image's review, the same on every page: "If wrong, it is a" (`suggested` first, when it is another digit)
    with "Label is wrong: it is a N" and "Label is right"; once reviewed, the verdict and an Undo. `labels` are the
    whole set's (test, or with scope "train" the training set's), `index` the image's position in it; the keys
    are f"{prefix}_wrong:{set id}:{index}" and so on."""
    given, ts = int(labels[index]), rv.set_id(labels, scope)
    if done is not None:
        st.markdown(f"Reviewed: **label wrong, it is a {done.label}**" if done.verdict == "wrong"
                    else "Reviewed: **label right**")
        st.button("Undo the review", key=f"{prefix}_undo:{ts}:{index}", on_click=_unreview,
                  args=(labels, index, scope), disabled=locked)
        return
    others = [d for d in range(10) if d != given]
    digit_key = f"{prefix}_digit:{ts}:{index}"
    d = st.selectbox("If wrong, it is a", others, key=digit_key, disabled=locked,
                     index=others.index(suggested) if suggested in others else 0)
    st.button(f"Label is wrong: it is a {d}", key=f"{prefix}_wrong:{ts}:{index}", on_click=_review,
              args=(labels, index, "wrong", digit_key, scope), disabled=locked)
    st.button("Label is right", key=f"{prefix}_right:{ts}:{index}", on_click=_review,
              args=(labels, index, "right", None, scope), disabled=locked)


def current() -> rv.Reviews:
    """The saved reviews; {} (and one warning) when the file cannot be read, which the Suspicious labels page offers
    to set aside. Read on every rerun: a small file, and a review made in another tab shows at once."""
    try:
        return rv.load()
    except rv.ReviewError as e:
        st.warning(f"Label reviews are not applied: {md(e)}", icon=":material/rule:")
        return {}


def _quiet() -> rv.Reviews:
    """The saved reviews, {} without a file or with a damaged one (which current() reports once, with the accuracy)."""
    try:
        return rv.load() if rv.stamp() else {}
    except rv.ReviewError:
        return {}


def accuracy_caption(labels, preds, where=None) -> dict | None:
    """Under a test accuracy: "99.35%, 99.44% with 9 labels corrected" when reviews correct some of these labels."""
    res = rv.corrected_accuracy(labels, preds, current())
    if res["corrected"]:
        (where or st).caption(f"On reviewed labels: {rv.accuracy_text(res)}", width="content",
                              help="Labels reviewed wrong on the Suspicious labels page replaced by the digit "
                                   "the reviewer says the image is.")
        return res
    return None


@st.cache_data(max_entries=256, show_spinner=False)
def _run_accuracy(path: str, run_stamp, reviews_stamp) -> dict | None:
    try:
        return rv.run_accuracy(runs.Run(path), _quiet())
    except runs.RunError:
        return None


def run_accuracy(path) -> dict | None:
    """A run's best stored test accuracy on the given and on the reviewed labels, once per version of its
    predictions and of the reviews (the Runs table asks for every run on each of its reruns)."""
    from mnistviz.labels import stamp

    return _run_accuracy(str(path), stamp(runs.Run(path)), rv.stamp())


def run_accuracy_caption(run: runs.Run) -> None:
    """Under a run's heading: its best test accuracy on the given and the reviewed labels, when reviews correct some."""
    res = run_accuracy(run.path) if rv.stamp() else None
    if res and res["corrected"]:
        st.caption(f"Test accuracy (epoch {res['epoch']}): {rv.accuracy_text(res)}.")


def reviewed_column(table, summaries):
    """The Runs table with a column of each run's best test accuracy on the reviewed labels, when reviews correct
    some label of some run's test set; the table as it was otherwise."""
    if not rv.stamp() or table.empty:
        return table
    res = [run_accuracy(s["path"]) for s in summaries]
    if not any(r and r["corrected"] for r in res):
        return table
    col = [round(r["corrected_accuracy"] * 100, 2) if r and r["corrected"] else None for r in res]
    table = table.copy()
    at = table.columns.get_loc("best test acc %") + 1 if "best test acc %" in table.columns else len(table.columns)
    table.insert(at, "reviewed labels acc %", col)
    return table


def mark_titles(titles, indices, labels) -> list[str]:
    """Grid tile titles with MARK after those whose label was reviewed wrong."""
    wrong = rv.reviewed_wrong(_quiet(), labels)
    return [f"{t}{MARK}" if int(i) in wrong else t for t, i in zip(titles, indices)]


def marked_caption(indices, labels) -> None:
    """Under a grid: which of its images' labels were reviewed wrong, and what each is."""
    wrong = rv.reviewed_wrong(_quiet(), labels)
    shown = [(int(i), wrong[int(i)]) for i in indices if int(i) in wrong]
    if shown:
        st.caption(f"{MARK} label reviewed wrong: " + ", ".join(f"#{i} it is a {d}" for i, d in shown) + ".")
