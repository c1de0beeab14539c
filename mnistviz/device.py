"""Which device a run trains on: `--device {auto,cpu,cuda,cuda:N,mps}`, checked against what this machine has.

No Streamlit here: the CLI, the trainer and the Train page's form all ask this module. `auto` is the best device
present: CUDA, else Apple's MPS, else the CPU. The dashboard only reads a GPU's name and memory here; it never
allocates on it (its pages run their models on the CPU, runs.load_model).
"""
from __future__ import annotations

import functools
import re

import torch

SPECS = "auto, cpu, cuda, cuda:N or mps"
_SPEC = re.compile(r"auto|cpu|mps|cuda(:\d{1,4})?")


class DeviceError(ValueError):
    """A device this machine does not have (or no device at all); str(e) is one sentence naming the ones it has."""


def spec_problem(spec) -> str | None:
    """What is wrong with a device's spelling (None when it is one of SPECS), for config.validate."""
    if isinstance(spec, str) and _SPEC.fullmatch(spec):
        return None
    return f"unknown device {spec!r}: give {SPECS} (this machine has {', '.join(present())})"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def present() -> list[str]:
    """The devices this machine has, best first: cuda:0, cuda:1, ..., mps, cpu."""
    cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return cuda + (["mps"] if _mps_available() else []) + ["cpu"]


def resolve(spec: str) -> torch.device:
    """The torch.device for a spec (auto: the first of present()); DeviceError when it is not here."""
    problem = spec_problem(spec)
    if problem:
        raise DeviceError(problem)
    here = present()
    has = f"this machine has {', '.join(here)}"
    if spec == "auto":
        return torch.device(here[0])
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if "mps" in here:
            return torch.device("mps")
        raise DeviceError(f"device mps (Apple silicon's GPU) is not available here: {has}")
    gpus = [d for d in here if d.startswith("cuda:")]
    if not gpus:
        raise DeviceError(f"device {spec} is not available: no CUDA GPU is visible to torch "
                          f"{torch.__version__} here; {has}")
    name = spec if ":" in spec else "cuda:0"
    if name not in gpus:
        raise DeviceError(f"device {spec} is not available: {has}")
    return torch.device(name)


@functools.lru_cache(maxsize=16)
def describe(name: str) -> str:
    """What a device is, in a few words: "NVIDIA H100 80GB HBM3, 79 GiB", "CPU, 16 threads", "Apple GPU (MPS)"."""
    dev = torch.device(name)
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev.index or 0)
        return f"{p.name}, {p.total_memory / 2**30:.0f} GiB"
    if dev.type == "mps":
        return "Apple GPU (MPS)"
    n = torch.get_num_threads()
    return f"CPU, {n} thread{'s' if n != 1 else ''}"


def choices() -> dict[str, str]:
    """The form's choices: spec -> what it is here ("auto" first, then each device present)."""
    here = present()
    out = {"auto": f"auto: {here[0]} ({describe(here[0])})"}
    for d in here:
        out[d] = f"{d} ({describe(d)})"
    return out


def is_cuda(dev: torch.device) -> bool:
    return torch.device(dev).type == "cuda"


def out_of_memory_errors() -> tuple[type, ...]:
    """What running out of device memory raises: torch.OutOfMemoryError, which older torch names only
    torch.cuda.OutOfMemoryError."""
    return tuple({getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError,
                  torch.cuda.OutOfMemoryError})
