"""fastgrad's hand-run backward against autograd: same loss, logits and gradients for every model it takes."""
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnistviz import fastgrad, models

SUPPORTED = ["lenet5", "lenet5-relu", "net-320", "single-conv"]


def _autograd(model, x, y, eps):
    model.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=eps)
    loss.backward()
    return logits.detach(), loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _compare(model, x, y, eps):
    ref_logits, ref_loss, ref_grads = _autograd(model, x, y, eps)
    for p in model.parameters():  # stale gradients must be replaced, not added to
        p.grad = torch.full_like(p, 7.0)
    logits, loss = fastgrad.loss_and_grads(model, x, y, eps)
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(loss, ref_loss)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[n], rtol=1e-4, atol=1e-6, msg=lambda m: f"{n}: {m}")
        assert p.grad.stride() == p.stride(), n


@pytest.mark.parametrize("name", SUPPORTED)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_gradients_match_autograd(name, channels_last, eps):
    """Guards the hand-run backward: autograd's logits, loss and gradients for every model it takes, any layout."""
    torch.manual_seed(0)
    model = models.build(name)
    x = torch.rand(8, 1, 28, 28)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (8,))
    assert fastgrad.supports(model)
    _compare(model, x, y, eps)


def test_torch_layers_with_strides_and_padding():
    """Guards the torch layers the models do not use yet: plain nn.Conv2d / nn.Tanh, strided and padded pooling, a
    conv without bias, a conv whose input needs a gradient."""
    torch.manual_seed(1)
    model = nn.Sequential(models.Normalize(), nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.Tanh(),
                          nn.MaxPool2d(3, stride=2, padding=1), nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.ReLU(),
                          nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False), nn.Flatten(),
                          nn.Linear(6 * 8 * 8, 10))
    assert fastgrad.supports(model)
    _compare(model, torch.rand(5, 1, 28, 28), torch.randint(0, 10, (5,)), 0.05)


@pytest.mark.parametrize("name", ["fast", "wide", "cnn-32-64"])
def test_batchnorm_and_dropout_models_use_autograd(name):
    """Guards the scope: models with BatchNorm or dropout are refused, so the trainer uses autograd for them."""
    assert not fastgrad.supports(models.build(name))


def test_frozen_parameters_use_autograd():
    """Guards the scope: a frozen parameter (which the hand-run backward would update) means autograd."""
    model = models.build("lenet5")
    model.conv1.weight.requires_grad_(False)
    assert not fastgrad.supports(model)


def test_an_sgd_step_on_either_path_gives_the_same_weights():
    """Guards training as a whole: a few SGD steps through the hand-run backward give autograd's weights."""
    torch.manual_seed(2)
    a = models.build("lenet5").to(memory_format=torch.channels_last)
    b = models.build("lenet5").to(memory_format=torch.channels_last)
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.SGD(a.parameters(), lr=0.05, momentum=0.9, fused=True)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9, fused=True)
    for _ in range(5):
        x = torch.rand(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (16,))
        opt_a.zero_grad(set_to_none=True)
        F.cross_entropy(a(x), y).backward()
        opt_a.step()
        fastgrad.loss_and_grads(b, x, y)
        opt_b.step()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6, msg=lambda m: f"{n}: {m}")


OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, fused=True),
    "sgd-nesterov-wd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                                  fused=True),
    "sgd-no-momentum": lambda ps: torch.optim.SGD(ps, lr=0.05, weight_decay=1e-3, fused=True),
    "adam": lambda ps: torch.optim.Adam(ps, lr=3e-3, weight_decay=1e-4, fused=True),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=3e-3, betas=(0.8, 0.99), weight_decay=0.05, fused=True),
}


@pytest.mark.parametrize("kind", OPTIMIZERS)
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_the_direct_step_is_torchs_fused_step_exactly(kind, layout, recwarn):
    """Guards the direct optimizer step: bit for bit the weights and the state_dict torch's step gives, under an LR
    schedule, with channels-last weights (updated through their contiguous view) and without, and after a resume."""
    torch.manual_seed(3)
    a = models.build("lenet5").to(memory_format=layout)
    b = models.build("lenet5").to(memory_format=layout)
    b.load_state_dict(a.state_dict())
    opts = [OPTIMIZERS[kind](m.parameters()) for m in (a, b)]
    scheds = [torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (1 + s)) for opt in opts]
    steps = [opts[0].step, fastgrad.step_function(opts[1])]
    assert steps[1] != opts[1].step  # the direct path was taken
    for _ in range(4):
        x = torch.rand(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (16,))
        for m, step, sched in zip((a, b), steps, scheds):
            fastgrad.loss_and_grads(m, x, y)
            step()
            sched.step()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
        assert p.stride() == q.stride(), n
    sa, sb = opts[0].state_dict(), opts[1].state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys()
        for key, v in sa["state"][k].items():
            assert v is None and sb["state"][k][key] is None or torch.equal(v, sb["state"][k][key]), (k, key)
            if torch.is_tensor(v):
                assert v.stride() == sb["state"][k][key].stride() and v.dtype == sb["state"][k][key].dtype
    assert not [w for w in recwarn if "lr_scheduler" in str(w.message)]  # the schedulers saw the steps
    # a state loaded after the step function was made (as --resume does): it steps from the loaded state
    c = models.build("lenet5").to(memory_format=layout)
    c.load_state_dict(a.state_dict())
    opt_c = OPTIMIZERS[kind](c.parameters())
    step_c = fastgrad.step_function(opt_c)
    saved = io.BytesIO()  # through a file, as last.pt (state_dict() holds the optimizer's own tensors)
    torch.save(opts[0].state_dict(), saved)
    saved.seek(0)
    opt_c.load_state_dict(torch.load(saved, weights_only=True))
    x, y = torch.rand(16, 1, 28, 28).contiguous(memory_format=torch.channels_last), torch.randint(0, 10, (16,))
    for m, step in ((a, opts[0].step), (c, step_c)):
        fastgrad.loss_and_grads(m, x, y)
        step()
    for (n, p), q in zip(a.named_parameters(), c.parameters()):
        assert torch.equal(p, q), n


def test_the_direct_step_falls_back_to_opt_step():
    """Guards the direct step's scope: other optimizers and settings, and a parameter without a gradient, get opt.step."""
    model = models.build("lenet5")
    for opt in (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),  # not fused
                torch.optim.Adam(model.parameters(), amsgrad=True, fused=True),
                torch.optim.RMSprop(model.parameters())):
        assert fastgrad.step_function(opt) == opt.step
    fused = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)
    step = fastgrad.step_function(fused)
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    fastgrad.loss_and_grads(model, x, y)
    model.conv1.weight.grad = None  # a parameter without a gradient: torch's step, which skips it
    before = model.conv1.weight.clone()
    step()
    assert torch.equal(model.conv1.weight, before)
    assert fused.state[model.conv1.weight] == {}
    assert all("momentum_buffer" in fused.state[p] for p in model.parameters() if p is not model.conv1.weight)


def test_the_switch_turns_the_fast_paths_on_for_the_cpu_only():
    """Guards speedups_for, the trainer's one switch: on the CPU the hand-run backward (for a model it takes) and the
    direct step; on another device autograd and opt.step."""
    lenet, fast = models.build("lenet5"), models.build("fast")
    opt = torch.optim.SGD(lenet.parameters(), lr=0.1, momentum=0.9, fused=True)
    on = fastgrad.speedups_for(lenet, opt, "cpu")
    assert on.grads is fastgrad.loss_and_grads and on.step != opt.step
    assert fastgrad.speedups_for(fast, opt, torch.device("cpu")).grads is None
    assert fastgrad.speedups_for(lenet, opt, "cuda") == (None, opt.step)
