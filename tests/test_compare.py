"""mnistviz.compare: run selection, curves and tables, disagreements, robustness (hand-made fixtures + the tiny pair)."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mnistviz import compare, runs
from mnistviz.evaluate import evaluate


def onehot_probs(preds, conf=0.9):
    """N x 10 probabilities putting `conf` on each predicted class (rest spread evenly)."""
    preds = np.asarray(preds)
    conf = np.broadcast_to(np.asarray(conf, np.float32), preds.shape)
    p = np.repeat(((1 - conf) / 9)[:, None], 10, 1).astype(np.float32)
    p[np.arange(len(preds)), preds] = conf
    return p


# ---------- choosing runs ----------

def summ(name, created, pair=None, augment="none", status="completed", epochs_done=2):
    return dict(name=name, created=created, pair=pair, augment=augment, status=status, epochs_done=epochs_done)


def test_default_selection_prefers_newest_pair_augmented_first():
    s = [summ("newest", 9), summ("p2-none", 8, "p2"), summ("p2-aug", 7, "p2", "standard"),
         summ("p1-aug", 6, "p1", "light"), summ("p1-none", 5, "p1")]
    assert compare.default_selection(s) == ["p2-aug", "p2-none"]


def test_default_selection_falls_back_to_newest_completed_runs():
    s = [summ("running", 9, status="running"), summ("lonely", 8, "p9"), summ("b", 7), summ("a", 6),
         summ("queued", 5, status="queued", epochs_done=0)]
    assert compare.default_selection(s) == ["lonely", "b"]
    # a pair whose second run has no finished epoch is not the default
    s2 = [summ("x-aug", 9, "px", "standard", "running", 0), summ("x-none", 8, "px"), summ("c", 7)]
    assert compare.default_selection(s2) == ["x-none", "c"]
    assert compare.default_selection([summ("only", 1)]) == ["only"]
    assert compare.default_selection([]) == []


def test_parse_run_list_keeps_order_drops_repeats_and_reports_unknown():
    assert compare.parse_run_list("b, a,b,,zz", ["a", "b", "c"]) == (["b", "a"], ["zz"])
    assert compare.parse_run_list(None, ["a"]) == ([], [])


# ---------- curves and tables ----------

RECS = {
    "r1": [{"epoch": 1, "train_acc": 0.5, "train_loss": 1.0, "val_acc": 0.6, "val_loss": 0.9,
            "test_acc": 0.61, "test_loss": 0.8, "train_seconds": 2.0, "images_per_s": 100.0},
           {"epoch": 2, "train_acc": 0.7, "train_loss": 0.6, "val_acc": 0.8, "val_loss": 0.5,
            "test_acc": 0.79, "test_loss": 0.55, "train_seconds": 4.0, "images_per_s": 300.0}],
    "r2": [{"epoch": 1, "train_acc": 0.4, "train_loss": 1.2, "val_acc": None, "val_loss": None,
            "test_acc": 0.9, "test_loss": 0.3, "train_seconds": 1.5, "images_per_s": 50.0},
           {"epoch": 2, "train_acc": 0.6, "train_loss": 0.9, "val_acc": None, "val_loss": None,
            "test_acc": 0.85, "test_loss": 0.4, "train_seconds": 3.0, "images_per_s": 70.0}],
}


def test_epoch_curves_is_tidy_and_skips_missing_values():
    df = compare.epoch_curves(RECS)
    assert list(df.columns) == ["run", "epoch", "split", "metric", "value"]
    assert len(df) == 2 * 6 + 2 * 4  # r2 has no validation values
    v = df.set_index(["run", "epoch", "split", "metric"]).value
    assert v[("r1", 2, "validation", "loss")] == 0.5
    assert v[("r2", 1, "test", "accuracy")] == 0.9
    assert not ((df.run == "r2") & (df.split == "validation")).any()


def test_config_differences_lists_only_fields_that_differ():
    base = dict(model="fast", augment="none", lr=0.2, epochs=2, target_accuracy=None, name="a", created=1.0, pair="p")
    other = dict(base, augment="standard", name="b", created=2.0, target_accuracy=0.99)
    df = compare.config_differences({"a": base, "b": other})
    assert list(df.index) == ["augment", "target_accuracy"]
    assert df.loc["augment"].tolist() == ["none", "standard"]
    assert df.loc["target_accuracy"].tolist() == ["—", "0.99"]
    assert compare.config_differences({"a": base, "b": dict(base, name="b", created=5.0)}).empty


def test_summary_row_final_and_best():
    row = compare.summary_row("r2", {"model": "fast", "augment": "none", "epochs": 3}, "stopped", RECS["r2"])
    assert row["epochs"] == 2 and row["planned epochs"] == 3
    assert row["final test acc"] == 0.85 and row["final test loss"] == 0.4
    assert row["best test acc"] == 0.9 and row["best epoch"] == 1 and row["test loss at best"] == 0.3
    assert row["train seconds"] == 3.0 and row["images/s"] == pytest.approx(60.0)
    empty = compare.summary_row("q", {"model": "fast"}, "queued", [])
    assert empty["epochs"] == 0 and empty["best test acc"] is None and empty["images/s"] is None


# ---------- predictions ----------

LABELS = np.array([0, 1, 2, 3, 4, 5])
PRED_A = np.array([0, 1, 2, 9, 9, 5])   # wrong on 3, 4
PRED_B = np.array([0, 7, 8, 3, 9, 5])   # wrong on 1, 2, 4
CONF_A = np.array([0.9, 0.8, 0.7, 0.6, 0.95, 0.99])
CONF_B = np.array([0.9, 0.55, 0.85, 0.75, 0.5, 0.99])


def test_disagreements_splits_right_wrong_and_orders_by_confident_mistakes():
    df = compare.disagreements(LABELS, onehot_probs(PRED_A, CONF_A), onehot_probs(PRED_B, CONF_B))
    assert list(df.columns) == ["index", "label", "pred_a", "conf_a", "pred_b", "conf_b", "right"]
    # A right, B wrong: images 1 and 2, B's more confident mistake (image 2, 0.85) first; then B right: image 3.
    # Image 4 (both wrong) and 0, 5 (both right) are not disagreements.
    assert df["index"].tolist() == [2, 1, 3]
    assert df["right"].tolist() == ["A", "A", "B"]
    row = df.iloc[0]
    assert (row.label, row.pred_a, row.pred_b) == (2, 2, 8)
    assert row.conf_a == pytest.approx(0.7) and row.conf_b == pytest.approx(0.85)
    assert df.iloc[2].pred_a == 9 and df.iloc[2].conf_a == pytest.approx(0.6)
    # swapping the runs swaps the sides
    swapped = compare.disagreements(LABELS, onehot_probs(PRED_B, CONF_B), onehot_probs(PRED_A, CONF_A))
    assert swapped["index"].tolist() == [3, 2, 1] and swapped["right"].tolist() == ["A", "B", "B"]


def test_disagreements_empty_when_runs_agree_and_refuses_different_test_sets():
    p = onehot_probs(PRED_A)
    assert compare.disagreements(LABELS, p, p).empty
    with pytest.raises(compare.CompareError, match="different test sets"):
        compare.disagreements(LABELS, p, p[:4])


def test_better_for_a_has_one_meaning_in_every_cell():
    pa, pb = onehot_probs(PRED_A), onehot_probs(PRED_B)
    d = compare.confusion_difference(LABELS, pa, pb)
    g = compare.better_for_a(d)
    assert g[1, 1] == 1 and g[1, 7] == 1        # A gets the 1 right and avoids B's 1 -> 7: both good for A
    assert g[3, 3] == -1 and g[3, 9] == -1      # B gets the 3 right, A calls it 9: both good for B
    assert g[4, 9] == 0 and g[0, 0] == 0
    np.testing.assert_array_equal(np.abs(g), np.abs(d))   # only signs change
    np.testing.assert_array_equal(d, compare.confusion_difference(LABELS, pa, pb))  # the input is not touched


def test_confusion_difference_and_per_class_accuracy():
    pa, pb = onehot_probs(PRED_A), onehot_probs(PRED_B)
    d = compare.confusion_difference(LABELS, pa, pb)
    assert d.shape == (10, 10) and d.sum() == 0  # both count every image once
    assert d[1, 1] == 1 and d[1, 7] == -1       # A gets the 1 right, B calls it 7
    assert d[3, 3] == -1 and d[3, 9] == 1       # B gets the 3 right, A calls it 9
    assert d[4, 9] == 0 and d[0, 0] == 0        # same mistake / same hit cancel
    acc = compare.per_class_accuracy(LABELS, {"A": pa, "B": pb})
    assert list(acc.columns) == ["A", "B"] and list(acc.index) == list(range(10))
    assert acc.loc[1, "A"] == 1.0 and acc.loc[1, "B"] == 0.0 and acc.loc[3, "B"] == 1.0
    assert np.isnan(acc.loc[6, "A"])  # no test image of digit 6


# ---------- distortions ----------

def test_distort_strength_zero_is_identity_and_bad_input_raises():
    x = torch.rand(5, 1, 28, 28)
    for kind in compare.DISTORTIONS:
        assert torch.equal(compare.distort(x, kind, 0), x)
    with pytest.raises(ValueError, match="unknown distortion"):
        compare.distort(x, "blur", 1)
    with pytest.raises(ValueError, match="at least 0"):
        compare.distort(x, "shift", -1)


def test_shift_moves_each_image_by_whole_pixels_in_turn():
    x = torch.rand(4, 1, 28, 28)
    out = compare.distort(x, "shift", 3)
    right, down, left, up = out[:, 0]
    assert torch.allclose(right[:, 3:], x[0, 0, :, :-3], atol=1e-5) and right[:, :3].abs().max() < 1e-6
    assert torch.allclose(down[3:], x[1, 0, :-3], atol=1e-5) and down[:3].abs().max() < 1e-6
    assert torch.allclose(left[:, :-3], x[2, 0, :, 3:], atol=1e-5)
    assert torch.allclose(up[:-3], x[3, 0, 3:], atol=1e-5)


def test_rotate_by_90_degrees_matches_rot90_alternating_direction():
    x = torch.rand(2, 1, 28, 28)
    out = compare.distort(x, "rotate", 90)
    assert torch.allclose(out[0, 0], torch.rot90(x[0, 0], -1), atol=1e-5)  # clockwise
    assert torch.allclose(out[1, 0], torch.rot90(x[1, 0], 1), atol=1e-5)   # anticlockwise
    # ink is mostly kept at a small angle, and the image does change
    small = compare.distort(x, "rotate", 15)
    assert not torch.allclose(small, x, atol=1e-3)


def test_thicken_dilates_a_dot_into_a_square():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10, 10] = 1
    for s in (1, 2):
        out = compare.distort(x, "thicken", s)[0, 0]
        assert out.sum() == (2 * s + 1) ** 2
        assert out[10 - s:11 + s, 10 - s:11 + s].min() == 1


# ---------- robustness ----------

class CenterPixel(nn.Module):
    """Predicts 1 when pixel (14, 14) is inked, else 0: a model whose robustness we can work out by hand.
    Only values in (0.5, 1] count as ink, so images left at 0-255 (not divided by 255) read as blank."""
    def forward(self, x):
        c = x[:, 0, 14, 14]
        on = ((c > 0.5) & (c <= 1 + 1e-5)).float()
        logits = torch.zeros(len(x), 10)
        logits[:, 0], logits[:, 1] = 1 - on, on
        return logits


def test_robustness_known_answers():
    # 8 images: 4 with a dot on the centre pixel (label 1), 4 blank (label 0); then 4 with a dot 2 pixels right
    # of the centre, labelled 1.
    x = torch.zeros(12, 1, 28, 28)
    x[:4, 0, 14, 14] = 1
    x[8:, 0, 14, 16] = 1
    y = torch.tensor([1] * 4 + [0] * 4 + [1] * 4)
    df = compare.robustness({"centre": CenterPixel()}, x, y,
                            {"shift": (0, 1, 3), "thicken": (0, 1, 2)})
    acc = df.set_index(["distortion", "strength"]).accuracy
    assert list(df.columns) == ["run", "distortion", "strength", "accuracy"] and set(df.run) == {"centre"}
    assert acc[("shift", 0)] == pytest.approx(8 / 12)   # centre dots and blanks right, off-centre dots wrong
    assert acc[("shift", 1)] == pytest.approx(4 / 12)   # every dot leaves the centre: only blanks right
    assert acc[("shift", 3)] == pytest.approx(4 / 12)
    assert acc[("thicken", 1)] == pytest.approx(8 / 12)  # a 1-pixel dilation does not reach 2 pixels away
    assert acc[("thicken", 2)] == pytest.approx(1.0)     # a 2-pixel one does


def test_robustness_takes_uint8_images_and_shares_each_distorted_set(monkeypatch):
    x = torch.zeros(4, 28, 28, dtype=torch.uint8)
    x[:2, 14, 14] = 255
    y = torch.tensor([1, 1, 0, 0])
    made = []
    real_distort = compare.distort

    def counting_distort(images, kind, strength):
        made.append((kind, strength))
        return real_distort(images, kind, strength)

    monkeypatch.setattr(compare, "distort", counting_distort)
    df = compare.robustness({"m1": CenterPixel(), "m2": CenterPixel()}, x, y, {"rotate": (0, 45)})
    # 255 read as 1.0: the inked centre pixels count (CenterPixel ignores values above 1)
    assert len(df) == 4 and (df[df.strength == 0].accuracy == 1.0).all()
    # one distorted set per strength, shared by both models (not one per model)
    assert made == [("rotate", 0), ("rotate", 45)]
    assert sorted(df.run) == ["m1", "m1", "m2", "m2"]
    with pytest.raises(compare.CompareError):
        compare.robustness({"m": CenterPixel()}, x, y[:3])


def test_run_robustness_strength_zero_equals_the_runs_plain_accuracy(fixture_runs, tiny_data):
    from mnistviz.data import load_mnist

    mn = load_mnist(tiny_data, download=False)
    dirs = [fixture_runs / "tiny-none", fixture_runs / "tiny-aug"]
    df = compare.run_robustness(dirs, mn.test_images, mn.test_labels, n=150,
                                distortions={"shift": (0, 4), "rotate": (0, 30)})
    assert set(df.run) == {"tiny-none", "tiny-aug"} and len(df) == 8
    for d in dirs:
        _, plain, _ = evaluate(runs.load_model(d), mn.test_images[:150], mn.test_labels[:150])
        got = df[(df.run == d.name) & (df.strength == 0)].accuracy
        assert len(got) == 2 and got.tolist() == pytest.approx([plain, plain], abs=1e-6)
    assert df.accuracy.between(0, 1).all()


# ---------- run store ----------

def test_load_predictions_summary_and_csv_on_the_fixture_pair(fixture_runs, tmp_path):
    pair = [runs.Run(fixture_runs / "tiny-aug"), runs.Run(fixture_runs / "tiny-none")]
    labels, probs, problems = compare.load_predictions(pair)
    assert problems == {} and list(probs) == ["tiny-aug", "tiny-none"]
    assert len(labels) == 200 and all(p.shape == (200, 10) for p in probs.values())
    best = pair[0].epoch_records()[pair[0].best_epoch() - 1]["test_acc"]
    assert (probs["tiny-aug"].argmax(1) == labels).mean() == pytest.approx(best, abs=1e-6)

    table = compare.summary_table(pair)
    assert list(table.index) == ["tiny-aug", "tiny-none"] and table.loc["tiny-aug", "augment"] == "standard"
    assert (table["epochs"] == 2).all() and table["train seconds"].gt(0).all()
    csv = pd.read_csv(__import__("io").BytesIO(compare.epochs_csv(pair)))
    assert len(csv) == 4 and {"run", "epoch", "test_acc", "val_loss"} <= set(csv.columns)

    # the default predictions are the best epoch's, not the last one's: a copy whose epoch 1 scores best
    early = tmp_path / "early"
    shutil.copytree(fixture_runs / "tiny-aug", early)
    recs = runs.read_jsonl(early / "metrics.jsonl")
    top = max(r["test_acc"] for r in recs if "epoch" in r)
    for r in recs:
        if r.get("epoch") == 1:
            r["test_acc"] = top + 0.01
    (early / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    er = runs.Run(early)
    assert er.best_epoch() == 1 and er.pred_epochs() == [1, 2]
    assert not np.array_equal(er.probs(1), er.probs(2))  # else best and last could not be told apart
    _, probs, problems = compare.load_predictions([er])
    assert problems == {} and np.array_equal(probs["early"], er.probs(1))
    assert compare.summary_table([er]).loc["early", "best epoch"] == 1

    # a run scored on another test set, and one with no predictions, are left out with a reason
    odd = tmp_path / "odd"
    shutil.copytree(fixture_runs / "tiny-none", odd)
    np.save(odd / "test_labels.npy", np.zeros(50, np.uint8))
    for f in (odd / "preds").glob("*.npy"):
        np.save(f, np.full((50, 10), 0.1, np.float16))
    bare = tmp_path / "bare"
    shutil.copytree(fixture_runs / "tiny-none", bare)
    shutil.rmtree(bare / "preds")
    labels, probs, problems = compare.load_predictions(pair + [runs.Run(odd), runs.Run(bare)])
    assert list(probs) == ["tiny-aug", "tiny-none"]
    assert "different test set" in problems["odd"] and "no stored test predictions" in problems["bare"]


def test_checkpoint_stamp(fixture_runs, tmp_path):
    run = runs.Run(fixture_runs / "tiny-aug")
    assert run.checkpoint_stamp() == run.best_ckpt.stat().st_mtime
    assert runs.Run(tmp_path).checkpoint_stamp() == 0.0


# ---------- CSV export and the one-line verdict ----------

def test_csv_bytes_rounds_float_noise_but_keeps_integers_text_and_the_frame():
    df = pd.DataFrame({"run": ["a", "b"], "epoch": [1, 2],
                       "test_acc": [float(np.float32(0.986)), float(np.float32(0.1))],
                       "loss": [0.123456789, float("nan")], "time": [1712345678.123456, 0.0],
                       "lr": [0.001, 1e-7], "note": ["x", None]}).set_index("run")
    assert str(df.test_acc.iloc[0]) == "0.9860000014305115"  # the noise the export must drop
    text = compare.csv_bytes(df).decode()
    assert text.splitlines() == ["run,epoch,test_acc,loss,time,lr,note",
                                 "a,1,0.986,0.123457,1712345678.0,0.001,x",
                                 "b,2,0.1,,0.0,1e-07,"]
    assert df.test_acc.iloc[0] == float(np.float32(0.986))  # the frame on screen is untouched
    assert compare.csv_bytes(df.reset_index(), index=False).decode().splitlines()[1].startswith("a,1,0.986,")


def test_epochs_csv_has_no_float32_noise(fixture_runs):
    import re

    pair = [runs.Run(fixture_runs / n) for n in ("tiny-aug", "tiny-none")]
    text = compare.epochs_csv(pair).decode()
    floats = re.findall(r"\d+\.\d+(?:e-?\d+)?", text)
    assert floats and all(compare._round_significant(float(t)) == float(t) for t in floats)  # <= 6 significant
    csv = pd.read_csv(__import__("io").StringIO(text))
    raw = pd.DataFrame([rec for r in pair for rec in r.epoch_records()])
    np.testing.assert_allclose(csv.test_loss, raw.test_loss, rtol=1e-5)


# ---------- the verdict: paired tests on the same images ----------

def exact_p(k: int, n: int) -> float:
    """Two-sided exact binomial p at 1/2, by hand (not scipy): twice the smaller tail, at most 1."""
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def right_and_wrong(n: int, wrong: list[int]) -> np.ndarray:
    """Probabilities for n test images labelled i % 10: right except on `wrong`, which are called label + 1."""
    labels = np.arange(n) % 10
    preds = labels.copy()
    preds[wrong] = (labels[wrong] + 1) % 10
    return onehot_probs(preds)


def test_mcnemar_a_real_difference_is_called_more_than_noise():
    labels = np.arange(1000) % 10
    a = right_and_wrong(1000, list(range(20)))          # A wrong on 20 images
    b = right_and_wrong(1000, list(range(20, 80)))      # B wrong on 60 others
    t = compare.mcnemar(labels, a, b)
    assert (t.n, t.a_better, t.b_better) == (1000, 60, 20)
    assert (t.acc_a, t.acc_b) == (0.98, 0.94) and t.p == pytest.approx(exact_p(60, 80)) and t.p < 1e-5
    clean, _ = compare.verdict("aug", "none", t, "x")
    assert clean == ("On clean images A (aug) is more accurate: 98.00% vs 94.00%, 60 vs 20 disagreements (images "
                     "only one of them gets right), McNemar's exact test p < 0.001: more than noise.")
    # the same counts the other way round: B is named
    clean, _ = compare.verdict("aug", "none", compare.mcnemar(labels, b, a), "x")
    assert clean.startswith("On clean images B (none) is more accurate: 98.00% vs 94.00%, 60 vs 20")


def test_mcnemar_a_gap_that_is_noise_is_called_no_clear_difference():
    # the example: 100 vs 85 disagreements on 10,000 images
    labels = np.arange(10_000) % 10
    a = right_and_wrong(10_000, list(range(85)))
    b = right_and_wrong(10_000, list(range(85, 185)))
    t = compare.mcnemar(labels, a, b)
    assert (t.a_better, t.b_better) == (100, 85) and t.p == pytest.approx(exact_p(85, 185))
    assert 0.2 < t.p < 0.4
    clean, _ = compare.verdict("aug", "none", t, "x")
    assert clean == ("On clean images A (aug) scores higher, 99.15% vs 99.00%, 100 vs 85 disagreements (images only "
                     f"one of them gets right), McNemar's exact test p = {t.p:.2f}: no clear difference on clean "
                     "images.")
    # images both get wrong (here with different wrong digits) are no evidence either way
    shared = list(range(9000, 9500))
    a2, b2 = right_and_wrong(10_000, list(range(85)) + shared), right_and_wrong(10_000, list(range(85, 185)) + shared)
    b2[shared] = onehot_probs((labels[shared] + 2) % 10)
    t2 = compare.mcnemar(labels, a2, b2)
    assert (t2.a_better, t2.b_better, t2.p) == (100, 85, t.p) and t2.acc_a == pytest.approx(0.9415)


def test_mcnemar_edge_cases_identical_runs_level_runs_and_different_test_sets():
    labels = np.arange(200) % 10
    a = right_and_wrong(200, [3, 4, 5])
    # identical predictions, and the same images wrong with other wrong digits: zero disagreements, p = 1
    other = a.copy()
    other[3] = onehot_probs([9])[0]
    for b in (a, other):
        t = compare.mcnemar(labels, a, b)
        assert (t.a_better, t.b_better, t.p) == (0, 0, 1.0)
        assert compare.verdict("x", "y", t, "x")[0] == ("On clean images A and B get exactly the same images right "
                                                         "(98.50%): no disagreements, so no difference.")
    # as many disagreements each way: level, p = 1
    t = compare.mcnemar(labels, a, right_and_wrong(200, [6, 7, 8]))
    assert (t.a_better, t.b_better, t.p) == (3, 3, 1.0)
    assert compare.verdict("x", "y", t, "x")[0] == (
        "On clean images neither is ahead: 98.50% vs 98.50%, 3 vs 3 disagreements (images only one of them gets "
        "right), McNemar's exact test p = 1: no clear difference on clean images.")
    # runs scored on different test sets: one sentence, no test
    with pytest.raises(compare.CompareError, match=r"different test sets \(200 and 100 images\)"):
        compare.mcnemar(labels, a, a[:100])


def test_distorted_sign_test_counts_images_not_versions():
    # 3 distorted versions of 6 images; A gets every version right, B misses all 3 versions of image 0 only:
    # one image for A (not three versions), and p = 1 for a single image
    ra = np.ones((3, 6), bool)
    rb = ra.copy()
    rb[:, 0] = False
    t = compare.distorted_sign_test(ra, rb)
    assert (t.n, t.a_better, t.b_better, t.p) == (6, 1, 0, 1.0)
    assert (t.acc_a, t.acc_b) == (1.0, pytest.approx(15 / 18))
    # a real difference: B holds up better on 40 of 400 images, A on 2
    ra, rb = np.ones((8, 400), bool), np.ones((8, 400), bool)
    ra[:4, :40] = False
    rb[0, 40:42] = False
    t = compare.distorted_sign_test(ra, rb)
    assert (t.a_better, t.b_better) == (2, 40) and t.p == pytest.approx(exact_p(2, 42))
    _, dist = compare.verdict("aug", "none", "x", t)
    assert dist == ("On shifted, rotated and thickened digits B (none) holds up better: 99.94% vs 95.00%, 40 vs 2 "
                    "images where one gets more of the distorted versions right, sign test over images p < 0.001: "
                    "more than noise.")
    with pytest.raises(compare.CompareError):
        compare.distorted_sign_test(ra, rb[:, :10])


def test_verdict_passes_a_reason_through_and_p_is_never_rounded_across_alpha():
    assert compare.verdict("a", "b", "Run b was tested on a different test set.", "No checkpoint yet.") == [
        "Run b was tested on a different test set.", "No checkpoint yet."]
    assert [compare.p_text(p) for p in (0.0004, 0.0012, 0.0301, 0.0499, 0.05, 0.3049, 0.999)] == [
        "p < 0.001", "p = 0.0012", "p = 0.03", "p = 0.0499", "p = 0.05", "p = 0.30", "p = 1"]


def test_robustness_outcomes_match_the_table():
    x = torch.zeros(12, 1, 28, 28)
    x[:4, 0, 14, 14] = 1
    x[8:, 0, 14, 16] = 1
    y = torch.tensor([1] * 4 + [0] * 4 + [1] * 4)
    table, right = compare.robustness_outcomes({"centre": CenterPixel()}, x, y, {"shift": (0, 1), "thicken": (0, 2)})
    assert right["centre"].shape == (2, 12)                                # the two distorted conditions
    assert right["centre"][0].tolist() == [False] * 4 + [True] * 4 + [False] * 4   # shifted 1: only blanks right
    assert right["centre"][1].all()                                         # thickened 2: all right
    d = table[table.strength > 0]
    assert d.accuracy.tolist() == pytest.approx(right["centre"].mean(1).tolist())
