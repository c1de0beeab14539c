"""native.c's fused kernels against the torch ops they replace, the stage-by-stage fallback, and the build."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mnistviz import fastgrad, models, native

aten = torch.ops.aten
needs_lib = pytest.mark.skipif(native.lib() is None, reason=f"native kernels unavailable: {native.why_not()}")
CL = torch.channels_last


def _torch_block(x, w, b, pad):
    z = F.conv2d(x, w, b, padding=pad)
    y = torch.tanh(z)
    return y, F.avg_pool2d(y, 2)


@needs_lib
@pytest.mark.parametrize("n,c,hw,k,pad", [(5, 6, 28, 5, 2),    # LeNet-5's conv1
                                          (3, 10, 28, 5, 0),   # 24 x 24 out
                                          (4, 12, 28, 4, 2),   # odd 29 x 29 out (the pool drops a row, a column)
                                          (2, 3, 9, 3, 1)])    # small; c not a multiple of the kernel's 8
@pytest.mark.parametrize("threads", [1, 2])
def test_the_first_block_matches_torch(n, c, hw, k, pad, threads):
    """Guards the conv1+tanh+pool kernel and its weight/bias gradients: torch's values, any size it takes, 1 or 2 threads."""
    torch.manual_seed(0)
    x = torch.rand(n, 1, hw, hw)
    w = (torch.randn(c, 1, k, k) * 0.3).contiguous(memory_format=CL)
    b = torch.randn(c) * 0.1
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y, p = native.conv1_tanh_pool(x, w, b, pad)
        gp = torch.randn_like(p).contiguous(memory_format=CL)
        gw, gb = native.conv1_tanh_pool_grads(x, y, gp, w, pad)
    finally:
        torch.set_num_threads(before)
    wr, br = w.detach().clone().requires_grad_(), b.clone().requires_grad_()
    yr, pr = _torch_block(x, wr, br, pad)
    pr.backward(gp)
    torch.testing.assert_close(y, yr.detach(), rtol=0, atol=2e-6)
    torch.testing.assert_close(p, pr.detach(), rtol=0, atol=2e-6)
    assert p.is_contiguous(memory_format=CL)
    torch.testing.assert_close(gw, wr.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gb, br.grad, rtol=1e-4, atol=1e-5)
    assert gw.stride() == w.stride()


@needs_lib
@pytest.mark.parametrize("shape", [(4, 16, 10, 10), (3, 5, 11, 7)])
def test_tanh_then_pool_matches_torch(shape):
    """Guards the tanh+pool kernel and its input gradient: torch's values, odd sizes included."""
    torch.manual_seed(1)
    z = (torch.randn(shape) * 2).contiguous(memory_format=CL).requires_grad_()
    y, p = native.tanh_pool(z.detach())
    yr = torch.tanh(z)
    pr = F.avg_pool2d(yr, 2)
    gp = torch.randn_like(pr).contiguous(memory_format=CL)
    pr.backward(gp)
    torch.testing.assert_close(y, yr.detach(), rtol=0, atol=2e-6)
    torch.testing.assert_close(p, pr.detach(), rtol=0, atol=2e-6)
    torch.testing.assert_close(native.tanh_pool_backward(gp, y), z.grad, rtol=1e-5, atol=1e-6)


@needs_lib
def test_lenet5_runs_its_tanh_blocks_natively_and_its_gradients_match_autograd():
    """Guards the trainer's LeNet-5 path: both blocks fused, and its gradients still autograd's."""
    torch.manual_seed(2)
    model = models.build("lenet5").to(memory_format=CL)
    assert fastgrad.uses_native(model)
    kinds = [fused.__name__ for _, _, fused in fastgrad._plan(model)[0] if fused]
    assert kinds == ["_conv1_tanh_pool", "_tanh_pool"]
    x, y = torch.rand(16, 1, 28, 28).contiguous(memory_format=CL), torch.randint(0, 10, (16,))
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    ref = {name: p.grad.clone() for name, p in model.named_parameters()}
    logits, loss = fastgrad.loss_and_grads(model, x, y)
    torch.testing.assert_close(logits, model(x).detach(), rtol=1e-4, atol=1e-5)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[name], rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")


@needs_lib
def test_inputs_the_kernels_do_not_take_run_stage_by_stage():
    """Guards the per-call fallback: a 64 x 64 image is wider than the first block's kernel computes, so that call
    runs torch's ops one by one, with the same gradients."""
    torch.manual_seed(3)
    model = models.build("lenet5")
    x = torch.rand(2, 1, 64, 64)
    assert native.conv1_tanh_pool(x, model.conv1.weight, model.conv1.bias, 2) is None
    model = torch.nn.Sequential(*list(model)[:7], torch.nn.Flatten(), torch.nn.Linear(16 * 14 * 14, 10))
    assert fastgrad.uses_native(model)
    y = torch.randint(0, 10, (2,))
    F.cross_entropy(model(x), y).backward()
    ref = {name: p.grad.clone() for name, p in model.named_parameters()}
    fastgrad.loss_and_grads(model, x, y)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[name], rtol=1e-4, atol=1e-6)


def _probe(env: dict, code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300, check=True).stdout.strip()


def test_turned_off_or_without_a_compiler_the_model_trains_on_torchs_kernels(tmp_path):
    """Guards the fallback: with MNISTVIZ_NATIVE=0 or a failing compiler, torch's kernels, a reason, no half-built file."""
    code = ("import torch; from mnistviz import native, fastgrad, models; m = models.build('lenet5');"
            "x = torch.rand(4, 1, 28, 28); fastgrad.loss_and_grads(m, x, torch.arange(4));"
            "print(native.lib() is None, fastgrad.uses_native(m), native.why_not(), sep='|')")
    off = _probe({"MNISTVIZ_NATIVE": "0", "MNISTVIZ_CACHE": str(tmp_path)}, code)
    assert off == "True|False|turned off (MNISTVIZ_NATIVE=0)"
    broken = _probe({"CC": "false", "MNISTVIZ_CACHE": str(tmp_path)}, code).split("|")
    if broken[0] == "True":  # `false` was taken as the compiler: it fails, and says so
        assert broken[1] == "False" and "could not build native.c" in broken[2] and "exited 1" in broken[2]
    assert not list(tmp_path.glob("*.so")) and not list(tmp_path.iterdir())  # no half-built file is left


@needs_lib
def test_the_library_is_built_once_into_the_cache_and_keeps_denormals(tmp_path):
    """Guards the build cache (one build per machine) and that loading the library leaves denormals on."""
    code = ("import torch; from mnistviz import native; assert native.lib() is not None, native.why_not();"
            "print((torch.tensor([1e-39]) * 1.0).item() > 0)")
    assert _probe({"MNISTVIZ_CACHE": str(tmp_path)}, code) == "True"  # -ffast-math did not switch denormals off
    built = list(tmp_path.glob("native-*.so"))
    assert len(built) == 1
    mtime = built[0].stat().st_mtime_ns
    assert _probe({"MNISTVIZ_CACHE": str(tmp_path)}, code) == "True"
    assert list(tmp_path.glob("native-*.so")) == built and built[0].stat().st_mtime_ns == mtime


def test_a_model_without_a_fused_run_of_stages_builds_nothing(tmp_path):
    """Guards against compiling for nothing: a model native.c cannot fuse (net-320) never triggers a build."""
    code = ("import torch; from mnistviz import fastgrad, models; m = models.build('net-320');"
            "fastgrad.loss_and_grads(m, torch.rand(2, 1, 28, 28), torch.arange(2)); print(fastgrad.uses_native(m))")
    assert _probe({"MNISTVIZ_CACHE": str(tmp_path)}, code) == "False"
    assert not tmp_path.exists() or not list(tmp_path.iterdir())
