"""Train: every hyperparameter of the trainer, presets, launch (one run or an augmented + normal pair), and a
"load settings from" the selected run (to train it again with changes), and a live view of the selected run: its
numbers every second (polled as JSON by the browser, without rerunning this script), its curves and epoch table
from metrics.jsonl every 10 s while it trains (at once for each of a run's first records, and at each epoch's end).
A launch brings the live view into view, and it follows an augmented + normal pair to its end."""
import dataclasses
import math
import re

import streamlit as st

from mnistviz import augment, charts, data, device, jobs, live, models, runs, train
from pages._lrfind import lr_finder
from pages._live import (IDLE_EVERY_S, NUMBERS_EVERY_S, SCROLL_TO_LIVE, WATCHING, poller, scroll_into_view,
                         stat_row)
from pages._shared import launch_made, launch_repeated, require_mnist, same_settings, select_run, selected_run_name
from pages._sweep_form import sweep_these_settings


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
    "device": ("Device", "select", list(device.choices())),
    "precision": ("Precision", "select", list(train.PRECISIONS)),
    "keep_epoch_weights": ("Keep every epoch's weights", "bool",
                           "in the run folder's epochs/: the Embeddings page then shows the projection at each epoch"),
}
LABELS = {f: label for f, (label, _, _) in FIELDS.items()}  # what validate() calls a field in its messages
STEPS = {"lr": 0.001, "momentum": 0.01, "weight_decay": 0.0001, "label_smoothing": 0.01}
LAYOUT = [["model", "optimizer", "lr", "momentum", "nesterov"],
          ["weight_decay", "schedule", "label_smoothing", "batch_size", "device"],
          ["epochs", "augment", "seed", "val_size", "precision"],
          ["target_accuracy", "limit_train", "log_every", "name", "keep_epoch_weights"]]


def _key(f):
    return f"cfg_{f}"


def _fill_form(values: dict) -> None:
    """Set every field of the form (before its widgets exist in this rerun: from a callback or on first load)."""
    for f in FIELDS:
        st.session_state[_key(f)] = values[f]


def _preset_values(preset: str) -> dict:
    return {**DEFAULTS, **train.preset_config(preset), "name": ""}


def _apply_preset():
    st.session_state.pop("cfg_loaded", None)
    _fill_form(_preset_values(st.session_state["cfg_preset"]))


def _changed_from_preset() -> list[str]:
    """The form's fields (not the run name) whose value is not the preset's."""
    base = _preset_values(st.session_state["cfg_preset"])
    return [f for f in FIELDS if f != "name" and st.session_state.get(_key(f)) != base[f]]


# The form lives in the session and, as its changes from the preset, in the URL (/train?preset=lenet5-sgd&epochs=2):
# a refresh starts a new session, which fills the form from the URL, so a Train clicked after a refresh launches
# what the form showed before it (not the default preset, while a LeNet-5 run trains below).
def _url_text(value) -> str:
    if value is None:
        return "none"
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _url_value(field: str, text: str):
    """A field's value from its URL text, as its widget takes it; ValueError saying why not."""
    kind = FIELDS[field][1]
    if kind == "text":
        return text
    if kind == "select":
        return _form_value(field, text)
    if kind == "bool":
        if text in ("true", "false"):
            return text == "true"
        raise ValueError(f"{text!r} is not true or false")
    if kind == "optfloat" and text in ("", "none"):
        return None
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    return _form_value(field, number)  # a whole number for an integer field


def _form_from_url() -> list[str]:
    """Fill the form from the URL's preset and fields (a new session: the first run of the page, or a refresh).
    Returns a sentence for each URL value the form could not take (the field keeps the preset's)."""
    preset = st.query_params.get("preset", "default")
    problems = []
    if preset not in train.PRESETS:
        problems.append(f"preset={preset!r} is not a preset here; the form starts from the default one")
        preset = "default"
    st.session_state["cfg_preset"] = preset
    values = _preset_values(preset)
    for f, (label, _, _) in FIELDS.items():
        if f in st.query_params:
            try:
                values[f] = _url_value(f, st.query_params[f])
            except ValueError as e:
                problems.append(f"{label} ({f}={st.query_params[f]!r} in the address): {e}; it keeps {values[f]!r}")
    _fill_form(values)
    return problems


def _form_to_url() -> None:
    """Write the form's preset and changed fields into the URL (only what differs from what it holds)."""
    preset = st.session_state["cfg_preset"]
    base = _preset_values(preset)
    wanted = {f: _url_text(st.session_state.get(_key(f))) for f in FIELDS if st.session_state.get(_key(f)) != base[f]}
    if preset != "default":
        wanted["preset"] = preset
    for k in ("preset", *FIELDS):
        if k in wanted and st.query_params.get(k) != wanted[k]:
            st.query_params[k] = wanted[k]
        elif k not in wanted and k in st.query_params:
            del st.query_params[k]


def _form_value(field: str, value):
    """`value` as field's widget takes it (an int for an integer field, a float for a number...); ValueError
    saying why when it cannot take it (a model no longer in the registry, text in a number field...)."""
    label, kind, extra = FIELDS[field]
    if kind == "select":
        if isinstance(value, str) and value in extra:
            return value
        raise ValueError(f"{value!r} is not one of its choices here ({', '.join(extra)})")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError(f"{value!r} is not true or false")
    if kind == "optfloat" and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a number")
    if kind == "int":
        if float(value).is_integer():
            return int(value)
        raise ValueError(f"{value!r} is not a whole number")
    return float(value)


def _fresh_name(name: str) -> str:
    """A run name nobody has yet, after `name`: lenet-plain -> lenet-plain-2, lenet-plain-2 -> lenet-plain-3..."""
    m = re.fullmatch(r"(.+)-(\d{1,3})", name)  # not a timestamp's digits (fast-none-20261127-125702)
    base, k = (m.group(1), int(m.group(2))) if m else (name, 1)
    base = base[:95]
    root = runs.runs_dir()
    while True:
        k += 1
        if not (root / f"{base}-{k}").exists():
            return f"{base}-{k}"


def _load_run_settings(name: str):
    """Fill the form with the hyperparameters run `name` was trained with (its config.json), the way a preset
    fills it, and a new run name after its own: the "run it again with changes" workflow."""
    st.session_state.pop("train_launched", None)
    st.session_state.pop("train_launch_error", None)
    try:
        cfg = runs.get_run(name).config()
    except runs.RunError as e:
        st.session_state["cfg_loaded"] = (name, None, [f"nothing was loaded: {e}"])
        return
    values = {f: st.session_state.get(_key(f), DEFAULTS[f]) for f in FIELDS}
    problems, missing = [], []
    for f in FIELDS:
        if f == "name":
            continue
        if f not in cfg:
            missing.append(FIELDS[f][0])
            values[f] = DEFAULTS[f]
            continue
        try:
            values[f] = _form_value(f, cfg[f])
        except ValueError as e:
            problems.append(f"{FIELDS[f][0]}: {e}; the field keeps {values[f]!r}")
    if missing:
        problems.append(f"not in its config.json (an older version?), so set to the defaults: {', '.join(missing)}")
    values["name"] = _fresh_name(name)
    _fill_form(values)
    if cfg.get("preset") in train.PRESETS:  # the preset it started from, recorded again in the new run
        st.session_state["cfg_preset"] = cfg["preset"]
    st.session_state["cfg_loaded"] = (name, values["name"], problems)


def _form_config() -> train.Config:
    vals = {f: st.session_state.get(_key(f)) for f in FIELDS}
    vals["name"] = (vals["name"] or "").strip() or None
    return train.Config(**vals, preset=st.session_state.get("cfg_preset"))


FIELDS_ERROR = "Fix the fields marked in red; nothing was launched."


def _launch(pair: bool, again: bool = False):
    """Launch the form's settings (`pair`: augmented + normal). The same settings launched again within
    REPEAT_WINDOW_S (a double click) are refused, with a "Train again" button (`again`) that launches them anyway."""
    st.session_state.pop("cfg_loaded", None)
    cfg = _form_config()
    errors = train.validate(cfg, LABELS)
    if errors:
        st.session_state.pop("train_launched", None)
        st.session_state["train_launch_error"] = FIELDS_ERROR
        return
    refused = None if again else launch_repeated(("train", pair, cfg))
    if refused:
        st.session_state["train_repeat"] = (pair, refused, same_settings(cfg))
        return
    st.session_state.pop("train_launched", None)
    st.session_state.pop("train_repeat", None)
    try:
        made = jobs.submit_pair(cfg) if pair else (jobs.submit(cfg),)
    except (runs.RunError, data.MNISTMissing, OSError) as e:
        st.session_state["train_launch_error"] = f"Nothing was launched: {e}"
        return
    launch_made(("train", pair, cfg), [r.name for r in made])
    st.session_state.pop("train_launch_error", None)
    st.session_state["train_launched"] = [r.name for r in made]
    st.session_state[_key("name")] = ""  # the launched name is taken now; empty = automatic for the next launch
    select_run(made[0].name)
    st.session_state[SCROLL_TO_LIVE] = True
    st.session_state[WATCHING] = made[0].name  # followed even if it ends before the page draws it


def _free_name(name: str, names) -> str:
    """`name`, or the first of name-2, name-3... for which none of `names(candidate)` is taken."""
    root = runs.runs_dir()
    while any((root / n).exists() for n in names(name)):
        name = _fresh_name(name)
    return name


def _name_problem(raw, errors: dict) -> str | None:
    """What is wrong with the Run name field, said beside it as you type: an invalid name (with the same name
    with '-' for its spaces, if that one is valid), or one taken by a run already (with a free one). A few stat()
    calls, on full reruns only."""
    name = (raw or "").strip()
    if not name:
        return None
    if "name" in errors:
        dashed = re.sub(r"\s+", "-", name)
        if dashed != name:
            try:
                runs.check_name(dashed)
                return f"{errors['name']}: e.g. {dashed}"
            except runs.RunError:
                pass
        return errors["name"]
    level = st.session_state.get(_key("augment"))
    root = runs.runs_dir()
    if (root / name).exists():
        return (f"A run named {name!r} exists, so Train would launch nothing: pick another name, e.g. "
                f"{_free_name(name, lambda n: (n,))}.")
    taken = [n for n in jobs.pair_names(name, level) if (root / n).exists()]
    if taken:
        return (f"A run named {taken[0]!r} exists, so the augmented + normal pair would launch nothing: pick "
                f"another name, e.g. {_free_name(name, lambda n: (n, *jobs.pair_names(n, level)))}.")
    return None


def _launched_active(names) -> bool:
    """Any of the runs launched from this page still queued or running (a status.json read each, on full reruns
    only: the numbers' fragment reruns the page when a run starts or ends)."""
    for n in names:
        try:
            if runs.get_run(n).status().get("status") in runs.ACTIVE:
                return True
        except (runs.RunError, OSError):
            pass
    return False


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
# ...except at a run's start: while the chart shows fewer records than this, a poller in the chart's fragment
# redraws it as soon as metrics.jsonl grows (otherwise the first 10 s of a run, most of a default run's first
# epoch, show an empty chart). A handful of extra redraws per run; the 10 s rhythm after them is unchanged.
SPARSE_RECORDS = 3
# epochs shorter than this (seconds, training and evaluation) redraw the chart at most this often at their ends
FAST_EPOCH_S = 3.0
# per-step curves with fewer points than this get markers too: one point alone draws no line
MARKERS_BELOW = 20
WAITING = "waiting for the first logged steps"


MODEL_HELP = "\n".join(f"- **{m}**: {d}" for m, d in models.DESCRIPTIONS.items())
# the select boxes' help and how they show each choice: the devices with what was found here
SELECT_HELP = {"model": MODEL_HELP,
               "device": "Where the run trains. Found here:\n" +
                         "\n".join(f"- **{d}**: {device.describe(d)}" for d in device.present()) +
                         "\n\nauto takes the first. The same seed on the same device gives the same metrics (on "
                         "CUDA only with `--deterministic` from a terminal).",
               "precision": "bf16: bfloat16 autocast, for a GPU; fp32 keeps the CPU's fast paths."}
SELECT_SHOWN = {"device": device.choices()}


@st.cache_data(show_spinner=False)
def _summary(model_name: str):
    return models.summary(models.build(model_name))


# ---------- form ----------

st.title("Train")
if "cfg_preset" not in st.session_state:
    url_problems = _form_from_url()
    if url_problems:
        st.warning("The address bar's form settings were not all usable:\n\n" +
                   "\n".join(f"- {p}" for p in url_problems))
require_mnist()

# Rows of widgets sit in wrapping horizontal containers, not st.columns: at 900 px (sidebar open) fixed column
# ratios cut labels and the Train button to "T."; a wrapping row keeps each widget readable and moves the rest down.
selected = selected_run_name()
with st.container(horizontal=True, vertical_alignment="bottom", key="train_top"):
    st.selectbox("Preset", list(train.PRESETS), key="cfg_preset", on_change=_apply_preset, width=260,
                 persist_state="session", help="Fills the form below with a seed experiment's hyperparameters.")
    st.button(f"Load settings from {selected}" if selected else "Load settings from a run", key=f"cfg_load:{selected}",
              icon=":material/settings_backup_restore:", disabled=not selected, on_click=_load_run_settings,
              args=(selected,), help="Fills the form with the hyperparameters the run selected in the sidebar was "
                                     "trained with, and a new run name: change what you want to try, then Train.")
changed = _changed_from_preset()
if changed:  # the preset's description would name values the form no longer has
    _base = _preset_values(st.session_state["cfg_preset"])
    st.caption(f"The {st.session_state['cfg_preset']} preset, with changes: " +
               ", ".join(f"{FIELDS[f][0]} {_url_text(st.session_state.get(_key(f)))} "
                         f"(preset: {_url_text(_base[f])})" for f in changed) + ".")
else:
    st.caption(train.PRESETS[st.session_state["cfg_preset"]]["desc"])
loaded = st.session_state.get("cfg_loaded")
if loaded:
    source, new_name, problems = loaded
    if new_name is None:
        st.error(f"Loading the settings of {source}: {problems[0]}")
    elif problems:
        st.warning(f"Loaded the settings of {source} (new run name: {new_name}), except:\n\n" +
                   "\n".join(f"- {p}" for p in problems))
    else:
        st.success(f"Loaded the settings of {source} into the form, with a new run name: {new_name}. "
                   f"Change what you want to try, then Train.")

errors = train.validate(_form_config(), LABELS)  # live: a message beside the field as soon as a value is out of range
name_problem = _name_problem(st.session_state.get(_key("name")), errors)
if name_problem:
    errors["name"] = name_problem
# a column of fields takes at least 200 px before the row wraps (Streamlit's 128 px put three columns of cut values
# in at 900 px)
st.html("<style>.st-key-train_form > [data-testid=stLayoutWrapper]{flex-basis:200px}</style>")
with st.container(horizontal=True, gap="medium", key="train_form"):
    for fields in LAYOUT:
        with st.container(width="stretch"):
            for f in fields:
                label, kind, extra = FIELDS[f]
                help_ = extra if isinstance(extra, str) else None
                k = _key(f)
                if kind == "select":
                    # the model's description does not fit the box at any width: it is in the help and under the form
                    shown = SELECT_SHOWN.get(f, {})
                    st.selectbox(label, extra, key=k, persist_state="session", help=SELECT_HELP.get(f),
                                 format_func=lambda v, shown=shown: shown.get(v, v))
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
_form_to_url()

with st.container(horizontal=True, key="train_buttons"):
    st.button("Train", type="primary", icon=":material/play_arrow:", on_click=_launch, args=(False,), key="train_one")
    st.button("Train augmented + normal pair", icon=":material/call_split:", on_click=_launch, args=(True,),
              key="train_pair", help="Same config twice, with augmentation (the level above, or standard if it is "
                                     "none) and without, queued one after the other, for the Compare page.")
# in one container always there: the message going away (below) leaves the live view's elements where they are,
# so the browser replaces its numbers in place instead of showing a stale copy beside the new ones for a moment
with st.container(key="train_launch_msg"):
    if st.session_state.get("train_launch_error") == FIELDS_ERROR and not errors:
        st.session_state.pop("train_launch_error")  # the fields were mended: nothing is marked in red any more
    repeat = st.session_state.get("train_repeat")
    if repeat and repeat[2] != same_settings(_form_config()):
        del st.session_state["train_repeat"]  # the form changed since: Train would launch new settings
        repeat = None
    if repeat:
        st.warning(f"These settings were just launched as {', '.join(repeat[1])}; nothing more was launched (a "
                   f"double click?). To train the same settings once more on purpose:", icon=":material/block:")
        st.button("Train again", icon=":material/replay:", key="train_again", on_click=_launch,
                  args=(repeat[0], True))
    if st.session_state.get("train_launch_error"):
        st.error(st.session_state["train_launch_error"])
    elif st.session_state.get("train_launched"):
        launched = st.session_state["train_launched"]
        active = _launched_active(launched)
        if active:
            st.success("Launched: " + ", ".join(launched) +
                       " (training runs as its own process; it goes on if you close this tab).")
        # a pair: the way to its comparison, also once both have finished (then the live view's "Compare these two"
        # when it shows the pair)
        if len(launched) == 2 and (active or selected_run_name() not in launched):
            aug, plain = launched
            st.page_link("pages/compare.py", icon=":material/compare:", query_params={"runs": f"{aug},{plain}"},
                         label=f"Compare {aug} with {plain}" +
                               (" (once they have finished an epoch)" if active else ""))
        elif not active:
            st.session_state.pop("train_launched")  # finished (or gone): the message would be stale

sweep_these_settings(_form_config(), FIELDS, _key)  # pages/_sweep_form.py: the form as a search space

_model = st.session_state[_key("model")]
_about = models.DESCRIPTIONS.get(_model)
with st.expander(f"Model summary: {_model}" + (f" ({_about})" if _about else "")):
    rows = _summary(_model)
    st.dataframe(rows, hide_index=True, width="stretch")
    st.markdown(f"Total parameters: **{sum(r['parameters'] for r in rows):,}**")
lr_finder(_form_config)  # the learning-rate range test of the form's settings (pages/_lrfind.py)


# ---------- live view ----------
# Three parts, refreshed at different rates, because every refresh costs the browser CPU that a training on the
# same cores then lacks (bench/contention.py, docs/performance.md): the numbers every second, written into the page
# by a poller that fetches them as JSON (pages/_live.py, mnistviz/live.py); the curves and epoch table every
# CURVES_EVERY_S seconds; the heading, messages and Stop / Resume only when the run's state changes (a full rerun).

def live_numbers(name, phase_seen, busy_seen):
    """Drawn with the page; rerun only when its poller sees a change beyond the numbers (then the whole page)."""
    snap = live.snapshot(name)  # (moves the queue on, as each refresh does)
    if snap["busy"] != busy_seen:
        st.rerun()  # a run started or ended: refresh the sidebar, the buttons and the refresh rates
    every = NUMBERS_EVERY_S if any(busy_seen) else IDLE_EVERY_S
    if not name:
        poller("live_poll", None, {"busy": busy_seen}, every, stats=False)
        return
    if snap["phase"] != phase_seen:
        st.rerun()  # started, ended, deleted or broken since: the page says so
    st.markdown(stat_row(snap["stats"]), unsafe_allow_html=True)
    poller("live_poll", name, {"busy": busy_seen, "phase": phase_seen}, every, stats=True)


def live_figure(steps, epochs, x: str) -> dict:
    """The training curves as the live view draws them: markers on a per-step curve of few points (a run's first
    seconds), and no axis beyond what the values can be (accuracy in 0-100%, loss, epochs and steps from 0)."""
    spec = charts.training_curves_spec(steps, epochs, x=x)
    if len(steps) < MARKERS_BELOW:
        for trace in spec["data"]:
            if trace.get("legendgroup") == "train-step":
                trace.update(mode="lines+markers", marker=dict(size=5, color=charts.SPLIT_COLORS["train"]))
    layout = spec["layout"]
    for axis in ("xaxis", "xaxis2", "yaxis"):
        layout[axis]["autorangeoptions"] = dict(minallowed=0)
    layout["yaxis2"]["autorangeoptions"] = dict(minallowed=0, maxallowed=1)
    # the legend hangs below the axis titles: anchored at its bottom, a legend of two rows (at 900 px) rose over them
    layout["legend"].update(yanchor="top", y=-0.28)
    if not steps and not epochs:
        # drawn empty from the launch on: the first plotly chart in a browser tab loads and compiles plotly.js (~0.4 s
        # of CPU here), which the first records would otherwise bring about in the training's first second
        # (plotly takes no figure without a trace: one empty trace per panel; and fixed axes, not its -1 to 6)
        spec["data"] = [dict(type="scatter", x=[], y=[], xaxis="x" + a, yaxis="y" + a, showlegend=False,
                             hoverinfo="skip") for a in ("", "2")]
        for axis, top in (("xaxis", 1), ("xaxis2", 1), ("yaxis", 2.5), ("yaxis2", 1)):
            layout[axis]["range"] = [0, top]
        layout["annotations"] = [dict(text=WAITING, xref=f"x{a} domain", yref=f"y{a} domain", x=0.5, y=0.5,
                                      showarrow=False, font=dict(size=13, color="gray")) for a in ("", "2")]
    return spec


def live_curves(run, state):
    size = live.metrics_size(run)  # before reading: a record appended meanwhile makes the poller redraw
    epochs = run.epoch_records()
    steps = run.step_records()
    if state == "running":
        # an epoch's end redraws the chart at the next poll, so its point shows when the numbers say the epoch is done;
        # epochs of a second or two (tiny data) would redraw it every second: then every FAST_EPOCH_S
        seen = {"epochs_done": len(epochs)}
        if len(steps) + len(epochs) < SPARSE_RECORDS:
            seen["metrics_size"] = size
        last = epochs[-1] if epochs else {}
        took = (last.get("epoch_seconds") or math.inf) + (last.get("eval_seconds") or 0)
        poller("curves_poll", run.name, seen, FAST_EPOCH_S if took < FAST_EPOCH_S else NUMBERS_EVERY_S, stats=False)
    if steps or epochs or state in runs.ACTIVE:
        x = st.radio("x axis", ["epoch", "step"], horizontal=True, key="curve_x", label_visibility="collapsed")
        st.plotly_chart(live_figure(steps, epochs, x), key="live_curves", width="stretch",
                        config={"displaylogo": False})
    else:
        st.caption("This run logged no steps.")
    if epochs:
        st.caption("Per epoch: seconds spent training and evaluating, throughput")
        st.dataframe(charts.epoch_table(epochs), width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.2f")
                                    for c in ("train acc %", "val acc %", "test acc %", "train s", "eval s")}
                     | {"images/s": st.column_config.NumberColumn(format="%.0f"),
                        "lr": st.column_config.NumberColumn(format="%.2e"),
                        **{c: st.column_config.NumberColumn(format="%.4f")
                           for c in ("train loss", "val loss", "test loss")}})


def pair_line(run, just_ended: bool) -> None:
    """For half of an augmented + normal pair: how far the pair is, and at its end the way to compare the two. When
    the run shown has `just_ended` while this page watched it, and the pair goes on, the live view follows the pair's
    next run (a rerun)."""
    pair = live.pair_of(run)
    if not pair:
        return
    done = [m for m in pair if m["state"] not in runs.ACTIVE]
    now = next((m["name"] for m in pair if m["state"] in runs.ACTIVE), None)
    if just_ended and now:
        select_run(now)
        st.rerun()
    parts = [f"{m['name']} {m['state']}" + (f" (best test accuracy {m['best']:.2%})" if m["best"] is not None else "")
             for m in done]
    with st.container(horizontal=True, vertical_alignment="center", key="live_pair"):
        st.markdown(f"**Pair: {len(done)} of {len(pair)} done**" + (": " + "; ".join(parts) if parts else "") +
                    (f" · now {now}" if now else "") + ".")
        if len(done) == len(pair):
            names = [m["name"] for m in pair]
            if st.button("Compare these two", icon=":material/compare:", type="primary",
                         key=f"pair_compare:{','.join(names)}"):
                st.switch_page("pages/compare.py", query_params={"runs": ",".join(names)})


def live_section():
    busy = live.busy()
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
        st.fragment(live_numbers)(None, None, busy)
        return
    status = run.status()
    state = live.phase(status.get("status", "failed"), name, busy)  # a run being started is drawn as running
    st.subheader(f"Live: {name}")
    # the run this page last drew training: its end, seen here, is what makes the live view follow a pair
    watched = st.session_state.get(WATCHING)
    st.session_state[WATCHING] = name if state in runs.ACTIVE else None
    pair_line(run, just_ended=watched == name and state not in runs.ACTIVE)
    bad = run.unreadable_metric_lines()
    if bad:
        st.warning(f"{len(bad)} line(s) of {run.metrics_file} cannot be read (line {', '.join(map(str, bad[:5]))}"
                   f"{', ...' if len(bad) > 5 else ''}): the curves and the epoch table leave them out.")
    st.fragment(live_numbers)(name, state, busy)
    if state == "queued":
        q = jobs.queue()
        where = f"number {q.index(name) + 1} in the queue" if name in q else "starting"
        st.info(f"{name} is queued ({where}); it starts when the training before it ends.")
    elif state in ("interrupted", "failed"):
        st.warning(f"{name} is {state}: {status.get('error') or 'no reason recorded'}. "
                   f"Resume continues from its last checkpoint.")
    if state in runs.ACTIVE or state in jobs.RESUMABLE:
        with st.container(horizontal=True, key="live_buttons"):
            if state in runs.ACTIVE:
                st.button("Stop", icon=":material/stop:", key=f"live_stop:{name}", on_click=_stop, args=(name,),
                          help="Training stops at the current step and saves a checkpoint; Resume continues from it.")
            if state in jobs.RESUMABLE:
                st.button("Resume", icon=":material/play_arrow:", key=f"live_resume:{name}", on_click=_resume,
                          args=(name,))
    msg = st.session_state.pop("live_msg", None)
    if msg:
        (st.error if msg[0] == "error" else st.success)(msg[1])
    if any(busy):
        st.caption("Training now: " + (busy[0] or "nothing") + (" · queue: " + ", ".join(busy[1]) if busy[1] else ""))
    st.fragment(live_curves, run_every=CURVES_EVERY_S if state == "running" else None)(run, state)


# in a keyed container: what a launch scrolls into view
with st.container(key="live_view"):
    live_section()
if st.session_state.pop(SCROLL_TO_LIVE, False):
    st.session_state["_scrolls"] = st.session_state.get("_scrolls", 0) + 1
    scroll_into_view(".st-key-live_view", key=f"live_scroll_{st.session_state['_scrolls']}")
