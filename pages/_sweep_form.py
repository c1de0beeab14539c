"""The Train page's "Sweep these settings": the form's settings as a search space (each searchable one fixed, a list,
or a range beside it), a trial count, sampler and pruner, or a preset search; Create makes the Optuna study
(mnistviz.sweep.create, which refuses bad input with one sentence) and queues the sweep in the training queue
(jobs.submit_sweep), where its trials run one at a time like any launch. Called by pages/train.py."""
from __future__ import annotations

import dataclasses
import time

import streamlit as st

from mnistviz import data, jobs, runs, sweep, train
from pages._shared import md

MODES_NUMBER = ["fixed", "list", "range", "log range"]
MODES_WHOLE = ["fixed", "list", "range"]
MODES_NAME = ["fixed", "list"]
MSG = "sweep_form_msg"
REFILL = "_sweep_refill"  # a preset search changed the Train form above: the whole page redraws


def _modes(field: str) -> list[str]:
    typ = type(getattr(train.Config(), field))
    return MODES_NAME if typ is str else MODES_WHOLE if typ is int else MODES_NUMBER


def _text(v) -> str:
    return str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, float) else str(v)


def space_items(modes: dict, values: dict) -> list[str]:
    """--space items from each field's mode and inputs: {"lr": "log range"}, {"lr": ("0.001", "0.3")}."""
    items = []
    for f, mode in modes.items():
        v = values.get(f)
        if mode == "list":
            items.append(f"{f}=choice({','.join(map(str, v)) if isinstance(v, list) else v or ''})")
        elif mode in ("range", "log range"):
            kind = "loguniform" if mode == "log range" else "int" if _modes(f) is MODES_WHOLE else "uniform"
            items.append(f"{f}={kind}({(v or ('', ''))[0]},{(v or ('', ''))[1]})")
    return items


def fixed_items(cfg: train.Config, searched) -> list[str]:
    """--set items: every setting of the form that is not searched (the run name and the like are the sweep's)."""
    return [f"{k}={_text(v)}" for k, v in dataclasses.asdict(cfg).items()
            if k not in sweep.NOT_SETTABLE and k not in searched and v is not None]


def _inputs(field: str) -> tuple[str, object]:
    mode = st.session_state.get(f"sweep_how_{field}", "fixed")
    if mode == "list":
        return mode, st.session_state.get(f"sweep_list_{field}")
    if mode in ("range", "log range"):
        return mode, (st.session_state.get(f"sweep_lo_{field}", ""), st.session_state.get(f"sweep_hi_{field}", ""))
    return mode, None


def _create(cfg: train.Config, labels: dict) -> None:
    """The Create button: validate everything, make the study, queue it; on any refusal nothing is made."""
    st.session_state.pop(MSG, None)
    modes, values = {}, {}
    for f in sweep.SEARCHABLE:
        modes[f], values[f] = _inputs(f)
    items = space_items(modes, values)
    searched = [f for f, m in modes.items() if m != "fixed"]

    def refuse(text):
        st.session_state[MSG] = ("error", text)
    if not items:
        return refuse("Nothing was made: pick at least one setting to search, as a list or a range.")
    wrong = {f: e for f, e in train.validate(cfg).items() if f not in searched and f != "name"}
    if wrong:
        return refuse(f"Nothing was made: fix the form's fields marked in red first ({'; '.join(wrong.values())}).")
    if data.find_mnist() is None:
        return refuse(f"Nothing was made: {data.missing_message()}")
    name = (st.session_state.get("sweep_name") or "").strip() or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = (st.session_state.get("sweep_storage") or "").strip() or None
    try:
        made = sweep.create(name, int(st.session_state.get("sweep_trials") or 0), items, fixed_items(cfg, searched),
                            storage=storage, sampler=st.session_state.get("sweep_sampler", "tpe"),
                            pruner=st.session_state.get("sweep_pruner", "median"), labels=labels)
    except sweep.SweepError as e:
        return refuse(f"Nothing was made: {e}.")
    try:
        jobs.submit_sweep(name, storage)
    except (runs.RunError, data.MNISTMissing, OSError) as e:
        import optuna

        optuna.delete_study(study_name=name, storage=sweep.open_storage(sweep.storage_url(storage)))
        return refuse(f"Nothing was made: the sweep could not be queued ({e}).")
    st.session_state[MSG] = ("ok", name, made["planned"])
    st.session_state["sweep_name"] = ""


def _fill_search(key: str, form_key, fields) -> None:
    """A preset search: the Train form gets its training preset and fixed settings, each field here its mode."""
    s = sweep.SEARCHES[key]
    values = {**dataclasses.asdict(train.Config()), **train.preset_config(s["preset"]), **s["sets"], "name": ""}
    st.session_state["cfg_preset"] = s["preset"]
    st.session_state.pop("cfg_loaded", None)
    for f in fields:
        st.session_state[form_key(f)] = values[f]
    for f in sweep.SEARCHABLE:
        st.session_state[f"sweep_how_{f}"] = "fixed"
    for f, d in sweep.parse_space(s["space"]).items():
        if d["kind"] == "choice":
            st.session_state[f"sweep_how_{f}"] = "list"
            st.session_state[f"sweep_list_{f}"] = (d["values"] if _modes(f) is MODES_NAME
                                                   else ", ".join(map(str, d["values"])))
        else:
            st.session_state[f"sweep_how_{f}"] = "log range" if d["kind"] == "loguniform" else "range"
            st.session_state[f"sweep_lo_{f}"], st.session_state[f"sweep_hi_{f}"] = str(d["low"]), str(d["high"])
    st.session_state.update(sweep_trials=s["trials"], sweep_sampler=s["sampler"], sweep_pruner=s["pruner"],
                            sweep_name=f"{key}-{time.strftime('%m%d-%H%M')}")
    st.session_state[REFILL] = True
    st.session_state.pop(MSG, None)


def _field_row(f: str, label: str, options) -> None:
    with st.container(horizontal=True, vertical_alignment="bottom", key=f"sweep_row_{f}"):
        mode = st.selectbox(f"{label} in the sweep", _modes(f), key=f"sweep_how_{f}", width=170)
        if mode == "list" and isinstance(options, list):
            st.multiselect("values", options, key=f"sweep_list_{f}", label_visibility="collapsed",
                           placeholder="pick two or more")
        elif mode == "list":
            st.text_input("values", key=f"sweep_list_{f}", label_visibility="collapsed",
                          placeholder="values, comma-separated: e.g. 32, 64, 128")
        elif mode in ("range", "log range"):
            st.text_input("from", key=f"sweep_lo_{f}", placeholder="from", width=110)
            st.text_input("to", key=f"sweep_hi_{f}", placeholder="to", width=110)
        else:
            st.caption("as in the form above")


@st.fragment
def _sweep_form(cfg: train.Config, fields: dict, form_key) -> None:
    if st.session_state.pop(REFILL, False):
        st.rerun(scope="app")  # a preset search filled the Train form above too
    labels = {f: fields[f][0] for f in sweep.SEARCHABLE}
    with st.container(horizontal=True, key="sweep_presets"):
        st.caption("Start from a preset search:")
        for key, s in sweep.SEARCHES.items():
            st.button(s["title"], key=f"sweep_search_{key}", on_click=_fill_search, args=(key, form_key, fields))
    st.caption("Beside each setting: fixed (the value in the form above), a list of values, or a range; the rest of "
               "the form is fixed. The objective is the validation accuracy (the test accuracy when Validation "
               "images is 0).")
    halves = st.columns(2, gap="medium")  # two columns of rows: the ten settings in five rows' height
    for i, f in enumerate(sweep.SEARCHABLE):
        with halves[i % 2]:
            _field_row(f, labels[f], fields[f][2] if fields[f][1] == "select" else None)
    with st.container(horizontal=True, vertical_alignment="bottom", key="sweep_settings"):
        st.text_input("Sweep name", key="sweep_name", placeholder="empty = sweep-date-time", width=220,
                      help="Its trials' runs are named NAME-t0, NAME-t1, ...")
        st.session_state.setdefault("sweep_trials", 10)
        st.number_input("Trials", min_value=1, max_value=sweep.MAX_TRIALS, step=1, key="sweep_trials", width=120,
                        help="At most this many; a grid runs each of its points once")
        st.selectbox("Sampler", sweep.SAMPLERS, key="sweep_sampler", width=120,
                     help="tpe: learns from the finished trials; random; grid: every combination of the lists once")
        st.selectbox("Pruner", sweep.PRUNERS, key="sweep_pruner", width=130,
                     help="Stops a trial whose validation accuracy after an epoch is clearly worse than the others'")
        st.text_input("Study storage", key="sweep_storage", placeholder="empty = SQLite in the runs folder",
                      help="postgresql://USER@HOST:PORT/DB to share the study with workers on other machines")
    st.button("Create the sweep and run it", type="primary", icon=":material/tune:", key="sweep_create",
              on_click=_create, args=(cfg, labels))
    msg = st.session_state.get(MSG)
    if msg and msg[0] == "error":
        st.error(md(msg[1]))
    elif msg:
        st.success(f"Sweep {msg[1]} made: {msg[2]} trials, run one at a time in the training queue.")
        st.page_link("pages/sweeps.py", label=f"Watch {msg[1]} on the Sweeps page", icon=":material/tune:",
                     query_params={"sweep": msg[1]})


def sweep_these_settings(cfg: train.Config, fields: dict, form_key) -> None:
    """The expander under the Train form. `fields`: the form's FIELDS (field -> (label, kind, options));
    `form_key`: field -> the form widget's session-state key."""
    box = st.expander("Sweep these settings", icon=":material/tune:", key="sweep_open", on_change="rerun")
    if box.open:  # drawn only while open: the Train page pays nothing for it otherwise
        with box:
            _sweep_form(cfg, fields, form_key)
