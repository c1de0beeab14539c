"""CPU-only speed for the trainer: a training step's gradients without autograd's graph, and opt.step without its
per-step Python. The trainer turns it on in one place, ``speedups_for(model, opt, device)``, on the CPU only.

The seeds' models (LeNet-5, its ReLU twin, net-320, single-conv) are a straight chain of
convolutions, activations, pooling and linear layers. For such a chain, backpropagation is a fixed
list of aten's own backward kernels (``convolution_backward``, ``tanh_backward``,
``avg_pool2d_backward``...) run in reverse, so this module calls them directly. The arithmetic
is the one autograd does, kernel for kernel (gradients agree to float rounding; tests/test_fastgrad.py),
without building and walking a graph each step: at small batches that bookkeeping is a real share of a step.
Where a C compiler is there, LeNet-5's tanh/pool blocks run as native.c's fused kernels (mnistviz/native.py).

Anything else (BatchNorm, dropout, unknown layers, frozen parameters) is not supported; the trainer
then uses autograd as usual.
"""
from __future__ import annotations

import weakref
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
import torch.optim.optimizer as torch_optimizer
from torch import nn
from torch.nn.modules.utils import _pair

from . import models, native

aten = torch.ops.aten


def _set_grad(p: torch.Tensor, g: torch.Tensor) -> None:
    # the optimizers' fused kernels expect a gradient laid out like its parameter (autograd's
    # AccumulateGrad guarantees the same)
    p.grad = g if g.stride() == p.stride() else torch.empty_like(p).copy_(g)


def _conv(m: nn.Conv2d, x):
    w, b = m.weight, m.bias
    mats = m.matrix_operands(x) if isinstance(m, models.Conv2d) else None
    if mats is not None:
        # the kernel covers the whole input: a matrix product, as models.Conv2d.forward does it
        xf, wf, cl = mats
        y = F.linear(xf, wf, b)[:, :, None, None]

        def back(gy, need_gx):
            g = gy.flatten(1)
            gw = g.t() @ xf
            _set_grad(w, gw.view(w.shape[0], w.shape[2], w.shape[3], w.shape[1]).permute(0, 3, 1, 2) if cl
                      else gw.view(w.shape))
            if b is not None:
                _set_grad(b, g.sum(0))
            if need_gx:
                gx = g @ wf
                return (gx.view(x.shape[0], x.shape[2], x.shape[3], x.shape[1]).permute(0, 3, 1, 2) if cl
                        else gx.view(x.shape))
        return y, back

    y = torch.convolution(x, w, b, m.stride, m.padding, m.dilation, False, (0, 0), m.groups)

    def back(gy, need_gx):
        gx, gw, gb = aten.convolution_backward(
            gy, x, w, None if b is None else [w.shape[0]], m.stride, m.padding, m.dilation, False, [0, 0],
            m.groups, [need_gx, True, b is not None])
        _set_grad(w, gw)
        if b is not None:
            _set_grad(b, gb)
        return gx
    return y, back


def _linear(m: nn.Linear, x):
    w, b = m.weight, m.bias
    y = F.linear(x, w, b)

    def back(gy, need_gx):
        _set_grad(w, gy.t() @ x)
        if b is not None:
            _set_grad(b, gy.sum(0))
        return gy @ w if need_gx else None
    return y, back


def _tanh(m, x):
    y = models.tanh_via_sigmoid(x) if isinstance(m, models.Tanh) else torch.tanh(x)
    return y, lambda gy, need_gx: aten.tanh_backward(gy, y) if need_gx else None


def _relu(m, x):
    y = torch.relu(x)
    return y, lambda gy, need_gx: aten.threshold_backward(gy, y, 0) if need_gx else None


def _avg_pool(m: nn.AvgPool2d, x):
    k = _pair(m.kernel_size)
    s = _pair(m.stride if m.stride is not None else m.kernel_size)
    p = _pair(m.padding)
    y = F.avg_pool2d(x, k, s, p, m.ceil_mode, m.count_include_pad, m.divisor_override)
    return y, lambda gy, need_gx: (aten.avg_pool2d_backward(gy, x, k, s, p, m.ceil_mode, m.count_include_pad,
                                                             m.divisor_override) if need_gx else None)


def _max_pool(m: nn.MaxPool2d, x):
    k = _pair(m.kernel_size)
    s = _pair(m.stride if m.stride is not None else m.kernel_size)
    p, d = _pair(m.padding), _pair(m.dilation)
    y, idx = aten.max_pool2d_with_indices(x, k, s, p, d, m.ceil_mode)
    return y, lambda gy, need_gx: (aten.max_pool2d_with_indices_backward(gy, x, k, s, p, d, m.ceil_mode, idx)
                                   if need_gx else None)


def _flatten(m: nn.Flatten, x):
    y = x.flatten(m.start_dim, m.end_dim)
    return y, lambda gy, need_gx: gy.reshape(x.shape) if need_gx else None


def _normalize(m: models.Normalize, x):
    return m.forward(x), lambda gy, need_gx: gy / m.std if need_gx else None


_STAGES = {models.Conv2d: _conv, nn.Conv2d: _conv, nn.Linear: _linear, models.Tanh: _tanh, nn.Tanh: _tanh,
           nn.ReLU: _relu, nn.AvgPool2d: _avg_pool, nn.MaxPool2d: _max_pool, nn.Flatten: _flatten,
           models.Normalize: _normalize}


def supports(model: nn.Module) -> bool:
    """True when every stage of this Sequential has a backward here and every parameter trains."""
    if not isinstance(model, nn.Sequential) or not all(p.requires_grad for p in model.parameters()):
        return False
    for stage in model:
        kind = type(stage)
        if kind not in _STAGES:
            return False
        if isinstance(stage, nn.Conv2d) and (isinstance(stage.padding, str) or stage.padding_mode != "zeros"):
            return False
        if isinstance(stage, nn.MaxPool2d) and stage.return_indices:
            return False
        if isinstance(stage, nn.Flatten) and stage.end_dim != -1:
            return False
    return True


def _is_pool2(m) -> bool:
    """A 2x2 average pool, stride 2, no padding (what native.c's kernels pool)."""
    return (type(m) is nn.AvgPool2d and _pair(m.kernel_size) == (2, 2) and m.stride in (None, 2, (2, 2))
            and _pair(m.padding) == (0, 0) and not m.ceil_mode and m.divisor_override is None)


def _tanh_pool(m: nn.Module, x):
    """tanh then a 2x2 average pool (LeNet-5's second block) in one pass of native.c, or None."""
    got = native.tanh_pool(x)
    if got is None:
        return None
    y, p = got
    return p, lambda gp, need_gx: native.tanh_pool_backward(gp, y)


def _conv1_tanh_pool(m: nn.Conv2d, x):
    """LeNet-5's first block (a convolution of the one-channel image, tanh, 2x2 average pool) in one pass of
    native.c, or None. Only as the first stage with parameters: its backward gives no input gradient."""
    got = native.conv1_tanh_pool(x, m.weight, m.bias, m.padding[0])
    if got is None:
        return None
    y, p = got

    def back(gp, need_gx):
        gw, gb = native.conv1_tanh_pool_grads(x, y, gp, m.weight, m.padding[0])
        _set_grad(m.weight, gw)
        _set_grad(m.bias, gb)
    return p, back


_plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _plan(model: nn.Sequential) -> tuple[list, int]:
    """The model's stages as (index, length, fused function or None), and the index of the first stage with
    parameters (stages before it need no input gradient). Runs of stages that native.c fuses are one entry
    when its library is there; their function returns None at run time for inputs it does not take, and the
    stages then run one by one."""
    if model in _plans:
        return _plans[model]
    stages = list(model)
    first = next((i for i, s in enumerate(stages) if any(True for _ in s.parameters())), len(stages))
    plan, i = [], 0
    while i < len(stages):
        s, nxt = stages[i], stages[i + 1:i + 3]
        tanh_next = len(nxt) >= 1 and isinstance(nxt[0], nn.Tanh)  # models.Tanh too
        # (native.lib() last: the library is built only for a model that has a run of stages it fuses)
        if (i == first and isinstance(s, nn.Conv2d) and s.in_channels == 1
                and s.groups == 1 and s.bias is not None and s.stride == (1, 1) and s.dilation == (1, 1)
                and not isinstance(s.padding, str) and s.padding[0] == s.padding[1] and s.padding_mode == "zeros"
                and s.kernel_size[0] == s.kernel_size[1] and tanh_next and len(nxt) == 2 and _is_pool2(nxt[1])
                and native.lib() is not None):
            plan.append((i, 3, _conv1_tanh_pool))
            i += 3
        elif isinstance(s, nn.Tanh) and len(nxt) >= 1 and _is_pool2(nxt[0]) and native.lib() is not None:
            plan.append((i, 2, _tanh_pool))
            i += 2
        else:
            plan.append((i, 1, None))
            i += 1
    _plans[model] = plan, first
    return plan, first


@torch.no_grad()
def loss_and_grads(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor,
                   label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``model(x)`` against ``y`` (as F.cross_entropy, mean over the batch), with every
    parameter's ``.grad`` set to its gradient (replacing, not adding to, what was there).
    Returns (logits, loss). Only for models where ``supports(model)``."""
    plan, first = _plan(model)
    backs = []  # (index of the stage, its backward)
    h = x
    for i, length, fused in plan:
        got = fused(model[i], h) if fused is not None else None
        if got is not None:
            h, back = got
            backs.append((i, back))
            continue
        for j in range(i, i + length):
            stage = model[j]
            h, back = _STAGES[type(stage)](stage, h)
            backs.append((j, back))
    logits = h
    n, c = logits.shape
    lsm = torch.log_softmax(logits, 1)
    nll = -lsm.gather(1, y[:, None]).mean()
    eps = float(label_smoothing)
    loss = nll if eps == 0 else (1 - eps) * nll - eps * lsm.mean()
    # d loss / d logits = (softmax - target) / n, target = (1 - eps) * onehot + eps / c
    g = lsm.exp_()
    if eps:
        g.sub_(eps / c)
    g.view(-1).index_add_(0, y + torch.arange(0, n * c, c), torch.full((n,), eps - 1.0))
    g.div_(n)
    for i, back in reversed(backs):
        if i < first:  # stages before the first one with parameters need no input gradient
            break
        g = back(g, i > first)
    return logits, loss


def uses_native(model: nn.Sequential) -> bool:
    """True when some of the model's stages run as one of native.c's fused kernels."""
    return any(fused is not None for _, _, fused in _plan(model)[0])


def _dense_views(*lists: list) -> list[list]:
    """The fused kernels work on contiguous tensors: a channels-last weight (with its gradient and state laid
    out alike) is copied to contiguous and back each step. The same memory seen in (out, h, w, in) order is
    contiguous, and an elementwise update does not care about the order. Empty lists (no momentum) stay empty."""
    used = [lst for lst in lists if lst]
    out = [[] for _ in used]
    for group in zip(*used):
        if (group[0].dim() == 4 and not group[0].is_contiguous()
                and all(t.is_contiguous(memory_format=torch.channels_last) for t in group)):
            group = tuple(t.permute(0, 2, 3, 1) for t in group)
        for lst, t in zip(out, group):
            lst.append(t)
    it = iter(out)
    return [next(it) if lst else [] for lst in lists]


def _direct_ok(opt: torch.optim.Optimizer) -> bool:
    """One parameter group of CPU float32 tensors, torch's fused kernel, nothing hooked in."""
    if len(opt.param_groups) != 1:
        return False
    group = opt.param_groups[0]
    hooks = (opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks
             or torch_optimizer._global_optimizer_pre_hooks or torch_optimizer._global_optimizer_post_hooks)
    return (bool(group.get("fused")) and not group.get("maximize") and not group.get("differentiable")
            and not group.get("capturable") and not hooks and not torch.is_tensor(group["lr"])
            and all(p.device.type == "cpu" and p.dtype == torch.float32 for p in group["params"]))


def step_function(opt: torch.optim.Optimizer):
    """A function doing ``opt.step()``. For torch's fused SGD, Adam and AdamW on CPU (what the trainer makes) it calls
    the fused kernel directly with the optimizer's own state: the same update, bit for bit, and the same
    ``state_dict`` (so checkpoints and resume are unchanged), without the Python that ``step`` spends per step
    gathering lists, checking and profiling. Anything else (other optimizers or settings, several parameter groups,
    hooks, a parameter without a gradient) uses ``opt.step``."""
    if type(opt) is torch.optim.SGD and _direct_ok(opt):
        return _direct(opt, _sgd_update)
    if type(opt) in (torch.optim.Adam, torch.optim.AdamW) and _direct_ok(opt) and not opt.param_groups[0]["amsgrad"]:
        return _direct(opt, _adam_update)
    return opt.step


def _direct(opt, update):
    """opt.step through `update(opt, group, state, params, grads)`, which returns False, having changed nothing, when
    it cannot take this step (then torch's step does)."""
    params = list(opt.param_groups[0]["params"])

    @torch.no_grad()
    def step():
        grads = [p.grad for p in params]
        # the group and state are read at each step: load_state_dict replaces those objects
        if (any(g is None or g.is_sparse for g in grads)
                or update(opt, opt.param_groups[0], opt.state, params, grads) is False):
            return opt.step()
        opt._opt_called = True  # what torch's LR schedulers look for to know the optimizer stepped
    return step


def _first_step(missing: list[bool]) -> bool | None:
    """True when no parameter has its state yet (the first step), False when all have, None when some have."""
    return True if all(missing) else False if not any(missing) else None


def _sgd_update(opt, group, state, params, grads):
    momentum = group["momentum"]
    bufs, first = [], False
    if momentum:
        bufs = [state[p].get("momentum_buffer") for p in params]
        first = _first_step([b is None for b in bufs])
        if first is None:
            return False
        if first:  # the kernel sets each buffer to its gradient
            bufs = [torch.empty_like(g) for g in grads]
            for p, b in zip(params, bufs):
                state[p]["momentum_buffer"] = b
    ps, gs, bs = _dense_views(params, grads, bufs)
    torch._fused_sgd_(ps, gs, bs, weight_decay=group["weight_decay"], momentum=momentum, lr=group["lr"],
                      dampening=group["dampening"], nesterov=group["nesterov"], maximize=False, is_first_step=first)


def _adam_update(opt, group, state, params, grads):
    states = [state[p] for p in params]
    first = _first_step([not s for s in states])
    if first is None:
        return False
    if first:  # as Adam's first step makes them
        for p, s in zip(params, states):
            s["step"] = torch.zeros((), dtype=torch.float32)
            s["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            s["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    steps = [s["step"] for s in states]
    torch._foreach_add_(steps, 1)
    ps, gs, m1, m2 = _dense_views(params, grads, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states])
    kernel = torch._fused_adamw_ if group.get("decoupled_weight_decay", type(opt) is torch.optim.AdamW) \
        else torch._fused_adam_
    beta1, beta2 = group["betas"]
    kernel(ps, gs, m1, m2, [], steps, amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
           weight_decay=group["weight_decay"], eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)


# ---------- the switch ----------

class Speedups(NamedTuple):
    grads: Callable | None  # loss_and_grads for a model it supports, else None (use autograd)
    step: Callable          # opt.step, or the same update without its per-step Python (step_function)


def speedups_for(model: nn.Module, opt: torch.optim.Optimizer, device) -> Speedups:
    """The trainer's one switch for this module and native.c: both are speed for the CPU only, so on any other
    device this is (None, opt.step). On the CPU, a model that ``supports`` gets the hand-run backward, and native.c's
    library is built here (once per machine, for a model with stages it fuses) rather than in a timed step."""
    if torch.device(device).type != "cpu":
        return Speedups(None, opt.step)
    handrun = supports(model)
    if handrun:
        uses_native(model)
    return Speedups(loss_and_grads if handrun else None, step_function(opt))
