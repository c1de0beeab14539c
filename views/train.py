"""Train: every hyperparameter of the trainer, presets, launch (one run or an augmented + normal pair), and a
live view of the selected run: its numbers re-read from status.json every second, its curves and epoch table
from metrics.jsonl every 10 s while it trains."""
import dataclasses
import html

import streamlit as st

from mnistviz import augment, charts, data, jobs, models, runs, train
from views._shared import require_mnist, select_run, selected_run_name


DEFAULTS = dataclasses.asdict(train.Config())
# the form: Config field -> (label, widget kind, options / help)
FIELDS = {
    "model": ("Model", "select", list(models.MODELS)),
    "optimizer": ("Optimizer", "select", list(train.OPTIMIZERS)),
    "lr": ("Learning rate", "float", "the peak rate with the one-cycle schedule"),
    "momentum": ("Momentum", "float", "SGD only"),
    "nesterov": ("Nesterov momentum", "bool", "SGD only"),
    "weight_decay": ("Weight decay", "float", None),
    "schedule": ("Learning-rate schedule", "select", list(train.SCHEDULES)),
    "label_smoothing": ("Label smoothing", "float", None),
    "batch_size": ("Batch size", "int", None),
    "epochs": ("Epochs", "int", None),
    "augment": ("Augmentation", "select", list(augment.LEVELS)),
    "seed": ("Seed", "int", None),
    "val_size": ("Validation images", "int", "carved from the 60,000 training images (0 = none)"),
    "target_accuracy": ("Target test accuracy", "optfloat", "a fraction, e.g. 0.99: stop once reached (empty = train all epochs)"),
    "limit_train": ("Limit training images", "int", "train on the first N images only, for a quick try (0 = all)"),
    "log_every": ("Log every N steps", "int", "steps between points of the per-step curve"),
    "name": ("Run name", "text", "empty = model-augmentation-time"),
}
STEPS = {"lr": 0.001, "momentum": 0.01, "weight_decay": 0.0001, "label_smoothing": 0.01}
LAYOUT = [["model", "optimizer", "lr", "momentum", "nesterov"],
          ["weight_decay", "schedule", "label_smoothing", "batch_size"],
          ["epochs", "augment", "seed", "val_size"],
          ["target_accuracy", "limit_train", "log_every", "name"]]


def _key(f):
    return f"cfg_{f}"


def _apply_preset():
    values = {**DEFAULTS, **train.preset_config(st.session_state["cfg_preset"])}
    for f in FIELDS:
        st.session_state[_key(f)] = values[f] if f != "name" else ""


def _form_config() -> train.Config:
    vals = {f: st.session_state.get(_key(f)) for f in FIELDS}
    vals["name"] = (vals["name"] or "").strip() or None
    return train.Config(**vals, preset=st.session_state.get("cfg_preset"))


def _launch(pair: bool):
    cfg = _form_config()
    errors = train.validate(cfg)
    st.session_state.pop("train_launched", None)
    if errors:
        st.session_state["train_launch_error"] = "Fix the fields marked in red; nothing was launched."
        return
    try:
        made = jobs.submit_pair(cfg) if pair else (jobs.submit(cfg),)
    except (runs.RunError, data.MNISTMissing, OSError) as e:
        st.session_state["train_launch_error"] = f"Nothing was launched: {e}"
        return
    st.session_state.pop("train_launch_error", None)
    st.session_state["train_launched"] = [r.name for r in made]
    select_run(made[0].name)


def _stop(name):
    try:
        st.session_state["live_msg"] = ("ok", jobs.stop(name))
    except (runs.RunError, OSError) as e:
        st.session_state["live_msg"] = ("error", str(e))


def _resume(name):
    try:
        jobs.resume(name)
        st.session_state["live_msg"] = ("ok", f"{name} queued to continue from its last checkpoint.")
    except (runs.RunError, data.MNISTMissing, OSError) as e:
        st.session_state["live_msg"] = ("error", str(e))


# how often the curves and the epoch table refresh while a run trains (see the live view below); TensorBoard's
# default is 30 s
CURVES_EVERY_S = 10.0


def _ms(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds % 3600 // 60:02d}"


@st.cache_data(show_spinner=False)
def _summary(model_name: str):
    return models.summary(models.build(model_name))


# ---------- form ----------

st.title("Train")
if "cfg_preset" not in st.session_state:
    st.session_state["cfg_preset"] = "default"
    _apply_preset()
require_mnist()

top = st.columns([2, 3])
top[0].selectbox("Preset", list(train.PRESETS), key="cfg_preset", on_change=_apply_preset,
                 persist_state="session", help="Fills the form below with a seed experiment's hyperparameters.")
top[1].caption(train.PRESETS[st.session_state["cfg_preset"]]["desc"])

errors = train.validate(_form_config())  # live: a message beside the field as soon as a value is out of range
cols = st.columns(len(LAYOUT))
for col, fields in zip(cols, LAYOUT):
    with col:
        for f in fields:
            label, kind, extra = FIELDS[f]
            help_ = extra if isinstance(extra, str) else None
            k = _key(f)
            if kind == "select":
                st.selectbox(label, extra, key=k, persist_state="session",
                             format_func=(lambda m: f"{m}: {models.DESCRIPTIONS.get(m, '')}") if f == "model" else str)
            elif kind == "bool":
                st.checkbox(label, key=k, help=help_, persist_state="session")
            elif kind == "int":
                st.number_input(label, step=1, key=k, help=help_, persist_state="session")
            elif kind == "float":
                st.number_input(label, step=STEPS[f], format="%g", key=k, help=help_, persist_state="session")
            elif kind == "optfloat":
                st.number_input(label, value=None, step=0.001, format="%g", key=k, help=help_,
                                placeholder="none", persist_state="session")
            else:
                st.text_input(label, key=k, help=help_, persist_state="session")
            if f in errors:
                st.error(errors[f], icon=":material/error:")

b1, b2, _ = st.columns([1, 2, 3])
b1.button("Train", type="primary", icon=":material/play_arrow:", on_click=_launch, args=(False,), key="train_one")
b2.button("Train augmented + normal pair", icon=":material/call_split:", on_click=_launch, args=(True,),
          key="train_pair", help="Same config twice, with augmentation (the level above, or standard if it is none) "
                                 "and without, queued one after the other, for the Compare page.")
if st.session_state.get("train_launch_error"):
    st.error(st.session_state["train_launch_error"])
elif st.session_state.get("train_launched"):
    st.success("Launched: " + ", ".join(st.session_state["train_launched"]) +
               " (training runs as its own process; it goes on if you close this tab).")

with st.expander(f"Model summary: {st.session_state[_key('model')]}"):
    rows = _summary(st.session_state[_key("model")])
    st.dataframe(rows, hide_index=True, width="stretch")
    st.markdown(f"Total parameters: **{sum(r['parameters'] for r in rows):,}**")


# ---------- live view ----------
# Three parts, refreshed at different rates, because every rerun of a part costs the browser CPU that a training
# on the same 2 cores then lacks (bench/contention.py): the numbers rerun every second; the curves and epoch table
# every CURVES_EVERY_S seconds (redrawing them is ~0.2 s of browser CPU each time); the heading, messages and
# Stop / Resume only when the run's state changes, which reruns the whole page.

_STAT_STYLE = ("<style>.mv-stats{display:flex;flex-wrap:wrap;gap:0.5rem 2.5rem;margin:0.25rem 0 0.75rem}"
               ".mv-stat .mv-label{font-size:0.875rem;opacity:0.7}.mv-stat .mv-value{font-size:1.75rem;line-height:1.3}"
               ".mv-stat .mv-sub{font-size:0.8rem;opacity:0.6}</style>")


def _stat_row(stats) -> str:
    """(label, value[, note]) tuples as one row of metric-style numbers, in ONE markdown element. At one refresh a
    second, six st.metric in columns cost the browser about 2.5% of a core more (bench/live_view_cpu.py), and an
    st.progress bar's animation alone about 4%."""
    cells = []
    for label, value, *note in stats:
        sub = f'<div class="mv-sub">{html.escape(note[0])}</div>' if note else ""
        cells.append(f'<div class="mv-stat" data-stat="{html.escape(label)}"><div class="mv-label">{html.escape(label)}'
                     f'</div><div class="mv-value">{html.escape(value)}</div>{sub}</div>')
    return _STAT_STYLE + '<div class="mv-stats">' + "".join(cells) + "</div>"


def _busy_state():
    return jobs.active(), tuple(jobs.queue())


def live_numbers(name, state_seen, busy_seen):
    try:
        jobs.tick()  # keeps the queue moving while someone watches
    except (runs.RunError, OSError):
        pass  # a runs folder that cannot be written: the sidebar says so on the next full rerun
    if _busy_state() != busy_seen:
        st.rerun()  # a run started or ended: refresh the sidebar, the buttons and the refresh rates
    if not name:
        return
    try:
        run = runs.get_run(name)
        cfg = run.config()
    except runs.RunError:
        st.rerun()  # deleted or broken since: the page says so
    status = run.status()
    state = status.get("status", "failed")
    if state != state_seen:
        st.rerun()
    epochs = run.epoch_records()
    progress = float(status.get("progress") or 0.0)
    ips = status.get("images_per_s") or (epochs[-1].get("images_per_s") if epochs else None)
    best = max((r["test_acc"] for r in epochs if r.get("test_acc") is not None), default=None)
    st.markdown(_stat_row([
        ("Status", state),
        ("Epoch", f"{len(epochs)} / {cfg.get('epochs')}"),
        ("Step", f"{status.get('global_step', 0):,}", f"of {status.get('total_steps', 0):,} · {progress:.0%}"),
        ("ETA", _ms(status.get("eta_s")) if state == "running" else "–"),
        ("Images/s", f"{ips:,.0f}" if ips else "–"),
        ("Best test acc", f"{best:.2%}" if best is not None else "–"),
    ]), unsafe_allow_html=True)


def live_curves(run):
    epochs = run.epoch_records()
    steps = run.step_records()
    if steps or epochs:
        x = st.radio("x axis", ["epoch", "step"], horizontal=True, key="curve_x", label_visibility="collapsed")
        st.plotly_chart(charts.training_curves_spec(steps, epochs, x=x), key="live_curves", width="stretch",
                        config={"displaylogo": False})
    else:
        st.caption("Curves appear after the first logged steps.")
    if epochs:
        st.caption("Per epoch: seconds spent training and evaluating, throughput")
        st.dataframe(charts.epoch_table(epochs), width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.2f")
                                    for c in ("train acc %", "val acc %", "test acc %", "train s", "eval s")}
                     | {"images/s": st.column_config.NumberColumn(format="%.0f"),
                        "lr": st.column_config.NumberColumn(format="%.2e"),
                        **{c: st.column_config.NumberColumn(format="%.4f")
                           for c in ("train loss", "val loss", "test loss")}})


def live_section():
    busy = _busy_state()
    every = 1.0 if any(busy) else 5.0  # while nothing trains, only to notice a run started elsewhere
    name = selected_run_name() or busy[0]
    run = None
    if not name:
        st.info("No run selected. Launch one above, or pick one in the sidebar.")
    else:
        try:
            run = runs.get_run(name)
            run.config()
        except runs.RunError as e:
            st.warning(str(e))
            run = None
    if run is None:
        st.fragment(live_numbers, run_every=every)(None, None, busy)
        return
    status = run.status()
    state = status.get("status", "failed")
    st.subheader(f"Live: {name}")
    st.fragment(live_numbers, run_every=every)(name, state, busy)
    if state == "queued":
        q = jobs.queue()
        where = f"number {q.index(name) + 1} in the queue" if name in q else "starting"
        st.info(f"{name} is queued ({where}); it starts when the training before it ends.")
    elif state in ("interrupted", "failed"):
        st.warning(f"{name} is {state}: {status.get('error') or 'no reason recorded'}. "
                   f"Resume continues from its last checkpoint.")
    a, b, _ = st.columns([1, 1, 4])
    if state in ("queued", "running"):
        a.button("Stop", icon=":material/stop:", key="live_stop", on_click=_stop, args=(name,),
                 help="Training stops at the current step and saves a checkpoint; Resume continues from it.")
    if state in jobs.RESUMABLE:
        b.button("Resume", icon=":material/play_arrow:", key="live_resume", on_click=_resume, args=(name,))
    msg = st.session_state.pop("live_msg", None)
    if msg:
        (st.error if msg[0] == "error" else st.success)(msg[1])
    if any(busy):
        st.caption("Training now: " + (busy[0] or "nothing") + (" · queue: " + ", ".join(busy[1]) if busy[1] else ""))
    st.fragment(live_curves, run_every=CURVES_EVERY_S if state == "running" else None)(run)


live_section()
