"""Label reviews (issue 26): the reviews file (atomic, locked, a damaged one reported and kept), export and import,
and the test accuracy on reviewed labels from constructed and from stored predictions."""
from __future__ import annotations

import json
import resource
import signal
import shutil
import threading

import numpy as np
import pytest

from conftest import KNOWN_WRONG, known_predictions_run
from mnistviz import labels as lab
from mnistviz import reviews as rv
from mnistviz.runs import Run, WriteError

LABELS = np.arange(100) % 10


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty runs folder as MNISTVIZ_RUNS; returns the reviews file's path in it."""
    monkeypatch.setenv("MNISTVIZ_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs" / rv.REVIEWS_FILE


def test_reviews_live_in_one_file_of_the_runs_folder_and_survive_a_reload(store):
    rv.review(LABELS, 3, "wrong", 8, now=1.0)
    rv.review(LABELS, 4, "right", now=2.0)
    assert rv.reviews_path() == store and store.exists()
    doc = json.loads(store.read_text())
    assert doc["kind"] == rv.KIND and len(doc["reviews"]) == 2
    ts = rv.test_set_id(LABELS)
    assert rv.load() == {(ts, 3): rv.Review(ts, 3, 3, "wrong", 8, 1.0), (ts, 4): rv.Review(ts, 4, 4, "right", None, 2.0)}
    rv.review(LABELS, 3, "right")  # a second verdict on an image replaces the first
    rv.unreview(LABELS, 4)
    assert [(r.index, r.verdict) for r in rv.load().values()] == [(3, "right")]


@pytest.mark.parametrize("args, why", [((100, "right"), "not in this test set"), ((3, "maybe"), "'wrong' or 'right'"),
                                       ((3, "wrong", 3), "not the given 3"), ((3, "wrong"), "needs the digit")])
def test_bad_reviews_are_refused(store, args, why):
    with pytest.raises(rv.ReviewError, match=why):
        rv.review(LABELS, *args)
    assert not store.exists()


def test_a_failed_write_keeps_the_previous_file(store):
    rv.review(LABELS, 1, "wrong", 7)
    inode = store.stat().st_ino
    rv.review(LABELS, 2, "wrong", 7)
    assert store.stat().st_ino != inode  # a new file renamed over the old one, not a rewrite in place
    before = store.read_bytes()
    # a real failed write: files may not grow past 300 bytes (EFBIG), as on a full disk
    old_limit, old_handler = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300, old_limit[1]))
    try:
        with pytest.raises(WriteError):
            rv.review(LABELS, 5, "wrong", 1)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert store.read_bytes() == before and len(rv.load()) == 2
    assert sorted(p.name for p in store.parent.iterdir()) == [rv.REVIEWS_FILE, rv.REVIEWS_FILE + ".lock"]  # no temp


def test_reviews_made_at_once_are_all_kept(store):
    def reviewer(start):
        for i in range(start, 40, 4):
            rv.review(LABELS, i, "right")
    threads = [threading.Thread(target=reviewer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.index for r in rv.load().values()) == list(range(40))


@pytest.mark.parametrize("content", [b'{"kind": "mnistviz label reviews", "version": 1, "reviews": [{"ind',
                                     b"\x89PNG garbage", b'{"kind": "something else", "reviews": []}',
                                     json.dumps({"kind": rv.KIND, "version": 1, "reviews": [
                                         {"test_set": "x", "index": 1, "given": 1, "verdict": "wrong", "label": 1}]}
                                     ).encode()])
def test_a_damaged_file_is_reported_in_one_sentence_and_kept(store, content):
    store.parent.mkdir(parents=True)
    store.write_bytes(content)
    with pytest.raises(rv.ReviewError) as e:
        rv.load()
    msg = str(e.value)
    assert str(store) in msg and "\n" not in msg and "Set it aside" in msg
    with pytest.raises(rv.ReviewError):  # a new review does not overwrite it...
        rv.review(LABELS, 1, "right")
    assert store.read_bytes() == content
    moved = rv.set_aside()  # ...until the user sets it aside: kept, under another name
    assert moved.read_bytes() == content and moved.parent == store.parent and not store.exists()
    rv.review(LABELS, 1, "right")
    assert len(rv.load()) == 1


def test_export_import_add_and_replace(store, tmp_path):
    rv.review(LABELS, 1, "wrong", 7)
    rv.review(LABELS, 2, "right")
    exported = rv.to_bytes(rv.load())
    store.unlink()
    rv.review(LABELS, 2, "wrong", 5)  # reviewed differently here: the imported review wins
    rv.review(LABELS, 9, "right")
    saved, n = rv.import_bytes(exported)
    assert n == 2 and {i: r.verdict for (_, i), r in saved.items()} == {1: "wrong", 2: "right", 9: "right"}
    assert rv.load() == saved
    saved, n = rv.import_bytes(exported, replace=True)
    assert n == 2 and sorted(i for _, i in rv.load()) == [1, 2]
    for bad, why in ((b"not json", "not JSON"), (b'{"kind": "x", "reviews": []}', "header"),
                     (json.dumps({"kind": rv.KIND, "version": 7, "reviews": []}).encode(), "version"),
                     (json.dumps({"kind": rv.KIND, "version": 1, "reviews": [{"index": 1}]}).encode(), "review 0")):
        with pytest.raises(rv.ReviewError, match=why):
            rv.import_bytes(bad, source="'up.json'")
    assert sorted(i for _, i in rv.load()) == [1, 2]  # a refused import changes nothing
    store.write_bytes(b"damaged")  # a damaged saved file: an import may replace it, not add to it
    with pytest.raises(rv.ReviewError):
        rv.import_bytes(exported)
    rv.import_bytes(exported, replace=True)
    assert len(rv.load()) == 2


def test_corrected_accuracy_on_constructed_predictions(store):
    preds = LABELS.copy()
    preds[[0, 11, 22, 33, 44]] = [5, 5, 5, 5, 5]  # 5 wrong: 95% on the given labels
    assert rv.corrected_accuracy(LABELS, preds, {}) == {"accuracy": 0.95, "corrected_accuracy": 0.95, "corrected": 0,
                                                        "reviewed": 0}
    for i in (0, 11, 22):  # the model was right: these labels are wrong, they are 5s
        rv.review(LABELS, i, "wrong", 5)
    rv.review(LABELS, 33, "wrong", 9)  # wrong label, but the model did not get it right either
    rv.review(LABELS, 50, "wrong", 1)  # the model agreed with a wrong label: now one of its mistakes
    rv.review(LABELS, 44, "right")  # a real mistake of the model: changes nothing
    other = LABELS[::-1].copy()  # another test set: its own reviews do not touch this one
    rv.review(other, 60, "wrong", 5)
    res = rv.corrected_accuracy(LABELS, preds, rv.load())
    assert res == {"accuracy": 0.95, "corrected_accuracy": 0.97, "corrected": 5, "reviewed": 6}
    assert rv.accuracy_text(res) == "95.00%, 97.00% with 5 labels corrected"
    fixed, n = rv.corrected_labels(LABELS, rv.load())
    assert n == 5 and fixed[[0, 11, 22, 33, 50]].tolist() == [5, 5, 5, 9, 1] and (fixed[60] == LABELS[60])
    assert rv.reviewed_wrong(rv.load(), other) == {60: 5}


def test_run_accuracy_from_a_runs_stored_predictions(store, fixture_runs, tmp_path):
    root = known_predictions_run(fixture_runs, tmp_path / "known")
    run = Run(root / "tiny-none")
    labels = run.test_labels()
    n = len(labels)
    assert rv.run_accuracy(run, {})["epoch"] == 2  # the best epoch
    i = KNOWN_WRONG[2][0]
    rv.review(labels, i, "wrong", int((labels[i] + 1 + i % 3) % 10))  # what the model predicted at epoch 2
    res = rv.run_accuracy(run, rv.load())
    assert res["accuracy"] == pytest.approx(1 - 8 / n) and res["corrected_accuracy"] == pytest.approx(1 - 7 / n)
    assert rv.run_accuracy(run, rv.load(), epoch=1)["corrected_accuracy"] == pytest.approx(1 - 10 / n)  # right at 1


def test_report_and_sources(fixture_runs, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(fixture_runs / "tiny-none", root / "tiny-none")
    shutil.copytree(fixture_runs / "tiny-aug", root / "gutted")
    shutil.rmtree(root / "gutted" / "preds")
    monkeypatch.setenv("MNISTVIZ_RUNS", str(root))
    got = lab.sources()
    assert [s["name"] for s in got] == ["default", "tiny-none"] and got[0]["label"] == "default (built in)"
    run = Run(root / "tiny-none")
    rep = lab.report([run, Run(fixture_runs / "tiny-aug")], top=5)
    assert rep["method"] and len(rep["suspects"]) <= 5
    assert [s["index"] for s in rep["suspects"]] == [s["index"] for s in lab.suspects(
        [run, Run(fixture_runs / "tiny-aug")], 5)["suspects"]]
    for s in rep["suspects"]:
        first = s["by_run"][0]
        assert [e for e, _ in first["history"]] == run.pred_epochs()
        for e, p in first["history"]:
            assert p == pytest.approx(float(run.probs(e)[s["index"], s["label"]]), abs=1e-6)


def test_training_image_reviews_share_the_file_keyed_apart_from_the_test_set(store):
    # the same labels as a test set, the same index: still two reviews, each applying to its own set only
    rv.review(LABELS, 3, "wrong", 8, now=1.0)
    rv.review(LABELS, 3, "wrong", 5, now=2.0, scope="train")
    rv.review(LABELS, 4, "right", now=3.0, scope="train")
    saved = rv.load()
    assert len(saved) == 3 and rv.parse(rv.to_bytes(saved)) == saved
    assert rv.applying(saved, LABELS) == {3: rv.Review(rv.test_set_id(LABELS), 3, 3, "wrong", 8, 1.0)}
    assert rv.corrected_accuracy(LABELS, LABELS, saved)["corrected"] == 1  # training reviews change no accuracy
    train = rv.applying(saved, LABELS, "train")
    assert {i: (r.verdict, r.label, r.scope) for i, r in train.items()} == {3: ("wrong", 5, "train"),
                                                                            4: ("right", None, "train")}
    rv.unreview(LABELS, 3, scope="train")
    assert sorted((r.scope, r.index) for r in rv.load().values()) == [("test", 3), ("train", 4)]
    with pytest.raises(rv.ReviewError, match="training image 100 is not in this training set"):
        rv.review(LABELS, 100, "right", scope="train")


def test_a_file_written_before_training_reviews_loads_as_it_was(store):
    store.parent.mkdir(parents=True)
    store.write_bytes(b'{"kind": "mnistviz label reviews", "version": 1, "reviews": [{"test_set": "3f0c9a1b2c3d4e5f", '
                      b'"index": 7, "given": 2, "verdict": "wrong", "label": 7, "time": 5.0}]}')
    assert rv.load() == {("3f0c9a1b2c3d4e5f", 7): rv.Review("3f0c9a1b2c3d4e5f", 7, 2, "wrong", 7, 5.0)}
    assert next(iter(rv.load().values())).scope == "test"
