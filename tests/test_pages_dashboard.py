"""The shell, Runs, Train and Data pages through streamlit.testing (AppTest), on tiny fixture data;
plus the figure and table builders they use."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from mnistviz import charts, data, jobs, runs
from conftest import texts

ROOT = Path(__file__).resolve().parent.parent


def live_stats(at) -> dict:
    """The Train page's live numbers (one markdown element of data-stat cells): label -> value."""
    cells = [re.findall(r'data-stat="([^"]+)"><div class="mv-label">[^<]*</div><div class="mv-value">([^<]*)</div>',
                        m.value) for m in at.markdown]
    return dict(c for cs in cells for c in cs)


def copy_run(fixture_runs: Path, runs_root: Path, name: str) -> None:
    shutil.copytree(fixture_runs / name, runs_root / name)


# ---------- Train ----------

def test_invalid_hyperparameters_show_a_message_beside_the_field_and_launch_nothing(tiny_env, app):
    at = app("pages/train.py")
    assert not at.error
    at.number_input(key="cfg_lr").set_value(-1.0)
    at.number_input(key="cfg_epochs").set_value(0)
    at.run()
    shown = texts(at.error)
    assert "Learning rate must be above 0" in shown and "Epochs must be at least 1" in shown
    at.button(key="train_one").click().run()
    assert "nothing was launched" in texts(at.error)
    at.button(key="train_pair").click().run()
    assert "nothing was launched" in texts(at.error)
    assert runs.list_runs() == ([], []) and jobs.queue() == []


def test_the_fields_error_goes_once_the_fields_are_valid_again(tiny_env, app):
    at = app("pages/train.py")
    at.number_input(key="cfg_epochs").set_value(0).run()
    at.button(key="train_one").click().run()
    assert "Fix the fields marked in red; nothing was launched." in texts(at.error)
    at.number_input(key="cfg_epochs").set_value(1).run()
    assert not at.error, texts(at.error)
    assert runs.list_runs() == ([], [])


def queue_held(runs_root):
    """A run marked training elsewhere (this test's process, fresh heartbeat): launches wait in the queue."""
    from mnistviz import train

    held = train.create_run(train.Config(name="elsewhere", epochs=1), runs_root)
    held.write_status(status="running", pid=os.getpid(), heartbeat=time.time())
    return held


def test_a_second_click_on_train_with_the_same_settings_launches_nothing_unless_asked_again(tiny_env, app):
    queue_held(tiny_env)
    at = app("pages/train.py")
    at.button(key="train_one").click().run()
    first = jobs.queue()
    assert len(first) == 1
    at.button(key="train_one").click().run()  # a double click: the same settings again at once
    assert jobs.queue() == first
    assert f"These settings were just launched as {first[0]}; nothing more was launched" in texts(at.warning)
    at.button(key="train_again").click().run()  # on purpose
    assert len(jobs.queue()) == 2 and "nothing more was launched" not in texts(at.warning)
    at.number_input(key="cfg_epochs").set_value(3).run()
    at.button(key="train_one").click().run()  # other settings: launched at once
    assert len(jobs.queue()) == 3
    for name in jobs.queue():
        jobs.stop(name)


def test_runs_page_buttons_act_on_the_run_they_were_drawn_for(tiny_env, fixture_runs, app):
    # the selection moves (a row click, a ?run= link) between drawing "Delete tiny-none" and the click reaching
    # the server: the click deletes tiny-none, the run its confirmation named, not the newly selected one
    for name in ("tiny-none", "tiny-aug"):
        copy_run(fixture_runs, tiny_env, name)
    at = app(run="tiny-none")
    assert "tiny-none" in texts(at.subheader)
    at.query_params["run"] = "tiny-aug"
    at.button(key="home_delete:tiny-none").click().run()
    assert "Deleted tiny-none." in texts(at.success)
    assert not (tiny_env / "tiny-none").exists() and (tiny_env / "tiny-aug").is_dir()
    assert texts(at.subheader).splitlines()[0] == "tiny-aug"  # the page now names the run left
    assert at.selectbox(key="_run_picker").value == "tiny-aug"
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download tiny-aug/best.pt"]


def test_a_queue_that_cannot_be_updated_is_said_not_raised(tiny_env, fixture_runs, app):
    # the queue's lock file cannot be opened (here: a folder in its place; a read-only runs folder does the same):
    # the Train page, its once-a-second live numbers, Train and Stop end in messages, not tracebacks
    (tiny_env / "_queue.lock").mkdir()
    copy_run(fixture_runs, tiny_env, "tiny-none")
    at = app("pages/train.py", run="tiny-none")
    assert "The training queue cannot be updated" in texts(at.sidebar.warning) + texts(at.warning) + texts(at.info)
    at.text_input(key="cfg_name").set_value("blocked")
    at.button(key="train_one").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Nothing was launched" in texts(at.error) and not (tiny_env / "blocked").exists()


def test_launching_a_tiny_run_trains_it_in_its_own_process_and_lists_it(tiny_env, app):
    at = app("pages/train.py")
    at.selectbox(key="cfg_preset").set_value("lenet5-sgd").run()
    assert at.selectbox(key="cfg_model").value == "lenet5" and at.number_input(key="cfg_batch_size").value == 32
    assert "61,706" in texts(at.markdown)  # the model summary's total for LeNet-5
    at.selectbox(key="cfg_model").set_value("fast")
    for key, value in (("cfg_epochs", 1), ("cfg_batch_size", 50), ("cfg_val_size", 50)):
        at.number_input(key=key).set_value(value)
    at.text_input(key="cfg_name").input("ui-run")
    at.button(key="train_one").click().run()
    assert not at.error, texts(at.error)
    assert "Launched: ui-run" in texts(at.success)
    assert at.query_params["run"] == ["ui-run"] or at.query_params["run"] == "ui-run"
    run = runs.get_run("ui-run")
    assert run.config()["model"] == "fast" and run.config()["preset"] == "lenet5-sgd"
    deadline = time.time() + 90
    while run.status()["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.2)
    assert run.status()["status"] == "completed", (run.path / jobs.LOG_FILE).read_text()

    at.switch_page("pages/home.py").run()
    table = at.dataframe[0].value
    row = table[table["name"] == "ui-run"].iloc[0]
    assert row["status"] == "completed" and row["epoch"] == "1 / 1" and row["model"] == "fast"
    assert at.selectbox(key="_run_picker").value == "ui-run"

    at.switch_page("pages/train.py").run()  # the live view of the finished run
    stats = live_stats(at)
    assert (stats["Status"], stats["Epoch"]) == ("completed", "1 / 1")
    assert len(at.get("plotly_chart")) == 1


# the "run it again with changes" workflow: a run's hyperparameters, every one unlike the defaults
RERUN_CONFIG = dict(model="lenet5", optimizer="adam", lr=0.003, momentum=0.8, nesterov=False, weight_decay=0.001,
                    schedule="step", label_smoothing=0.1, batch_size=50, epochs=1, augment="light", seed=7,
                    val_size=50, target_accuracy=0.97, limit_train=200, log_every=3, keep_epoch_weights=False,
                    preset="lenet5-sgd")
FORM_WIDGETS = {"model": "selectbox", "optimizer": "selectbox", "schedule": "selectbox", "augment": "selectbox",
                "nesterov": "checkbox", "keep_epoch_weights": "checkbox", "name": "text_input"}  # every other field: a number_input


def form_values(at) -> dict:
    return {f: getattr(at, FORM_WIDGETS.get(f, "number_input"))(key=f"cfg_{f}").value
            for f in (*RERUN_CONFIG, "name") if f != "preset"}


def rewrite_config(runs_root: Path, name: str, **changes) -> None:
    cfg_file = runs_root / name / "config.json"
    cfg = {**json.loads(cfg_file.read_text()), **changes}
    cfg_file.write_text(json.dumps({k: v for k, v in cfg.items() if v is not ...}))  # ...: leave the key out


def test_load_settings_from_the_selected_run_fills_the_form_and_trains_it_again(tiny_env, fixture_runs, app):
    copy_run(fixture_runs, tiny_env, "tiny-none")
    rewrite_config(tiny_env, "tiny-none", **RERUN_CONFIG)
    shutil.copytree(fixture_runs / "tiny-aug", tiny_env / "tiny-none-2")  # so the next free name is -3
    at = app("pages/train.py", run="tiny-none")
    assert at.selectbox(key="cfg_preset").value == "default" and at.number_input(key="cfg_lr").value == 0.2
    assert at.button(key="cfg_load:tiny-none").label == "Load settings from tiny-none"
    at.button(key="cfg_load:tiny-none").click().run()
    assert not at.exception, [e.value for e in at.exception]
    expected = {k: v for k, v in RERUN_CONFIG.items() if k != "preset"} | {"name": "tiny-none-3"}
    assert form_values(at) == expected
    assert at.selectbox(key="cfg_preset").value == "lenet5-sgd"  # the preset the run started from
    assert "Loaded the settings of tiny-none into the form, with a new run name: tiny-none-3" in texts(at.success)
    assert not at.error and not at.warning, texts(at.error) + texts(at.warning)

    at.number_input(key="cfg_seed").set_value(8)  # the change to try
    at.button(key="train_one").click().run()
    assert "Launched: tiny-none-3" in texts(at.success), texts(at.error)
    new = runs.get_run("tiny-none-3")
    deadline = time.time() + 90
    while new.status()["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.2)
    assert new.status()["status"] == "completed", (new.path / jobs.LOG_FILE).read_text()
    assert {k: new.config()[k] for k in RERUN_CONFIG} == RERUN_CONFIG | {"seed": 8}


def test_load_settings_says_which_values_of_the_run_the_form_cannot_take(tiny_env, fixture_runs, app):
    copy_run(fixture_runs, tiny_env, "tiny-none")
    # a model since removed from the registry, a number written as text, a field older versions did not record
    rewrite_config(tiny_env, "tiny-none", model="old-net", batch_size="64", lr=0.05, epochs=3, limit_train=...)
    at = app("pages/train.py", run="tiny-none")
    at.selectbox(key="cfg_preset").set_value("best").run()  # the form before loading: model wide, 16 epochs
    at.number_input(key="cfg_limit_train").set_value(500).run()
    at.button(key="cfg_load:tiny-none").click().run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at.warning)
    assert "Loaded the settings of tiny-none (new run name: tiny-none-2), except:" in shown
    assert "Model: 'old-net' is not one of its choices here" in shown and "the field keeps 'wide'" in shown
    assert "Batch size: '64' is not a number; the field keeps 256" in shown
    assert "not in its config.json (an older version?), so set to the defaults: Limit training images" in shown
    assert not at.success
    values = form_values(at)
    assert (values["model"], values["batch_size"]) == ("wide", 256)  # kept
    assert (values["lr"], values["epochs"], values["limit_train"], values["name"]) == (0.05, 3, 0, "tiny-none-2")


def test_live_curves_of_a_starting_run_show_their_few_points_on_sane_axes(tiny_env, fixture_runs, app):
    from mnistviz import train

    # a run that has logged one step record so far (training elsewhere: here, this process)
    run = train.create_run(train.Config(name="starting", epochs=2), tiny_env)
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), total_steps=22)
    first = runs.Run(fixture_runs / "tiny-none").step_records()[0]
    run.append_metrics([first])
    at = app("pages/train.py", run="starting")
    assert live_stats(at)["Status"] == "running"
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    steps = [t for t in fig["data"] if t["legendgroup"] == "train-step"]
    # one point draws no line: markers
    assert len(steps) == 2 and all(t["mode"] == "lines+markers" and len(t["x"]) == 1 for t in steps)
    layout = fig["layout"]
    assert layout["yaxis2"]["autorangeoptions"] == {"minallowed": 0, "maxallowed": 1}  # accuracy within 0-100%
    assert all(layout[a]["autorangeoptions"]["minallowed"] == 0 for a in ("xaxis", "xaxis2", "yaxis"))

    # before its first record: an empty chart that says so (drawn from the start: see pages/train.py live_figure)
    blank = train.create_run(train.Config(name="blank", epochs=2), tiny_env)
    blank.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), total_steps=22)
    at = app("pages/train.py", run="blank")
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [len(t["x"]) for t in fig["data"]] == [0, 0]
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["waiting for the first logged steps"] * 2
    blank.write_status(status="stopped", pid=None)
    at = app("pages/train.py", run="blank")
    assert not at.get("plotly_chart") and "This run logged no steps." in texts(at.caption)

    many = train.create_run(train.Config(name="many", epochs=2), tiny_env)  # a curve of many points: lines only
    many.append_metrics([{**first, "step": k, "epoch_progress": k / 22} for k in range(1, 41)])
    many.write_status(status="completed")
    at = app("pages/train.py", run="many")
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["mode"] for t in fig["data"] if t["legendgroup"] == "train-step"} == {"lines"}
    assert fig["layout"]["yaxis2"]["autorangeoptions"]["maxallowed"] == 1



def test_a_pair_launch_links_to_its_comparison_clears_the_name_and_its_message_once_finished(tiny_env, app):
    at = app("pages/train.py")
    at.selectbox(key="cfg_model").set_value("fast")
    for key, value in (("cfg_epochs", 1), ("cfg_batch_size", 50), ("cfg_val_size", 50), ("cfg_limit_train", 100)):
        at.number_input(key=key).set_value(value)
    at.text_input(key="cfg_name").input("p")
    at.button(key="train_pair").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert "Launched: p-standard, p-none" in texts(at.success)
    assert at.text_input(key="cfg_name").value == ""  # the launched name is taken: empty (automatic) for the next
    links = [e.proto for e in at.get("page_link")]
    link = next(p for p in links if p.label.startswith("Compare p-standard with p-none"))
    assert link.page.endswith("compare") and link.query_string == "runs=p-standard%2Cp-none", link
    assert "once they have finished an epoch" in link.label
    deadline = time.time() + 120
    while jobs.active() or jobs.queue():
        assert time.time() < deadline, "the pair did not finish"
        time.sleep(0.3)
    for name in ("p-standard", "p-none"):
        assert runs.get_run(name).status()["status"] == "completed", name
    at.run()  # the full rerun the numbers' fragment makes when the runs end
    assert "Launched:" not in texts(at.success)  # both finished: no stale message
    # the live view, on the pair, offers the comparison (the launch message's link would say it twice)
    assert "Pair: 2 of 2 done" in texts(at.markdown)
    assert not [e for e in at.get("page_link") if e.proto.label.startswith("Compare p-standard")]
    at.button(key="pair_compare:p-standard,p-none").click().run()
    assert at.title[0].value == "Compare runs" and at.query_params["runs"] == "p-standard,p-none"


def test_a_taken_or_spaced_run_name_is_said_beside_the_field_as_you_type(tiny_env, fixture_runs, app):
    copy_run(fixture_runs, tiny_env, "tiny-none")
    at = app("pages/train.py")
    at.text_input(key="cfg_name").input("tiny-none").run()
    assert "A run named 'tiny-none' exists, so Train would launch nothing: pick another name, e.g. tiny-none-2." \
        in texts(at.error)
    at.text_input(key="cfg_name").input("tiny").run()  # free itself, but the pair would make tiny-standard, tiny-none
    assert ("A run named 'tiny-none' exists, so the augmented + normal pair would launch nothing: pick another "
            "name, e.g. tiny-2.") in texts(at.error)
    at.text_input(key="cfg_name").input("my run").run()
    assert "e.g. my-run" in texts(at.error)
    at.text_input(key="cfg_name").input("my-run").run()
    assert not at.error, texts(at.error)


def test_the_live_epoch_is_the_one_in_progress_while_running(tiny_env, fixture_runs, app):
    from mnistviz import train

    run = train.create_run(train.Config(name="going", epochs=4), tiny_env)
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), epoch=1, total_steps=40)
    at = app("pages/train.py", run="going")
    assert (live_stats(at)["Status"], live_stats(at)["Epoch"]) == ("running", "1 / 4")  # the first, 17% done
    epoch_one = runs.Run(fixture_runs / "tiny-none").epoch_records()[0]
    run.append_metrics([epoch_one])
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), epoch=2, total_steps=40)
    at = app("pages/train.py", run="going")
    assert live_stats(at)["Epoch"] == "2 / 4"
    run.write_status(status="stopped", epoch=1)
    at = app("pages/train.py", run="going")
    assert (live_stats(at)["Status"], live_stats(at)["Epoch"]) == ("stopped", "1 / 4")  # finished ones only
    assert not [w for w in at.warning if "cannot be read" in w.value]
    with open(run.metrics_file, "a") as f:  # a damaged line: said, not skipped silently
        f.write("not json\n")
    run.append_metrics([{**epoch_one, "epoch": 2}])
    at = app("pages/train.py", run="going")
    assert live_stats(at)["Epoch"] == "2 / 4"
    assert [w.value for w in at.warning if "cannot be read" in w.value] == [
        f"1 line(s) of {run.metrics_file} cannot be read (line 2): the curves and the epoch table leave them out."]


# ---------- shell and Runs ----------

def test_the_url_selects_the_run_and_a_page_switch_keeps_it(tiny_env, fixture_runs, app):
    for name in ("tiny-none", "tiny-aug"):
        copy_run(fixture_runs, tiny_env, name)
    at = app(run="tiny-none")
    assert at.selectbox(key="_run_picker").value == "tiny-none"
    at.switch_page("pages/data.py").run()
    assert at.selectbox(key="_run_picker").value == "tiny-none"
    assert at.query_params["run"] in ("tiny-none", ["tiny-none"])
    at.selectbox(key="_run_picker").set_value("tiny-aug").run()
    at.switch_page("pages/train.py").run()
    assert at.query_params["run"] in ("tiny-aug", ["tiny-aug"])
    assert "Live: tiny-aug" in texts(at.subheader)

    missing = app(run="no-such-run")
    assert "no run named 'no-such-run'" in texts(missing.warning)


def test_runs_page_lists_broken_folders_and_refuses_to_delete_a_running_run(tiny_env, fixture_runs, app):
    copy_run(fixture_runs, tiny_env, "tiny-none")
    (tiny_env / "half-written").mkdir()
    copy_run(fixture_runs, tiny_env, "tiny-aug")
    busy = runs.get_run("tiny-aug")
    busy.write_status(status="running", pid=os.getpid(), heartbeat=time.time())  # training elsewhere (here: this process)
    # distinct creation times, newest not first by name, so the newest-first order is the only one that passes
    for name, created in (("tiny-none", 2_000_000_000.0), ("tiny-aug", 1_000_000_000.0)):
        cfg_file = tiny_env / name / "config.json"
        cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "created": created}))

    at = app(run="tiny-aug")
    assert at.dataframe[0].value["name"].tolist() == ["tiny-none", "tiny-aug"]  # newest first
    assert "half-written" in texts(at.warning) and "config.json is missing" in texts(at.warning)
    at.button(key="home_delete:tiny-aug").click().run()
    assert "is running; stop it before deleting it" in texts(at.error)
    assert busy.path.is_dir()

    at.selectbox(key="_run_picker").set_value("tiny-none").run()
    assert at.get("download_button"), "checkpoint download offered"
    at.button(key="home_delete:tiny-none").click().run()
    assert "Deleted tiny-none." in texts(at.success)
    assert not (tiny_env / "tiny-none").exists()
    at.button(key="del_broken_half-written").click().run()
    assert not (tiny_env / "half-written").exists()


# ---------- Data ----------

def test_data_page_shows_class_balance_samples_and_normalization(tiny_env, tmp_path, monkeypatch, app):
    # the tiny data with uneven labels (the fixture's are 60 / 20 of every digit), so wrong or swapped counts show
    from conftest import write_idx

    raw = tmp_path / "uneven" / "MNIST" / "raw"
    write_idx(raw)
    train_n, test_n = [150, 100, 80, 60, 50, 50, 40, 30, 25, 15], [5, 10, 15, 20, 25, 30, 35, 40, 15, 5]
    for prefix, n in (("train", train_n), ("t10k", test_n)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), n)
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, len(labels)) + labels.tobytes())
    monkeypatch.setenv("MNISTVIZ_DATA", str(tmp_path / "uneven"))
    at = app("pages/data.py")
    counts = at.table[0].value
    assert counts["digit"].tolist() == list(range(10))
    assert counts["train"].tolist() == train_n and counts["test"].tolist() == test_n
    assert counts["train %"].tolist() == pytest.approx([c * 100 / 600 for c in train_n], abs=0.01)
    assert counts["test %"].tolist() == pytest.approx([c * 100 / 200 for c in test_n], abs=0.01)
    assert len(at.get("vega_lite_chart")) == 1  # the class balance bars
    assert len(at.get("image")) == 2  # originals beside augmented
    values = [m.value for m in at.metric]
    assert f"{data.MEAN:.4f}" in values and f"{data.STD:.4f}" in values
    before = [i.proto.SerializeToString() for i in at.get("image")]
    at.button(key="data_reshuffle").click().run()
    assert [i.proto.SerializeToString() for i in at.get("image")] != before


def test_every_page_says_how_to_provide_missing_mnist(tiny_env, tmp_path, monkeypatch, app):
    monkeypatch.setenv("MNISTVIZ_DATA", str(tmp_path / "empty"))
    for page in ("pages/home.py", "pages/train.py", "pages/data.py"):
        at = app(page)
        said = texts(at.warning) + texts(at.error)
        assert "put the four IDX files" in said and "python -m mnistviz.train" in said, page
        assert "could not be downloaded" not in said, page  # the dashboard never tries a download
    at.switch_page("pages/train.py").run()
    at.button(key="train_one").click().run()
    assert "Nothing was launched: MNIST not found" in texts(at.error)
    assert runs.list_runs() == ([], [])


# ---------- figure and table builders ----------

def test_training_curves_and_tables_from_a_real_run(fixture_runs):
    run = runs.Run(fixture_runs / "tiny-none")
    steps, epochs = run.step_records(), run.epoch_records()
    fig = charts.training_curves(steps, epochs)
    names = {t.name for t in fig.data}
    assert names == {"train (per step)", "train (per epoch)", "validation (per epoch)", "test (per epoch)"}
    step_trace = next(t for t in fig.data if t.name == "train (per step)")
    assert len(step_trace.x) == len(steps) and max(step_trace.x) == pytest.approx(len(epochs))
    by_step = charts.training_curves(steps, epochs, x="step")
    assert max(next(t for t in by_step.data if t.name == "test (per epoch)").x) == epochs[-1]["step"]
    assert len(charts.training_curves([], []).data) == 0

    table = charts.epoch_table(epochs)
    assert list(table.index) == [1, 2]
    assert table["test acc %"].iloc[-1] == pytest.approx(epochs[-1]["test_acc"] * 100)

    summaries, _ = runs.list_runs(fixture_runs)
    rt = charts.runs_table(summaries)
    assert set(rt["name"]) == {"tiny-none", "tiny-aug"} and set(rt["epoch"]) == {"2 / 2"}


def test_live_view_stops_and_resumes_a_queued_run_and_offers_resume_for_a_dead_one(tiny_env, app):
    from mnistviz import train

    elsewhere = train.create_run(train.Config(name="elsewhere", epochs=1), tiny_env)
    elsewhere.write_status(status="running", pid=os.getpid(), heartbeat=time.time())  # training elsewhere: the queue waits
    jobs.submit(train.Config(name="waiting", epochs=1, batch_size=50, val_size=50))
    at = app("pages/train.py", run="waiting")
    assert live_stats(at)["Status"] == "queued" and "number 1 in the queue" in texts(at.info)
    at.button(key="live_stop:waiting").click().run()
    assert "waiting removed from the queue." in texts(at.success)
    assert live_stats(at)["Status"] == "stopped" and jobs.queue() == []
    at.button(key="live_resume:waiting").click().run()
    assert "queued to continue" in texts(at.success) and jobs.queue() == ["waiting"]
    jobs.stop("waiting")  # before "elsewhere" ends, so the queue never starts it

    dead = __import__("subprocess").Popen(["true"])
    dead.wait()
    elsewhere.write_status(status="running", pid=dead.pid)  # its process died without a word
    at = app("pages/train.py", run="elsewhere")
    assert live_stats(at)["Status"] == "interrupted"
    assert "ended without saying so" in texts(at.warning)
    assert at.button(key="live_resume:elsewhere")
    assert jobs.active() is None and jobs.queue() == []


# ---------- bad input on disk: every page still opens, says what is wrong, and loses nothing ----------

def test_a_folder_with_an_invalid_name_is_listed_broken_and_deleted_from_the_runs_page(tiny_env, fixture_runs, app):
    copy_run(fixture_runs, tiny_env, "tiny-none")
    shutil.copytree(fixture_runs / "tiny-none", tiny_env / "tiny-none (copy)")  # a copy made in a file manager
    cfg_file = tiny_env / "tiny-none (copy)" / "config.json"
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "created": time.time()}))  # the newest
    (tiny_env / "-dash").mkdir()
    for page in ("pages/home.py", "pages/train.py", "pages/confusion.py", "pages/mispredictions.py"):
        at = app(page)  # no ?run=: the first run is picked, and it is never the misnamed folder
        picker = at.selectbox(key="_run_picker")
        assert (picker.value, len(picker.options)) == ("tiny-none", 1), page
        assert "No run selected" not in texts(at.info), page
    at = app()
    assert at.dataframe[0].value["name"].tolist() == ["tiny-none"]
    shown = texts(at.warning)
    assert "'tiny-none (copy)' is not a valid run name: rename the folder (e.g. tiny-none-copy)" in shown
    assert "'-dash' is not a valid run name: rename the folder (e.g. dash)" in shown
    at.button(key="del_broken_tiny-none (copy)").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert not (tiny_env / "tiny-none (copy)").exists() and (tiny_env / "tiny-none").is_dir()
    at.button(key="del_broken_-dash").click().run()
    assert not (tiny_env / "-dash").exists() and [p.name for p in runs.run_folders(tiny_env)] == ["tiny-none"]
    assert not [p for p in tiny_env.iterdir() if p.name.startswith(".")]  # no half-deleted folder left


def test_one_badly_typed_value_breaks_only_its_own_run(tiny_env, fixture_runs, app):
    for name in ("tiny-none", "tiny-aug"):
        copy_run(fixture_runs, tiny_env, name)
    shutil.copytree(fixture_runs / "tiny-none", tiny_env / "odd-model")
    for name, field, value in (("tiny-aug", "created", "2024-01-01"), ("odd-model", "model", ["fast"])):
        cfg_file = tiny_env / name / "config.json"
        cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), field: value}))
    metrics = tiny_env / "tiny-none" / "metrics.jsonl"
    metrics.write_text(re.sub(r'"test_acc":([0-9.]+)', r'"test_acc":"\1"', metrics.read_text()))  # text, not numbers
    for page in ("pages/home.py", "pages/train.py", "pages/draw.py"):
        at = app(page)
        picker = at.selectbox(key="_run_picker")
        assert (picker.value, len(picker.options)) == ("tiny-none", 1), page
    at = app()
    shown = texts(at.warning)
    assert "run tiny-aug: config.json's created is '2024-01-01', not a time in seconds since 1970" in shown
    assert "run odd-model: config.json's model is \\['fast'\\], not a model name" in shown  # as text, not a link
    assert "best test accuracy none recorded" in texts(at.sidebar.caption)
    assert at.dataframe[0].value["name"].tolist() == ["tiny-none"]


def test_a_queue_file_that_is_a_directory_is_rebuilt_and_said(tiny_env, app):
    from mnistviz import train

    elsewhere = train.create_run(train.Config(name="elsewhere", epochs=1), tiny_env)
    elsewhere.write_status(status="running", pid=os.getpid(), heartbeat=time.time())  # so nothing starts
    train.create_run(train.Config(name="waiting", epochs=1), tiny_env)  # status queued
    (tiny_env / jobs.QUEUE_FILE).mkdir()
    (tiny_env / jobs.QUEUE_FILE / "notes.txt").write_text("mine")
    at = app()
    assert "could not be read, so it was rebuilt from the 1 run(s) marked queued (waiting)" in texts(at.sidebar.warning)
    at = app("pages/train.py", run="waiting")
    assert "waiting is queued (number 1 in the queue)" in texts(at.info)
    assert jobs.queue() == ["waiting"]
    aside = next(tiny_env.glob(jobs.QUEUE_FILE + ".unreadable-*"))
    assert (aside / "notes.txt").read_text() == "mine"
    jobs.stop("waiting")


def test_a_reused_pid_is_interrupted_on_the_train_page_and_offers_resume_not_stop(tiny_env, app):
    import subprocess

    from mnistviz import train

    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        ghost = train.create_run(train.Config(name="ghost", epochs=1), tiny_env)
        runs.atomic_write_json(ghost.status_file, {"status": "running", "pid": other.pid,
                                                   "heartbeat": time.time() - 86400})
        at = app("pages/train.py", run="ghost")
        assert live_stats(at)["Status"] == "interrupted"
        assert f"its process id {other.pid} now belongs to another program" in texts(at.warning)
        keys = [b.key for b in at.button]
        assert "live_resume:ghost" in keys and "live_stop:ghost" not in keys
        assert "Training:" not in texts(at.sidebar.caption)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
