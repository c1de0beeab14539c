"""AppTest of the Mispredictions, Confusion and Feature maps pages on the fixture runs (tiny data)."""
import base64
import json
import shutil

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from conftest import KNOWN_WRONG, ROOT, known_predictions_run
from mnistviz import analysis as A
from mnistviz import runs
from mnistviz.models import MODELS, build, summary

MP, CF, FM = "pages/mispredictions.py", "pages/confusion.py", "pages/feature_maps.py"


@pytest.fixture
def fixture_env(fixture_runs, tiny_data, monkeypatch):
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(fixture_runs))
    return fixture_runs


@pytest.fixture
def scratch_runs(fixture_runs, tiny_data, tmp_path, monkeypatch):
    """A writable runs folder with a copy of tiny-none, for breaking things."""
    root = tmp_path / "runs"
    shutil.copytree(fixture_runs / "tiny-none", root / "tiny-none")
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(root))
    return root


def open_page(page, run="tiny-none", **params) -> AppTest:
    at = AppTest.from_file(str(ROOT / "shell.py"), default_timeout=60)
    at.query_params["run"] = run
    at.run()  # the shell picks the run (sidebar) before switching pages
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements):
    return [e.value for e in elements]


def stored(fixture_runs, epoch=None, name="tiny-none"):
    run = runs.Run(fixture_runs / name)
    labels, probs = A.run_predictions(run, epoch)
    return run, labels, probs, probs.argmax(1)


def decode(v):
    """Plotly 6 stores numpy arrays in figure JSON as {dtype, bdata (base64), shape}; lists stay lists."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return a.reshape([int(d) for d in v["shape"].split(",")]) if "shape" in v else a
    return np.array(v)


def chart_data(at, k, trace=0, field="y") -> np.ndarray:
    """A field of one trace of the k-th plotly chart on the page, as a numpy array."""
    return decode(json.loads(at.get("plotly_chart")[k].proto.spec)["data"][trace][field])


def chart_layout(at, k) -> dict:
    return json.loads(at.get("plotly_chart")[k].proto.spec)["layout"]


def chart_config(at, k) -> dict:
    return json.loads(at.get("plotly_chart")[k].proto.config)


def filter_names(at):
    """Conv layers whose filters the Feature maps page shows ('**conv1**: 8 filters of ...')."""
    return [m.value.split("**")[1] for m in at.markdown if " filters of " in m.value]


def map_names(at):
    """Stages whose feature maps the page shows ('**act1** · ReLU · 8×28×28'), in any order."""
    return {m.value.split("**")[1] for m in at.markdown if m.value.startswith("**") and " · " in m.value}


def open_tab(at, label) -> AppTest:
    """Switch the Feature maps page's tabs (only the open tab's content is computed)."""
    at.session_state["fm_tab"] = label
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def image_options(at):
    """Test-image indices offered by the 'Image' picker (the grid's images, in order)."""
    return [int(o.split(":")[0][1:]) for o in at.selectbox(key="mp_image").options[1:]]


# ---------- Mispredictions ----------
# On known_env: tiny-none with hand-made predictions (conftest.KNOWN_WRONG), so each expected number below is a hand
# count of known mistakes, not the output of analysis.wrong_per_batch or top_losses, which the page itself uses.
# Epoch 2 (the best, shown first): wrong images 7, 49, 60, 61, 130, 131, 132, 185; epoch 1: 0, 1, 45-48, 100, 150, 199.
# Some sit at a batch's edge (49, 0, 199), and at batch size 32 epoch 2's last batch has none.

@pytest.fixture
def known_env(fixture_runs, tiny_data, tmp_path, monkeypatch):
    root = known_predictions_run(fixture_runs, tmp_path / "runs")
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(root))
    return root


def test_the_known_predictions_are_what_the_tests_below_assume(known_env):
    for epoch, wrong in KNOWN_WRONG.items():
        _, labels, _, preds = stored(known_env, epoch)
        assert np.flatnonzero(labels != preds).tolist() == wrong
    assert runs.Run(known_env / "tiny-none").best_epoch() == 2


def test_mispredictions_opens_on_the_batch_with_most_wrong_showing_them(known_env):
    run = runs.Run(known_env / "tiny-none")
    at = open_page(MP)
    assert not at.error and not at.warning
    bs = run.config()["batch_size"]
    assert bs == 50 and at.number_input(key="mp_bs_tiny-none").value == 50
    assert at.metric[0].value == "8 of 200"
    assert chart_data(at, 0).tolist() == [2, 2, 3, 1]  # batches 0-49: 7, 49; 50-99: 60, 61; 100-149: 130-132; 185
    # it opens where the mistakes are (it opened on batch 0 with Show: all, "2 wrong of 50")
    assert texts(at.subheader) == ["Batch 2"] and at.radio(key="mp_show").value == "wrong"
    assert at.caption[0].value.startswith("Test images 100–149: 3 wrong of 50")
    assert image_options(at) == [130, 131, 132]                          # the grid shows the batch's wrong ones
    assert not at.dataframe                                              # the table only on request
    at.toggle(key="mp_as_table").set_value(True).run()
    assert at.dataframe[0].value["index"].tolist() == [130, 131, 132]
    at.radio(key="mp_show").set_value("all").run()
    assert image_options(at) == list(range(100, 150))
    # another batch size opens on its own worst batch: at 20, batch 6 (130-132)
    at.number_input(key="mp_bs_tiny-none").set_value(20).run()
    assert texts(at.subheader) == ["Batch 6"]


def test_mispredictions_most_wrong_button(known_env):
    # from batch 0; at the run's batch size (50) batch 2 (130, 131, 132) has the most wrong
    at = open_page(MP)
    at.number_input(key="mp_batch_tiny-none_50").set_value(0).run()
    assert texts(at.subheader) == ["Batch 0"]
    next(b for b in at.button if b.label == "Batch with the most wrong").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert texts(at.subheader) == ["Batch 2"]
    assert at.number_input(key="mp_batch_tiny-none_50").value == 2
    # another batch size: at 20, batch 6 (130-132) beats batch 3 (60, 61) and batches 0, 2 and 9 (7; 49; 185)
    at.number_input(key="mp_bs_tiny-none").set_value(20).run()
    at.number_input(key="mp_batch_tiny-none_20").set_value(0).run()
    next(b for b in at.button if b.label == "Batch with the most wrong").click().run()
    assert texts(at.subheader) == ["Batch 6"]
    assert at.number_input(key="mp_batch_tiny-none_20").value == 6


def test_mispredictions_batch_size_filters_and_epoch(known_env):
    _, labels, probs, preds = stored(known_env)
    at = open_page(MP)
    at.number_input(key="mp_bs_tiny-none").set_value(32).run()
    # 200 images: 6 full batches + 8; 7 in batch 0, 49, 60 and 61 in 1, 130-132 in 4, 185 in 5, none in 6 (192-199)
    assert chart_data(at, 0).tolist() == [1, 3, 0, 0, 3, 1, 0]
    at.number_input(key="mp_batch_tiny-none_32").set_value(6).run()
    assert at.caption[0].value.startswith("Test images 192–199: 0 wrong of 8")
    at.number_input(key="mp_batch_tiny-none_32").set_value(5).run()
    assert at.caption[0].value.startswith("Test images 160–191: 1 wrong of 32")
    at.radio(key="mp_show").set_value("wrong").run()
    assert image_options(at) == [185]
    at.radio(key="mp_show").set_value("correct").run()
    assert image_options(at) == [i for i in range(160, 192) if i != 185]
    at.radio(key="mp_show").set_value("all").run()
    digit = int(labels[160])
    at.multiselect(key="mp_true").set_value([digit]).run()
    assert image_options(at) == [i for i in range(160, 192) if labels[i] == digit]
    # an earlier epoch: different predictions, different counts
    at.multiselect(key="mp_true").set_value([]).run()
    at.select_slider(key="mp_epoch_tiny-none").set_value(1).run()
    assert at.metric[0].value == "9 of 200"
    assert chart_data(at, 0).tolist() == [2, 4, 0, 1, 1, 0, 1]  # 0, 1; 45-48; 100; 150; 199


def test_mispredictions_top_losses_and_image_detail(known_env):
    _, labels, probs, preds = stored(known_env)
    at = open_page(MP)
    at.radio(key="mp_view").set_value("Top losses").run()
    assert image_options(at) == KNOWN_WRONG[2]                            # the wrong ones (the page opens so)
    at.radio(key="mp_show").set_value("all").run()
    # known losses: the wrong images first, in KNOWN_WRONG's order, then the correct ones from the last to the first
    wrong = KNOWN_WRONG[2]
    correct_by_loss = [i for i in range(199, -1, -1) if i not in wrong]
    assert image_options(at) == wrong + correct_by_loss[:32 - len(wrong)]
    at.radio(key="mp_show").set_value("correct").run()
    assert image_options(at) == correct_by_loss[:32]
    at.radio(key="mp_show").set_value("all").run()
    i = 7                                                                 # the worst image
    at.selectbox(key="mp_image").select_index(1).run()
    assert f"**true {labels[i]}, predicted {(labels[i] + 1 + i % 3) % 10}**" in at.markdown[-1].value
    assert chart_data(at, 2) == pytest.approx(probs[i], abs=1e-6)  # ten probabilities
    link = at.get("page_link")[0].proto
    assert link.page == "feature-maps" and link.query_string == f"run=tiny-none&index={i}"


def test_mispredictions_keeps_its_state_across_pages(known_env):
    # Streamlit forgets a widget's value when a rerun does not draw it, so leaving the page and coming back
    # (the sidebar, or Back from a "Feature maps of image N" link) used to reset everything to batch 0, "all"
    _, l1, p1, pr1 = stored(known_env, epoch=1)
    b, i = 2, 45                                                  # epoch 1 at batch size 20: 45-48 in batch 2
    at = open_page(MP)
    at.select_slider(key="mp_epoch_tiny-none").set_value(1).run()
    at.number_input(key="mp_bs_tiny-none").set_value(20).run()
    at.number_input(key="mp_batch_tiny-none_20").set_value(b).run()
    at.radio(key="mp_show").set_value("wrong").run()
    at.multiselect(key="mp_pred").set_value([int(pr1[i])]).run()
    at.toggle(key="mp_as_table").set_value(True).run()
    at.selectbox(key="mp_image").set_value(i).run()
    before = image_options(at)
    assert i in before and texts(at.subheader) == [f"Batch {b}"]
    for away in (CF, FM):  # another page, then back
        at.switch_page(away).run()
        at.switch_page(MP).run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.select_slider(key="mp_epoch_tiny-none").value == 1
        assert at.number_input(key="mp_bs_tiny-none").value == 20
        assert texts(at.subheader) == [f"Batch {b}"] and at.number_input(key="mp_batch_tiny-none_20").value == b
        assert at.radio(key="mp_show").value == "wrong" and at.multiselect(key="mp_pred").value == [int(pr1[i])]
        assert at.toggle(key="mp_as_table").value and image_options(at) == before
        assert at.selectbox(key="mp_image").value == i
        assert f"**true {l1[i]}, predicted {pr1[i]}**" in at.markdown[-1].value
    at.radio(key="mp_view").set_value("Top losses").run()
    at.slider(key="mp_top_k").set_value(16).run()
    at.multiselect(key="mp_true").set_value([int(l1[i])]).run()
    at.switch_page(CF).run()
    at.switch_page(MP).run()
    assert at.radio(key="mp_view").value == "Top losses" and at.slider(key="mp_top_k").value == 16
    assert at.multiselect(key="mp_true").value == [int(l1[i])]


def test_mispredictions_grid_fits_a_narrow_page_and_marks_the_picked_image(fixture_env):
    # at 900 px the main area is 440 px wide; a wider grid figure was squeezed into ~30 px tiles with
    # overlapping titles and blank space under it (a plotly chart keeps its height when made narrower)
    at = open_page(MP)
    at.radio(key="mp_show").set_value("all").run()
    assert len(image_options(at)) == 50 and chart_layout(at, 1)["width"] <= 440
    assert not chart_layout(at, 1).get("shapes")
    at.radio(key="mp_view").set_value("Top losses").run()
    at.slider(key="mp_top_k").set_value(200).run()
    opts = image_options(at)
    assert len(opts) == 200 and chart_layout(at, 1)["width"] <= 440        # the big grid too (10 columns)
    at.selectbox(key="mp_image").set_value(opts[13]).run()                 # the 14th tile: row 1, column 3
    (shape,) = chart_layout(at, 1)["shapes"]                               # the picked image, outlined
    assert (shape["x0"], shape["x1"]) == (3 * 32 - 0.5, 4 * 32 - 0.5) and shape["y0"] == 42 + 10 - 0.5


def test_mispredictions_without_predictions_or_labels(scratch_runs):
    (scratch_runs / "tiny-none" / "test_labels.npy").unlink()
    at = open_page(MP)
    assert any("older format" in w for w in texts(at.warning)) and not at.get("plotly_chart")
    for p in (scratch_runs / "tiny-none" / "preds").iterdir():
        p.unlink()
    at = open_page(MP)
    assert any("no stored test predictions" in w for w in texts(at.warning)) and not at.get("plotly_chart")


def test_mispredictions_without_mnist_keeps_the_numbers(known_env, tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTVIZ_DATA", str(tmp_path / "no-mnist"))
    at = open_page(MP)
    assert any("MNISTVIZ_DATA" in w and "Until then the counts below work" in w for w in texts(at.warning))
    assert at.metric[0].value == "8 of 200"
    assert len(at.get("plotly_chart")) == 1                               # the bars, no image grid
    assert len(at.dataframe) == 1 and at.dataframe[0].value["index"].tolist() == [130, 131, 132]  # as a table


# ---------- Confusion ----------

def test_confusion_page_numbers(scratch_runs):
    # the fixture's test set has 20 images of every digit; uneven stored labels (a copy of the run) make a
    # per-digit count that is constant or belongs to another digit show
    path = scratch_runs / "tiny-none" / "test_labels.npy"
    uneven = np.load(path)
    uneven[:60] = np.arange(60) // 20  # the first 60 images relabelled 0, 1, 2 (20 each)
    np.save(path, uneven)
    _, labels, probs, preds = stored(scratch_runs)
    assert len(set(np.bincount(labels, minlength=10).tolist())) > 1
    at = open_page(CF)
    assert not at.error and not at.warning
    cm = A.confusion_matrix(labels, preds)
    rate = A.confusion_matrix(labels, preds, normalize=True)
    # the colour is the row-normalized rate in counts mode too (it was the count: a digit with fewer test images
    # got a paler diagonal cell and looked worst); the counts are the cells' text, hover gives both
    off, diag = chart_data(at, 0, 0, "z"), chart_data(at, 0, 1, "z")
    assert off == pytest.approx(rate * (1 - np.eye(10))) and np.diag(diag) == pytest.approx(np.diag(rate))
    shown = np.where(np.eye(10, dtype=bool), chart_data(at, 0, 1, "text"), chart_data(at, 0, 0, "text"))
    assert shown.tolist() == [[str(v) if v else "" for v in row] for row in cm]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert all("share of the row" in t["colorbar"]["title"]["text"] for t in spec["data"][:2])
    hover = spec["data"][2]["hovertext"]                        # both numbers, one per cell, row by row
    n0 = cm[0, 0]
    assert hover[0] == f"true 0, predicted 0: {n0} image{'s' if n0 != 1 else ''} ({rate[0, 0]:.1%} of the 0s)"
    pairs, per_digit = at.dataframe[0].value, at.dataframe[1].value
    assert pairs.values.tolist() == A.most_confused(labels, preds).values.tolist()
    assert per_digit["count"].tolist() == np.bincount(labels, minlength=10).tolist()
    assert at.metric[0].value == f"{(labels == preds).mean():.2%}"


def test_confusion_normalized_epoch_and_cell(fixture_env):
    _, labels, probs, preds = stored(fixture_env)
    at = open_page(CF)
    at.toggle(key="cf_norm").set_value(True).run()
    z = chart_data(at, 0, 0, "z")
    norm = A.confusion_matrix(labels, preds, normalize=True)
    assert z == pytest.approx(norm * (1 - np.eye(10)))
    _, l1, _, pr1 = stored(fixture_env, epoch=1)
    at.select_slider(key="cf_epoch_tiny-none").set_value(1).run()
    assert at.metric[0].value == f"{(l1 == pr1).mean():.2%}"
    # a clicked cell (the heatmap's selection callback stores it here) lists its images
    t, p, n = A.most_confused(l1, pr1, k=1).iloc[0]
    at.session_state["cf_cell"] = (int(t), int(p))
    at.run()
    assert texts(at.subheader)[0] == f"True {t}, predicted {p}: {n} image{'s' if n != 1 else ''}"
    shown = sorted(chart_data(at, 1, 2, "customdata").tolist())
    assert shown == A.cell_indices(l1, pr1, t, p).tolist()


def tree_path(node, target, path=()):
    """Indices from `node` down to the element `target` in the AppTest tree (None when it is not there)."""
    if node is target:
        return path
    for k, child in sorted((getattr(node, "children", None) or {}).items()):
        found = tree_path(child, target, path + (k,))
        if found is not None:
            return found
    return None


def test_confusion_a_clicked_cell_is_outlined_and_its_images_sit_beside_the_matrix(fixture_env):
    _, labels, probs, preds = stored(fixture_env)
    t, p, n = (int(v) for v in A.most_confused(labels, preds, k=1).iloc[0])
    at = open_page(CF)
    assert not chart_layout(at, 0).get("shapes")                # nothing picked: no outline, no cell images
    at.session_state["cf_cell"] = (t, p)                        # what a click on the heatmap stores
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    # the cell is outlined on the heatmap
    (shape,) = chart_layout(at, 0)["shapes"]
    assert shape["type"] == "rect" and shape["layer"] == "above" and shape["line"]["width"] >= 2
    assert (shape["x0"], shape["x1"], shape["y0"], shape["y1"]) == (p - 0.5, p + 0.5, t - 0.5, t + 0.5)
    # its images: in the matrix's row of blocks, in the block beside it, above the tables (not under them all)
    heat, grid = at.get("plotly_chart")[0], at.get("plotly_chart")[1]
    assert "cf_heatmap" in heat.proto.id and f"cf_grid_{t}_{p}" in grid.proto.id
    hp, gp = tree_path(at.main, heat), tree_path(at.main, grid)
    row = hp[:-2]                                               # heatmap: row > its block > the chart
    assert gp[:len(row)] == row and gp[len(row)] != hp[len(row)], (hp, gp)
    head = next(h for h in at.subheader if h.value.startswith(f"True {t}, predicted {p}"))
    most = next(h for h in at.subheader if h.value == "Most confused")
    assert tree_path(at.main, head) < tree_path(at.main, most) and gp < tree_path(at.main, most)
    assert sorted(chart_data(at, 1, 2, "customdata").tolist()) == A.cell_indices(labels, preds, t, p).tolist()
    # Close: the outline and the images go
    at.button(key="cf_cell_close").click().run()
    assert not chart_layout(at, 0).get("shapes") and len(at.get("plotly_chart")) == 1
    assert texts(at.subheader) == ["Most confused", "Per digit"]


def test_confusion_keeps_its_state_across_pages(fixture_env):
    _, l1, p1, pr1 = stored(fixture_env, epoch=1)
    t, p, n = A.most_confused(l1, pr1, k=1).iloc[0]
    at = open_page(CF)
    at.select_slider(key="cf_epoch_tiny-none").set_value(1).run()
    at.toggle(key="cf_norm").set_value(True).run()
    at.session_state["cf_cell"] = (int(t), int(p))   # what a click on the heatmap stores
    at.run()
    at.switch_page(MP).run()
    at.switch_page(CF).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.select_slider(key="cf_epoch_tiny-none").value == 1 and at.toggle(key="cf_norm").value
    assert at.metric[0].value == f"{(l1 == pr1).mean():.2%}"
    assert texts(at.subheader)[0].startswith(f"True {t}, predicted {p}: ")


def test_confusion_heatmap_stays_square_in_a_narrow_column(fixture_env):
    # a fixed 520 px figure in a narrower column: with scaleanchor and no constrain the y axis grew to fill the
    # height (-9 to 17 at 900 px) and the matrix shrank; the axes must keep their ranges, the plot area shrinks
    at = open_page(CF)
    layout = chart_layout(at, 0)
    assert "width" not in layout                               # sized by its block, not a fixed width
    assert layout["xaxis"]["range"] == [-0.5, 9.5] and layout["yaxis"]["range"] == [9.5, -0.5]
    assert layout["xaxis"]["constrain"] == layout["yaxis"]["constrain"] == "domain"
    assert layout["yaxis"]["scaleanchor"] == "x"                # square cells


def test_confusion_picked_image_up_close(fixture_env):
    _, labels, probs, preds = stored(fixture_env)
    t, p, n = (int(v) for v in A.most_confused(labels, preds, k=1).iloc[0])
    at = open_page(CF)
    at.session_state["cf_cell"] = (t, p)                        # what a click on the heatmap stores
    at.run()
    assert chart_config(at, 1).get("displayModeBar") is False   # no toolbar over the first row of titles
    assert not at.image and not at.get("page_link") and not chart_layout(at, 1).get("shapes")
    i = int(chart_data(at, 1, -1, "customdata")[n - 1])         # the cell's last image
    at.session_state["cf_image"] = i                            # what a click on one of its tiles stores
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.image[0].captions == [f"test image {i}"]          # enlarged,
    assert at.markdown[-1].value.startswith(f"**true {t}, predicted {p}** (wrong, {probs[i, p]:.1%} confident")
    assert chart_data(at, 2) == pytest.approx(probs[i], abs=1e-6)   # its ten probabilities,
    link = at.get("page_link")[0].proto                         # and the way to its feature maps
    assert link.page == "feature-maps" and link.query_string == f"run=tiny-none&index={i}"
    assert len(chart_layout(at, 1)["shapes"]) == 1              # outlined in the grid
    at.switch_page(MP).run()                                    # kept while another page is open
    at.switch_page(CF).run()
    assert at.image[0].captions == [f"test image {i}"]
    t2, p2 = (int(v) for v in A.most_confused(labels, preds, k=2).iloc[1][:2])
    at.session_state["cf_cell"] = (t2, p2)                      # another cell: not one of its images
    at.run()
    assert not at.image and not at.get("page_link")


def test_confusion_without_predictions(scratch_runs):
    shutil.rmtree(scratch_runs / "tiny-none" / "preds")
    at = open_page(CF)
    assert any("no stored test predictions" in w for w in texts(at.warning)) and not at.get("plotly_chart")


# ---------- Feature maps ----------

def test_feature_maps_from_url_index(fixture_env, tiny_data):
    from mnistviz.data import load_mnist

    test_labels = load_mnist(tiny_data).test_labels
    at = open_page(FM, index="5")
    assert not at.warning and not at.error
    assert at.number_input(key="fm_index").value == 5
    assert at.markdown[0].value.startswith(f"**True {int(test_labels[5])};")
    # first render: the Feature maps tab only, no chart, nothing computed for the other tabs
    assert map_names(at) == {f"{s}{k}" for s in ("conv", "bn", "act", "pool") for k in (1, 2, 3)}  # its maps
    assert not filter_names(at) and not at.get("plotly_chart")
    at.toggle(key="fm_scale_each").set_value(False).run()
    assert open_tab(at, "Filters") and filter_names(at) == ["conv1", "conv2", "conv3"]  # the fast model's
    assert not map_names(at)
    assert chart_data(open_tab(at, "Class scores"), 0).shape == (10,)
    open_tab(at, "Attribution").radio(key="fm_method").set_value("integrated_gradients").run()
    assert not at.exception and chart_data(at, 0, 0, "z").shape == (28, 28)
    # widgets in a closed tab keep their values
    assert open_tab(at, "Feature maps").toggle(key="fm_scale_each").value is False
    assert open_tab(at, "Attribution").radio(key="fm_method").value == "integrated_gradients"


@pytest.mark.parametrize("raw,shown,msg", [("5000", 199, "out of range"), ("-3", 0, "out of range"),
                                           ("seven", 0, "not a whole number")])
def test_feature_maps_bad_index_is_clamped(fixture_env, raw, shown, msg):
    at = open_page(FM, index=raw)
    assert any(msg in w and f"showing image {shown}" in w for w in texts(at.warning))
    assert at.number_input(key="fm_index").value == shown
    assert at.query_params["index"] == str(shown)


def test_feature_maps_random_button_syncs_url(fixture_env):
    at = open_page(FM)
    at.button[0].click().run()
    i = at.number_input(key="fm_index").value
    assert 0 <= i < 200 and at.query_params["index"] == str(i)


def untrained_run(root, name, model):
    """A run folder with a freshly initialised checkpoint and no predictions."""
    d = root / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model": model, "batch_size": 32, "created": 1.0}))
    (d / "status.json").write_text(json.dumps({"status": "completed"}))
    torch.manual_seed(0)
    runs.save_checkpoint(d / "best.pt", {"model": build(model).state_dict()})


def test_feature_maps_every_architecture(tiny_data, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    for m in MODELS:
        untrained_run(root, f"u-{m}", m)
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(root))
    for m in MODELS:
        at = open_page(FM, run=f"u-{m}", index="3")
        assert not at.error
        assert "no stored test predictions" in at.info[0].value              # said, and the page goes on
        maps = {r["layer"] for r in summary(build(m)) if r["output shape"].count("x") == 2  # C x H x W
                and r["type"] in ("Conv2d", "BatchNorm2d", "ReLU", "Tanh", "MaxPool2d", "AvgPool2d")}
        assert map_names(at) == maps, m
        convs = [n for n, mod in build(m).named_children() if isinstance(mod, torch.nn.Conv2d)]
        assert filter_names(open_tab(at, "Filters")) == convs, m
        assert chart_data(open_tab(at, "Class scores"), 0).shape == (10,)
        assert chart_data(open_tab(at, "Attribution"), 0, 0, "z").shape == (28, 28)


def test_feature_maps_broken_checkpoint_and_no_mnist(scratch_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("MNISTVIZ_DATA", str(tmp_path / "no-mnist"))
    at = open_page(FM)
    assert any("MNISTVIZ_DATA" in w and "only the filters are shown" in w for w in texts(at.warning))
    assert filter_names(at) == ["conv1", "conv2", "conv3"] and not map_names(at)
    (scratch_runs / "tiny-none" / "best.pt").write_bytes(b"not a checkpoint")
    at = open_page(FM)
    assert any("cannot be loaded" in w for w in texts(at.warning)) and not filter_names(at)


def test_feature_maps_names_the_checkpoint_it_uses(scratch_runs):
    run = runs.Run(scratch_runs / "tiny-none")
    # killed after best.pt and before the epoch's record: best.pt is from an epoch the metrics do not have, so
    # the epoch must come from the checkpoint itself
    e = runs.load_checkpoint(run.best_ckpt)["epoch"]
    step = next(r["step"] for r in run.epoch_records() if r["epoch"] == e)
    run.truncate_metrics(step - 1)
    assert run.best_epoch() != e
    at = open_page(FM)
    assert f"weights from best.pt (epoch {e}, the best test accuracy)" in at.caption[0].value
    run.best_ckpt.unlink()  # load_model falls back to last.pt: the page must say so, not "the best checkpoint"
    at = open_page(FM)
    cap = at.caption[0].value
    assert "weights from last.pt (after epoch 2; the run has no best.pt)" in cap and "best checkpoint" not in cap
    assert map_names(at)  # and the page still works on those weights


def test_corrupt_mnist_is_named_in_sidebar_and_page(scratch_runs, tmp_path, monkeypatch):
    from conftest import write_idx
    raw = tmp_path / "bad" / "MNIST" / "raw"
    write_idx(raw, n_train=300, n_test=100)
    b = (raw / "t10k-images-idx3-ubyte").read_bytes()
    (raw / "t10k-images-idx3-ubyte").write_bytes(b[:len(b) // 2])
    monkeypatch.setenv("MNISTVIZ_DATA", str(tmp_path / "bad"))
    at = open_page(FM)
    side = texts(at.sidebar.warning)
    assert any("could not be read (truncated or corrupt?)" in w and "t10k-images-idx3-ubyte" in w for w in side), side
    assert not any(c.startswith("MNIST: ") for c in texts(at.sidebar.caption))  # no longer "found"
    page = [w for w in texts(at.warning) if w not in side]
    assert any("could not be read" in w and "only the filters are shown" in w for w in page), page
    assert not any("not found" in w for w in page + side)
    assert filter_names(at) == ["conv1", "conv2", "conv3"]
