"""The command lines' argument parsing: `python -m mnistviz.train` and `python -m mnistviz.evaluate`."""
from __future__ import annotations

import argparse
import dataclasses

from . import augment as aug
from .config import OPTIMIZERS, PRECISIONS, PRESETS, SCHEDULES, Config, preset_config
from .models import MODELS


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line on stderr, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fraction(v: str) -> float:
    x = float(v)
    return x / 100 if x > 1 else x


def _folder(v: str) -> str:
    if not v:  # "" would read as "not given": the default folder, not the one the user meant to name
        raise argparse.ArgumentTypeError("empty; give a folder, or leave the option out for the default")
    return v


def train_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m mnistviz.train",
               description="Train a CNN on MNIST into a run folder. With no arguments: the fast default recipe.")
    a = p.add_argument
    a("--preset", choices=list(PRESETS), help="start from a seed experiment's hyperparameters")
    a("--model", choices=list(MODELS))
    a("--optimizer", choices=OPTIMIZERS)
    a("--lr", type=float)
    a("--momentum", type=float)
    a("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    a("--weight-decay", type=float)
    a("--schedule", choices=SCHEDULES)
    a("--label-smoothing", type=float)
    a("--batch-size", type=int)
    a("--epochs", type=int)
    a("--augment", choices=list(aug.LEVELS))
    a("--seed", type=int)
    a("--val-size", type=int, help="validation images carved from train (0 = none)")
    a("--target-accuracy", type=_fraction, help="stop once test accuracy reaches this (0.99 or 99)")
    a("--log-every", type=int)
    a("--limit-train", type=int, help="train on the first N training images only")
    a("--keep-epoch-weights", action=argparse.BooleanOptionalAction, default=None,
      help="save the model's weights after every epoch in epochs/ (default: on; the Embeddings page then shows "
           "the projection at each epoch)")
    _device_options(a)
    a("--name", help="run folder name (default: model-augment-timestamp)")
    a("--runs-dir", type=_folder, help="runs folder (default: $MNISTVIZ_RUNS or checkpoints/)")
    a("--resume", metavar="NAME", help="continue a stopped or interrupted run to its planned epochs "
                                         "(a queued run, with no checkpoint yet, starts from scratch)")
    a("--pair", help=argparse.SUPPRESS)
    a("--no-progress", action="store_true", help="no progress bar even on a terminal")
    return p


def _device_options(a) -> None:
    a("--device", metavar="{auto,cpu,cuda,cuda:N,mps}",
      help="where to train (default auto: CUDA, else Apple's MPS, else the CPU); with --resume, continue there. "
           "The same seed on the same device gives the same metrics, except on CUDA, whose fastest kernels are "
           "not all deterministic: add --deterministic for that")
    a("--precision", choices=PRECISIONS, help="bf16: bfloat16 autocast on the GPU (default fp32)")
    a("--deterministic", action="store_true", default=None,
      help="CUDA: deterministic kernels only (torch.use_deterministic_algorithms, CUBLAS_WORKSPACE_CONFIG), slower")
    # the GPU's loop (data on the device, no DataLoader, deferred loss reads) on the CPU: how tests exercise it
    a("--data-on-device", action="store_true", default=None, help=argparse.SUPPRESS)


def config_from_args(args) -> Config:
    """The default Config, then the preset's values, then the options given."""
    base = dataclasses.asdict(Config())
    if args.preset:
        base.update(preset_config(args.preset), preset=args.preset)
    for f in dataclasses.fields(Config):
        v = getattr(args, f.name, None)
        if v is not None and f.name not in ("preset", "created"):
            base[f.name] = v
    return Config.from_dict(base)


def evaluate_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m mnistviz.evaluate",
               description="Evaluate a run's best checkpoint (last.pt when it has no best.pt) on the MNIST test set.")
    p.add_argument("run", metavar="RUN", help="a run folder, or the name of a run in the runs folder")
    p.add_argument("--runs-dir", type=_folder, help="runs folder for a run name (default: $MNISTVIZ_RUNS or checkpoints/)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return p
