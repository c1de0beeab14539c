"""My digits: the saved set (atomic npz in the runs folder), import/export validation, evaluation, model choices."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest

from conftest import copy_run_files
from mnistviz import mydigits, runs
from mnistviz.mydigits import DigitSet, MyDigitsError


@pytest.fixture
def store(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("MNISTVIZ_RUNS", str(root))
    return root


def img(v: float) -> np.ndarray:
    a = np.zeros((28, 28), np.float32)
    a[4:24, 12:16] = v
    return a


def npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_add_saves_inside_the_runs_folder_and_is_not_a_run(store):
    assert len(mydigits.load()) == 0
    mydigits.add(img(1.0), 7, now=100.0)
    ds = mydigits.add(img(0.5), 3, now=200.0)
    assert mydigits.set_path() == store / "_mydigits" / "digits.npz" and mydigits.set_path().exists()
    again = mydigits.load()
    assert len(again) == len(ds) == 2
    assert again.labels.tolist() == [7, 3] and again.created.tolist() == [100.0, 200.0]
    assert again.images.dtype == np.uint8 and again.images[0].max() == 255 and again.images[1].max() == 128
    assert again.counts()[[3, 7]].tolist() == [1, 1] and again.counts().sum() == 2
    assert runs.list_runs() == ([], [])      # "_mydigits" is not a (broken) run
    assert not [p for p in (store / "_mydigits").iterdir() if p.name != "digits.npz"]  # no temp files left


@pytest.mark.parametrize("label", [10, -1, "x", 2.5, None])
def test_bad_labels_are_refused(store, label):
    with pytest.raises(MyDigitsError, match="digit 0-9"):
        mydigits.add(img(1.0), label)
    assert not mydigits.set_path().exists()


def test_remove(store):
    for d in range(5):
        mydigits.add(img(1.0), d)
    ds = mydigits.remove([1, 3, 99])
    assert ds.labels.tolist() == [0, 2, 4] and mydigits.load().labels.tolist() == [0, 2, 4]


def test_export_import_round_trip(store):
    for d in (1, 2):
        mydigits.add(img(1.0), d)
    data = mydigits.to_bytes(mydigits.load())
    ds, n = mydigits.import_bytes(data)
    assert n == 2 and ds.labels.tolist() == [1, 2, 1, 2]
    ds, n = mydigits.import_bytes(data, replace=True)
    assert n == 2 and mydigits.load().labels.tolist() == [1, 2]
    np.testing.assert_array_equal(mydigits.load().images, mydigits.parse(data).images)


def test_import_accepts_float_images_without_created():
    ds = mydigits.parse(npz(images=np.stack([img(1.0), img(0.0)]), labels=np.array([4, 5])))
    assert ds.images.dtype == np.uint8 and ds.images[0].max() == 255 and ds.created.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("data, why", [
    (b"", "not an .npz"),
    (b"PK\x03\x04 truncated garbage", "not an .npz"),
    (json.dumps({"images": []}).encode(), "not an .npz"),
    (npz(labels=np.array([1])), "no 'images'"),
    (npz(images=np.zeros((2, 28, 28), np.uint8)), "no 'labels'"),
    (npz(images=np.zeros((2, 32, 32), np.uint8), labels=np.array([1, 2])), "N x 28 x 28"),
    (npz(images=np.zeros((2, 28, 28), np.uint8), labels=np.array([1])), "labels of shape"),
    (npz(images=np.zeros((1, 28, 28), np.uint8), labels=np.array([12])), "digits 0-9"),
    (npz(images=np.zeros((2, 28, 28), np.uint8), labels=np.array([3, -1])), "digits 0-9"),
    (npz(images=np.zeros((1, 28, 28), np.uint8), labels=np.array([1.5])), "digits 0-9"),
    (npz(images=np.full((1, 28, 28), 3.0), labels=np.array([1])), "uint8"),
    (npz(images=np.array([{"x": 1}], dtype=object), labels=np.array([1])), "cannot be read"),
])
def test_bad_uploads_are_refused_with_a_reason(data, why):
    with pytest.raises(MyDigitsError, match=why):
        mydigits.parse(data, source="'up.npz'")


def test_a_set_that_unpacks_too_big_is_refused_before_loading(monkeypatch):
    monkeypatch.setattr(mydigits, "MAX_UNPACKED", 10_000)
    buf = io.BytesIO()
    np.savez_compressed(buf, images=np.zeros((50, 28, 28), np.uint8), labels=np.zeros(50, np.uint8))
    assert len(buf.getvalue()) < 10_000
    with pytest.raises(MyDigitsError, match="unpacks to"):
        mydigits.parse(buf.getvalue())


def test_a_damaged_saved_set_is_reported_and_can_be_set_aside(store):
    path = mydigits.set_path()
    path.parent.mkdir()
    path.write_bytes(b"\x00garbage")
    with pytest.raises(MyDigitsError, match="Set it aside"):
        mydigits.load()
    with pytest.raises(MyDigitsError):      # saving onto it must not silently drop what was there
        mydigits.add(img(1.0), 1)
    moved = mydigits.set_aside()
    assert moved.exists() and moved.read_bytes() == b"\x00garbage" and not path.exists()
    assert mydigits.add(img(1.0), 1).labels.tolist() == [1]
    assert mydigits.set_aside(store / "nothing.npz") is None


def test_a_damaged_saved_set_can_be_replaced_by_an_import(store):
    path = mydigits.set_path()
    path.parent.mkdir()
    path.write_bytes(b"garbage")
    good = mydigits.to_bytes(DigitSet(np.zeros((1, 28, 28), np.uint8), np.array([6]), np.zeros(1)))
    with pytest.raises(MyDigitsError):
        mydigits.import_bytes(good)
    ds, n = mydigits.import_bytes(good, replace=True)
    assert n == 1 and mydigits.load().labels.tolist() == [6]


def test_evaluate_set_matches_the_model(fixture_runs, tiny_data):
    from mnistviz.data import load_mnist
    from mnistviz.evaluate import evaluate

    model = runs.load_model(fixture_runs / "tiny-none")
    data = load_mnist(tiny_data, download=False)
    images, labels = data.test_images[:60], data.test_labels[:60]
    ds = DigitSet(images.numpy(), labels.numpy(), np.zeros(60))
    res = mydigits.evaluate_set(model, ds)
    _, acc, probs = evaluate(model, images, labels)
    assert res["accuracy"] == pytest.approx(acc)
    np.testing.assert_allclose(res["probs"], probs, atol=1e-5)
    cm = res["confusion"]
    assert cm.shape == (10, 10) and cm.sum() == 60 and np.trace(cm) == 60 - len(res["wrong"])
    assert (res["preds"][res["wrong"]] != ds.labels[res["wrong"]]).all()
    assert mydigits.evaluate_set(model, DigitSet.empty())["accuracy"] is None


def test_model_choices_default_first_then_completed_runs(fixture_runs, tiny_data, tmp_path, monkeypatch):
    from conftest import train_tiny
    from mnistviz.train import Config, create_run

    # a runs folder with two completed runs and one queued (never trained) run
    root = tmp_path / "runs"
    for name in ("tiny-none", "tiny-aug"):
        copy_run_files(fixture_runs / name, root / name)
    create_run(Config(name="queued", epochs=1), root)
    default = train_tiny(tmp_path / "elsewhere", tiny_data, name="default", epochs=1)
    monkeypatch.setattr(mydigits, "DEFAULT_MODEL", default)
    choices = mydigits.model_choices(root)
    assert [c["name"] for c in choices][0] == "default"
    assert sorted(c["name"] for c in choices) == ["default", "tiny-aug", "tiny-none"]
    assert all(c["stamp"] > 0 for c in choices) and "fast" in choices[0]["label"]
    # the default trained inside the runs folder is listed once, still first
    monkeypatch.setattr(mydigits, "DEFAULT_MODEL", root / "tiny-none")
    names = [c["name"] for c in mydigits.model_choices(root)]
    assert names[0] == "tiny-none" and sorted(names) == ["tiny-aug", "tiny-none"]
    # no default and no runs: nothing to pick
    monkeypatch.setattr(mydigits, "DEFAULT_MODEL", tmp_path / "missing")
    assert mydigits.model_choices(tmp_path / "empty") == []


def test_checkpoint_stamp_changes_with_the_checkpoint(fixture_runs, tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    assert runs.Run(run).checkpoint_stamp() == 0.0
    (run / "best.pt").write_bytes((fixture_runs / "tiny-none" / "best.pt").read_bytes())
    first = runs.Run(run).checkpoint_stamp()
    assert first > 0
    # the checkpoint rewritten (here: its modification time moved): a new stamp, so a new cache key
    os.utime(run / "best.pt", (1e9, 1e9))
    assert runs.Run(run).checkpoint_stamp() == 1e9 != first
    os.utime(run / "best.pt", (1e9 + 60, 1e9 + 60))
    assert runs.Run(run).checkpoint_stamp() == 1e9 + 60


def test_model_choices_tell_a_run_named_default_from_the_built_in_default(fixture_runs, tiny_data, tmp_path,
                                                                          monkeypatch):
    from conftest import train_tiny
    from mnistviz.train import Config, create_run

    root = tmp_path / "runs"
    for name in ("default", "tiny-aug"):  # the runs folder has its own "default", not the bundled one
        copy_run_files(fixture_runs / "tiny-none", root / name)
    create_run(Config(name="queued", epochs=1), root)
    built_in = train_tiny(tmp_path / "elsewhere", tiny_data, name="default", epochs=1)
    monkeypatch.setattr(mydigits, "DEFAULT_MODEL", built_in)
    choices = mydigits.model_choices(root)
    labels = [c["label"] for c in choices]
    assert len(set(labels)) == len(labels) == 3
    assert [c["name"] for c in choices].count("default") == 2
    first, mine = choices[0], next(c for c in choices[1:] if c["name"] == "default")
    assert first["path"] == str(built_in.resolve()) and first["source"] == "built in"
    assert first["label"].startswith("default (built in") and mine["label"].startswith("default (your runs")
    assert mine["path"] == str((root / "default").resolve()) and mine["source"] == "your runs"
    # a name used once needs no origin
    assert next(c for c in choices if c["name"] == "tiny-aug")["label"].startswith("tiny-aug (fast")


def test_model_choices_include_the_selected_run_when_it_has_a_checkpoint(fixture_runs, tmp_path, monkeypatch):
    import json
    from mnistviz.train import Config, create_run

    root = tmp_path / "runs"
    copy_run_files(fixture_runs / "tiny-none", root / "halfway")
    status = json.loads((root / "halfway" / "status.json").read_text())
    (root / "halfway" / "status.json").write_text(json.dumps({**status, "status": "stopped"}))
    create_run(Config(name="queued", epochs=1), root)
    monkeypatch.setattr(mydigits, "DEFAULT_MODEL", tmp_path / "missing")
    assert mydigits.model_choices(root) == []                          # only completed runs by default
    [c] = mydigits.model_choices(root, include="halfway")
    assert c["name"] == "halfway" and "stopped" in c["label"] and c["stamp"] > 0
    assert mydigits.model_choices(root, include="queued") == []        # no checkpoint: nothing to draw with
