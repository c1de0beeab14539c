"""Training on a chosen device (issue 21): --device, the device loop a GPU runs (exercised here on the CPU through
data_on_device), device-free checkpoints, out of device memory, and where the dashboard shows the device. The checks
that need a real GPU live in tests/gpu_checks.py and run here marked `gpu` (skipped without CUDA)."""
import json
import signal
import subprocess
import sys

import pytest
import torch

from mnistviz import augment, device, live, runs, train
from tests import gpu_checks
from tests.conftest import ROOT, TINY

NO_CUDA = not torch.cuda.is_available()


def _run(root, **overrides):
    run = train.create_run(train.Config(**{**TINY, **overrides}), root)
    return run, train.train_run(run)


def _main(args):
    """train.main in this process (its signal handlers put back after): the exit code."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return train.main(args)
    except SystemExit as e:
        return e.code
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)


def test_device_cpu_and_auto_train_a_tiny_run_and_say_where(tiny_env, capsys):
    args = ["--epochs", "1", "--batch-size", "50", "--val-size", "100", "--limit-train", "200", "--no-progress"]
    assert _main([*args, "--device", "cpu", "--name", "on-cpu"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run = runs.Run(out["run_dir"])
    assert out["status"] == "completed" and run.config()["device"] == "cpu"
    assert run.status()["device"] == "cpu" and run.status()["device_name"].startswith("CPU, ")
    # auto through a real process: the default a terminal gets; config.json keeps what was asked, status.json says
    # what it became here
    p = subprocess.run([sys.executable, "-m", "mnistviz.train", *args, "--device", "auto", "--name", "on-auto"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    run = runs.Run(json.loads(p.stdout.strip().splitlines()[-1])["run_dir"])
    assert run.config()["device"] == "auto" and run.status()["device"] == device.present()[0]
    state, stats = live.stats(run)  # the live view's Status says where it ran
    assert stats[0] == ("Status", "completed", f"on {device.present()[0]} ({device.describe(device.present()[0])})")


BAD_DEVICES = [
    pytest.param("cuda", "device cuda is not available", marks=pytest.mark.skipif(not NO_CUDA, reason="CUDA is here")),
    pytest.param("cuda:7", "device cuda:7 is not available",
                 marks=pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7")),
    pytest.param("mps", "device mps (Apple silicon's GPU) is not available",
                 marks=pytest.mark.skipif("mps" in device.present(), reason="MPS is here")),
    ("garbage", "unknown device 'garbage': give auto, cpu, cuda, cuda:N or mps"),
    ("cuda:x", "unknown device 'cuda:x'"),
]


@pytest.mark.parametrize("spec, said", BAD_DEVICES)
def test_a_device_not_here_exits_2_with_one_line_naming_the_devices_here(tiny_env, capsys, spec, said):
    assert _main(["--device", spec]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("python -m mnistviz.train: error: ")
    assert said in err and f"this machine has {', '.join(device.present())}" in err, err
    assert list(tiny_env.iterdir()) == []  # nothing created


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is here")
def test_a_run_made_for_cuda_resumes_here_only_on_a_device_named_again(tiny_env, capsys):
    run = train.create_run(train.Config(**{**TINY, "epochs": 1, "limit_train": 100}, name="gpu-run", device="cuda"),
                           tiny_env)
    assert _main(["--resume", "gpu-run"]) == 2
    err = capsys.readouterr().err
    assert "run gpu-run trains on cuda, which is not here" in err and "--resume gpu-run --device cpu" in err
    assert _main(["--resume", "gpu-run", "--device", "cpu", "--no-progress"]) == 0
    assert run.config()["device"] == "cpu" and run.status()["status"] == "completed"


def _metrics(run):
    return [{k: v for k, v in r.items() if k not in ("time", "epoch_seconds", "eval_seconds", "train_seconds",
                                                      "images_per_s")} for r in run.metrics()]


def test_the_gpu_loop_on_the_cpu_learns_repeats_itself_and_writes_the_same_records(tiny_env, monkeypatch):
    """data_on_device: the loop a GPU runs (data on the device, no fast paths, the loss read back only for a
    record), here on the CPU. It learns, the same seed gives the same metrics, its records are the normal loop's."""
    items = []
    real_item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: items.append(1) or real_item(self))
    over = dict(epochs=2, model="net-320", optimizer="adam", lr=3e-3, schedule="none", augment="light", log_every=5,
                seed=4)
    a, res = _run(tiny_env, **over, data_on_device=True, name="dev-a")
    steps = 2 * 10  # 500 training images at batch 50
    # read back for the 4 step records and in the 4 evaluations, never at each step
    assert len(items) < steps
    monkeypatch.setattr(torch.Tensor, "item", real_item)
    assert res["status"] == "completed" and a.epoch_records()[-1]["test_acc"] > 0.3  # chance: 0.1
    b, _ = _run(tiny_env, **over, data_on_device=True, name="dev-b")
    assert _metrics(a) == _metrics(b)
    c, _ = _run(tiny_env, **over, name="normal")  # the CPU's own loop, its hand-run backward and all
    assert [sorted(r) for r in a.metrics()] == [sorted(r) for r in c.metrics()]
    assert [r["step"] for r in a.metrics()] == [r["step"] for r in c.metrics()]
    # the same batches and weights to start with: the losses agree but for rounding
    assert a.metrics()[0]["train_loss"] == pytest.approx(c.metrics()[0]["train_loss"], rel=1e-3)
    assert sum(r["train_seconds"] > 0 for r in a.epoch_records()) == 2


def test_the_gpus_thickness_change_equals_the_cpus():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=g)
    pick = torch.rand(64, generator=g)
    dilate, erode = pick < 0.2, (pick >= 0.2) & (pick < 0.4)
    cpu = augment._thickness(x.clone(), dilate, erode, sync_free=False)
    gpu = augment._thickness(x.clone(), dilate, erode, sync_free=True)
    assert torch.equal(cpu, gpu) and not torch.equal(cpu, x)


def _oom_on_training_forward(n):
    """A forward hook on every module (torch's global one) that makes torch raise its own out-of-memory error at the
    n-th forward of a model in training mode, as CUDA's allocator would."""
    calls = []

    def hook(module, args, out):
        if isinstance(module, torch.nn.Sequential) and module.training:
            calls.append(1)
            if len(calls) == n:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return torch.nn.modules.module.register_module_forward_hook(hook)


def test_out_of_device_memory_fails_the_run_with_a_sentence_and_keeps_its_checkpoint(tiny_env, capsys):
    hook = _oom_on_training_forward(10 + 3)  # the 3rd batch of epoch 2: last.pt holds epoch 1
    try:
        code = _main(["--epochs", "2", "--batch-size", "50", "--val-size", "100", "--data-on-device", "--name", "oom",
                      "--no-progress"])
    finally:
        hook.remove()
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    run = runs.Run(tiny_env / "oom")
    st = run.status()
    assert st["status"] == "failed" and st["error"] in err
    assert st["error"] == ("cpu (" + device.describe("cpu") + ") ran out of memory training fast at batch size 50: "
                           "train it again with a smaller batch (e.g. --batch-size 25); its last checkpoint (step 10) "
                           "is intact")
    assert runs.load_checkpoint(run.last_ckpt)["state"]["global_step"] == 10
    runs.load_model(run.path)  # the pages can still open it


@pytest.mark.skipif(not NO_CUDA, reason="CUDA is here: the real thing is checked by gpu_checks")
def test_a_run_whose_checkpoints_were_saved_on_a_gpu_opens_on_the_cpu(tiny_env, monkeypatch):
    """torch.save tags each tensor with the device it was on; here torch is made to tag them cuda:0, as a GPU
    run's files are. A plain torch.load of them fails on this machine; the run store's loads do not."""
    def as_if_on_the_gpu(storage):
        return "cuda:0" if storage.device.type == "cpu" else None

    registry = torch.serialization._package_registry
    monkeypatch.setattr(torch.serialization, "_package_registry", [(0, as_if_on_the_gpu, lambda *a: None), *registry])
    run = train.create_run(train.Config(**{**TINY, "data_on_device": True}, name="from-gpu"), tiny_env)
    assert train.train_run(run, stop=gpu_checks.StopAfter(15))["status"] == "stopped"  # mid-epoch 2
    monkeypatch.setattr(torch.serialization, "_package_registry", registry)
    for ck in (run.best_ckpt, run.last_ckpt):
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(ck, weights_only=True)
    model = runs.load_model(run.path)  # as Draw and the analysis pages load it
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert train.train_run(run, resume=True)["status"] == "completed"  # model, optimizer and all, from last.pt


def test_the_runs_table_and_the_train_form_show_the_device(tiny_env, fixture_runs, app):
    from mnistviz import charts  # plotly: not on a GPU box that runs only the trainer's tests

    good, _ = runs.list_runs(fixture_runs)
    assert set(charts.runs_table(good)["device"]) == {"cpu"}
    made = train.create_run(train.Config(name="not-started"), tiny_env)
    made.write_status(status="stopped")  # stopped before its trainer said where: what it asks for
    assert made.summary()["device"] == "auto"
    at = app()
    table = at.dataframe[0].value
    assert "device" in table.columns and table.set_index("name").loc["not-started", "device"] == "auto"
    at = app("pages/train.py")
    box = at.selectbox(key="cfg_device")
    assert box.value == "auto" and box.options[0] == f"auto: {device.present()[0]} ({device.describe('cpu')})"
    # the page may run with its threads pinned (pages/_shared.py), so the count is whatever it had then
    assert any(o.startswith("cpu (CPU, ") and o.endswith(("thread)", "threads)")) for o in box.options)
    assert at.selectbox(key="cfg_precision").options == ["fp32", "bf16"]


@pytest.mark.gpu
@pytest.mark.skipif(NO_CUDA, reason="no CUDA GPU here: bench/gpu_check.sh runs these on a machine with one")
@pytest.mark.parametrize("check", gpu_checks.CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_on_a_gpu(check, real_mnist, tmp_path):
    check(tmp_path)
