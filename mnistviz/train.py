"""The one training loop, used by the CLI and the dashboard: `python -m mnistviz.train --help`.

The whole training set sits in memory as a uint8 tensor; each step gathers a batch by index,
augments it as one tensor (mnistviz.augment) and takes an optimizer step. No DataLoader, no PIL.
That is where the speed over a torchvision-transform pipeline comes from (bench/train_speed.py).

Reading order: train_run() -> _train(), which is _setup(), then for each epoch _train_epoch() (a _step() per batch,
_after_step() for the bookkeeping) and _end_epoch(), then _finish(). On a GPU (or with bf16, or data_on_device) the
epoch is _train_epoch_on_device(): everything stays on the device, and the loss is read back only when a record
needs it (_flush).
"""
from __future__ import annotations

import dataclasses
import errno
import gc
import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from . import augment as aug, cartography, device as devices, fastgrad, procs
from . import export  # TensorBoard's copy of the metrics
from .procs import StopRequested
from .cli import config_from_args, train_parser
# re-exported: pages, jobs and tests use train.Config, train.validate, train.PRESETS...
from .config import OPTIMIZERS, PRECISIONS, PRESETS, SCHEDULES, Config, preset_config, validate  # noqa: F401
from .data import MNIST, MNISTMissing, load_mnist, split_validation
from .evaluate import evaluate
from .models import build
from .runs import (Run, RunError, WriteError, atomic_write_json, load_checkpoint, run_path, runs_dir,
                   save_checkpoint)

RATE_WINDOW_S = 2.0  # the status's images/s: over about the last this many seconds of training steps
BEAT_S = 0.5         # status.json's heartbeat and progress during steps, at most this often


def _optimizer(model, cfg: Config, fused: bool | None = True):
    # fused: one kernel per step for all parameters, much faster on CPU than foreach; the same update rule and
    # state_dict keys (rounding can differ)
    params = model.parameters()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0, fused=fused)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def _fused_optimizer(model, cfg: Config):
    """The fused optimizer where torch has one for the model's device (CPU, CUDA...), else torch's default."""
    try:
        return _optimizer(model, cfg)
    except RuntimeError:  # "fused=True requires all the params to be floating point Tensors of supported devices"
        return _optimizer(model, cfg, fused=None)


def _scheduler(opt, cfg: Config, steps_per_epoch: int):
    if cfg.schedule == "step":  # divide by 10 at 50% and 75% of training
        return torch.optim.lr_scheduler.MultiStepLR(
            opt, [steps_per_epoch * cfg.epochs // 2, steps_per_epoch * cfg.epochs * 3 // 4], 0.1)
    if cfg.schedule == "onecycle":
        # linear one-cycle: lr/25 up to lr over the first quarter, then down to 0 (torch's OneCycleLR
        # divides by zero when a run has only a few steps)
        total = steps_per_epoch * cfg.epochs
        warm = max(1, round(0.25 * total))

        def one_cycle(step):
            if step < warm:
                return 0.04 + 0.96 * step / warm
            return max(0.0, (total - step) / max(1, total - warm))

        return torch.optim.lr_scheduler.LambdaLR(opt, one_cycle)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _fresh_state() -> dict:
    """What the loop accumulates. It goes into last.pt, so a resumed run logs exactly what an uninterrupted one
    would: ep_* sum the epoch for its record, w_* the window of steps for the next step record."""
    return dict(epoch=0, step_in_epoch=0, global_step=0, train_seconds=0.0, best_acc=-1.0,
                ep_loss=0.0, ep_correct=0, ep_seen=0, ep_seconds=0.0,
                w_loss=0.0, w_correct=0, w_seen=0, w_seconds=0.0)


@dataclass
class _Training:
    """One run being trained: what _setup made, and the counters the loop keeps outside last.pt."""
    run: Run
    cfg: Config
    data: MNIST
    x_tr: torch.Tensor
    y_tr: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    state: dict = field(default_factory=_fresh_state)
    grads: Callable | None = None  # fastgrad's hand-run loss and gradients, or None: autograd
    opt_step: Callable | None = None
    checkpoint_step: int = 0       # the global step last.pt holds: where --resume continues from
    bar: object = None             # tqdm progress bar (CLI on a terminal)
    lr: float = 0.0                # the learning rate of the latest step
    level: object = None           # the augmentation level (augment.LEVELS)
    gen: torch.Generator = field(default_factory=torch.Generator)  # augmentation, seeded per step
    last_beat: float = 0.0
    rate_seen: int = 0             # the status's images/s: images and seconds since it was last computed
    rate_secs: float = 0.0
    rate: float | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    on_device: bool = False        # the epoch runs as _train_epoch_on_device
    x_test: torch.Tensor | None = None  # the test set where the model is (the device)
    y_test: torch.Tensor | None = None
    pending: list | None = None    # _train_epoch_on_device: [loss sum, correct] on the device, not yet in state
    cartography: object = None     # this epoch's per-image label probabilities (cartography.Recorder)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs


def train_run(run: Run, resume: bool = False, stop: StopRequested | None = None, progress: bool = False) -> dict:
    """Train the run in `run.path` (config.json must exist). Returns the CLI's result dict.
    Any exception marks the run failed, with its text, before it propagates. The run folder is held (procs.hold_run)
    while it trains: procs.RunHeld, with the folder untouched, when another process trains it."""
    with procs.hold_run(run.path):
        return _train_held(run, resume, stop, progress)


def _train_held(run: Run, resume: bool, stop: StopRequested | None, progress: bool) -> dict:
    try:
        return _train(run, resume, stop or StopRequested(), progress)
    except BaseException as e:
        try:
            run.write_status(status="failed", error=failure_message(e), ended=time.time())
        except OSError:  # the disk that failed the run may refuse the status too: its end then reads interrupted
            pass
        raise


def failure_message(e: BaseException, resume: str = "resume the run") -> str:
    """Why a training failed, for its status and the CLI: a file that could not be written (a full disk...) in
    one sentence that says what to do; anything else as its type and text."""
    if isinstance(e, WriteError):
        fix = "free some space there" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "fix that"
        return f"{e}: {fix}, then {resume}"
    if isinstance(e, (OutOfDeviceMemory, devices.DeviceError)):
        return str(e)
    return f"{type(e).__name__}: {e}"


def _train(run: Run, resume: bool, stop: StopRequested, progress: bool) -> dict:
    t = _setup(run, resume, progress)
    status = "completed"
    # the objects alive now (torch, the data, the model) stay out of the collector's passes until the loop ends:
    # a full pass over them is slow, and would land inside a training step
    gc.freeze()
    try:
        for epoch in range(t.state["epoch"], t.cfg.epochs):
            if not (_train_epoch_on_device if t.on_device else _train_epoch)(t, epoch, stop):
                status = "stopped"
                break
            test_acc = _end_epoch(t, epoch)
            if t.cfg.target_accuracy is not None and test_acc >= t.cfg.target_accuracy:
                break
        if status == "stopped":
            _checkpoint(t)  # a partial window stays in the checkpoint: resuming continues it
        elif t.state["w_seen"]:
            _log_window(t, t.state["epoch"])  # the run's last steps, fewer than log_every
    except devices.out_of_memory_errors() as e:
        raise OutOfDeviceMemory(_out_of_memory_message(t)) from e
    finally:
        gc.unfreeze()
        export.to_tensorboard(run, close=True)
        if t.bar:
            t.bar.close()
    return _finish(t, status)


# ---------- setup ----------

def _setup(run: Run, resume: bool, progress: bool) -> _Training:
    """Data, model, optimizer and schedule for the run; restored from last.pt when resuming; status running."""
    cfg = Config.from_dict(run.config())
    dev = _device(cfg)
    torch.manual_seed(cfg.seed)
    data = load_mnist()
    x_tr, y_tr, x_val, y_val = split_validation(data.train_images, data.train_labels, cfg.val_size, cfg.seed)
    if cfg.limit_train:
        x_tr, y_tr = x_tr[:cfg.limit_train], y_tr[:cfg.limit_train]
    steps_per_epoch = max(1, math.ceil(len(x_tr) / cfg.batch_size))
    model = build(cfg.model).to(dev, memory_format=torch.channels_last)  # built on the CPU: the same weights anywhere
    opt = _fused_optimizer(model, cfg)
    t = _Training(run, cfg, data, x_tr, y_tr, x_val, y_val, model, opt, _scheduler(opt, cfg, steps_per_epoch),
                  steps_per_epoch, device=dev)
    _place(t)
    if resume and not run.last_ckpt.exists():  # a queued run (or one that died before its first checkpoint)
        resume = False
        run.truncate_metrics(0)
    if resume:
        _restore(t)
    else:
        run.save_test_labels(data.test_labels.numpy())
    # who trains it, for procs.identify: pid, start time, the folder it holds, whether SIGTERM stops it
    sigterm_stops = isinstance(signal.getsignal(signal.SIGTERM), StopRequested)
    run.write_status(status="running", **procs.identity_fields(run.path, sigterm_stops), heartbeat=time.time(),
                     started=time.time(), device=str(dev), device_name=devices.describe(str(dev)),
                     eta_s=None,  # a resumed run's old ETA goes: "estimating" until the rate
                     total_steps=t.total_steps, steps_per_epoch=steps_per_epoch, epochs=cfg.epochs)
    if progress:
        from tqdm import tqdm
        t.bar = tqdm(total=t.total_steps, initial=t.state["global_step"], unit="step", file=sys.stderr,
                     dynamic_ncols=True, leave=False)
    t.level = aug.LEVELS[cfg.augment]
    # the one switch for the CPU-only fast paths (fastgrad, native.c): off on any other device, and in its loop
    t.grads, t.opt_step = (None, opt.step) if t.on_device else fastgrad.speedups_for(model, opt, dev)
    t.lr = t.sched.get_last_lr()[0]
    return t


def _device(cfg: Config) -> torch.device:
    """The device the run trains on (devices.DeviceError when this machine lacks it), with CUDA's kernels set up:
    cuDNN picks the fastest convolution per shape, which can change from run to run, unless deterministic."""
    dev = devices.resolve(cfg.device)
    if devices.is_cuda(dev):
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts: before any step
            torch.use_deterministic_algorithms(True, warn_only=True)  # a kernel without such a version warns
        torch.backends.cudnn.benchmark = not cfg.deterministic
    return dev


def _place(t: _Training) -> None:
    """Decide the loop and put the data where it runs: on a GPU (or with bf16, or data_on_device) the training,
    validation and test sets move to the device once, as uint8, and the augmentation's generator lives there."""
    cfg = t.cfg
    t.on_device = t.device.type != "cpu" or cfg.data_on_device or cfg.precision != "fp32"
    t.x_test, t.y_test = t.data.test_images, t.data.test_labels
    if t.on_device:
        for k in ("x_tr", "y_tr", "x_val", "y_val", "x_test", "y_test"):
            setattr(t, k, getattr(t, k).to(t.device))
        t.gen = torch.Generator(device=t.device)


def _restore(t: _Training) -> None:
    """Model, optimizer, schedule, RNG and the loop's sums from last.pt; the metrics cut back to what it holds."""
    ck = load_checkpoint(t.run.last_ckpt)
    t.model.load_state_dict(ck["model"])
    t.opt.load_state_dict(ck["optimizer"])
    t.sched.load_state_dict(ck["scheduler"])
    torch.set_rng_state(ck["rng"])
    if devices.is_cuda(t.device) and isinstance(ck.get("rng_cuda"), torch.Tensor):  # dropout's, on the GPU
        torch.cuda.set_rng_state(ck["rng_cuda"], t.device)
    t.state.update(ck["state"])
    t.checkpoint_step = t.state["global_step"]
    t.run.truncate_metrics(t.state["global_step"])
    if t.state["w_seen"] and any(r["step"] == t.state["global_step"] for r in t.run.step_records()):
        # a window still open in last.pt yet logged at its step: only the run's last steps, logged after the
        # final checkpoint, are (killed before the status said completed); do not log them twice
        t.state.update(w_loss=0.0, w_correct=0, w_seen=0, w_seconds=0.0)


# ---------- one epoch, one step ----------

def _train_epoch(t: _Training, epoch: int, stop: StopRequested) -> bool:
    """Train the rest of one epoch. False when a stop was asked for (before the step it would have taken)."""
    t.model.train()
    bs = t.cfg.batch_size
    perm = torch.randperm(len(t.x_tr), generator=torch.Generator().manual_seed(t.cfg.seed * 100003 + epoch))
    for i in range(t.state["step_in_epoch"], t.steps_per_epoch):
        if stop.is_set():
            return False
        t0 = time.perf_counter()
        xb, yb = _batch(t, perm[i * bs:(i + 1) * bs], epoch, i)
        logits, loss = _step(t, xb, yb)
        cartography.record(t, perm[i * bs:(i + 1) * bs], logits)
        t.lr = t.sched.get_last_lr()[0]  # the rate this step used
        t.sched.step()
        correct = (logits.argmax(1) == yb).sum().item()
        dt = time.perf_counter() - t0
        _after_step(t, epoch, i, len(yb), loss.item(), correct, dt)
    return True


def _batch(t: _Training, idx: torch.Tensor, epoch: int, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images at idx as floats in [0, 1], augmented as the run asks, channels-last; their labels."""
    xb = t.x_tr.index_select(0, idx).unsqueeze(1).float().div_(255)  # index_select: cheaper than x_tr[idx]
    if t.cfg.augment != "none":
        # per step: resumable mid-epoch; modulo 2**64 (manual_seed's range): a seed above 184,461 overflowed it
        t.gen.manual_seed(((t.cfg.seed * 1000003 + epoch) * 100003 + i) % 2**64)
        xb = aug.augment(xb, t.level, t.gen)
    return xb.contiguous(memory_format=torch.channels_last), t.y_tr.index_select(0, idx)


def _step(t: _Training, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch: loss, gradients, update. Returns (logits, loss)."""
    if t.grads:  # fastgrad's hand-run backward: the same gradients, without autograd's graph
        logits, loss = t.grads(t.model, xb, yb, t.cfg.label_smoothing)
    else:
        logits = t.model(xb)
        loss = F.cross_entropy(logits, yb, label_smoothing=t.cfg.label_smoothing)
        t.opt.zero_grad(set_to_none=True)
        loss.backward()
    t.opt_step()
    return logits, loss


def _train_epoch_on_device(t: _Training, epoch: int, stop: StopRequested) -> bool:
    """_train_epoch as a GPU wants it: the batch order, the batches and their augmentation are made on the device
    from the uint8 sets there, and each step's loss and correct count stay there, summed in t.pending, until a step
    record, the epoch's end or a checkpoint reads them (_flush): an .item() per step would wait for the GPU at every
    step. On the CPU (data_on_device) the same permutation as _train_epoch's."""
    t.model.train()
    bs = t.cfg.batch_size
    order = torch.Generator(device=t.device).manual_seed(t.cfg.seed * 100003 + epoch)
    perm = torch.randperm(len(t.x_tr), generator=order, device=t.device)
    for i in range(t.state["step_in_epoch"], t.steps_per_epoch):
        if stop.is_set():
            return False
        t0 = time.perf_counter()
        xb, yb = _batch(t, perm[i * bs:(i + 1) * bs], epoch, i)
        logits, loss = _device_step(t, xb, yb)
        cartography.record(t, perm[i * bs:(i + 1) * bs], logits)  # on the device: no wait
        t.lr = t.sched.get_last_lr()[0]
        t.sched.step()
        b = len(yb)  # the shape is known on the host: no wait
        sums = (loss.detach().float() * b, (logits.argmax(1) == yb).sum())
        t.pending = list(sums) if t.pending is None else [t.pending[0] + sums[0], t.pending[1] + sums[1]]
        _after_step(t, epoch, i, b, 0.0, 0, time.perf_counter() - t0)  # the loss and correct count: in pending
    return True


def _device_step(t: _Training, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """_step with autograd, under bf16 autocast when the run asks for it (the backward and the update outside)."""
    with torch.autocast(t.device.type, dtype=torch.bfloat16, enabled=t.cfg.precision == "bf16"):
        logits = t.model(xb)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=t.cfg.label_smoothing)
    t.opt.zero_grad(set_to_none=True)
    loss.backward()
    t.opt_step()
    return logits, loss


def _flush(t: _Training) -> None:
    """Add the device's pending loss and correct sums to the epoch's and the window's (one wait for the device),
    and the time that wait took to the seconds of training: the steps' own times count only their launch."""
    if t.pending is None:
        return
    t0 = time.perf_counter()
    loss, correct = t.pending[0].item(), int(t.pending[1].item())
    waited = time.perf_counter() - t0
    t.pending = None
    st = t.state
    st["ep_loss"] += loss
    st["w_loss"] += loss
    st["ep_correct"] += correct
    st["w_correct"] += correct
    for k in ("ep_seconds", "w_seconds", "train_seconds"):
        st[k] += waited
    t.rate_secs += waited


class OutOfDeviceMemory(RuntimeError):
    """The device ran out of memory during training; str(e) says what to do."""


def _out_of_memory_message(t: _Training) -> str:
    """One sentence for a run that ran out of device memory: a smaller batch, and what its last.pt holds."""
    kept = (f"its last checkpoint (step {t.checkpoint_step:,}) is intact" if t.run.last_ckpt.exists()
            else "it had no checkpoint yet")
    smaller = f"--batch-size {t.cfg.batch_size // 2}" if t.cfg.batch_size > 1 else "a smaller model"
    return (f"{t.device} ({devices.describe(str(t.device))}) ran out of memory training {t.cfg.model} at batch size "
            f"{t.cfg.batch_size}: train it again with a smaller batch (e.g. {smaller}); {kept}")


def _after_step(t: _Training, epoch: int, i: int, b: int, loss: float, correct: int, dt: float) -> None:
    """Step i of the epoch is done (b images, mean loss, correct predictions, seconds): add it to the sums, log a
    step record every log_every steps, update the status now and then."""
    st = t.state
    loss_sum = loss * b
    st["ep_loss"] += loss_sum
    st["ep_correct"] += correct
    st["ep_seen"] += b
    st["ep_seconds"] += dt
    st["train_seconds"] += dt
    st["global_step"] += 1
    st["step_in_epoch"] = i + 1
    st["w_loss"] += loss_sum
    st["w_correct"] += correct
    st["w_seen"] += b
    st["w_seconds"] += dt
    # the status's images/s: over the last RATE_WINDOW_S seconds of steps, across epoch ends (an epoch's own
    # average jumps about in its first seconds); the epoch records keep the average
    t.rate_seen += b
    t.rate_secs += dt
    if t.rate_secs >= RATE_WINDOW_S:
        t.rate, t.rate_seen, t.rate_secs = t.rate_seen / t.rate_secs, 0, 0.0
    if t.bar:
        t.bar.update(1)
    g = st["global_step"]
    if g % t.cfg.log_every == 0:  # windows run across epoch ends: the last one logged was at g - log_every
        _log_window(t, epoch + (i + 1) / t.steps_per_epoch)
    now = time.time()
    if now - t.last_beat >= BEAT_S:
        t.last_beat = now
        steps_per_s = g / max(st["train_seconds"], 1e-9)
        # no ETA until RATE_WINDOW_S of steps are timed: the first steps (warm-up) are slow, and an ETA made of them
        # read minutes for a run of seconds; the page says "estimating" meanwhile
        eta = (t.total_steps - g) / max(steps_per_s, 1e-9) if t.rate is not None else None
        t.run.write_status(status="running", heartbeat=now, epoch=epoch + 1, step=i + 1, global_step=g,
                           images_per_s=t.rate or st["ep_seen"] / max(st["ep_seconds"], 1e-9),
                           eta_s=eta, progress=g / t.total_steps,
                           checkpoint_step=t.checkpoint_step)


def _log_window(t: _Training, epoch_progress: float) -> None:
    """One point of the per-step curve: the mean over the last log_every steps. Windows run across epoch
    boundaries, so no point stands for a window of one or two steps (such points made spikes at every epoch)."""
    _flush(t)
    st = t.state
    t.run.append_metrics([{"step": st["global_step"], "epoch_progress": round(epoch_progress, 4),
                           "train_loss": st["w_loss"] / st["w_seen"], "train_acc": st["w_correct"] / st["w_seen"],
                           "lr": t.lr, "images_per_s": st["w_seen"] / max(st["w_seconds"], 1e-9),
                           "time": time.time()}])
    st.update(w_loss=0.0, w_correct=0, w_seen=0, w_seconds=0.0)


# ---------- epoch end, finish ----------

def _end_epoch(t: _Training, epoch: int) -> float:
    """Evaluate, store the test predictions and the epoch record, checkpoint. Returns the test accuracy."""
    _flush(t)
    st, run = t.state, t.run
    t_eval = time.perf_counter()
    val_loss, val_acc, _ = evaluate(t.model, t.x_val, t.y_val)
    test_loss, test_acc, probs = evaluate(t.model, t.x_test, t.y_test)
    run.save_probs(epoch + 1, probs)
    cartography.save(t, epoch + 1)
    rec = {"epoch": epoch + 1, "step": st["global_step"],
           "train_loss": st["ep_loss"] / max(st["ep_seen"], 1), "train_acc": st["ep_correct"] / max(st["ep_seen"], 1),
           "val_loss": val_loss, "val_acc": val_acc, "test_loss": test_loss, "test_acc": test_acc,
           "epoch_seconds": st["ep_seconds"], "eval_seconds": time.perf_counter() - t_eval,
           "train_seconds": st["train_seconds"], "images_per_s": st["ep_seen"] / max(st["ep_seconds"], 1e-9),
           "lr": t.lr, "time": time.time()}
    st.update(epoch=epoch + 1, step_in_epoch=0, ep_loss=0.0, ep_correct=0, ep_seen=0, ep_seconds=0.0)
    weights = {"model": t.model.state_dict(), "epoch": epoch + 1, "test_acc": test_acc}
    if test_acc > st["best_acc"]:
        st["best_acc"] = test_acc
        save_checkpoint(run.best_ckpt, weights)
    if t.cfg.keep_epoch_weights:
        run.epochs_dir.mkdir(exist_ok=True)
        save_checkpoint(run.epoch_weights(epoch + 1), weights)
    # the record before the checkpoint: a kill between the two leaves a record that last.pt (still the
    # previous epoch's) does not cover, and --resume drops it (truncate_metrics keeps records up to
    # last.pt's global step) and redoes the epoch; the other order lost the record for good
    run.append_metrics([rec])
    _checkpoint(t)
    run.write_status(checkpoint_step=t.checkpoint_step)
    export.to_tensorboard(run)
    if t.bar:
        t.bar.set_postfix(epoch=epoch + 1, test_acc=f"{test_acc:.4f}")
    return test_acc


def _checkpoint(t: _Training) -> None:
    """last.pt: everything --resume needs to continue from this very step (on any device: runs.save_checkpoint
    saves CPU tensors)."""
    _flush(t)
    extra = {"rng_cuda": torch.cuda.get_rng_state(t.device)} if devices.is_cuda(t.device) else {}
    save_checkpoint(t.run.last_ckpt, {"model": t.model.state_dict(), "optimizer": t.opt.state_dict(),
                                      "scheduler": t.sched.state_dict(), "rng": torch.get_rng_state(),
                                      "state": dict(t.state), "config": dataclasses.asdict(t.cfg), **extra})
    t.checkpoint_step = t.state["global_step"]


def _finish(t: _Training, status: str) -> dict:
    """The final status, and the CLI's result dict."""
    _flush(t)
    st = t.state
    epochs = t.run.epoch_records()
    t.run.write_status(status=status, ended=time.time(), heartbeat=time.time(), epoch=st["epoch"],
                       global_step=st["global_step"], progress=st["global_step"] / t.total_steps,
                       checkpoint_step=t.checkpoint_step)
    return {
        "run": t.run.name, "run_dir": str(t.run.path), "status": status, "epochs": len(epochs),
        "test_accuracy": epochs[-1].get("test_acc") if epochs else None,
        "best_test_accuracy": max((r["test_acc"] for r in epochs if r.get("test_acc") is not None), default=None),
        "train_seconds": round(st["train_seconds"], 3),
    }


# ---------- a new run, and the CLI ----------

def create_run(cfg: Config, root=None) -> Run:
    """Make the run folder (queued) with its config.json. A name given must be new; an automatic one
    (model-augment-time) takes the next free -2, -3... suffix, claimed by mkdir itself, so launches in the same
    second (two processes, say) never clash. RunError when the runs folder cannot be made or written."""
    root = _usable_runs_dir(root)
    cfg.created = cfg.created or time.time()
    automatic = cfg.name is None
    if automatic:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(cfg.created))
        base = f"{cfg.model}-{cfg.augment}-{stamp}"
        cfg.name, k = base, 1
    while True:
        path = run_path(cfg.name, root)
        try:
            path.mkdir()
            break
        except FileExistsError:
            if not automatic:
                raise RunError(f"a run named {cfg.name!r} exists; pick another --name or continue it with "
                               f"--resume {cfg.name}") from None
            k += 1
            cfg.name = f"{base}-{k}"
        except OSError as e:  # a read-only folder (as root, the permission bits let mkdir through: it tries)
            raise RunError(f"the runs folder {root} cannot be written: {e.strerror}") from None
    run = Run(path)
    try:
        atomic_write_json(run.config_file, dataclasses.asdict(cfg))
        run.write_status(status="queued", pid=None)
    except OSError as e:  # a full disk: no half-made run left behind
        shutil.rmtree(path, ignore_errors=True)
        raise RunError(str(e)) from None
    return run


def _usable_runs_dir(root):
    """The runs folder, made when missing; RunError (one line) when it is a file, under a file, or cannot be made."""
    root = runs_dir(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunError(f"the runs folder {root} is a file, not a folder") from None
    except NotADirectoryError:
        above = next((p for p in root.parents if p.is_file()), root.parent)
        raise RunError(f"the runs folder {root} cannot be made: {above} is a file, not a folder") from None
    except OSError as e:
        raise RunError(f"the runs folder {root} cannot be made: {e.strerror}") from None
    return root


def _hold_for_life(run: Run, p) -> None:
    """Hold the run folder until this process ends (train_run's own hold then nests in it); exit 2 with one line
    when another process trains it."""
    hold = procs.hold_run(run.path)
    try:
        hold.__enter__()  # never left: the kernel drops the lock when the process ends
    except procs.RunHeld as e:
        p.error(str(e))
    except OSError as e:  # a folder that cannot be written (its lock file cannot be made) cannot be trained either
        p.error(f"run {run.name} cannot be trained here: its lock file cannot be made in {run.path} ({e.strerror})")
    _HELD.append(hold)  # referenced: a collected hold would close its generator, and so the lock


_HELD: list = []


def _resume_device(run: Run, device: str | None, p) -> None:
    """--resume continues where config.json says, or on `device` (--device), which then goes into config.json: a
    checkpoint holds CPU tensors, so a run started on a GPU can go on on the CPU. Exit 2 when the device is not here."""
    cfg = run.config()
    try:
        devices.resolve(device or cfg.get("device") or "cpu")
    except devices.DeviceError as e:
        p.error(str(e) if device else f"run {run.name} trains on {cfg.get('device')}, which is not here ({e}); "
                                      f"continue it on another device with --resume {run.name} --device cpu")
    if device and device != cfg.get("device"):
        try:
            atomic_write_json(run.config_file, {**cfg, "device": device})
        except OSError as e:
            raise RunError(f"run {run.name}: config.json cannot be written ({e})") from None


def main(argv=None) -> int:
    p = train_parser()
    args = p.parse_args(argv)
    try:
        load_mnist()  # before any run folder exists: missing data must not leave a failed run behind
    except MNISTMissing as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    try:
        if args.resume:
            run = Run(run_path(args.resume, args.runs_dir))
            if not run.path.is_dir():
                p.error(f"no run named {args.resume!r} to resume in {runs_dir(args.runs_dir)}")
            _hold_for_life(run, p)  # before its status is read: two --resume at once both read "queued"
            st = run.status().get("status")
            if st == "completed":
                p.error(f"run {args.resume} is already completed")
            if st == "running":
                p.error(f"run {args.resume} is still running (pid {run.status().get('pid')})")
            cfg_errors = validate(Config.from_dict(run.config()))
            if cfg_errors:
                p.error(f"run {args.resume} has an invalid config.json: " + "; ".join(cfg_errors.values()))
            _resume_device(run, args.device, p)
            resume = True
        else:
            cfg = config_from_args(args)
            errors = validate(cfg)
            if errors:
                p.error("; ".join(errors.values()))
            try:
                devices.resolve(cfg.device)
            except devices.DeviceError as e:
                p.error(str(e))
            run = create_run(cfg, args.runs_dir)
            _hold_for_life(run, p)
            resume = False
    except RunError as e:
        p.error(str(e))
    stop = StopRequested()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        result = train_run(run, resume=resume, stop=stop, progress=sys.stderr.isatty() and not args.no_progress)
    except Exception as e:
        print(f"{p.prog}: error: training failed: {failure_message(e, f'continue with --resume {run.name}')}",
              file=sys.stderr)
        print(json.dumps({"run": run.name, "run_dir": str(run.path), "status": "failed", "epochs": None,
                          "test_accuracy": None, "best_test_accuracy": None, "train_seconds": None}))
        return 1
    if result["best_test_accuracy"] is not None:
        print(f"{result['status']}: {result['run']} after {result['epochs']} epochs, test accuracy "
              f"{result['test_accuracy']:.2%} (best {result['best_test_accuracy']:.2%}), "
              f"{result['train_seconds']:.1f} s training", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
