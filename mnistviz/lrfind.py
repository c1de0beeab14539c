"""The learning-rate range test (Smith 2015, "Cyclical Learning Rates for Training Neural Networks"), as fastai's
`lr_find` runs it: a fresh model trains for up to `steps` steps while the learning rate rises exponentially from
`start_lr` to `end_lr`; the loss is smoothed (a debiased moving average, beta 0.98) and the test stops once that
smoothed loss exceeds DIVERGE times the best so far. From the smoothed curve, fastai's two suggestions: "steep"
(where the loss falls fastest against log lr) and "valley" (inside the longest stretch of falling loss).

The model is built fresh from the config (its model, optimizer, momentum, weight decay, label smoothing, batch size,
augmentation) and thrown away: no run's weights are touched. The config's learning rate and schedule are not used.

The dashboard runs it as a background job (jobs.submit_lrfind starts `python -m mnistviz.jobs lrfind --job ID ...`),
which waits its turn behind a training and writes result.json atomically as it goes. From a terminal:
`python -m mnistviz.lrfind --model lenet5 --optimizer sgd --batch-size 32 --json`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import augment as aug, fastgrad
from .cli import Parser, config_from_args
from .config import OPTIMIZERS, PRESETS, Config, validate
from .data import MNISTMissing, load_mnist, split_validation
from .models import MODELS, build
from .procs import StopRequested
from .runs import RunError

START_LR, END_LR, STEPS = 1e-7, 10.0, 100
MIN_STEPS, MAX_STEPS = 20, 1000
DIVERGE = 4.0       # stop once the smoothed loss exceeds this many times its best (fastai's stop_div)
BETA = 0.98         # the smoothing of the loss (fastai's AvgSmoothLoss)
MIN_POINTS = 5      # points left after the trim below which nothing is suggested
SAVE_EVERY_S = 0.5  # how often `progress` gets the partial result (the job's result.json: the page draws it growing)


def schedule(start_lr: float, end_lr: float, steps: int) -> np.ndarray:
    """The learning rate of each step: exponential from start_lr (step 0) to end_lr (the last step)."""
    return start_lr * (end_lr / start_lr) ** (np.arange(steps) / max(1, steps - 1))


def smooth(losses, beta: float = BETA) -> np.ndarray:
    """The debiased exponential moving average of the losses (fastai's AvgSmoothLoss, Adam's bias correction)."""
    out, avg = [], 0.0
    for k, loss in enumerate(losses, 1):
        avg = beta * avg + (1 - beta) * float(loss)
        out.append(avg / (1 - beta ** k))
    return np.asarray(out, dtype=np.float64)


def steep(lrs, losses) -> tuple[float, float]:
    """fastai's steepest point: where the loss falls fastest against log lr. (lr, loss there)."""
    lrs, losses = np.asarray(lrs, np.float64), np.asarray(losses, np.float64)
    grads = np.diff(losses) / np.diff(np.log(lrs))
    i = int(np.argmin(grads))
    return float(lrs[i]), float(losses[i])


def valley(lrs, losses) -> tuple[float, float]:
    """fastai's valley: the longest run of falling loss (its longest decreasing subsequence), and the point two
    thirds of the way down it, a little before the bottom, where the loss still falls. (lr, loss there)."""
    losses = np.asarray(losses, np.float64)
    n = len(losses)
    lds = np.ones(n, np.int64)
    max_start = max_end = 0
    for i in range(1, n):
        lower = losses[i] < losses[:i]
        if lower.any():
            lds[i] = max(lds[i], int(lds[:i][lower].max()) + 1)
        if lds[max_end] < lds[i]:
            max_end = i
            max_start = max_end - int(lds[max_end])
    sections = (max_end - max_start) / 3
    i = min(n - 1, max(0, max_start + int(sections) + int(sections / 2)))
    return float(lrs[i]), float(losses[i])


def suggest(lrs, smoothed, planned: int) -> dict | None:
    """{"valley": (lr, loss), "steep": (lr, loss)} from the smoothed curve, trimmed as fastai trims it (the first
    tenth of the planned steps, where the loss barely moves, and the last 5 points, where it shoots up); None when
    fewer than MIN_POINTS points are left (the loss diverged almost at once)."""
    lrs, smoothed = np.asarray(lrs, np.float64)[planned // 10:-5], np.asarray(smoothed, np.float64)[planned // 10:-5]
    keep = np.isfinite(smoothed)
    lrs, smoothed = lrs[keep], smoothed[keep]
    if len(smoothed) < MIN_POINTS:
        return None
    return {"valley": valley(lrs, smoothed), "steep": steep(lrs, smoothed)}


# ---------- the test itself ----------

# the config's fields that shape a range test; the others (lr, schedule, epochs, name...) play no part in it
SHAPING = ("model", "optimizer", "momentum", "nesterov", "weight_decay", "label_smoothing", "batch_size", "augment",
           "seed", "val_size", "limit_train")


def config_problems(cfg: Config) -> dict[str, str]:
    """validate()'s messages for the fields a range test uses (a bad lr or run name does not stop it)."""
    return {k: v for k, v in validate(cfg).items() if k in SHAPING}


def check(steps: int, start_lr: float, end_lr: float) -> str | None:
    """What is wrong with a range test's own settings, in a sentence; None when they are fine."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not MIN_STEPS <= steps <= MAX_STEPS:
        return f"steps must be a whole number from {MIN_STEPS} to {MAX_STEPS} (got {steps!r})"
    if not (0 < start_lr < end_lr <= 100) or not math.isfinite(start_lr):
        return f"the learning rates must rise: 0 < start ({start_lr:g}) < end ({end_lr:g}) <= 100"
    return None


def _batches(x: torch.Tensor, y: torch.Tensor, cfg: Config):
    """Endless training batches as the trainer makes them (floats in [0, 1], augmented as the config asks,
    channels-last), in a seeded random order that is drawn anew at each pass over the images."""
    gen, order, at = torch.Generator().manual_seed(cfg.seed), torch.empty(0, dtype=torch.int64), 0
    bs = min(cfg.batch_size, len(x))
    level = aug.LEVELS[cfg.augment]
    while True:
        if at + bs > len(order):
            order, at = torch.randperm(len(x), generator=gen), 0
        idx = order[at:at + bs]
        at += bs
        xb = x.index_select(0, idx).unsqueeze(1).float().div_(255)
        if cfg.augment != "none":
            xb = aug.augment(xb, level, gen)
        yield xb.contiguous(memory_format=torch.channels_last), y.index_select(0, idx)


def _trainer(cfg: Config):
    """(model, optimizer, step(xb, yb, lr) -> loss): a fresh model and the trainer's optimizer (train._optimizer)
    with the trainer's fast paths (fastgrad.speedups_for); the rate is set before each step, no schedule."""
    from .train import _optimizer  # the trainer's own choice of optimizer and its settings

    torch.manual_seed(cfg.seed)
    model = build(cfg.model).to(memory_format=torch.channels_last).train()
    opt = _optimizer(model, cfg)
    grads, opt_step = fastgrad.speedups_for(model, opt, "cpu")

    def step(xb, yb, lr):
        for group in opt.param_groups:
            group["lr"] = lr
        if grads:
            _, loss = grads(model, xb, yb, cfg.label_smoothing)
        else:
            loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        opt_step()
        return loss.item()

    return model, opt, step


def range_test(cfg: Config, steps: int = STEPS, start_lr: float = START_LR, end_lr: float = END_LR,
               stop: StopRequested | None = None, progress=None, mnist=None) -> dict:
    """Run the range test for `cfg` (see the module's docstring). Returns the result (result_dict): the rates and
    losses of the steps taken, why it ended ("diverged", "completed", "stopped"), the suggestions and a sentence.
    `progress(result)` is called now and then with the partial result. Raises RunError for bad settings and
    data.MNISTMissing without the data."""
    problem = check(steps, start_lr, end_lr) or "; ".join(config_problems(cfg).values())
    if problem:
        raise RunError(problem)
    mnist = mnist or load_mnist()
    x, y, _, _ = split_validation(mnist.train_images, mnist.train_labels, cfg.val_size, cfg.seed)
    if cfg.limit_train:
        x, y = x[:cfg.limit_train], y[:cfg.limit_train]
    _, _, step = _trainer(cfg)
    lrs, losses, ended, last_save = schedule(start_lr, end_lr, steps), [], "completed", time.monotonic()
    best = avg = 0.0
    batches = _batches(x, y, cfg)
    for k in range(steps):
        if stop is not None and stop.is_set():
            ended = "stopped"
            break
        loss = step(*next(batches), float(lrs[k]))
        losses.append(loss)
        avg = BETA * avg + (1 - BETA) * loss
        smoothed = avg / (1 - BETA ** (k + 1))
        if k == 0 or smoothed < best:
            best = smoothed
        if not math.isfinite(smoothed) or smoothed > DIVERGE * best:
            ended = "diverged"
            break
        if progress is not None and time.monotonic() - last_save >= SAVE_EVERY_S:
            last_save = time.monotonic()
            progress(result_dict(cfg, lrs, losses, steps, "running"))
    return result_dict(cfg, lrs, losses, steps, ended)


def result_dict(cfg: Config, lrs, losses: list[float], planned: int, ended: str) -> dict:
    """The result as JSON-ready data: the config it was found for, planned steps, why it ended, the rates, raw and
    smoothed losses of the steps taken (a loss that is not finite as None), the suggestions and a sentence."""
    n = len(losses)
    smoothed = smooth(losses) if n else np.zeros(0)
    finite = [v if math.isfinite(v) else None for v in losses]
    found = suggest(lrs[:n], smoothed, planned) if ended != "running" else None
    return {"config": dataclasses.asdict(cfg), "planned": planned, "ended": ended, "steps": n,
            "lrs": [float(v) for v in lrs[:n]], "losses": finite,
            "smoothed": [float(v) if math.isfinite(v) else None for v in smoothed],
            "suggestions": {k: {"lr": v[0], "loss": v[1]} for k, v in found.items()} if found else None,
            "message": message(ended, n, planned, float(lrs[n - 1]) if n else None, found)}


def message(ended: str, n: int, planned: int, last_lr: float | None, found) -> str:
    """What the test found, in a sentence or two."""
    if ended == "running":
        return f"Step {n} of {planned}" + (f", learning rate {last_lr:.2g}." if last_lr else ".")
    if ended == "stopped":
        return f"The range test was stopped after {n} of {planned} steps."
    if found is None and ended == "diverged":
        where = f"by a learning rate of {last_lr:.2g}" if last_lr else "at once"
        return (f"The loss diverged after {n} step{'s' * (n != 1)} ({where}), before it could fall, so no learning "
                f"rate can be suggested: this model and optimizer diverge at almost any rate. Try a smaller batch "
                f"size, another optimizer, or less weight decay, then find again.")
    if found is None:
        return f"Too few steps ({n}) to suggest a learning rate: run at least {MIN_STEPS}."
    v, s = found["valley"][0], found["steep"][0]
    why = (f"the loss diverged at a learning rate of {last_lr:.2g}, after {n} steps" if ended == "diverged"
           else f"all {n} steps ran without the loss diverging")
    return f"Suggested learning rate: {v:.2g} (valley); steepest descent at {s:.2g}. The test ended as {why}."


# ---------- CLI ----------

def parser() -> argparse.ArgumentParser:
    """The trainer's options that shape a range test (model, optimizer...), and the test's own."""
    p = Parser(prog="python -m mnistviz.lrfind", description="Learning-rate range test (Smith 2015, as fastai's "
               "lr_find) on a fresh model; prints the suggested learning rates. Trains nothing that is kept.")
    a = p.add_argument
    a("--preset", choices=list(PRESETS), help="start from a preset's model, optimizer and batch size")
    a("--model", choices=list(MODELS))
    a("--optimizer", choices=OPTIMIZERS)
    a("--momentum", type=float)
    a("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    a("--weight-decay", type=float)
    a("--label-smoothing", type=float)
    a("--batch-size", type=int)
    a("--augment", choices=list(aug.LEVELS))
    a("--seed", type=int)
    a("--val-size", type=int, help="validation images left out of the training images, as in training")
    a("--limit-train", type=int, help="use the first N training images only")
    a("--steps", type=int, default=STEPS, help=f"most steps (default {STEPS})")
    a("--start-lr", type=float, default=START_LR)
    a("--end-lr", type=float, default=END_LR)
    a("--json", action="store_true", help="print the whole result as one JSON object, the last line")
    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    stop = StopRequested()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    cfg = config_from_args(args)
    try:
        result = range_test(cfg, args.steps, args.start_lr, args.end_lr, stop=stop)
    except (RunError, MNISTMissing) as e:
        p.error(str(e))
    print(result["message"], file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in (result["suggestions"] or {}).items():
            print(f"{k}: {v['lr']:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
