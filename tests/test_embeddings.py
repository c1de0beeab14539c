"""mnistviz.embeddings: the stratified sample, activations, deterministic projections, the cache in the run folder."""
import os
import shutil
import threading

import numpy as np
import pytest
import torch

from mnistviz import embeddings as E, runs
from mnistviz.data import load_mnist
from mnistviz.models import MODELS, build
from conftest import train_tiny


def blobs(n=240, d=40, seed=0):
    """Features of three well-separated clusters, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    centres = rng.normal(0, 8, (3, d))
    return (centres[labels] + rng.normal(0, 1, (n, d))).astype(np.float32), labels


def test_stratified_sample_keeps_each_class_share_and_is_fixed_by_its_seed():
    labels = np.repeat(np.arange(10), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])  # MNIST's test set
    s = E.stratified_sample(labels, 1000, seed=3)
    assert len(s) == 1000 and len(np.unique(s)) == 1000 and (np.diff(s) > 0).all()
    counts = np.bincount(labels[s], minlength=10)
    want = np.bincount(labels, minlength=10) * 1000 / len(labels)
    assert (np.abs(counts - want) < 1).all(), counts                  # each class its share, rounded
    assert np.array_equal(s, E.stratified_sample(labels, 1000, seed=3))
    assert not np.array_equal(s, E.stratified_sample(labels, 1000, seed=4))
    assert np.array_equal(E.stratified_sample(labels, 10000), np.arange(10000))
    assert np.array_equal(E.stratified_sample(labels, 20000), np.arange(10000))
    with pytest.raises(ValueError):
        E.stratified_sample(labels, 0)


def test_pca_is_the_exact_principal_plane_and_deterministic():
    x, _ = blobs()
    z = E.pca(x, 2, seed=0)
    u, s, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    exact = u[:, :2] * s[:2]
    for k in range(2):  # the same axes, up to sign
        assert abs(np.corrcoef(z[:, k], exact[:, k])[0, 1]) > 0.9999
    assert np.array_equal(z, E.pca(x, 2, seed=0))
    assert E.explained_variance(x, z) == pytest.approx((s[:2] ** 2).sum() / (s ** 2).sum(), rel=1e-4)


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_neighbour_projections_are_deterministic_for_a_seed_and_keep_clusters(method):
    pytest.importorskip("sklearn" if method == "tsne" else "umap")
    x, labels = blobs(n=150, d=60)  # above PRE_DIMS: the PCA step runs too
    seen = []
    a = E.project(x, method, seed=1, progress=lambda f, text: seen.append((f, text)))
    assert a.shape == (150, 2) and a.dtype == np.float32
    assert np.array_equal(a, E.project(x, method, seed=1))
    if method == "umap":  # (quick once compiled; a third t-SNE would add seconds)
        assert not np.array_equal(a, E.project(x, method, seed=2))
    # clusters stay apart: every point's nearest other point has its label
    d = ((a[:, None] - a[None]) ** 2).sum(-1) + np.eye(len(a)) * 1e9
    assert (labels[d.argmin(1)] == labels).mean() > 0.95
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] > 0.9, seen   # progress, from the library's own reports
    assert any(E.METHODS[method] in text for _, text in seen)


def test_default_stage_is_what_the_last_layer_reads():
    want = {"fast": "flatten", "wide": "flatten", "lenet5": "act4", "lenet5-relu": "act4", "cnn-32-64": "act3",
            "net-320": "act3", "single-conv": "flatten"}
    assert {m: E.default_stage(build(m)) for m in MODELS} == want


def test_activations_are_the_stage_output_and_the_models_probabilities():
    torch.manual_seed(0)
    model = build("lenet5").eval()
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    feats, probs = E.activations(model, images, "pool2", batch_size=3)
    x = images.unsqueeze(1).float() / 255
    want = model[:7](x).flatten(1)  # normalize ... pool2
    np.testing.assert_allclose(feats, want.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, torch.softmax(model(x), 1).detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no stage"):
        E.activations(model, images, "conv9")


def test_braille_draws_the_inked_pixels():
    img = np.zeros((2, 28, 28), np.uint8)
    img[1, 0, 0] = img[1, 3, 1] = 255        # the first cell's top-left and bottom-right dots
    img[1, 27, 27] = 255
    blank, drawn = E.braille(img)
    assert blank == "<br>".join(["\u2800" * 14] * 7)
    lines = drawn.split("<br>")
    assert len(lines) == 7 and all(len(line) == 14 for line in lines)
    assert lines[0][0] == chr(0x2800 + 0x01 + 0x80) and lines[-1][-1] == chr(0x2800 + 0x80)


def test_printed_lines_routes_only_this_threads_prints(capsys):
    got, other = [], threading.Event()
    with E.printed_lines(got.append):
        print("[t-SNE] Iteration 50: error = 1")
        t = threading.Thread(target=lambda: (print("another thread"), other.set()))
        t.start()
        t.join()
    print("after")
    assert got == ["[t-SNE] Iteration 50: error = 1"] and other.is_set()
    assert capsys.readouterr().out == "another thread\nafter\n"


@pytest.fixture
def tiny_run(fixture_runs, tiny_data, tmp_path):
    path = shutil.copytree(fixture_runs / "tiny-none", tmp_path / "tiny-none")
    shutil.rmtree(runs.Run(path).epochs_dir)  # a run that kept only its best weights (as with --no-keep-epoch-weights)
    mnist = load_mnist(tiny_data, download=False)
    return runs.Run(path), mnist.test_images, mnist.test_labels.numpy()


def test_an_embedding_is_stored_in_the_run_folder_and_read_back_until_its_weights_change(tiny_run):
    run, images, labels = tiny_run
    (w,) = E.weight_choices(run)
    assert w.key == "best" and "best.pt" in w.label
    model = E.load_weights(run, w.path)
    e, note = E.embedding(run, w, model, "flatten", "pca", images, labels, 100, seed=5)
    assert note is None and not e.cached and len(e.indices) == 100
    path = E.cache_path(run, w, "flatten", "pca", 100, 5)
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    again, _ = E.embedding(run, w, model, "flatten", "pca", images, labels, 100, seed=5)
    assert again.cached and np.array_equal(again.coords, e.coords) and np.array_equal(again.indices, e.indices)
    np.testing.assert_allclose(again.probs, e.probs, atol=1e-3)   # stored as float16
    assert again.meta["explained_variance"] == e.meta["explained_variance"]
    # another stage, sample or seed is another file
    assert not E.embedding(run, w, model, "pool3", "pca", images, labels, 100, seed=5)[0].cached
    assert not E.embedding(run, w, model, "flatten", "pca", images, labels, 100, seed=6)[0].cached
    # new weights (a training went on): computed again
    st = w.path.stat()
    os.utime(w.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert E.load_cached(run, w, "flatten", "pca", 100, 5, labels) is None
    # other test labels (another MNIST): computed again
    e2, _ = E.embedding(run, w, model, "flatten", "pca", images, labels, 100, seed=5)
    assert not e2.cached
    assert E.load_cached(run, w, "flatten", "pca", 100, 5, labels) is not None
    assert E.load_cached(run, w, "flatten", "pca", 100, 5, (labels + 1) % 10) is None


def test_a_run_folder_that_cannot_be_written_still_gets_its_embedding(tiny_run):
    run, images, labels = tiny_run
    (run.path / E.CACHE_DIR).write_text("a file where the cache folder would be")
    (w,) = E.weight_choices(run)
    e, note = E.embedding(run, w, E.load_weights(run, w.path), "flatten", "pca", images, labels, 50)
    assert len(e.coords) == 50 and "could not be stored" in note


def test_the_trainer_keeps_every_epochs_weights_unless_told_not_to(fixture_runs, tiny_data, tmp_path):
    run = runs.Run(fixture_runs / "tiny-none")  # trained with the defaults
    ws = E.weight_choices(run)
    epochs = [r["epoch"] for r in run.epoch_records()]
    assert [w.epoch for w in ws] == epochs and len(epochs) >= 2
    for w, rec in zip(ws, run.epoch_records()):
        saved = runs.load_checkpoint(w.path)  # weights_only, on the CPU
        assert saved["epoch"] == rec["epoch"] and saved["test_acc"] == rec["test_acc"]
    best = runs.load_checkpoint(run.best_ckpt)
    kept = runs.load_checkpoint(run.epoch_weights(best["epoch"]))["model"]
    assert all(torch.equal(kept[k], v) for k, v in best["model"].items())  # the best epoch's are best.pt's
    assert not any(run.epochs_dir.glob("*.tmp"))

    path = train_tiny(tmp_path, tiny_data, name="lean", keep_epoch_weights=False, epochs=1)
    assert not runs.Run(path).epochs_dir.exists() and [w.key for w in E.weight_choices(runs.Run(path))] == ["best"]


def test_per_epoch_weights_are_offered_when_the_run_kept_them(tiny_run):
    run, images, labels = tiny_run
    best = runs.load_checkpoint(run.best_ckpt)
    run.epochs_dir.mkdir()
    fresh = build("fast").state_dict()
    torch.save({"model": fresh, "epoch": 1}, run.epochs_dir / "epoch_001.pt")
    torch.save({"model": best["model"], "epoch": 2}, run.epochs_dir / "epoch_002.pt")
    ws = E.weight_choices(run)
    assert [(w.key, w.label, w.epoch) for w in ws] == [("epoch-001", "epoch 1", 1), ("epoch-002", "epoch 2", 2)]
    a = E.embedding(run, ws[0], E.load_weights(run, ws[0].path), "flatten", "pca", images, labels, 60)[0]
    b = E.embedding(run, ws[1], E.load_weights(run, ws[1].path), "flatten", "pca", images, labels, 60)[0]
    assert not np.allclose(a.probs, b.probs)   # each epoch's own weights
    assert len(list((run.path / E.CACHE_DIR).glob("epoch-00*_flatten_pca_n60_s0.npz"))) == 2
