"""Issue 28, what a newcomer meets first, through AppTest and the engine: the home page's three first steps, the
Train form (field labels in its messages, the preset's changes, kept in the URL across a refresh), the live view
following an augmented + normal pair, the ETA's "estimating", the Runs page's one epoch, "1 digit"."""
from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np

from conftest import ROOT, train_tiny
from mnistviz import charts, jobs, live, mydigits, runs, train


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements).replace("**", "")  # markdown's bold left out


def bidi(at) -> list[str]:
    """The keys of the page's components (pollers, the scroller)."""
    return [e.key for e in at.get("bidi_component")]


def hold_queue(root):
    """A run marked training elsewhere (this test's process): launches wait in the queue, nothing starts."""
    held = train.create_run(train.Config(name="elsewhere", epochs=1), root)
    held.write_status(status="running", pid=os.getpid(), heartbeat=time.time())
    return held


# ---------- home ----------

def test_home_says_what_mnistviz_is_and_offers_three_first_steps(tiny_env, app):
    shutil.copytree(ROOT / "checkpoints" / "default", tiny_env / "default")  # the built-in model, as in checkpoints/
    at = app()
    assert at.title[0].value == "mnistviz"
    assert "look inside them" in texts(at.markdown)
    button = at.button(key="home_quick_pair")
    assert "LeNet-5" in button.label and "about 1 minute" in button.label
    links = {e.proto.page.rsplit("/", 1)[-1]: e.proto for e in at.get("page_link")}
    for page in ("draw", "mispredictions"):
        assert links[page].query_string == "run=default" and not links[page].disabled, links
    assert "Runs" in [h.value for h in at.header]  # the Runs table, one scroll below
    assert list(at.dataframe[0].value["name"]) == ["default"]
    assert at.expander[0].label == "First steps" and at.expander[0].proto.expanded

    # once runs of one's own exist, the steps fold away and the Runs table is in view (a row below the fold could
    # not be clicked)
    shutil.copytree(ROOT / "checkpoints" / "default", tiny_env / "mine")
    at = app()
    assert at.expander[0].label == "First steps" and not at.expander[0].proto.expanded
    assert at.button(key="home_quick_pair").label.startswith("Train the LeNet-5 pair")  # one click away


def test_without_the_built_in_model_its_mistakes_step_says_why(tiny_env, app):
    at = app()
    link = next(e.proto for e in at.get("page_link") if e.proto.page.endswith("mispredictions"))
    assert link.disabled and "The built-in model is not in this runs folder" in texts(at.caption)


def test_the_one_click_pair_queues_lenet5_twice_and_opens_its_live_view(tiny_env, app):
    held = hold_queue(tiny_env)
    try:
        at = app()
        at.button(key="home_quick_pair").click().run()
        assert not at.exception, [e.value for e in at.exception]
        queued = jobs.queue()
        assert len(queued) == 2
        cfgs = [runs.get_run(n).config() for n in queued]
        assert [c["model"] for c in cfgs] == ["lenet5", "lenet5"] and cfgs[0]["pair"] == cfgs[1]["pair"]
        assert [c["augment"] for c in cfgs] == ["standard", "none"]
        assert all(c["preset"] == "lenet5-quick" for c in cfgs)
        # the Train page, on the pair's first run, its live view scrolled into view
        assert at.session_state["run"] == queued[0]
        assert f"Live: {queued[0]}" in [s.value for s in at.subheader]
        assert "Pair: 0 of 2 done" in texts(at.markdown)
        assert any(k.startswith("live_scroll_") for k in bidi(at))
        at.run()  # scrolled once: a later rerun does not scroll again
        assert not any(k.startswith("live_scroll_") for k in bidi(at))
        at.switch_page("pages/home.py").run()
        at.button(key="home_quick_pair").click().run()  # a double click: the same pair, not a second one
        assert jobs.queue() == queued
    finally:
        for n in jobs.queue():
            jobs.stop(n)
        held.write_status(status="stopped", pid=None)


# ---------- Train: the form ----------

def test_field_messages_use_the_field_labels(tiny_env, app):
    at = app("pages/train.py")
    at.number_input(key="cfg_lr").set_value(0.0).run()
    assert "Learning rate must be above 0 and at most 10 (got 0.0)" in texts(at.error)
    # the CLI keeps its own names (its flags)
    assert train.validate(train.Config(lr=0.0))["lr"] == "lr must be above 0 and at most 10 (got 0.0)"


def test_the_preset_caption_names_the_fields_changed_from_it(tiny_env, app):
    at = app("pages/train.py")
    at.selectbox(key="cfg_preset").set_value("lenet5-sgd").run()
    assert train.PRESETS["lenet5-sgd"]["desc"] in texts(at.caption)
    at.number_input(key="cfg_epochs").set_value(2).run()
    said = texts(at.caption)
    assert "The lenet5-sgd preset, with changes: Epochs 2 (preset: 10)." in said
    assert train.PRESETS["lenet5-sgd"]["desc"] not in said  # no "10 epochs" beside a form that says 2


def test_a_refresh_keeps_the_form_as_the_user_left_it(tiny_env, app):
    at = app("pages/train.py")
    at.selectbox(key="cfg_preset").set_value("lenet5-sgd").run()
    at.number_input(key="cfg_epochs").set_value(2).run()
    at.selectbox(key="cfg_augment").set_value("light").run()
    url = at.query_params
    assert (url["preset"], url["epochs"], url["augment"]) == ("lenet5-sgd", "2", "light"), url
    assert "model" not in url  # the preset's own values stay out of the address
    # a refresh: a new session with the same address
    from streamlit.testing.v1 import AppTest

    fresh = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    for k, v in url.items():
        fresh.query_params[k] = v
    fresh.run()
    fresh.switch_page("pages/train.py").run()
    assert not fresh.exception
    assert fresh.selectbox(key="cfg_preset").value == "lenet5-sgd"
    assert (fresh.selectbox(key="cfg_model").value, fresh.number_input(key="cfg_epochs").value,
            fresh.selectbox(key="cfg_augment").value) == ("lenet5", 2, "light")


def test_an_address_the_form_cannot_take_is_said_and_the_rest_is_kept(tiny_env):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    at.query_params.update(preset="lenet5-sgd", epochs="2.5", lr="abc", model="nope", seed="7")
    at.run()
    at.switch_page("pages/train.py").run()
    said = texts(at.warning)
    assert "Epochs (epochs='2.5' in the address): 2.5 is not a whole number; it keeps 10" in said
    assert "Learning rate (lr='abc' in the address): 'abc' is not a number; it keeps 0.01" in said
    assert "Model (model='nope' in the address)" in said
    assert (at.number_input(key="cfg_epochs").value, at.number_input(key="cfg_seed").value) == (10, 7)


# ---------- Train: the live view follows a pair ----------

def test_the_live_view_follows_a_pair_and_offers_to_compare_it_at_its_end(tiny_env, fixture_runs, app):
    held = hold_queue(tiny_env)  # nothing the test marks queued is started
    for name in ("tiny-aug", "tiny-none"):
        shutil.copytree(fixture_runs / name, tiny_env / name)
    aug, plain = runs.get_run("tiny-aug"), runs.get_run("tiny-none")
    aug.write_status(status="running", pid=os.getpid(), heartbeat=time.time())
    plain.write_status(status="queued")
    try:
        at = app("pages/train.py", run="tiny-aug")
        assert "Pair: 0 of 2 done · now tiny-aug." in texts(at.markdown)
        aug.write_status(status="completed", pid=None)
        at.run()  # the rerun the numbers' poller makes when the run's state changes
        assert at.session_state["run"] == "tiny-none" and "Live: tiny-none" in [s.value for s in at.subheader]
        best = live.best_test_acc(aug.epoch_records())
        assert f"Pair: 1 of 2 done: tiny-aug completed (best test accuracy {best:.2%}) · now tiny-none." in \
            texts(at.markdown)
        assert not [b for b in at.button if b.label == "Compare these two"]
        plain.write_status(status="completed")
        at.run()
        assert "Pair: 2 of 2 done" in texts(at.markdown)
        at.button(key="pair_compare:tiny-aug,tiny-none").click().run()
        assert not at.exception
        assert at.title[0].value == "Compare runs" and at.query_params["runs"] == "tiny-aug,tiny-none"
    finally:
        held.write_status(status="stopped", pid=None)


def test_picking_a_finished_half_of_a_training_pair_does_not_jump_to_the_other(tiny_env, fixture_runs, app):
    """Only an end seen while watching moves the live view: a user who picks the finished half stays on it."""
    held = hold_queue(tiny_env)
    for name in ("tiny-aug", "tiny-none"):
        shutil.copytree(fixture_runs / name, tiny_env / name)
    runs.get_run("tiny-none").write_status(status="running", pid=os.getpid(), heartbeat=time.time())
    try:
        at = app("pages/train.py", run="tiny-aug")
        at.run()
        assert at.session_state["run"] == "tiny-aug"
        assert "Pair: 1 of 2 done" in texts(at.markdown)
    finally:
        runs.get_run("tiny-none").write_status(status="stopped", pid=None)
        held.write_status(status="stopped", pid=None)


def test_the_chart_redraws_when_an_epoch_ends(tiny_env, app):
    """While a run trains, the curves' fragment mounts a poller watching its epochs done, so an epoch's point is
    drawn at the next poll (the browser side: tests/e2e/test_first_ten_minutes_e2e.py)."""
    run = train.create_run(train.Config(name="going", epochs=4), tiny_env)
    epoch = {"train_loss": 0.3, "train_acc": 0.9, "test_loss": 0.2, "test_acc": 0.95, "images_per_s": 900.0}
    run.append_metrics([{"step": 5 * k, "train_loss": 1.0, "train_acc": 0.5} for k in (1, 2, 3)])
    run.append_metrics([{**epoch, "epoch": k, "step": 10 * k, "epoch_seconds": 0.5, "eval_seconds": 0.1}
                        for k in (1, 2)])
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time())
    try:
        at = app("pages/train.py", run="going")
        poll = next(json.loads(e.proto.json) for e in at.get("bidi_component") if e.key == "curves_poll")
        # epochs of a fraction of a second (tiny data): a redraw every FAST_EPOCH_S = 3 s at most
        assert (poll["run"], poll["seen"], poll["every_ms"]) == ("going", {"epochs_done": 2}, 3000)
        run.append_metrics([{**epoch, "epoch": 3, "step": 30, "epoch_seconds": 5.0, "eval_seconds": 0.5}])
        assert live.snapshot("going", seen=poll["seen"])["rerun"] is True  # its next poll redraws the chart
        at.run()
        poll = next(json.loads(e.proto.json) for e in at.get("bidi_component") if e.key == "curves_poll")
        assert (poll["seen"], poll["every_ms"]) == ({"epochs_done": 3}, 1000)  # an epoch of seconds: at its end
        spec = json.loads(at.get("plotly_chart")[0].proto.spec)
        assert max(max(t["x"]) for t in spec["data"] if t.get("legendgroup") == "test") == 3  # its point drawn
    finally:
        run.write_status(status="stopped", pid=None)


# ---------- the ETA ----------

def test_the_eta_says_estimating_until_the_rate_is_known(tmp_path):
    assert live.eta("running", None) == "estimating"
    assert live.eta("running", 125.4) == "2:05"
    assert live.eta("stopped", 125.4) == "–"
    run = train.create_run(train.Config(name="r", epochs=2), tmp_path)
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), global_step=3)
    assert dict((s[0], s[1]) for s in live.stats(run)[1])["ETA"] == "estimating"


def test_the_trainer_writes_no_eta_until_it_has_timed_its_rate(tiny_data, tmp_path, monkeypatch):
    etas = []
    write = runs.Run.write_status

    def watched(self, **fields):  # the real write, watched
        if fields.get("status") == "running" and "global_step" in fields:
            etas.append(fields.get("eta_s"))
        return write(self, **fields)

    monkeypatch.setattr(runs.Run, "write_status", watched)
    monkeypatch.setattr(train, "BEAT_S", 0.0)  # a status at every step
    monkeypatch.setattr(train, "RATE_WINDOW_S", 1e9)  # the rate is never timed
    train_tiny(tmp_path, tiny_data, name="slow", epochs=1, limit_train=150)  # 3 steps
    assert etas and all(e is None for e in etas)
    etas.clear()
    monkeypatch.setattr(train, "RATE_WINDOW_S", 0.0)  # timed at once
    train_tiny(tmp_path, tiny_data, name="fast", epochs=1, limit_train=150)
    assert etas and all(isinstance(e, float) for e in etas)


# ---------- the Runs page, Draw ----------

def test_the_runs_page_shows_one_epoch_in_its_numbers_and_its_table(tiny_env, fixture_runs, app):
    from test_pages_dashboard import live_stats

    run = train.create_run(train.Config(name="going", epochs=4), tiny_env)
    for rec in runs.Run(fixture_runs / "tiny-none").epoch_records():
        run.append_metrics([rec])
    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), total_steps=40)
    try:
        at = app(run="going")
        table = at.dataframe[0].value
        assert live_stats(at)["Epoch"] == "3 / 4"
        assert table.loc[table["name"] == "going", "epoch"].item() == "3 / 4"
    finally:
        run.write_status(status="stopped", pid=None)
    assert charts.runs_table([runs.get_run("going").summary()])["epoch"].item() == "2 / 4"  # stopped: the done ones


def test_one_saved_digit_is_one_digit(tiny_env, app):
    mydigits.add(np.zeros((28, 28), np.float32), 3)
    at = app("pages/draw.py")
    assert "1 digit: 0: 0, 1: 0, 2: 0, 3: 1" in texts(at.caption)
    assert "1 digits" not in texts(at.caption)

