"""The Compare page through streamlit.testing.v1.AppTest on the tiny fixture pair (and copies of it)."""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, train_tiny
from mnistviz import runs


def open_compare(monkeypatch, data_root, runs_root, runs_param: str | None = None) -> AppTest:
    monkeypatch.setenv("MNISTVIZ_DATA", str(data_root))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(runs_root))
    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    if runs_param is not None:
        at.query_params["runs"] = runs_param
    at.switch_page("pages/compare.py")
    return at.run()


def charts(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def trace_names(spec: dict) -> set:
    return {d.get("name") for d in spec["data"] if d.get("name")}


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


def test_fixture_pair_is_the_default_and_every_section_shows(monkeypatch, fixture_runs, tiny_data):
    at = open_compare(monkeypatch, tiny_data, fixture_runs)
    assert not at.exception and not at.error and not at.warning
    assert at.multiselect(key="compare_runs").value == ["tiny-aug", "tiny-none"]  # augmented first
    assert at.query_params["runs"] == "tiny-aug,tiny-none"
    heads = [h.value for h in at.subheader]
    assert heads == ["Curves per epoch", "Metrics", "Accuracy per digit", "A = tiny-aug vs B = tiny-none",
                     "Robustness to distortions"]
    specs = charts(at)
    curves = specs[0]
    assert trace_names(curves) == {"tiny-aug", "tiny-none"}
    # one colour per run, the same in every chart
    colour = {}
    for spec in specs:
        for d in spec["data"]:
            c = (d.get("line") or {}).get("color") or (d.get("marker") or {}).get("color")
            if d.get("name") in ("tiny-aug", "tiny-none") and isinstance(c, str):
                assert colour.setdefault(d["name"], c) == c
    assert len(set(colour.values())) == 2

    # the disagreement counts are those of the stored predictions
    y = np.load(fixture_runs / "tiny-aug" / "test_labels.npy").astype(int)
    pa, pb = (runs.Run(fixture_runs / n).probs().argmax(1) for n in ("tiny-aug", "tiny-none"))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["A right, B wrong"] == str(int(((pa == y) & (pb != y)).sum()))
    assert metrics["B right, A wrong"] == str(int(((pb == y) & (pa != y)).sum()))

    summary = at.dataframe[0].value
    assert list(summary.index) == ["tiny-aug", "tiny-none"] and set(summary.augment) == {"standard", "none"}
    diff = at.dataframe[1].value
    assert list(diff.index) == ["augment"]
    # robustness of the pair without a click (the verdict needs it): one curve per run in each panel, and a CSV
    assert [b.proto.label for b in at.get("download_button")] == ["Summary (CSV)", "Every epoch (CSV)",
                                                                  "Robustness (CSV)"]
    rob = specs[-1]
    assert trace_names(rob) == {"tiny-aug", "tiny-none"} and len(rob["data"]) == 2 * 3
    assert not at.button  # no other runs to add


def test_runs_from_the_url_in_order_and_unknown_names_warned(monkeypatch, fixture_runs, tiny_data):
    at = open_compare(monkeypatch, tiny_data, fixture_runs, "tiny-none,ghost,tiny-aug")
    assert not at.exception
    assert at.multiselect(key="compare_runs").value == ["tiny-none", "tiny-aug"]
    assert "ghost" in texts(at.warning)
    assert "A = tiny-none vs B = tiny-aug" in [h.value for h in at.subheader]
    # dropping to one run: guidance, no charts
    at.multiselect(key="compare_runs").set_value(["tiny-none"]).run()
    assert not at.exception and "at least two runs" in texts(at.info)
    assert at.query_params["runs"] == "tiny-none" and not at.get("plotly_chart")


def test_no_mnist_still_shows_the_numbers(monkeypatch, fixture_runs, tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    at = open_compare(monkeypatch, empty, fixture_runs)
    assert not at.exception and not at.error
    info = texts(at.info)
    assert "images cannot be shown" in info and "MNIST" in info and str(empty) in info
    assert {m.label for m in at.metric} >= {"A right, B wrong", "B right, A wrong"}
    # the disagreement rows are shown as a table instead of a gallery
    names = [c.proto.spec and json.loads(c.proto.spec)["data"][0]["type"] for c in at.get("plotly_chart")]
    assert "image" not in names
    assert any("test image" in df.value.columns for df in at.dataframe)
    # the verdict on clean images stands; the one on distorted digits says why there is none
    assert "The robustness check needs the test images" in texts(at.info)
    verdict = verdict_lines(at)
    assert "McNemar's exact test" in verdict[1] and "The robustness check needs the test images" in verdict[2]


def test_odd_runs_different_architecture_and_missing_predictions(monkeypatch, fixture_runs, tiny_data, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    shutil.copytree(fixture_runs / "tiny-none", root / "tiny-none")
    shutil.copytree(fixture_runs / "tiny-none", root / "no-preds")
    shutil.rmtree(root / "no-preds" / "preds")
    train_tiny(root, tiny_data, name="tiny-lenet", model="lenet5", epochs=1, seed=2)
    at = open_compare(monkeypatch, tiny_data, root, "tiny-lenet,no-preds,tiny-none")
    assert not at.exception and not at.error
    assert "Different architectures" in texts(at.caption)
    assert "no-preds" in texts(at.warning) and "left out of the per-digit" in texts(at.warning)
    assert "A = tiny-lenet vs B = tiny-none" in [h.value for h in at.subheader]
    assert trace_names(charts(at)[0]) == {"tiny-lenet", "no-preds", "tiny-none"}
    assert verdict_lines(at)[0] == "**Verdict: A = tiny-lenet vs B = tiny-none**"
    assert trace_names(charts(at)[-1]) == {"tiny-lenet", "tiny-none"}   # the pair's check, then the others on request
    at.button(key="compare_robust").click().run()
    assert not at.exception and not at.error
    assert trace_names(charts(at)[-1]) == {"tiny-lenet", "no-preds", "tiny-none"}


def test_fewer_than_two_runs_offers_to_launch_a_pair(monkeypatch, tiny_data, tmp_path):
    from mnistviz import jobs

    root = tmp_path / "runs"
    root.mkdir()
    # no MNIST: the button says why it cannot queue, and creates nothing
    at = open_compare(monkeypatch, tmp_path, root)
    assert not at.exception and "at least two runs" in texts(at.info)
    at.button(key="compare_launch_pair").click().run()
    assert "Could not queue the pair" in texts(at.error) and "MNIST" in texts(at.error)
    assert runs.list_runs(root) == ([], [])

    # with data: an augmented + normal pair of the default recipe is queued
    at = open_compare(monkeypatch, tiny_data, root)
    at.button(key="compare_launch_pair").click().run()
    made = []
    try:
        assert not at.exception and not at.error and "Queued" in texts(at.success)
        made = runs.list_runs(root)[0]
        assert len(made) == 2 and len({r["pair"] for r in made}) == 1 and made[0]["pair"]
        assert sorted(r["augment"] for r in made) == ["none", "standard"]
        assert all(r["model"] == "fast" for r in made)
    finally:  # the pair trains in the background: stop it, the second (still queued) first
        for r in sorted(made, key=lambda r: r["augment"] != "none"):
            try:
                jobs.stop(r["name"], root)
            except runs.RunError:
                pass  # already ended
        deadline = time.time() + 30
        while jobs.running(root) and time.time() < deadline:
            time.sleep(0.2)


# ---------- bad input on disk ----------

def _edit_config(run_dir, **fields):
    f = run_dir / "config.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), **fields}))


def test_misnamed_and_badly_typed_folders_are_left_out(monkeypatch, fixture_runs, tiny_data, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    for name in ("tiny-none", "tiny-aug"):
        shutil.copytree(fixture_runs / name, root / name)
    # a copy made in a file manager, the newest member of the pair: the default pair would pick it
    shutil.copytree(fixture_runs / "tiny-aug", root / "tiny-aug (copy)")
    _edit_config(root / "tiny-aug (copy)", created=time.time())
    shutil.copytree(fixture_runs / "tiny-none", root / "listed-model")
    _edit_config(root / "listed-model", model=["fast"], created=time.time())
    at = open_compare(monkeypatch, tiny_data, root)
    assert not at.exception and not at.error
    assert [o.split(" · ")[0] for o in at.multiselect(key="compare_runs").options] == ["tiny-aug", "tiny-none"]
    assert at.multiselect(key="compare_runs").value == ["tiny-aug", "tiny-none"]
    assert "A = tiny-aug vs B = tiny-none" in [h.value for h in at.subheader]
    at = open_compare(monkeypatch, tiny_data, root, "tiny-aug (copy),tiny-none,tiny-aug")
    assert not at.exception
    assert at.multiselect(key="compare_runs").value == ["tiny-none", "tiny-aug"]
    assert "No run named tiny-aug (copy)" in texts(at.warning)


def test_robustness_of_a_run_with_an_unknown_model_says_so(monkeypatch, fixture_runs, tiny_data, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    for name in ("tiny-none", "tiny-aug"):
        shutil.copytree(fixture_runs / name, root / name)
    _edit_config(root / "tiny-none", model="resnet-from-v9")  # a run made by another version
    at = open_compare(monkeypatch, tiny_data, root)
    assert not at.exception and "Different architectures" in texts(at.caption)
    failed = ("The robustness check failed: run tiny-none uses the model 'resnet-from-v9', which this version of "
              "mnistviz does not have")
    assert failed in texts(at.error) and verdict_lines(at)[2].startswith(failed)


def test_confusion_difference_is_coloured_by_better_for_a_and_keeps_its_size(monkeypatch, fixture_runs, tiny_data):
    from mnistviz import compare
    from test_pages_inspect import decode

    at = open_compare(monkeypatch, tiny_data, fixture_runs)
    assert not at.exception
    chart = next(c for c in at.get("plotly_chart") if "compare_confusion" in c.proto.id)
    spec = json.loads(chart.proto.spec)
    [heat] = [d for d in spec["data"] if d["type"] == "heatmap"]
    y = np.load(fixture_runs / "tiny-aug" / "test_labels.npy").astype(int)
    diff = compare.confusion_difference(y, *(runs.Run(fixture_runs / n).probs() for n in ("tiny-aug", "tiny-none")))
    assert diff.any()
    z = decode(heat["z"])
    off = ~np.eye(10, dtype=bool)
    # the colour says "better for A" everywhere: the diagonal as is, a mistake A makes less often is positive too
    np.testing.assert_array_equal(np.diag(z), np.diag(diff))
    np.testing.assert_array_equal(z[off], -diff[off])
    assert heat["zmin"] == -heat["zmax"] and heat["zmax"] >= np.abs(diff).max()
    assert heat["colorscale"][-1][1].lower() in ("rgb(5,48,97)", "#053061")  # high = blue = better for A
    # the cells show the real signed counts A minus B
    assert heat["text"] == [[f"{v:+d}" if v else "0" for v in row] for row in diff.tolist()]
    t, p = np.argwhere(off & (diff != 0))[0]
    hover = heat["customdata"][t][p]
    assert f"tiny-aug minus tiny-none: {diff[t, p]:+d}" in hover
    assert ("better for A" if diff[t, p] < 0 else "better for B") in hover
    bar = heat["colorbar"]
    assert "better for B" in bar["title"]["text"] and "better for A" in bar["title"]["text"]
    assert bar["ticktext"][0].startswith("B") and bar["ticktext"][-1].startswith("A")
    # a fixed, square-ish size, so a narrow window cannot squeeze it into a strip
    layout = spec["layout"]
    assert layout["width"] >= 380 and 0.9 <= layout["height"] / layout["width"] <= 1.4
    assert layout["yaxis"]["scaleanchor"] == "x" and bar["orientation"] == "h"
    caption = texts(at.caption)
    assert "better for A (tiny-aug)" in caption and "better for B (tiny-none)" in caption


# ---------- explaining the result ----------

def test_train_accuracy_caption_only_when_augmentation_differs(monkeypatch, fixture_runs, tiny_data, tmp_path):
    at = open_compare(monkeypatch, tiny_data, fixture_runs)
    assert not at.exception
    assert "augmented (harder) ones for tiny-aug, so its train curve sits lower" in texts(at.caption)
    root = tmp_path / "runs"
    root.mkdir()
    for name in ("tiny-none", "tiny-none-2"):
        shutil.copytree(fixture_runs / "tiny-none", root / name)
    at = open_compare(monkeypatch, tiny_data, root, "tiny-none,tiny-none-2")
    assert not at.exception and "Curves per epoch" in [h.value for h in at.subheader]
    assert "harder" not in texts(at.caption)


def flat(node) -> list:
    """The page's elements in the order they are drawn, containers opened."""
    kids = getattr(node, "children", None)
    if kids is None:
        return [node]
    return [e for k in sorted(kids) for e in flat(kids[k])]


def verdict_lines(at) -> list[str]:
    """The verdict box's markdown: its heading, the sentence on clean images, the one on distorted digits."""
    els = flat(at.main)
    assert els[0].type == "title" and els[0].value == "Compare runs"
    box = []
    for e in els[1:]:
        if e.type != "markdown":
            break
        box.append(e.value)
    return box


def test_the_verdict_comes_first_with_its_tests_and_their_numbers(monkeypatch, fixture_runs, tiny_data):
    from mnistviz import compare
    from pages._shared import md

    at = open_compare(monkeypatch, tiny_data, fixture_runs)
    assert not at.exception and not at.error
    els = flat(at.main)
    # the first thing under the title: the verdict, before the run picker, the curves and every table
    head, clean, distorted = verdict_lines(at)
    assert els[1].value == head == "**Verdict: A = tiny-aug vs B = tiny-none**"
    assert els.index(next(e for e in els if e.type == "multiselect")) > 3
    assert "McNemar's exact test" in clean and "sign test over images" in distorted
    assert "shifted, rotated and thickened digits" in distorted
    # its numbers are those of the stored predictions at the best epoch: McNemar on the discordant images
    y = np.load(fixture_runs / "tiny-aug" / "test_labels.npy").astype(int)
    pa, pb = (runs.Run(fixture_runs / n).probs() for n in ("tiny-aug", "tiny-none"))
    ok_a, ok_b = pa.argmax(1) == y, pb.argmax(1) == y
    n_a, n_b = int((ok_a & ~ok_b).sum()), int((ok_b & ~ok_a).sum())
    assert clean == md(compare.verdict("tiny-aug", "tiny-none", compare.mcnemar(y, pa, pb), "-")[0])
    if n_a != n_b:
        assert f"{max(n_a, n_b)} vs {min(n_a, n_b)} disagreements" in clean
    # ... and its accuracies are the best test accuracies of the Metrics table
    best = at.dataframe[0].value["best test acc"]
    if n_a != n_b:
        assert f"{max(best):.2%} vs {min(best):.2%}" in clean
    assert ok_a.mean() == pytest.approx(best["tiny-aug"]) and ok_b.mean() == pytest.approx(best["tiny-none"])
    # said once: no second verdict further down
    assert sum("McNemar" in m.value for m in at.markdown) == 1
    # the sentence on distorted digits is the sign test on the same robustness check the chart shows
    rob = charts(at)[-1]
    assert trace_names(rob) == {"tiny-aug", "tiny-none"}


def test_no_verdict_for_runs_scored_on_different_test_sets(monkeypatch, fixture_runs, tiny_data, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    shutil.copytree(fixture_runs / "tiny-none", root / "tiny-none")
    odd = shutil.copytree(fixture_runs / "tiny-aug", root / "odd")
    np.save(odd / "test_labels.npy", np.load(odd / "test_labels.npy")[:50])
    for f in (odd / "preds").glob("*.npy"):
        np.save(f, np.load(f)[:50])
    at = open_compare(monkeypatch, tiny_data, root, "tiny-none,odd")
    assert not at.exception and not at.error
    [line] = verdict_lines(at)
    assert line == ("**No verdict**: it needs two runs with stored test predictions. Run odd was tested on a "
                    "different test set (50 images) than tiny-none (200 images), so its predictions cannot be "
                    "compared.")


def test_csv_downloads_are_rounded(monkeypatch, fixture_runs, tiny_data):
    import re

    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    saved = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def capture(self, path_or_data, mimetype, kind, filename=None):
        if filename:
            saved[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", capture)
    at = open_compare(monkeypatch, tiny_data, fixture_runs)
    assert not at.exception
    assert {"compare-summary.csv", "compare-epochs.csv", "compare-robustness.csv"} <= set(saved)
    for name in ("compare-summary.csv", "compare-epochs.csv", "compare-robustness.csv"):
        text = saved[name].decode()
        assert not re.search(r"\d\.\d*[1-9]\d{6,}", text), name  # at most 6 significant digits after a point
    # the table on screen keeps its full numbers
    assert at.dataframe[0].value["final test loss"].map(lambda v: len(repr(v)) > 10).any()
