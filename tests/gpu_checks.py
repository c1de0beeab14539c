"""The checks that need a CUDA GPU, as plain functions: tests/test_device.py runs them under pytest (marked `gpu`,
skipped without CUDA), and `python3 -m tests.gpu_checks` runs them where pytest is missing (bench/gpu_check.sh).
They use the real MNIST in $MNISTVIZ_DATA; each takes an empty folder for its runs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _cli(*args, timeout=300) -> dict:
    p = subprocess.run([sys.executable, "-m", "mnistviz.train", "--no-progress", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def check_cli_trains_on_cuda_and_its_checkpoints_hold_cpu_tensors(tmp: Path) -> None:
    from mnistviz import runs

    res = _cli("--device", "cuda", "--epochs", "1", "--runs-dir", str(tmp), "--name", "g1")
    assert res["status"] == "completed" and res["test_accuracy"] > 0.97, res
    run = runs.Run(res["run_dir"])
    st = run.status()
    assert st["device"] == "cuda:0" and "GiB" in st["device_name"], st
    assert runs.device_of(run.config(), st) == "cuda:0"
    for ck in (run.best_ckpt, run.last_ckpt):
        loaded = torch.load(ck, weights_only=True)  # no map_location: each tensor where it was saved
        devs = {t.device.type for t in _tensors(loaded)}
        assert devs == {"cpu"}, (ck.name, devs)
    model = runs.load_model(run.path)  # as the analysis pages and Draw load it: on the CPU
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def check_deterministic_cuda_runs_repeat_their_metrics(tmp: Path) -> None:
    from mnistviz import runs

    args = ("--device", "cuda", "--deterministic", "--epochs", "1", "--limit-train", "12000", "--augment", "standard",
            "--seed", "3", "--log-every", "5", "--runs-dir", str(tmp))
    a, b = _cli(*args, "--name", "det-a"), _cli(*args, "--name", "det-b")
    ma, mb = (runs.Run(r["run_dir"]).metrics() for r in (a, b))
    keys = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc")
    assert [[r.get(k) for k in keys] for r in ma] == [[r.get(k) for k in keys] for r in mb]


def check_bf16_learns(tmp: Path) -> None:
    res = _cli("--device", "cuda", "--precision", "bf16", "--epochs", "1", "--runs-dir", str(tmp), "--name", "bf16")
    assert res["status"] == "completed" and res["test_accuracy"] > 0.97, res


def check_out_of_memory_fails_the_run_with_a_sentence(tmp: Path) -> None:
    """A real CUDA out-of-memory: most of the GPU's memory taken first, then batch 8192 on the wide model."""
    from mnistviz import runs, train

    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(max(0, free - (300 << 20)), dtype=torch.uint8, device="cuda")
    try:
        run = train.create_run(train.Config(name="oom", device="cuda", model="wide", batch_size=8192, epochs=1), tmp)
        try:
            train.train_run(run)
        except train.OutOfDeviceMemory as e:
            msg = str(e)
        else:
            raise AssertionError("no out-of-memory with 300 MiB left")
    finally:
        del hog
        torch.cuda.empty_cache()
    st = runs.Run(run.path).status()
    assert st["status"] == "failed" and st["error"] == msg and "--batch-size 4096" in msg, st


class StopAfter:
    """A stop request that arrives after n steps (as a SIGTERM would): train_run's `stop`."""
    def __init__(self, n):
        self.n = n

    def is_set(self):
        self.n -= 1
        return self.n < 0


def check_a_gpu_run_resumes_on_the_cpu(tmp: Path) -> None:
    from mnistviz import runs, train

    run = train.create_run(train.Config(name="moves", device="cuda", epochs=2, limit_train=6000), tmp)
    assert train.train_run(run, stop=StopAfter(30))["status"] == "stopped"  # mid-epoch 2 (24 steps an epoch)
    res = _cli("--resume", "moves", "--device", "cpu", "--runs-dir", str(tmp))
    assert res["status"] == "completed" and res["epochs"] == 2, res
    assert runs.Run(run.path).config()["device"] == "cpu" and runs.Run(run.path).status()["device"] == "cpu"


CHECKS = [check_cli_trains_on_cuda_and_its_checkpoints_hold_cpu_tensors, check_deterministic_cuda_runs_repeat_their_metrics,
          check_bf16_learns, check_out_of_memory_fails_the_run_with_a_sentence, check_a_gpu_run_resumes_on_the_cpu]


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_checks: no CUDA GPU here: nothing to check")
        return 0
    failed = 0
    for check in CHECKS:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                check(Path(tmp))
                print(f"PASS {check.__name__} ({time.perf_counter() - t0:.1f} s)")
            except Exception as e:  # noqa: BLE001 - every check runs, each failure is reported
                failed += 1
                print(f"FAIL {check.__name__}: {type(e).__name__}: {e}")
    print(f"gpu_checks: {len(CHECKS) - failed} passed, {failed} failed on {torch.cuda.get_device_name(0)}, "
          f"torch {torch.__version__}, MNISTVIZ_DATA={os.environ.get('MNISTVIZ_DATA')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
