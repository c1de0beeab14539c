"""The one training loop, used by the CLI and the dashboard: `python -m mnistviz.train --help`.

The whole training set sits in memory as a uint8 tensor; each step gathers a batch by index,
augments it as one tensor (mnistviz.augment) and takes an optimizer step. No DataLoader, no PIL.
That is where the speed over a torchvision-transform pipeline comes from (bench/train_speed.py).
"""
from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import signal
import sys
import threading
import time

import torch
import torch.nn.functional as F

from . import augment as aug, fastgrad
from .cli import config_from_args, train_parser
# re-exported: pages, jobs and tests use train.Config, train.validate, train.PRESETS...
from .config import OPTIMIZERS, PRESETS, SCHEDULES, Config, preset_config, validate  # noqa: F401
from .data import MNISTMissing, load_mnist, split_validation
from .evaluate import evaluate
from .models import build
from .runs import Run, RunError, atomic_write_json, load_checkpoint, run_path, runs_dir, save_checkpoint

RATE_WINDOW_S = 2.0  # the status's images/s: over about the last this many seconds of training steps


# ---------- the loop ----------

def _optimizer(model, cfg: Config):
    # fused: one kernel per step for all parameters; on CPU 2.5-3x faster than foreach (LeNet-5: SGD with momentum
    # 160 -> 60 us a step, Adam 355 -> 140 us); the same update rule and state_dict keys (rounding can differ)
    params = model.parameters()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0, fused=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


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


class StopRequested:
    """Set by SIGTERM / SIGINT (CLI) or by a caller; the loop checkpoints and exits at the next step."""
    def __init__(self):
        self.event = threading.Event()

    def __call__(self, *_):
        self.event.set()

    def is_set(self):
        return self.event.is_set()


def train_run(run: Run, resume: bool = False, stop: StopRequested | None = None, progress: bool = False) -> dict:
    """Train the run in `run.path` (config.json must exist). Returns the CLI's result dict.
    Any exception marks the run failed, with its text, before it propagates."""
    try:
        return _train(run, resume, stop or StopRequested(), progress)
    except BaseException as e:
        run.write_status(status="failed", error=f"{type(e).__name__}: {e}", ended=time.time())
        raise


def _train(run: Run, resume: bool, stop: StopRequested, progress: bool) -> dict:
    cfg = Config.from_dict(run.config())
    torch.manual_seed(cfg.seed)
    data = load_mnist()
    x_tr, y_tr, x_val, y_val = split_validation(data.train_images, data.train_labels, cfg.val_size, cfg.seed)
    if cfg.limit_train:
        x_tr, y_tr = x_tr[:cfg.limit_train], y_tr[:cfg.limit_train]
    n, bs = len(x_tr), cfg.batch_size
    steps_per_epoch = max(1, math.ceil(n / bs))
    total_steps = steps_per_epoch * cfg.epochs

    model = build(cfg.model).to(memory_format=torch.channels_last)
    opt = _optimizer(model, cfg)
    sched = _scheduler(opt, cfg, steps_per_epoch)
    # everything the loop accumulates lives here and goes into last.pt, so a resumed run logs exactly
    # what an uninterrupted one would (the w_* window feeds the next step record)
    state = dict(epoch=0, step_in_epoch=0, global_step=0, train_seconds=0.0, best_acc=-1.0,
                 ep_loss=0.0, ep_correct=0, ep_seen=0, ep_seconds=0.0,
                 w_loss=0.0, w_correct=0, w_seen=0, w_seconds=0.0)
    if resume and not run.last_ckpt.exists():  # a queued run (or one that died before its first checkpoint)
        resume = False
        run.truncate_metrics(0)
    if resume:
        ck = load_checkpoint(run.last_ckpt)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["rng"])
        state.update(ck["state"])
        run.truncate_metrics(state["global_step"])
        if state["w_seen"] and any(r["step"] == state["global_step"] for r in run.step_records()):
            # a window still open in last.pt yet logged at its step: only the run's last steps, logged after the
            # final checkpoint, are (killed before the status said completed); do not log them twice
            state.update(w_loss=0.0, w_correct=0, w_seen=0, w_seconds=0.0)
    else:
        run.save_test_labels(data.test_labels.numpy())

    def checkpoint(path):
        save_checkpoint(path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
                               "state": dict(state), "config": dataclasses.asdict(cfg)})

    run.write_status(status="running", pid=os.getpid(), heartbeat=time.time(), started=time.time(),
                     total_steps=total_steps, steps_per_epoch=steps_per_epoch, epochs=cfg.epochs)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total_steps, initial=state["global_step"], unit="step", file=sys.stderr,
                   dynamic_ncols=True, leave=False)
    level = aug.LEVELS[cfg.augment]
    # the plain models (LeNet-5, net-320...) backpropagate without autograd's graph: same gradients, a LeNet-5
    # step about a fifth faster measured alone, an epoch 5-7% faster in this loop (mnistviz/fastgrad.py)
    handrun = fastgrad.supports(model)
    if handrun:  # LeNet-5's tanh / pool blocks run as native.c's fused kernels when a C compiler is there; its one-off
        fastgrad.uses_native(model)  # build (about a second, once per machine) happens here, not in a timed step
    opt_step = fastgrad.step_function(opt)  # opt.step, without its per-step Python (the same update and state)

    def log_window(epoch_progress, lr):
        # one point of the per-step curve: the mean over the last log_every steps. Windows run across epoch
        # boundaries, so no point stands for a window of one or two steps (such points made spikes at every epoch)
        run.append_metrics([{"step": state["global_step"], "epoch_progress": round(epoch_progress, 4),
                             "train_loss": state["w_loss"] / state["w_seen"],
                             "train_acc": state["w_correct"] / state["w_seen"],
                             "lr": lr, "images_per_s": state["w_seen"] / max(state["w_seconds"], 1e-9),
                             "time": time.time()}])
        state.update(w_loss=0.0, w_correct=0, w_seen=0, w_seconds=0.0)

    lr = sched.get_last_lr()[0]
    gen = torch.Generator()
    last_beat = 0.0
    # the images/s the status shows: over the last RATE_WINDOW_S seconds of steps, across epoch ends (the epoch's
    # own average, shown before, jumped about in each epoch's first seconds); the epoch records keep the average
    rate_seen, rate_secs, rate = 0, 0.0, None
    checkpoint_step = state["global_step"] if resume else 0  # what last.pt holds: where --resume continues from
    status = "completed"
    # the objects alive now (torch, the data, the model: ~300,000) are left out of the collector's passes
    # until the loop ends: a full pass over them takes ~0.15 s, and a 2-epoch CLI run made one more without this
    gc.freeze()
    try:
        for epoch in range(state["epoch"], cfg.epochs):
            model.train()
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
            for i in range(state["step_in_epoch"], steps_per_epoch):
                if stop.is_set():
                    status = "stopped"
                    break
                t0 = time.perf_counter()
                idx = perm[i * bs:(i + 1) * bs]
                xb = x_tr.index_select(0, idx).unsqueeze(1).float().div_(255)  # 3x cheaper than x_tr[idx]
                if cfg.augment != "none":
                    gen.manual_seed((cfg.seed * 1000003 + epoch) * 100003 + i)  # per step: resumable mid-epoch
                    xb = aug.augment(xb, level, gen)
                xb = xb.contiguous(memory_format=torch.channels_last)
                yb = y_tr.index_select(0, idx)
                if handrun:
                    logits, loss = fastgrad.loss_and_grads(model, xb, yb, cfg.label_smoothing)
                else:
                    logits = model(xb)
                    loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                opt_step()
                lr = sched.get_last_lr()[0]
                sched.step()
                correct = (logits.argmax(1) == yb).sum().item()
                dt = time.perf_counter() - t0
                b = len(idx)
                loss_sum = loss.item() * b
                state["ep_loss"] += loss_sum
                state["ep_correct"] += correct
                state["ep_seen"] += b
                state["ep_seconds"] += dt
                state["train_seconds"] += dt
                state["global_step"] += 1
                state["step_in_epoch"] = i + 1
                state["w_loss"] += loss_sum
                state["w_correct"] += correct
                state["w_seen"] += b
                state["w_seconds"] += dt
                rate_seen += b
                rate_secs += dt
                if rate_secs >= RATE_WINDOW_S:
                    rate, rate_seen, rate_secs = rate_seen / rate_secs, 0, 0.0
                if bar:
                    bar.update(1)
                g = state["global_step"]
                if g % cfg.log_every == 0:  # windows run across epoch ends: the last one logged was at g - log_every
                    log_window(epoch + (i + 1) / steps_per_epoch, lr)
                now = time.time()
                if now - last_beat >= 0.5:
                    last_beat = now
                    done = g / total_steps
                    steps_per_s = state["global_step"] / max(state["train_seconds"], 1e-9)
                    run.write_status(status="running", heartbeat=now, epoch=epoch + 1, step=i + 1, global_step=g,
                                     images_per_s=rate or state["ep_seen"] / max(state["ep_seconds"], 1e-9),
                                     eta_s=(total_steps - g) / max(steps_per_s, 1e-9), progress=done,
                                     checkpoint_step=checkpoint_step)
            if status == "stopped":
                break
            # epoch end: evaluate, store predictions, checkpoint
            t_eval = time.perf_counter()
            val_loss, val_acc, _ = evaluate(model, x_val, y_val)
            test_loss, test_acc, probs = evaluate(model, data.test_images, data.test_labels)
            run.save_probs(epoch + 1, probs)
            rec = {"epoch": epoch + 1, "step": state["global_step"],
                   "train_loss": state["ep_loss"] / max(state["ep_seen"], 1),
                   "train_acc": state["ep_correct"] / max(state["ep_seen"], 1),
                   "val_loss": val_loss, "val_acc": val_acc, "test_loss": test_loss, "test_acc": test_acc,
                   "epoch_seconds": state["ep_seconds"], "eval_seconds": time.perf_counter() - t_eval,
                   "train_seconds": state["train_seconds"],
                   "images_per_s": state["ep_seen"] / max(state["ep_seconds"], 1e-9),
                   "lr": lr, "time": time.time()}
            state.update(epoch=epoch + 1, step_in_epoch=0, ep_loss=0.0, ep_correct=0, ep_seen=0, ep_seconds=0.0)
            if test_acc > state["best_acc"]:
                state["best_acc"] = test_acc
                save_checkpoint(run.best_ckpt, {"model": model.state_dict(), "epoch": epoch + 1, "test_acc": test_acc})
            # the record before the checkpoint: a kill between the two leaves a record that last.pt (still the
            # previous epoch's) does not cover, and --resume drops it (truncate_metrics keeps records up to
            # last.pt's global step) and redoes the epoch; the other order lost the record for good
            run.append_metrics([rec])
            checkpoint(run.last_ckpt)
            checkpoint_step = state["global_step"]
            run.write_status(checkpoint_step=checkpoint_step)
            if bar:
                bar.set_postfix(epoch=epoch + 1, test_acc=f"{test_acc:.4f}")
            if cfg.target_accuracy is not None and test_acc >= cfg.target_accuracy:
                break
        if status == "stopped":
            checkpoint(run.last_ckpt)  # a partial window stays in the checkpoint: resuming continues it
            checkpoint_step = state["global_step"]
        elif state["w_seen"]:
            log_window(state["epoch"], lr)  # the run's last steps, fewer than log_every
    finally:
        gc.unfreeze()
        if bar:
            bar.close()
    epochs = run.epoch_records()
    run.write_status(status=status, ended=time.time(), heartbeat=time.time(), epoch=state["epoch"],
                     global_step=state["global_step"], progress=state["global_step"] / total_steps,
                     checkpoint_step=checkpoint_step)
    return {
        "run": run.name, "run_dir": str(run.path), "status": status, "epochs": len(epochs),
        "test_accuracy": epochs[-1].get("test_acc") if epochs else None,
        "best_test_accuracy": max((r["test_acc"] for r in epochs if r.get("test_acc") is not None), default=None),
        "train_seconds": round(state["train_seconds"], 3),
    }


def create_run(cfg: Config, root=None) -> Run:
    """Make the run folder (queued) with its config.json. The name must be new."""
    root = runs_dir(root)
    root.mkdir(parents=True, exist_ok=True)
    cfg.created = cfg.created or time.time()
    if cfg.name is None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(cfg.created))
        base = f"{cfg.model}-{cfg.augment}-{stamp}"
        cfg.name, k = base, 1
        while (root / cfg.name).exists():
            k += 1
            cfg.name = f"{base}-{k}"
    path = run_path(cfg.name, root)
    try:
        path.mkdir()
    except FileExistsError:
        raise RunError(f"a run named {cfg.name!r} exists; pick another --name or continue it with --resume {cfg.name}") from None
    run = Run(path)
    atomic_write_json(run.config_file, dataclasses.asdict(cfg))
    run.write_status(status="queued", pid=None)
    return run


# ---------- CLI ----------

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
            st = run.status().get("status")
            if st == "completed":
                p.error(f"run {args.resume} is already completed")
            if st == "running":
                p.error(f"run {args.resume} is still running (pid {run.status().get('pid')})")
            cfg_errors = validate(Config.from_dict(run.config()))
            if cfg_errors:
                p.error(f"run {args.resume} has an invalid config.json: " + "; ".join(cfg_errors.values()))
            resume = True
        else:
            cfg = config_from_args(args)
            errors = validate(cfg)
            if errors:
                p.error("; ".join(errors.values()))
            run = create_run(cfg, args.runs_dir)
            resume = False
    except RunError as e:
        p.error(str(e))
    stop = StopRequested()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        result = train_run(run, resume=resume, stop=stop, progress=sys.stderr.isatty() and not args.no_progress)
    except Exception as e:
        print(f"{p.prog}: error: training failed: {type(e).__name__}: {e}", file=sys.stderr)
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
