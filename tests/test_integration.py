"""On real MNIST (MNISTVIZ_DATA; CI exports it): the seeds' LeNet-5 for one epoch, and the committed default model."""
import json
import subprocess
import sys


from mnistviz import evaluate, runs
from tests.conftest import ROOT


def test_lenet5_one_epoch_reaches_97(real_mnist, tmp_path):
    p = subprocess.run([sys.executable, "-m", "mnistviz.train", "--preset", "lenet5-sgd", "--epochs", "1",
                        "--runs-dir", str(tmp_path), "--name", "lenet1", "--no-progress"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                                    "MNISTVIZ_DATA": str(real_mnist)})
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["status"] == "completed" and out["epochs"] == 1
    assert out["test_accuracy"] >= 0.97
    run = runs.Run(out["run_dir"])
    assert run.probs().shape == (10000, 10)
    assert run.config()["batch_size"] == 32 and run.config()["model"] == "lenet5"


def test_committed_default_model(real_mnist, monkeypatch):
    monkeypatch.setenv("MNISTVIZ_DATA", str(real_mnist))
    d = ROOT / "checkpoints" / "default"
    size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
    assert size < 5 * 1024 * 1024
    res = evaluate.evaluate_run(d)
    assert res["test_accuracy"] >= 0.993
    assert runs.Run(d).status()["status"] == "completed"
