"""Home: what mnistviz is and three first steps (train the LeNet-5 pair in one click, draw with the built-in model,
browse its mistakes); below them the Runs table, every run folder: select one for every page, download its
checkpoint, delete it."""
import streamlit as st

from mnistviz import charts, data, jobs, live, runs, train
from pages._live import IDLE_EVERY_S, NUMBERS_EVERY_S, SCROLL_TO_LIVE, WATCHING, poller, stat_row
from pages._reviews import reviewed_column, run_accuracy_caption
from pages._shared import all_runs, launch_made, launch_repeated, md, select_run, selected_run_name

QUICK = "lenet5-quick"  # the preset of the first step's pair (mnistviz/config.py)
BUILT_IN = "default"  # the committed run checkpoints/default: the model the Draw page uses before any training


def first_steps(names: list[str]) -> None:
    st.title("mnistviz")
    st.markdown("**Train convolutional networks on MNIST and look inside them**: watch a training live, browse "
                "what a model gets wrong, draw a digit for it to read.  \nCompare runs, above all the same model "
                "trained with and without augmentation, and see whether the difference is more than noise.")
    built_in = {"run": BUILT_IN} if BUILT_IN in names else None
    # a newcomer sees the steps open; once runs of one's own exist they fold away, so the Runs table is in view
    newcomer = not set(names) - {BUILT_IN}
    with st.expander("First steps", expanded=newcomer, icon=":material/flag:"), \
            st.container(horizontal=True, key="first_steps"):
        with st.container(border=True):
            st.markdown("**1. Train LeNet-5, with and without augmentation**")
            epochs = train.preset_config(QUICK)["epochs"]
            st.caption(f"The classic network, {epochs} epochs on the 60,000 training images, trained twice in the "
                       f"background: with standard augmentation, then without. The live view follows both; then "
                       f"compare them.")
            if st.button("Train the LeNet-5 pair (about 1 minute)", type="primary", icon=":material/play_arrow:",
                         key="home_quick_pair"):
                launch_quick_pair()
        with st.container(border=True):
            st.markdown("**2. Draw a digit**")
            st.caption("The built-in model reads your handwriting as you draw, and shows what it looks at.")
            st.page_link("pages/draw.py", label="Draw with the built-in model", icon=":material/draw:",
                         query_params=built_in)
        with st.container(border=True):
            st.markdown("**3. See the built-in model's mistakes**")
            st.caption("The test images it gets wrong, batch by batch, with how sure it was.")
            st.page_link("pages/mispredictions.py", label="Its mistakes", icon=":material/error:",
                         query_params=built_in, disabled=built_in is None)
            if built_in is None:
                st.caption(f"The built-in model is not in this runs folder ({md(runs.runs_dir())}); "
                           f"train a run, then open Mispredictions.")


def launch_quick_pair() -> None:
    """Queue the quick LeNet-5 pair (a double click queues one) and open the Train page on its first run, its live
    view scrolled into view; or say in one sentence why nothing was launched."""
    cfg = train.Config(**train.preset_config(QUICK), preset=QUICK)
    made = launch_repeated(("home_pair", cfg))
    if not made:
        try:
            made = [r.name for r in jobs.submit_pair(cfg)]
        except (runs.RunError, data.MNISTMissing, OSError) as e:
            st.error(f"Nothing was launched: {e}")
            return
        launch_made(("home_pair", cfg), made)
    select_run(made[0])
    st.session_state[SCROLL_TO_LIVE] = True
    st.session_state[WATCHING] = made[0]  # the Train page follows the pair from its first run on
    st.switch_page("pages/train.py", query_params={"run": made[0]})


good, broken = all_runs()
first_steps([r["name"] for r in good])
st.header("Runs")
st.caption(f"Run folders in {runs.runs_dir()} · training from the Train page runs as its own process, "
           f"one at a time; the rest wait in a queue.")

if not good and not broken:
    st.info("No runs yet. Train one on the Train page, or from a terminal: `python -m mnistviz.train`.")


# The table's columns, in widths (px) that fit the page at 1400 px with the sidebar open (tests/e2e; shell.py sets the
# sidebar's width and the page's margins); the optimizer, creation time and pair id are left out of view (the Compare
# page lists a pair's settings; automatic names carry the time)
RUNS_COLUMNS = {
    "name": st.column_config.TextColumn(width=200),
    "status": st.column_config.TextColumn(width=85),
    "progress %": st.column_config.ProgressColumn(format="%.0f%%", min_value=0, max_value=100, width=64),
    "epoch": st.column_config.TextColumn(width=55),
    "best test acc %": st.column_config.NumberColumn(format="%.2f", width=105),
    "model": st.column_config.TextColumn(width=70),
    "augmentation": st.column_config.TextColumn(width=95),
    "lr": st.column_config.NumberColumn(format="%g", width=55),
    "batch": st.column_config.NumberColumn(width=50),
    "train s": st.column_config.NumberColumn(width=55),
    "device": st.column_config.TextColumn(width=60),
    "reviewed labels acc %": st.column_config.NumberColumn(format="%.2f", width=105),  # only once labels are reviewed
    "optimizer": None, "created": None, "pair": None,
}


def _states(rows) -> list[tuple]:
    return [(r["name"], r["status"], r["epochs_done"]) for r in rows]


@st.fragment
def runs_list(drawn: str | None):
    """The table, redrawn when a run's status or epochs change; the training's numbers, written into the page every
    second by a poller (pages/_live.py), as on the Train page. When the table changes, runs come and go, or a row
    click selects another run than the page was drawn for (`drawn`), the whole page reruns: the heading, the sidebar
    and every button below then name the run selected."""
    if selected_run_name() != drawn:
        st.rerun()
    now, _ = all_runs()
    if _states(now) != _states(good):
        st.rerun()
    busy = live.busy()  # before snapshot()'s tick: a queued run it starts then differs at the next poll, which redraws
    running = sorted(r["name"] for r in now if r["status"] == "running")  # from the Train page or a terminal
    training = running[0] if running else None
    if training:
        snap = live.snapshot(training)
        row = next(r for r in now if r["name"] == training)
        if (snap.get("state"), snap.get("epochs_done")) != (row["status"], row["epochs_done"]):
            st.rerun()  # an epoch ended between the table's read and this one: the numbers and the table show one
        also = f" · also running: {', '.join(running[1:])}" if running[1:] else ""
        st.markdown(f"**Training now: {training}**{also}" + (f" · queued: {', '.join(busy[1])}" if busy[1] else ""))
        if "stats" in snap:
            st.markdown(stat_row(snap["stats"]), unsafe_allow_html=True)
        seen = {"busy": busy, "state": snap.get("state"), "epochs_done": snap.get("epochs_done")}
        poller("runs_poll", training, seen, NUMBERS_EVERY_S, stats=True)
    else:  # busy: the training and the queue, however started (status files: the Train page or a terminal)
        poller("runs_poll", None, {"busy": busy}, NUMBERS_EVERY_S if any(busy) else IDLE_EVERY_S, stats=False)
    if not now:
        return
    table = reviewed_column(charts.runs_table(now), now)  # + accuracy on reviewed labels, when there are some
    # keyed by the selected run: a selection made elsewhere (the sidebar, a ?run= link) draws a table whose ticked
    # row is that run, so the table never ticks one run while the page names another
    key = f"runs_table:{drawn}"
    ticked = [i for i, n in enumerate(table["name"]) if n == drawn]

    def _row_picked():  # only on a change of the table's selection, so the sidebar picker still rules
        rows = st.session_state[key].selection.rows
        if rows:
            select_run(table.iloc[rows[0]]["name"])

    st.dataframe(
        table, hide_index=True, width="stretch", on_select=_row_picked, selection_mode="single-row", key=key,
        selection_default={"selection": {"rows": ticked}} if ticked else None,
        column_config=RUNS_COLUMNS)
    st.caption("Click a row to select that run on every page."
               + (" The table follows the training at each epoch's end." if training else ""))


# Every action below is bound to the run it names on screen when it is drawn: args=(name,), never a selection read
# when the click arrives, and a key with the name in it, since Streamlit runs a click with the callback and args its
# key had at the latest rerun: a row clicked in between must not turn a confirmed "Delete a" into deleting b.
def _stop(name: str) -> None:
    try:
        st.session_state["_flash"] = jobs.stop(name)
    except (runs.RunError, OSError) as e:
        st.session_state["_flash_error"] = str(e)


def _resume(name: str) -> None:
    try:
        jobs.resume(name)
    except (runs.RunError, RuntimeError, OSError) as e:
        st.session_state["_flash_error"] = str(e)
    else:
        st.session_state["_flash"] = f"{name} queued to resume."


def _delete(name: str) -> None:
    try:
        runs.delete_run(name)
    except runs.RunError as e:
        st.session_state["_flash_error"] = str(e)
    else:
        if selected_run_name() == name:
            select_run(None)
        st.session_state["_flash"] = f"Deleted {name}."


def _delete_broken(path: str) -> None:
    try:
        runs.delete_folder(path)  # by path: its name may not be a valid run name
    except (runs.RunError, OSError) as e:
        st.session_state["_flash_error"] = str(e)


name = selected_run_name()
runs_list(name)
summary = next((r for r in good if r["name"] == name), None) if name else None
if summary:  # only runs listed as good: a folder whose name is not a valid run name is among the broken ones
    st.subheader(md(name))
    if summary.get("error"):
        st.warning(md(summary["error"]))
    run = runs.Run(summary["path"])
    run_accuracy_caption(run)
    c1, c2, c3, c4 = st.columns(4)
    with c1:
        if run.best_ckpt.exists():
            st.download_button(f"Download {name}/best.pt", data=run.best_ckpt.read_bytes,
                               file_name=f"{name}-best.pt", key=f"home_download:{name}",
                               mime="application/octet-stream", icon=":material/download:", on_click="ignore",
                               help="Model weights at the best test accuracy; load with "
                                    "torch.load(path, weights_only=True).")
        elif run.last_ckpt.exists():  # best.pt lost (or not written yet): the latest weights are still there
            st.download_button(f"Download {name}/last.pt", data=run.last_ckpt.read_bytes,
                               file_name=f"{name}-last.pt", key=f"home_download:{name}",
                               mime="application/octet-stream", icon=":material/download:", on_click="ignore",
                               help="The latest weights, with the optimizer state for resuming; load with "
                                    "torch.load(path, weights_only=True).")
            if summary["epochs_done"]:
                st.caption("best.pt is missing from this run's folder: the pages use last.pt.")
        elif summary["epochs_done"]:
            st.caption(f"best.pt and last.pt are missing from this run's folder ({summary['epochs_done']} epoch(s) "
                       f"recorded): retrain it, or restore the files.")
        else:
            st.caption("No checkpoint yet (no epoch finished).")
    with c2:
        status = summary["status"]
        if status in runs.ACTIVE:
            st.button(f"Stop {name}", icon=":material/stop:", key=f"home_stop:{name}", on_click=_stop, args=(name,))
        elif status in jobs.RESUMABLE:
            st.button(f"Resume {name}", icon=":material/play_arrow:", key=f"home_resume:{name}", on_click=_resume,
                      args=(name,))
    with c3:
        st.page_link("pages/train.py", label="Curves on the Train page", icon=":material/show_chart:",
                     query_params={"run": name})
    with c4:
        with st.popover("Delete", icon=":material/delete:"):
            st.write(f"Delete **{md(name)}** and all its files? This cannot be undone.")
            st.button(f"Yes, delete {name}", type="primary", key=f"home_delete:{name}", on_click=_delete, args=(name,))

if st.session_state.get("_flash_error"):
    st.error(st.session_state.pop("_flash_error"))
if st.session_state.get("_flash"):
    st.success(st.session_state.pop("_flash"))

if broken:
    st.subheader("Broken run folders")
    st.caption("These folders cannot be read as runs; the others are not affected. Fix what is named (a file, or "
               "the folder's name), or delete the folder.")
    for b in broken:
        c1, c2 = st.columns([5, 1])
        c1.warning(f"**{md(b['name'])}**: {md(b['error'])}")
        with c2.popover("Delete", icon=":material/delete:"):
            st.write(f"Delete the folder {md(b['path'])}?")
            st.button("Yes, delete it", key=f"del_broken_{b['name']}", type="primary", on_click=_delete_broken,
                      args=(str(b["path"]),))
