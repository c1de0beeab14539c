"""Prediction history (mnistviz/history.py) on constructed predictions, and its parts of the Mispredictions and
Confusion pages (AppTest on conftest's known_predictions_run: tiny-none with hand-made predictions)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import KNOWN_WRONG, known_predictions_run
from mnistviz import analysis, history, runs
from test_pages_inspect import CF, MP, decode, open_page

# image -> right (1) or wrong (0) at each of 5 epochs
PATTERN = {
    0: [1, 1, 1, 1, 1],  # always right
    1: [0, 0, 0, 0, 1],  # learned at the last epoch
    2: [0, 0, 0, 1, 1],  # learned at the fourth
    3: [1, 0, 1, 1, 1],  # forgotten once, learned again
    4: [1, 1, 0, 1, 0],  # forgotten twice, wrong at the end
    5: [0, 0, 0, 0, 0],  # never right
    6: [0, 1, 1, 1, 1],  # learned at the second: not late
}
EPOCHS = [1, 2, 3, 5, 8]  # stored epochs need not be consecutive


def constructed() -> history.History:
    """Labels i % 10; a wrong prediction is (label + 1 + epoch index) % 10, with probability 0.7."""
    n = len(PATTERN)
    labels = np.arange(n) % 10
    probs = np.full((len(EPOCHS), n, 10), 0.3 / 9, np.float32)
    for i, row in PATTERN.items():
        for e, right in enumerate(row):
            probs[e, i, :] = 0.3 / 9
            probs[e, i, labels[i] if right else (labels[i] + 1 + e) % 10] = 0.7
    return history.History(EPOCHS, labels, probs)


def test_first_right_right_from_and_forgetting_events():
    c = constructed().correct
    assert history.first_right(c).tolist() == [0, 4, 3, 0, 0, -1, 1]
    assert history.right_from(c).tolist() == [0, 4, 3, 2, -1, -1, 1]
    assert history.forgetting_events(c).tolist() == [0, 0, 0, 1, 2, 0, 0]


def test_learned_late_and_forgotten_lists():
    h = constructed()
    late = history.learned_late(h)  # 5 epochs: the last one counts as late
    assert late["index"].tolist() == [1]
    assert history.learned_late(h, last=2)[["index", "first_right"]].values.tolist() == [[1, 8], [2, 5]]
    assert history.learned_late(h, last=2)["predicted_before"].tolist() == [(1 + 1 + 3) % 10, (2 + 1 + 2) % 10]
    f = history.forgotten(h)
    # wrong at the end first, then the most often forgotten
    assert f[["index", "times", "right_at_end", "last_right"]].values.tolist() == [[4, 2, False, 5], [3, 1, True, 8]]
    assert f["predicted"].tolist() == [(4 + 1 + 4) % 10, 3]
    assert f["p_true"].tolist() == pytest.approx([0.3 / 9, 0.7])


def test_the_story_of_an_image_in_a_sentence():
    h = constructed()
    assert history.story(h, 0) == "First right at epoch 1 (the first stored)."
    assert history.story(h, 1) == "First right at epoch 8."
    assert history.story(h, 3) == "First right at epoch 1 (the first stored); forgotten at epoch 2, right again from epoch 3."
    assert history.story(h, 4) == ("First right at epoch 1 (the first stored); forgotten at epochs 3, 8, and wrong at "
                                   "the last (predicted 9).")
    assert history.story(h, 5) == "Never right: predicted 6, 7, 8, 9, 0 instead of 5."
    t = history.image_table(h, 4)
    assert t["epoch"].tolist() == EPOCHS and t["correct"].tolist() == [True, True, False, True, False]


def test_confusion_by_epoch_is_each_epochs_confusion():
    h = constructed()
    cms = history.confusion_by_epoch(h)
    assert cms.shape == (5, 10, 10)
    for e in range(5):
        np.testing.assert_array_equal(cms[e], analysis.confusion_matrix(h.labels, h.probs[e].argmax(1)))
    assert cms[0][1, 2] == 1 and cms[-1][1, 1] == 1  # image 1: 1 -> 2 at the first epoch, right at the last


def test_load_skips_an_unreadable_epoch_and_says_why(fixture_runs, tmp_path):
    root = known_predictions_run(fixture_runs, tmp_path / "runs")
    run = runs.Run(root / "tiny-none")
    h = history.load(run)
    assert h.epochs == [1, 2] and h.probs.shape == (2, 200, 10) and h.skipped == {}
    assert set(history.forgotten(h)["index"]) == set(KNOWN_WRONG[2]) - set(KNOWN_WRONG[1])
    assert set(history.learned_late(h)["index"]) == set(KNOWN_WRONG[1]) - set(KNOWN_WRONG[2])
    (run.preds_dir / "epoch_002.npy").write_bytes(b"not numpy")
    h = history.load(run)
    assert h.epochs == [1] and "cannot be read" in h.skipped[2]
    (run.preds_dir / "epoch_001.npy").write_bytes(b"not numpy")
    with pytest.raises(runs.RunError, match="no readable per-epoch predictions"):
        history.load(run)


# ---------- the pages ----------

@pytest.fixture
def known_env(fixture_runs, tiny_data, tmp_path, monkeypatch):
    root = known_predictions_run(fixture_runs, tmp_path / "runs")
    monkeypatch.setenv("MNISTVIZ_DATA", str(tiny_data))
    monkeypatch.setenv("MNISTVIZ_RUNS", str(root))
    return root


def chart(at, key: str) -> dict:
    return json.loads(next(c for c in at.get("plotly_chart") if key in c.proto.id).proto.spec)


def test_mispredictions_lists_history_and_play(known_env):
    labels = np.load(known_env / "tiny-none" / "test_labels.npy").astype(int)
    at = open_page(MP)
    assert not at.exception and not at.error
    late, forgot = (set(KNOWN_WRONG[1]) - set(KNOWN_WRONG[2]), set(KNOWN_WRONG[2]) - set(KNOWN_WRONG[1]))
    assert not any("first_right" in d.value.columns for d in at.dataframe)  # the list's table only on request
    grid = chart(at, "hist_grid_tiny-none_Learned late")
    assert set(decode(grid["data"][2]["customdata"]).tolist()) == late
    at.toggle(key="hist_table_tiny-none").set_value(True).run()
    table = next(d.value for d in at.dataframe if "first_right" in d.value.columns)
    assert set(table["index"]) == late and set(table["first_right"]) == {2}
    assert f"{len(late)} images." in " ".join(c.value for c in at.caption)
    at.radio(key="hist_list_tiny-none").set_value("Forgotten").run()
    table = next(d.value for d in at.dataframe if "times" in d.value.columns)
    assert set(table["index"]) == forgot and not table["right_at_end"].any()
    at.session_state["hist_pick_tiny-none"] = 7  # what a click on its tile stores
    at.run()
    assert "test image 7" in [c for i in at.image for c in i.captions]
    assert chart(at, "hist_pick_chart_tiny-none")

    # the close-up of image 7 (right at epoch 1, wrong at 2) has its history; it is in batch 0 (the page opens on
    # the batch with the most wrong)
    at.number_input(key="mp_batch_tiny-none_50").set_value(0).run()
    at.radio(key="mp_show").set_value("all").run()
    at.selectbox(key="mp_image").set_value(7).run()
    wrong_as = (labels[7] + 1 + 7 % 3) % 10
    caps = " ".join(c.value for c in at.caption)
    assert (f"First right at epoch 1 (the first stored); forgotten at epoch 2, and wrong at the last (predicted "
            f"{wrong_as}).") in caps
    spec = chart(at, "mp_history")
    true_line = next(d for d in spec["data"] if d["name"] == f"true {labels[7]}")
    assert decode(true_line["y"]).tolist() == pytest.approx([0.99 - 0.002 * 7, 0.01], abs=2e-3)

    # play: every stored epoch a frame, each tile framed red where that epoch got it wrong
    at.toggle(key="hist_play_mp").set_value(True).run()
    spec = chart(at, "hist_play_mp_tiny-none")
    assert [f["name"] for f in spec["frames"]] == ["1", "2"]
    batch = list(range(256))[:64]  # the page's first batch at the run's batch size (50): images 0-49
    shown = [int(i) for i in decode(spec["frames"][0]["data"][2]["customdata"])]
    assert shown == batch[:len(shown)]
    for f, e in zip(spec["frames"], (1, 2)):
        titles = f["data"][1]["text"]
        reds = [i for i, t in zip(shown, f["data"][1]["textfont"]["color"]) if t == "rgb(220,50,47)"]
        assert reds == [i for i in shown if i in KNOWN_WRONG[e]]
        assert titles[shown.index(7)].startswith(f"{labels[7]}→{labels[7] if e == 1 else wrong_as} ")


def test_confusion_plays_every_epochs_matrix(known_env):
    labels = np.load(known_env / "tiny-none" / "test_labels.npy").astype(int)
    at = open_page(CF)
    at.toggle(key="hist_play_cf").set_value(True).run()
    assert not at.exception
    spec = chart(at, "hist_play_cf_tiny-none")
    assert [f["name"] for f in spec["frames"]] == ["1", "2"]
    for f, e in zip(spec["frames"], (1, 2)):
        preds = np.where(np.isin(np.arange(len(labels)), KNOWN_WRONG[e]),
                         (labels + 1 + np.arange(len(labels)) % 3) % 10, labels)
        want = analysis.confusion_matrix(labels, preds)
        off = np.array(f["data"][0]["text"], dtype=object)
        on = np.array(f["data"][1]["text"], dtype=object)
        got = np.where(np.eye(10, dtype=bool), on, off)
        assert got.tolist() == np.where(want > 0, want.astype(str), "").tolist()
