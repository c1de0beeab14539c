"""Sweeps: the hyperparameter searches (mnistviz.sweep) in the sweep storage, each one's trials and its best run."""
import plotly.express as px
import streamlit as st

from mnistviz import runs, sweep
from pages._shared import md, select_run

st.title("Sweeps")
url = sweep.storage_url()
st.caption(f"Sweeps in {md(sweep.masked(url))} · each trial is a run on the Runs page; workers run them from a "
           f"terminal, on this machine or others sharing the storage.")
HOWTO = ("python -m mnistviz.sweep create lr-bs --trials 20 --space 'lr=loguniform(1e-3,0.3)' "
         "--space 'batch_size=choice(64,128)' --set epochs=1 --set limit_train=2000 --set val_size=500\n"
         "python -m mnistviz.sweep work lr-bs      # on each machine; Ctrl-C stops it, `work` again continues")

try:
    sweeps = [s for s in sweep.list_sweeps() if s["mnistviz"]]
except sweep.SweepError as e:
    st.error(str(e))
    st.stop()
if not sweeps:
    st.info("No sweeps yet. Make one and run its trials from a terminal:")
    st.code(HOWTO, language="bash")
    st.stop()

names = [s["sweep"] for s in sweeps]
wanted = st.query_params.get("sweep")
name = st.selectbox("Sweep", names, index=names.index(wanted) if wanted in names else 0, key="sweep_pick")
if st.query_params.get("sweep") != name:
    st.query_params["sweep"] = name


def _active(status: dict) -> bool:
    return any(e["state"] in ("running", "waiting") for e in status["trials"])


try:
    ACTIVE = _active(sweep.status(name))
except sweep.SweepError as e:
    st.error(str(e))
    st.stop()


# redrawn every 5 s while a trial runs or waits (workers run elsewhere: the storage is the only news of them)
@st.fragment(run_every=5 if ACTIVE else None)
def show(name: str):
    try:
        status = sweep.status(name)
    except sweep.SweepError as e:
        st.error(str(e))
        return
    if _active(status) != ACTIVE:
        st.rerun()  # started or finished: the whole page, so the refresh is on only while needed
    table = sweep.trials_table(status)
    metric = status["objective"]
    running = int((table["state"] == "running").sum())
    st.markdown(f"**{status['finished']} of {status['planned']} trials done**"
                + (f" · {running} running" if running else "")
                + f" · objective: {'validation' if metric == 'val_acc' else 'test'} accuracy · sampler "
                  f"{status['sampler']} · pruner {status['pruner']}")
    st.caption("Searched: " + md(", ".join(status["space"])) + (" · fixed: " + md(", ".join(
        f"{k}={v}" for k, v in status["fixed"].items())) if status["fixed"] else ""))
    best = status["best"]
    if best:
        c1, c2 = st.columns([3, 1])
        c1.metric("Best", f"{best['value']:.2%}", help=f"trial {best['number']}, run {best['run']}")
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
        c1.caption(md(f"trial {best['number']} · {best['run']} · {params}"))
        if best["run"] and c2.button("Select the best run", key=f"sweep_best:{best['run']}"):
            select_run(runs.check_name(best["run"]))
            st.rerun()
    if len(table):
        scored = table.dropna(subset=[metric])
        if len(scored):
            fig = px.scatter(scored, x="trial", y=metric, color="state", hover_data=list(table.columns))
            fig.update_layout(height=300, margin=dict(l=10, r=10, t=10, b=10))
            st.plotly_chart(fig, width="stretch", key="sweep_chart")
        st.dataframe(table, hide_index=True, width="stretch")
    else:
        st.info("No trial has started yet: run `python -m mnistviz.sweep work " + name + "`.")


show(name)
st.code(HOWTO, language="bash")
