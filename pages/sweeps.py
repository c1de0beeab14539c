"""Sweeps: the hyperparameter searches (mnistviz.sweep) in the sweep storage, live while one runs: its trials (click
one to select its run on every page), the best so far, parallel coordinates, the objective by trial, each trial's
learning curve, fANOVA importances; Stop and Resume of a sweep the dashboard runs (jobs.submit_sweep)."""
import streamlit as st

from mnistviz import data, jobs, runs, sweep, sweepview
from pages._shared import md, select_run, selected_run_name

LIVE_EVERY_S = 3  # while a trial runs or waits; workers on other machines are known only through the storage
TABS = ["Parallel coordinates", "Objective by trial", "Learning curves", "Importances"]

st.title("Sweeps")
url = sweep.storage_url()
st.caption(f"Sweeps in {md(sweep.masked(url))} · create one under *Sweep these settings* on the Train page; each "
           f"trial is a run on the Runs page.")
HOWTO = ("python -m mnistviz.sweep create lr-bs --trials 20 --space 'lr=loguniform(1e-3,0.3)' "
         "--space 'batch_size=choice(64,128)' --set epochs=1 --set limit_train=2000 --set val_size=500\n"
         "python -m mnistviz.sweep work lr-bs      # on each machine; Ctrl-C stops it, `work` again continues")

# the default storage, and those that sweeps started here were given on the Train page (a shared PostgreSQL)
STORES, errors = {}, []
for store in dict.fromkeys([None] + [j.get("storage") for j in jobs.sweep_jobs()]):
    try:
        for s in sweep.list_sweeps(storage=store):
            if s["mnistviz"]:
                STORES.setdefault(s["sweep"], store)
    except sweep.SweepError as e:
        errors.append(str(e))
for e in errors:
    st.error(md(e))
if not STORES:
    if not errors:
        st.info("No sweeps yet. Create one on the Train page (Sweep these settings), or from a terminal:")
        st.code(HOWTO, language="bash")
    st.stop()

names = list(STORES)
wanted = st.query_params.get("sweep")
last = st.session_state.get("_sweep_shown")  # kept while other pages are open (the widget's own value is not)
if wanted in names and wanted != last:
    st.session_state["sweep_pick"] = wanted  # a link (the Train page's "Watch ...") wins over the last pick
elif st.session_state.get("sweep_pick") not in names:
    st.session_state["sweep_pick"] = last if last in names else names[0]
name = st.selectbox("Sweep", names, key="sweep_pick")
st.session_state["_sweep_shown"] = name
if st.query_params.get("sweep") != name:
    st.query_params["sweep"] = name
STORE = STORES[name]  # None: the default storage
if STORE:
    st.caption(f"{md(name)}'s study is in {md(sweep.masked(STORE))}.")


def _stop(name: str) -> None:
    try:
        st.session_state["sweep_msg"] = ("ok", jobs.stop_sweep(name))
    except (runs.RunError, OSError) as e:
        st.session_state["sweep_msg"] = ("error", str(e))


def _resume(name: str) -> None:
    try:
        jobs.submit_sweep(name)
        st.session_state["sweep_msg"] = ("ok", f"Sweep {name} queued: its trials run one at a time, here.")
    except (runs.RunError, OSError, data.MNISTMissing) as e:
        st.session_state["sweep_msg"] = ("error", f"Nothing was queued: {e}")


def _left(status: dict) -> int:
    """Trials no worker has taken yet (waiting or never asked for)."""
    taken = status["finished"] + sum(e["state"] == "running" and not e.get("worker_gone") for e in status["trials"])
    return max(0, status["planned"] - taken)


def _active(status: dict, job: dict | None) -> bool:
    return (any(e["state"] == "running" and not e.get("worker_gone") for e in status["trials"])
            or bool(job and job["state"] in ("queued", "running")))


try:
    ACTIVE = _active(sweep.status(name, storage=STORE), jobs.sweep_job(name))
except sweep.SweepError as e:
    st.error(md(e))
    st.stop()


@st.cache_data(show_spinner=False, max_entries=16)
def _importances(name: str, storage: str | None, done: tuple):
    """fANOVA fits a forest: once per set of finished trials (`done`), not at every refresh."""
    return sweepview.importances(name, storage=storage)


def job_line(name: str, status: dict, job: dict | None) -> None:
    """Where the sweep stands in this dashboard's queue, and Stop or Resume."""
    state = job["state"] if job else None
    where = {"queued": "waiting in the training queue", "running": "running a trial here",
             "stopped": "stopped; Resume continues it (a stopped trial resumes from its checkpoint)",
             "done": "done here", "failed": "failed", "interrupted": "interrupted"}.get(state)
    left = _left(status)
    with st.container(horizontal=True, vertical_alignment="center", key="sweep_job"):
        if where:
            st.markdown(f"**Here:** {where}" + (f": {md(job['error'])}" if job.get("error") else ""))
        if state in ("queued", "running"):
            st.button(f"Stop {name}", icon=":material/stop:", key=f"sweep_stop:{name}", on_click=_stop, args=(name,))
        elif left:
            st.button(f"Resume {name}" if job else f"Run {name}'s trials here", icon=":material/play_arrow:",
                      key=f"sweep_resume:{name}", on_click=_resume, args=(name,),
                      help=f"{left} trial(s) left; they run one at a time in the training queue")
    msg = st.session_state.pop("sweep_msg", None)
    if msg:
        (st.error if msg[0] == "error" else st.success)(md(msg[1]))
    for e in status["trials"]:
        if e.get("worker_gone"):
            st.warning(f"Trial {e['number']} ({md(e['run'] or 'no run yet')}) is marked running, but "
                       f"{md(e['worker_gone'])}: the sweep's next worker (Resume) runs it again, continuing its run "
                       f"from its last checkpoint.")


def best_line(status: dict) -> None:
    best = status["best"]
    if not best:
        return
    c1, c2 = st.columns([3, 2])
    c1.metric("Best so far", f"{best['value']:.2%}", help=f"trial {best['number']}, run {best['run']}")
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
    c1.caption(md(f"trial {best['number']} · {best['run']} · {params}"))
    with c2:
        if best["run"] and st.button("Select the best run", key=f"sweep_best:{best['run']}"):
            select_run(runs.check_name(best["run"]))
            st.rerun()
        here = [r for r in sweepview.top_runs(status) if (runs.runs_dir() / r).is_dir()]
        if len(here) >= 2:
            st.page_link("pages/compare.py", label=f"Compare the top {len(here)}", icon=":material/compare:",
                         query_params={"runs": ",".join(here)})


def trials_table(status: dict, drawn: str | None) -> None:
    table = sweep.trials_table(status)
    key = f"sweep_table:{status['sweep']}:{drawn}"
    ticked = [i for i, r in enumerate(table["run"]) if r and r == drawn]

    def _row_picked():
        rows = st.session_state[key].selection.rows
        if rows and table.iloc[rows[0]]["run"]:
            try:
                select_run(runs.check_name(table.iloc[rows[0]]["run"]))
            except runs.RunError:
                pass
    st.dataframe(table, hide_index=True, width="stretch", on_select=_row_picked, selection_mode="single-row",
                 key=key, selection_default={"selection": {"rows": ticked}} if ticked else None,
                 column_config={status["objective"]: st.column_config.NumberColumn(format="percent"),
                                "seconds": st.column_config.NumberColumn("duration s", format="%.0f")})
    st.caption("Click a row to select that trial's run on every page.")


def charts(status: dict, store: str | None) -> None:
    tabs = st.tabs(TABS, key="sweep_tab", on_change="rerun")  # only the open one is drawn at each refresh
    figs = {0: lambda: sweepview.parallel_coordinates(status, status["search"]),
            1: lambda: sweepview.objective_history(status), 2: lambda: sweepview.learning_curves(status)}
    for i, make in figs.items():
        if tabs[i].open:
            with tabs[i]:
                fig = make()
                if fig is None:
                    st.info("Nothing to draw yet: no trial has finished an epoch.")
                else:
                    st.plotly_chart(fig, width="stretch", key=f"sweep_fig_{i}")
                if i == 0 and fig is not None:
                    st.caption("Drag along an axis to keep only the trials through that stretch; drag the axis "
                               "titles to reorder them.")
    if tabs[3].open:
        with tabs[3]:
            done = tuple(e["number"] for e in status["trials"] if e["state"] == "complete")
            imp, why = _importances(status["sweep"], store, done)
            if imp is None:
                st.info(why)
            else:
                st.plotly_chart(sweepview.importance_figure(imp), width="stretch", key="sweep_importance")
                st.caption(f"Optuna's fANOVA over the {len(done)} finished trials: how much of the variation of the "
                           f"objective each hyperparameter explains.")


@st.fragment(run_every=LIVE_EVERY_S if ACTIVE else None)
def show(name: str, drawn: str | None):
    if selected_run_name() != drawn:
        st.rerun()  # a row click selected another run: the sidebar and the table's tick follow
    if ACTIVE:
        try:
            jobs.tick()  # as every page's refresh does: a sweep waiting behind a training starts when it ends
        except (runs.RunError, OSError):
            pass  # a runs folder that cannot be written: the sidebar says so
    try:
        status = sweep.status(name, storage=STORE)
    except sweep.SweepError as e:
        st.error(md(e))
        return
    job = jobs.sweep_job(name)
    if _active(status, job) != ACTIVE:
        st.rerun()  # started or finished: the whole page, so the refresh is on only while needed
    metric = status["objective"]
    running = sum(e["state"] == "running" for e in status["trials"])
    st.markdown(f"**{status['finished']} of {status['planned']} trials done**"
                + (f" · {running} running" if running else "")
                + f" · objective: {'validation' if metric == 'val_acc' else 'test'} accuracy · sampler "
                  f"{status['sampler']} · pruner {status['pruner']}")
    st.caption("Searched: " + md(", ".join(status["space"])) + (" · fixed: " + md(", ".join(
        f"{k}={v}" for k, v in status["fixed"].items())) if status["fixed"] else ""))
    job_line(name, status, job)
    best_line(status)
    if status["trials"]:
        trials_table(status, drawn)
        charts(status, STORE)
    else:
        st.info(f"No trial has started yet: the training queue starts it, or run `python -m mnistviz.sweep work "
                f"{md(name)}` in a terminal.")


show(name, selected_run_name())
with st.expander("From a terminal"):
    st.code(HOWTO, language="bash")
