"""The fused CPU kernels of native.c, compiled on first use with the machine's C compiler, through ctypes.
fastgrad runs them; the trainer reaches both through one switch, fastgrad.speedups_for, on the CPU only.

The library is built once per machine into a cache folder (env ``MNISTVIZ_CACHE``, default ``~/.cache/mnistviz``),
named by a hash of the source, the flags, the compiler and the CPU, written atomically (so trainers starting together
cannot load a half-written file). Without a C compiler (or with env ``MNISTVIZ_NATIVE=0``) ``lib()`` is None,
``why_not()`` says why, and the trainer runs the same model with torch's own kernels: slower, nothing else changes.

Compiled with ``-ffast-math`` (so that ``expf`` vectorizes) but linked without it: gcc would otherwise link
crtfastmath.o into the library, which switches denormals off for the whole process when it loads.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("native.c")
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fPIC", "-std=gnu11"]
LDFLAGS = ["-shared", "-lm"]
# OpenMP splits a batch between torch's own worker threads: linked against libgomp.so.1, the library binds to the
# copy torch has loaded already. Without OpenMP (a compiler without it) the kernels run on one thread.
OPENMP = ["-fopenmp"]

_state: dict = {}


def cache_dir() -> Path:
    return Path(os.environ.get("MNISTVIZ_CACHE") or Path.home() / ".cache" / "mnistviz")


def _compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def _cpu() -> str:
    """What -march=native compiles for: a cache shared by machines with other CPUs must not hand them this build
    (an instruction their CPU lacks would kill the process)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "") + platform.machine()
    except OSError:
        return platform.platform() + platform.processor()


def _build(cc: str) -> Path:
    """The library's path, compiled into the cache folder unless it is there already."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout + _cpu()
    errors = []
    for extra in (OPENMP, []):
        cflags, ldflags = CFLAGS + extra, LDFLAGS + extra
        key = hashlib.sha256("\0".join([SOURCE.read_text(), *cflags, *ldflags, version]).encode()).hexdigest()[:16]
        out = cache_dir() / f"native-{key}.so"
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            obj, so = Path(tmp) / "native.o", Path(tmp) / "native.so"
            for cmd in ([cc, *cflags, "-c", str(SOURCE), "-o", str(obj)], [cc, str(obj), "-o", str(so), *ldflags]):
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
                if done.returncode:
                    errors.append(f"`{' '.join(cmd[:3])} ...` exited {done.returncode}: "
                                  f"{(done.stderr or done.stdout).strip()[-300:]}")
                    break
            else:
                os.replace(so, out)
                return out
    raise RuntimeError("; ".join(errors))


def set_enabled(on: bool) -> None:
    """Use the kernels (the default, when they build) or not, in this process from now on: bench/train_speed.py
    compares both in one run. Models whose stages were planned before keep their plan."""
    _state["off"] = not on


def lib():
    """The loaded library, or None (see why_not())."""
    if _state.get("off"):
        return None
    if "lib" not in _state:
        _state["lib"], _state["why"] = None, ""
        cc = _compiler()
        if os.environ.get("MNISTVIZ_NATIVE", "1") == "0":
            _state["why"] = "turned off (MNISTVIZ_NATIVE=0)"
        elif cc is None:
            _state["why"] = "no C compiler found (cc, gcc or clang; or env CC)"
        else:
            try:
                so = ctypes.CDLL(str(_build(cc)))
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                _state["why"] = f"could not build {SOURCE.name}: {e}"
            else:
                p, n = ctypes.c_void_p, ctypes.c_long
                for name, args in (("conv1_tanh_pool_fwd", [p] * 5 + [n] * 7),
                                   ("conv1_tanh_pool_grads", [p] * 5 + [n] * 7),
                                   ("tanh_pool_fwd", [p] * 3 + [n] * 4), ("tanh_pool_bwd", [p] * 3 + [n] * 4)):
                    fn = getattr(so, name)
                    fn.argtypes, fn.restype = args, ctypes.c_int
                _state["lib"] = so
    return _state["lib"]


def why_not() -> str:
    """Why lib() is None ('' when it is not)."""
    if lib() is None and _state.get("off"):
        return "turned off (native.set_enabled(False))"
    return _state["why"]


def _threads() -> int:
    return torch.get_num_threads()  # the trainer's setting; the threads are torch's own (native.c)


def _f32(*ts: torch.Tensor) -> bool:
    return all(t.dtype == torch.float32 and t.device.type == "cpu" for t in ts)


def conv1_tanh_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, padding: int):
    """tanh(conv2d(x, weight, bias, padding=padding)) then a 2x2 average pool, for x (n, 1, h, w) and a square
    weight (c, 1, k, k). Returns (y, p): y, the tanh output (n, c, oh, ow) for conv1_tanh_pool_grads; p, the pooled
    map (n, c, oh // 2, ow // 2), channels-last. None when the kernel does not take these sizes or types."""
    so = lib()
    n, ci, h, w = x.shape
    c, _, k, k2 = weight.shape
    if (so is None or ci != 1 or weight.shape[1] != 1 or k != k2 or bias is None or not _f32(x, weight, bias)
            or not (x.is_contiguous() and weight.is_contiguous() and bias.is_contiguous())):
        return None
    oh, ow = h + 2 * padding - k + 1, w + 2 * padding - k + 1
    y = torch.empty((n, c, oh, ow))
    p = torch.empty((n, c, oh // 2, ow // 2), memory_format=torch.channels_last)
    if so.conv1_tanh_pool_fwd(x.data_ptr(), weight.data_ptr(), bias.data_ptr(), y.data_ptr(), p.data_ptr(),
                              n, h, w, c, k, padding, _threads()):
        return None
    return y, p


def _ran(rc: int, name: str) -> None:
    """A backward kernel cannot refuse sizes its forward took; a failure here is native.c's (-2: out of memory)."""
    if rc:
        raise RuntimeError(f"native.c's {name} failed with code {rc}" + (" (out of memory)" if rc == -2 else ""))


def _grad_input(gp: torch.Tensor) -> torch.Tensor:
    """gp as the backward kernels read it: float32, channels-last."""
    if not _f32(gp):
        raise TypeError(f"native kernels take float32 CPU gradients, not {gp.dtype} on {gp.device}")
    return gp.contiguous(memory_format=torch.channels_last)


def conv1_tanh_pool_grads(x: torch.Tensor, y: torch.Tensor, gp: torch.Tensor, weight: torch.Tensor, padding: int):
    """The gradients (of weight, of bias) of conv1_tanh_pool given gp, the gradient of its p; the weight's gradient
    is laid out like weight."""
    gp = _grad_input(gp)
    n, _, h, w = x.shape
    c, _, k, _ = weight.shape
    gw = torch.empty_like(weight)  # the same strides: fastgrad sets it as the weight's .grad without a copy
    gb = torch.empty(c)
    _ran(lib().conv1_tanh_pool_grads(x.data_ptr(), y.data_ptr(), gp.data_ptr(), gw.data_ptr(), gb.data_ptr(),
                                     n, h, w, c, k, padding, _threads()), "conv1_tanh_pool_grads")
    return gw, gb


def tanh_pool(z: torch.Tensor):
    """(tanh(z), avg_pool2d(tanh(z), 2)) for a channels-last float32 z (n, c, h, w), both channels-last; None
    when z is not."""
    so = lib()
    if so is None or z.dim() != 4 or not (_f32(z) and z.is_contiguous(memory_format=torch.channels_last)):
        return None
    n, c, h, w = z.shape
    y = torch.empty_like(z, memory_format=torch.channels_last)
    p = torch.empty((n, c, h // 2, w // 2), memory_format=torch.channels_last)
    if so.tanh_pool_fwd(z.data_ptr(), y.data_ptr(), p.data_ptr(), n, h, w, c):
        return None
    return y, p


def tanh_pool_backward(gp: torch.Tensor, y: torch.Tensor):
    """The gradient of tanh_pool's z, given its y and gp, the gradient of its p."""
    gp = _grad_input(gp)
    n, c, h, w = y.shape
    gz = torch.empty_like(y, memory_format=torch.channels_last)
    _ran(lib().tanh_pool_bwd(gp.data_ptr(), y.data_ptr(), gz.data_ptr(), n, h, w, c), "tanh_pool_bwd")
    return gz
