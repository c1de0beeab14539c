"""What a run is trained with: the Config dataclass (config.json of a run folder), the presets, and validate()."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from . import augment as aug
from .device import spec_problem
from .models import MODELS
from .runs import RunError, check_name

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "onecycle")
PRECISIONS = ("fp32", "bf16")


@dataclass
class Config:
    model: str = "fast"
    optimizer: str = "sgd"
    lr: float = 0.2
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    label_smoothing: float = 0.05
    batch_size: int = 256
    epochs: int = 2
    augment: str = "none"
    seed: int = 0
    val_size: int = 5000
    target_accuracy: float | None = None  # fraction; stop once test accuracy reaches it
    log_every: int = 20                   # steps between step records
    limit_train: int = 0                  # train on the first N training images only (0 = all)
    device: str = "auto"                  # auto, cpu, cuda, cuda:N, mps (mnistviz.device)
    precision: str = "fp32"               # bf16: autocast to bfloat16 (off the CPU's fast paths)
    deterministic: bool = False           # CUDA: deterministic kernels only (slower); the CPU always is
    data_on_device: bool = False          # the CPU through the GPU's loop (train.py: _train_epoch_on_device)
    keep_epoch_weights: bool = True       # epochs/epoch_NNN.pt after every epoch (Embeddings shows each epoch)
    name: str | None = None
    preset: str | None = None
    pair: str | None = None               # shared id of an augmented + normal pair
    created: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# The seed experiments, plus the default and the best recipe found here (see README).
PRESETS = {
    "default": dict(desc="fast CNN, SGD nesterov one-cycle, batch 256, 2 epochs: 99% in about 10 s on 2 cores"),
    "default-model": dict(desc="fast CNN, 16 epochs with light augmentation: how checkpoints/default was trained",
                          epochs=16, augment="light"),
    "best": dict(desc="wide CNN (16/32/64 filters), 16 epochs with light augmentation: the best recipe found",
                 model="wide", epochs=16, augment="light"),
    "lenet5-sgd": dict(desc="LeNet-5, SGD lr 0.01 momentum 0.9, batch 32, 10 epochs",
                       model="lenet5", optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False,
                       weight_decay=0.0, schedule="none", batch_size=32, epochs=10, augment="none"),
    "lenet5-sgd-aug": dict(desc="LeNet-5 as lenet5-sgd, with standard augmentation",
                           model="lenet5", optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False,
                           weight_decay=0.0, schedule="none", batch_size=32, epochs=10, augment="standard"),
    # the home page's first step: the seed experiment, short enough that the augmented + normal pair of it trains in
    # about a minute on 2 cores (no validation set: the pair is compared on the test set)
    "lenet5-quick": dict(desc="LeNet-5 as lenet5-sgd, 4 epochs, no validation set: a run takes about half a "
                              "minute on 2 cores",
                         model="lenet5", optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0,
                         schedule="none", batch_size=32, epochs=4, augment="none", val_size=0),
    "cnn-32-64-adam": dict(desc="32/64-filter CNN with dropout, Adam lr 1e-4, batch 100, 50 epochs",
                           model="cnn-32-64", optimizer="adam", lr=1e-4, weight_decay=0.0,
                           schedule="none", batch_size=100, epochs=50, augment="none"),
    "net-320-sgd": dict(desc="10/20-filter net, SGD lr 0.001 momentum 0.9, batch 50, 5 epochs",
                        model="net-320", optimizer="sgd", lr=0.001, momentum=0.9, nesterov=False,
                        weight_decay=0.0, schedule="none", batch_size=50, epochs=5, augment="none"),
    "lenet5-adam": dict(desc="LeNet-5, Adam lr 1e-3, batch 32, 15 epochs",
                        model="lenet5", optimizer="adam", lr=1e-3, weight_decay=0.0,
                        schedule="none", batch_size=32, epochs=15, augment="none"),
    "single-conv-sgd": dict(desc="one 8x8 conv + dense, SGD lr 0.01 momentum 0.9, batch 64, 5 epochs",
                            model="single-conv", optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False,
                            weight_decay=0.0, schedule="none", batch_size=64, epochs=5, augment="none"),
}


def preset_config(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return {k: v for k, v in PRESETS[name].items() if k != "desc"}


def validate(cfg: Config, labels: dict[str, str] | None = None) -> dict[str, str]:
    """field -> message for every bad value (empty when the config is fine). Used by CLI and Train page.
    `labels`: field -> the name the user knows it by (the Train page's field labels); the messages start with it
    instead of the field's own name ("Learning rate must be ...", not "lr must be ...")."""
    err = {}
    labels = labels or {}
    if cfg.model not in MODELS:
        err["model"] = f"unknown model {cfg.model!r}; choose one of {', '.join(MODELS)}"
    if cfg.optimizer not in OPTIMIZERS:
        err["optimizer"] = f"unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
    if cfg.schedule not in SCHEDULES:
        err["schedule"] = f"unknown schedule {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}"
    if spec_problem(cfg.device):
        err["device"] = spec_problem(cfg.device)
    if cfg.precision not in PRECISIONS:
        err["precision"] = f"unknown precision {cfg.precision!r}; choose one of {', '.join(PRECISIONS)}"
    if cfg.augment not in aug.LEVELS:
        err["augment"] = f"unknown augmentation {cfg.augment!r}; choose one of {', '.join(aug.LEVELS)}"

    def num(field, lo, hi, integer=False, lo_open=False):
        v = getattr(cfg, field)
        said = labels.get(field, field.replace("_", " "))
        bad_type = isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int))
        if bad_type or (isinstance(v, float) and not math.isfinite(v)):
            err[field] = f"{said} must be {'a whole number' if integer else 'a number'}"
        elif v < lo or v > hi or (lo_open and v == lo):
            err[field] = f"{said} must be {'above' if lo_open else 'at least'} {lo} and at most {hi} (got {v})"

    num("lr", 0, 10, lo_open=True)
    num("momentum", 0, 0.999)
    num("weight_decay", 0, 1)
    num("label_smoothing", 0, 0.5)
    num("batch_size", 1, 8192, integer=True)
    num("epochs", 1, 500, integer=True)
    num("seed", 0, 2**31 - 1, integer=True)
    num("val_size", 0, 30000, integer=True)
    num("log_every", 1, 100000, integer=True)
    num("limit_train", 0, 60000, integer=True)
    if cfg.target_accuracy is not None:
        num("target_accuracy", 0, 1, lo_open=True)
    if cfg.name is not None:
        try:
            check_name(cfg.name)
        except RunError as e:
            err["name"] = str(e)
    return err

