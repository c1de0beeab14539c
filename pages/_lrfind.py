"""The Train page's "Find a learning rate": the learning-rate range test (mnistviz.lrfind) of the form's settings,
run as a background job (jobs.submit_lrfind), its loss-against-lr curve and the suggested rates; "Use" puts one in
the form's Learning rate field. Rendered by one call from pages/train.py: lr_finder(_form_config)."""
from __future__ import annotations

import dataclasses
import math

import plotly.graph_objects as go
import streamlit as st

from mnistviz import data, jobs, lrfind, runs, train
from pages._shared import md

JOB = "lrf_job"      # this session's latest range test: its job id
LR_FIELD = "cfg_lr"  # the form's Learning rate widget (pages/train.py)
POLL_S = 1.0
ACTIVE = ("queued", "running")
NAMES = {"valley": "valley", "steep": "steepest descent"}
COLORS = {"valley": "#2ca02c", "steep": "#ff7f0e"}


def _start(form_config) -> None:
    st.session_state.pop("lrf_msg", None)
    cfg = form_config()  # the form as it is at the click (a field changed with it is in the state already)
    try:
        job = jobs.submit_lrfind(cfg, int(st.session_state["lrf_steps"]), lrfind.START_LR, lrfind.END_LR)
    except (runs.RunError, data.MNISTMissing, OSError) as e:
        st.session_state["lrf_msg"] = ("error", f"The range test was not started: {e}")
        return
    st.session_state[JOB] = job.name


def _cancel(job_id: str) -> None:
    try:
        jobs.stop_lrfind(jobs.lrfind_job(job_id))
    except runs.RunError:
        pass


def _use(lr: float, what: str) -> None:
    lr = float(f"{lr:.2g}")  # two significant digits: a range test is not more precise than that
    st.session_state[LR_FIELD] = lr
    st.session_state["lrf_msg"] = ("ok", f"The form's learning rate is now {lr:g} (the {what} suggestion).")


def _read_result(job: runs.Run) -> dict | None:
    try:
        result = runs.read_json(job.path / jobs.LRFIND_RESULT)
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and isinstance(result.get("lrs"), list) else None


def figure(result: dict) -> go.Figure:
    """Loss against learning rate (log x): the raw loss of each step faint, the smoothed loss, the suggestions."""
    lrs, raw, sm = result["lrs"], result["losses"], result["smoothed"]
    fig = go.Figure([
        go.Scatter(x=lrs, y=raw, mode="lines", name="loss of each step", line=dict(color="#c9d3d8", width=1),
                   hovertemplate="lr %{x:.2e}: loss %{y:.3f}<extra></extra>"),
        go.Scatter(x=lrs, y=sm, mode="lines", name="smoothed", line=dict(color="#1f77b4", width=2.5),
                   hovertemplate="lr %{x:.2e}: smoothed loss %{y:.3f}<extra></extra>")])
    for key, s in (result.get("suggestions") or {}).items():
        fig.add_trace(go.Scatter(x=[s["lr"]], y=[s["loss"]], mode="markers+text", name=NAMES[key],
                                 text=[f"{NAMES[key]} {s['lr']:.2g}"], textposition="top right",
                                 marker=dict(size=12, color=COLORS[key], line=dict(width=1, color="white")),
                                 hovertemplate=f"{NAMES[key]}: lr %{{x:.2e}}<extra></extra>"))
    # the y axis fits the smoothed loss without its last 5 points (where it shoots up: fastai leaves them out of
    # its plot), so the divergence does not flatten the part that matters
    kept = [v for v in sm[:max(1, len(sm) - 5)] if v is not None and math.isfinite(v)]
    lo, hi = (min(kept), max(kept)) if kept else (0.0, 1.0)
    pad = max(0.05, 0.12 * (hi - lo))
    fig.update_layout(height=340, margin=dict(l=0, r=0, t=10, b=0), legend=dict(orientation="h", y=-0.22, x=0),
                      xaxis=dict(type="log", title="learning rate", exponentformat="power"),
                      yaxis=dict(title="training loss (smoothed)", range=[max(0.0, lo - pad), hi + pad]))
    return fig


def _settings(cfg: dict) -> str:
    opt = cfg.get("optimizer")
    if opt == "sgd":
        opt += f" (momentum {cfg.get('momentum')}{', nesterov' if cfg.get('nesterov') else ''})"
    return (f"model {cfg.get('model')}, {opt}, batch {cfg.get('batch_size')}, weight decay "
            f"{cfg.get('weight_decay')}, label smoothing {cfg.get('label_smoothing')}, "
            f"augmentation {cfg.get('augment')}")


def _changed(found_for: dict, cfg: train.Config) -> list[str]:
    """The fields of the form that differ from those the range test was run with."""
    now = dataclasses.asdict(cfg)
    return [train_field for train_field in lrfind.SHAPING if found_for.get(train_field) != now.get(train_field)]


def _waiting(job_id: str, seen: str) -> None:
    """The range test while it waits or runs; polled every POLL_S seconds, the whole page redrawn once it ends."""
    try:
        job = jobs.lrfind_job(job_id)
    except runs.RunError:
        st.rerun()
    st_ = jobs.lrfind_state(job)
    if st_.get("status") != seen:
        st.rerun()
    result = _read_result(job) if seen == "running" else None
    with st.container(horizontal=True, vertical_alignment="center"):
        if seen == "queued":
            st.info(f"Waiting for {md(st_.get('behind') or 'the training')} to finish: the range test takes the cores "
                    f"next (trainings queued after it wait for it).", icon=":material/hourglass_top:")
        else:
            st.info(result["message"] if result else "Starting the range test: loading the data and the model…",
                    icon=":material/speed:")
        st.button("Cancel", key=f"lrf_cancel:{job_id}", on_click=_cancel, args=(job_id,), icon=":material/stop:")
    if result and result["lrs"]:
        st.plotly_chart(figure(result), key="lrf_chart_live", config={"displayModeBar": False})


def _finished(job: runs.Run, state: dict, cfg: train.Config) -> None:
    status = state.get("status")
    result = _read_result(job)
    if status in ("failed", "interrupted"):
        st.error(f"The range test {'failed' if status == 'failed' else 'ended without a result'}: "
                 f"{md(state.get('error') or 'no reason recorded')}")
        return
    if result is None:
        st.info("The range test was cancelled before its first steps." if status == "stopped" else
                "The range test left no result.")
        return
    found = result.get("suggestions")
    (st.success if found else st.warning)(md(result["message"]))
    if result["lrs"]:
        st.plotly_chart(figure(result), key="lrf_chart", config={"displayModeBar": False})
    changed = _changed(result.get("config") or {}, cfg)
    st.caption(f"Found for {md(_settings(result.get('config') or {}))}." +
               (f" The form has changed since ({', '.join(f.replace('_', ' ') for f in changed)}): find again for "
                f"these settings." if changed else ""))
    if found:
        with st.container(horizontal=True):
            for key, s in found.items():
                st.button(f"Use {s['lr']:.2g} ({NAMES[key]})", key=f"lrf_use_{key}:{job.name}", on_click=_use,
                          args=(s["lr"], NAMES[key]), type="primary" if key == "valley" else "secondary",
                          icon=":material/input:")
        st.caption("Valley (fastai's default): a rate inside the longest stretch where the loss falls, a little "
                   "before its bottom. With the one-cycle schedule the form's rate is the peak, reached after the "
                   "first quarter.")


def lr_finder(form_config) -> None:
    """The section, under the Train button: start a range test of the form's settings (`form_config()` makes its
    Config), and show this session's latest range test."""
    cfg = form_config()
    job_id = st.session_state.get(JOB)
    try:
        job = jobs.lrfind_job(job_id) if job_id else None
    except runs.RunError as e:
        job, gone = None, e
    state = jobs.lrfind_state(job) if job else {}
    active = state.get("status") in ACTIVE
    with st.expander("Find a learning rate", expanded=job_id is not None, icon=":material/speed:"):
        st.caption(f"The range test (Smith 2015, as fastai's lr_find): a fresh model with the form's model, optimizer, "
                   f"momentum, weight decay and batch size trains while its learning rate rises from "
                   f"{lrfind.START_LR:g} to {lrfind.END_LR:g}, until the loss diverges. No run is changed; while "
                   f"a training runs it waits for it.")
        problems = lrfind.config_problems(cfg)
        with st.container(horizontal=True, vertical_alignment="bottom"):
            if "lrf_steps" not in st.session_state:
                st.session_state["lrf_steps"] = lrfind.STEPS
            st.number_input("Steps", lrfind.MIN_STEPS, 300, key="lrf_steps", width=140,
                            help="At most this many training steps (the test stops sooner when the loss diverges).")
            st.button("Find a learning rate", key="lrf_start", on_click=_start, args=(form_config,),
                      icon=":material/speed:", disabled=bool(problems) or active,
                      help="Fix the fields marked in red first." if problems else
                      "A range test is on its way: wait for it, or cancel it." if active else None)
        msg = st.session_state.pop("lrf_msg", None)
        if msg:
            (st.error if msg[0] == "error" else st.success)(msg[1])
        if job_id is None:
            return
        if job is None:
            st.warning(f"{md(gone)}.")
        elif active:
            st.fragment(_waiting, run_every=POLL_S)(job_id, state["status"])
        else:
            _finished(job, state, cfg)

