"""Suspicious labels (issue 26): the ranking finds flipped labels in a synthetic prediction matrix, several runs rank
at least as well as one, and the CLI's contract and bad inputs."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from mnistviz import labels as lab
from mnistviz.runs import Run

N, FLIPPED = 2000, 20
METHODS = ["self-confidence"] + (["cleanlab"] if lab._cleanlab() else [])


def synthetic(seed=0, confident_mistakes=0):
    """(given labels, true labels, probs, flipped indices): a good model's probabilities of N images; 20 labels
    flipped to another digit; 60 hard images the model gets wrong with little confidence; `confident_mistakes`
    more it gets wrong confidently (its own error, not the label's)."""
    rng = np.random.default_rng(seed)
    true = np.arange(N) % 10
    probs = rng.dirichlet(np.ones(10) * 0.3, N) * 0.1
    probs[np.arange(N), true] += 0.9
    hard = rng.choice(N, 60 + confident_mistakes, replace=False)
    for k, i in enumerate(hard):
        other = (true[i] + 1 + rng.integers(9)) % 10
        probs[i] = 0.02
        sure = k >= 60
        probs[i, true[i]], probs[i, other] = (0.02, 0.8) if sure else (0.38, 0.44)
    probs /= probs.sum(1, keepdims=True)
    given = true.copy()
    flipped = rng.choice(np.setdiff1d(np.arange(N), hard), FLIPPED, replace=False)
    given[flipped] = (true[flipped] + 1 + rng.integers(0, 9, FLIPPED)) % 10
    return given, true, probs, set(flipped.tolist())


@pytest.mark.parametrize("method", METHODS)
def test_flipped_labels_come_first(method):
    given, _, probs, flipped = synthetic()
    used, found = lab.rank(given, probs, top=FLIPPED, method=method)
    hits = sum(s["index"] in flipped for s in found)
    assert hits >= 18, (used, hits)
    scores = [s["score"] for s in found]
    assert scores == sorted(scores, reverse=True)  # most suspicious first
    s = found[0]
    assert s["label"] == given[s["index"]] and s["predicted"] == probs[s["index"]].argmax()
    assert s["score"] == pytest.approx(1 - probs[s["index"], s["label"]], abs=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_several_runs_rank_at_least_as_well_as_one(method):
    # each run is confidently wrong on 15 images of its own: alone it takes some of them for label errors
    given, _, _, flipped = synthetic(0)
    one = [synthetic(0, confident_mistakes=15)[2], synthetic(1, confident_mistakes=15)[2]]
    # the same flipped labels in both (seed 0's); run 2's own mistakes and noise are its own
    one[1] = np.where(np.isin(np.arange(N), list(flipped))[:, None], one[0], one[1])
    alone = [sum(s["index"] in flipped for s in lab.rank(given, p, FLIPPED, method)[1]) for p in one]
    together = sum(s["index"] in flipped for s in lab.rank(given, (one[0] + one[1]) / 2, FLIPPED, method)[1])
    assert together >= max(alone) and together >= 18, (alone, together)


@pytest.mark.skipif(not lab._cleanlab(), reason="cleanlab is not installed")
def test_an_unsure_model_still_gets_its_wrong_predictions_ranked():
    # like a model trained with label smoothing (the default model): its mistakes are unsure, and no probability
    # reaches a class's mean self-confidence, confident learning's threshold: it flags no label
    given, true, probs, flipped = synthetic()
    idx = np.array(sorted(flipped))
    probs[idx] = 0.04
    probs[idx, true[idx]] = 0.64
    used, found = lab.rank(given, probs, top=FLIPPED, method="cleanlab")
    assert "0 flagged" in used and len(found) == FLIPPED
    assert all(s["predicted"] != s["label"] for s in found)
    assert sum(s["index"] in flipped for s in found) >= 18


def cli(*args, runs_dir):
    return subprocess.run([sys.executable, "-m", "mnistviz.labels", *args, "--runs-dir", str(runs_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_cli_ranks_a_runs_stored_predictions(fixture_runs):
    p = cli("tiny-none", "tiny-aug", "--top", "5", "--json", runs_dir=fixture_runs)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["runs"] == ["tiny-none", "tiny-aug"] and out["method"]
    given, probs = lab.ensemble([Run(fixture_runs / "tiny-none"), Run(fixture_runs / "tiny-aug")])
    stored = np.load(fixture_runs / "tiny-none" / "test_labels.npy")
    assert len(out["suspects"]) <= 5
    for s in out["suspects"]:
        assert 0 <= s["index"] < len(stored) and s["label"] == stored[s["index"]]
        assert s["predicted"] != s["label"] or out["method"].startswith("cleanlab")
    # the self-confidence ranking by hand: the wrong predictions, the given label's probability lowest first
    wrong = [i for i in range(len(stored)) if probs[i].argmax() != stored[i]]
    by_hand = sorted(wrong, key=lambda i: probs[i, stored[i]])[:5]
    if not out["method"].startswith("cleanlab"):
        assert [s["index"] for s in out["suspects"]] == by_hand


def test_bad_input_exits_2_with_one_line(fixture_runs, tmp_path, capsys):
    root = tmp_path / "runs"
    shutil.copytree(fixture_runs / "tiny-none", root / "full")
    shutil.copytree(fixture_runs / "tiny-none", root / "empty")
    shutil.rmtree(root / "empty" / "preds")
    shutil.copytree(fixture_runs / "tiny-none", root / "short")  # a run that stored a smaller test set
    np.save(root / "short" / "test_labels.npy", np.load(root / "short" / "test_labels.npy")[:150])
    for f in (root / "short" / "preds").glob("*.npy"):
        np.save(f, np.load(f)[:150])
    for args, why in ((["nope"], "no run named 'nope'"), (["empty"], "no stored test predictions"),
                      (["full", "short"], "different test sets"), (["full", "--top", "0"], "--top must be at least 1")):
        try:  # in this process: the same main() the command runs (its start-up is the slow part)
            code = lab.main([*args, "--runs-dir", str(root)])
        except SystemExit as e:  # argparse's own errors
            code = e.code
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert why in err and err.count("\n") == 1, (args, err)
