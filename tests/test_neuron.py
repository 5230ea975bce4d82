"""pfa.lif.neuron.LIF against spikingjelly 2's LIFNode and against a step-by-step FSVAE neuron written here."""

import math
import sys

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from reference_snn import fsvae_lif_steps
from spikingjelly.activation_based import functional, neuron, surrogate

import pfa.lif.native
import pfa.lif.torch_backend
from pfa.errors import UserError
from pfa.lif.neuron import LIF, cupy_available

BACKENDS = ["torch", "cpu"] + (["cupy"] if cupy_available() else [])
DEVICE = {"torch": "cpu", "cpu": "cpu", "cupy": "cuda"}
CONFIGS = {
    "default": {},
    "no-decay-input": {"decay_input": False},
    "reset-to-minus-0.3": {"v_reset": -0.3},
    "soft-reset": {"v_reset": None},
    "reset-not-detached": {"detach_reset": False},
    "soft-not-detached-no-decay": {"v_reset": None, "detach_reset": False, "decay_input": False},
    "soft-not-detached-alpha-3": {"v_reset": None, "detach_reset": False, "alpha": 3.0},
}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Small CPU chunks and thread spans, so that these small tensors still cross their boundaries."""
    monkeypatch.setattr(pfa.lif.torch_backend, "CPU_CHUNK", 256)
    monkeypatch.setattr(pfa.lif.native, "MIN_PER_THREAD", 64)


def spikingjelly_lif(alpha=2.0, **config):
    config = {"detach_reset": True, **config}
    return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(alpha=alpha), step_mode="m", **config)


def two_calls(module, x, grad):
    """Two chained calls (the state carries over), then backward through both and the final membrane."""
    x = x.clone().requires_grad_()
    first, second = module(x), module(x.flip(0) * 0.5)  # exact in every dtype
    v = module.v
    loss = (first.float() * grad).sum() + (second.float() * grad.flip(0)).sum() + (v * grad[0]).sum()
    loss.backward()
    return first, second, v, x.grad


def lif_input(device, dtype=torch.float32, shape=(6, 4, 5, 7, 9)):
    torch.manual_seed(0)
    x = torch.randn(*shape, device=device) + 0.8
    return x.to(dtype), torch.randn(*shape, device=device)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_float32_matches_spikingjelly(backend, config):
    x, grad = lif_input(DEVICE[backend])
    theirs = two_calls(spikingjelly_lif(**config).to(x.device), x, grad)
    ours = two_calls(LIF(backend=backend, **config), x, grad)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert ours[0].sum() > 0 and (ours[0] == 0).any()  # the input really makes some neurons fire and others not
    torch.testing.assert_close(ours[2], theirs[2], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours[3], theirs[3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config", [CONFIGS["default"], CONFIGS["reset-not-detached"]], ids=["default", "not-detached"])
def test_channels_last_input_gives_the_same_numbers_in_its_own_layout(config):
    """A channels-last [T, N, C, H, W] input is processed in memory order: equal results, channels-last outputs."""
    x, grad = lif_input("cpu", shape=(3, 2, 5, 4, 6))
    x_cl = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (3, 2))
    assert not x_cl.is_contiguous()
    plain, last = two_calls(LIF(**config), x, grad), two_calls(LIF(**config), x_cl, grad)
    for a, b in zip(plain, last, strict=True):
        assert torch.equal(a, b)
    assert last[0].flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    assert last[3].flatten(0, 1).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_keeps_a_float32_state(backend, dtype):
    """spikingjelly 2 keeps a 16-bit state for 16-bit inputs; ours is float32, so it must equal spikingjelly run on the
    same values in float32, with spikes and input gradients returned in the input's dtype."""
    x, grad = lif_input(DEVICE[backend], dtype)
    grad = grad.to(dtype).float()  # the gradient reaching our spikes is rounded to their dtype
    theirs = two_calls(spikingjelly_lif().to(x.device), x.float(), grad)
    ours = two_calls(LIF(backend=backend), x, grad)
    assert ours[0].dtype == dtype and ours[3].dtype == dtype and ours[2].dtype == torch.float32
    assert torch.equal(ours[0].float(), theirs[0]) and torch.equal(ours[1].float(), theirs[1])
    torch.testing.assert_close(ours[2], theirs[2], rtol=1e-6, atol=1e-6)
    one_ulp_of_the_largest = torch.finfo(dtype).eps * theirs[3].abs().max().item()  # two calls' gradients add up
    torch.testing.assert_close(ours[3].float(), theirs[3], rtol=torch.finfo(dtype).eps, atol=2 * one_ulp_of_the_largest)


def test_autocast_gives_spikes_in_the_autocast_dtype():
    torch.manual_seed(0)
    layer, lif = nn.Linear(9, 9), LIF()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spikes = lif(layer(torch.randn(4, 3, 9)))
    spikes.sum().backward()
    assert spikes.dtype == torch.bfloat16 and lif.v.dtype == torch.float32
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_auto_backend_on_cpu_never_imports_cupy():
    x, _ = lif_input("cpu")
    LIF(backend="auto")(x)
    assert "cupy" not in sys.modules


def test_inference_mode_and_no_grad_give_the_same_spikes():
    x, _ = lif_input("cpu")
    expected = LIF()(x)
    with torch.inference_mode():
        assert torch.equal(LIF()(x), expected)
    with torch.no_grad():
        assert torch.equal(LIF()(x), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_torch_backend_off_cpu_keeps_every_operand_on_the_input_device(dtype, config):
    """The non-CPU path (one piece, no threads) runs on the meta device: no CPU tensor may meet the input's."""
    x = torch.randn(4, 3, 5, device="meta", dtype=dtype, requires_grad=True)
    lif = LIF(backend="torch", **config)
    spikes = lif(x)
    (spikes.float().sum() + lif.v.sum()).backward()
    assert (spikes.dtype, lif.v.dtype, x.grad.dtype) == (dtype, torch.float32, dtype)
    assert spikes.device == lif.v.device == x.grad.device == x.device


def test_reset_net_restores_the_initial_state():
    x, grad = lif_input("cpu")
    lif = LIF(v_reset=-0.1)
    first = lif(x)
    lif(x)
    functional.reset_net(lif)
    assert lif.v == -0.1 and torch.equal(lif(x), first)


def test_store_v_seq_matches_spikingjelly():
    x, _ = lif_input("cpu")
    theirs, ours = spikingjelly_lif(store_v_seq=True), LIF(store_v_seq=True)
    theirs(x), ours(x)
    torch.testing.assert_close(ours.v_seq, theirs.v_seq, rtol=1e-6, atol=1e-6)
    assert torch.equal(ours.v_seq[-1], ours.v)
    functional.reset_net(ours)
    assert ours.v_seq is None


def test_single_step_mode_equals_multi_step():
    x, _ = lif_input("cpu")
    multi, single = LIF(), LIF()
    single.step_mode = "s"
    assert torch.equal(torch.stack([single(x_t) for x_t in x]), multi(x))
    assert torch.equal(single.v, multi.v)


def fsvae_neuron(x):
    """The step-by-step reference on time-first x: spikes [T, ...] and the final membrane."""
    spikes, v = fsvae_lif_steps(x.unbind(0))
    return torch.stack(spikes), v


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "cpu"])  # float64; "cpu" = torch: test_lif_cpu.py
def test_fsvae_configuration_matches_its_step_by_step_neuron(backend):
    x, grad = lif_input(DEVICE[backend], torch.float64, shape=(16, 4, 8, 5, 5))
    x = x * 0.4 - 0.2
    lif = LIF(tau=4 / 3, v_threshold=0.2, decay_input=False, detach_reset=False, surrogate="rectangle",
              surrogate_center=0.0, backend=backend)  # fmt: skip
    results = []
    for run in (fsvae_neuron, lambda x_in: (lif(x_in), lif.v)):
        x_in = x.clone().requires_grad_()
        spikes, v = run(x_in)
        ((spikes * grad).sum() + v.sum()).backward()
        results.append((spikes, v, x_in.grad))
    (s_ref, v_ref, g_ref), (s, v, g) = results
    assert torch.equal(s, s_ref) and 0 < s.mean() < 0.5
    torch.testing.assert_close(v, v_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    assert (g_ref != 0).float().mean() > 0.2  # the rectangle window lets a real share of the gradient through


def test_rectangle_centre_defaults_to_the_threshold():
    x, grad = lif_input("cpu")
    grads = []
    for center in (None, 1.0):
        x_in = x.clone().requires_grad_()
        (LIF(surrogate="rectangle", width=0.3, surrogate_center=center)(x_in) * grad).sum().backward()
        grads.append(x_in.grad)
    assert torch.equal(grads[0], grads[1]) and grads[0].abs().sum() > 0


def test_sequential_and_ddp_train_like_spikingjelly():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 12)
    theirs = nn.Sequential(nn.Linear(12, 6), spikingjelly_lif())
    ours = nn.Sequential(nn.Linear(12, 6), LIF())
    ours[0].load_state_dict(theirs[0].state_dict())
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(ours)
        ddp(x).sum().backward()
        functional.reset_net(ddp)
        assert ours[1].v == 0.0
    finally:
        if owns_group:
            dist.destroy_process_group()
    theirs(x).sum().backward()
    torch.testing.assert_close(ours[0].weight.grad, theirs[0].weight.grad, rtol=1e-5, atol=1e-6)
    assert ours[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "triton"}, "backend must be one of 'auto', 'torch', 'cupy', 'cpu', got 'triton'"),
        ({"surrogate": "sigmoid"}, "surrogate must be one of 'atan', 'rectangle', got 'sigmoid'"),
        ({"tau": 0.5}, "tau must be a finite number greater than 1, got 0.5"),
        ({"tau": 1.0}, "tau must be a finite number greater than 1, got 1.0"),
        ({"tau": math.inf}, "tau must be a finite number greater than 1, got inf"),
        ({"tau": math.nan}, "tau must be a finite number greater than 1, got nan"),
        ({"width": 0}, "width must be a finite number greater than 0, got 0"),
        ({"v_threshold": "1"}, "v_threshold must be a finite number, got '1'"),
        ({"v_threshold": 0.0}, r"v_threshold must be above v_reset, got 0.0 <= 0.0"),
        ({"v_threshold": -1.0, "v_reset": 0.5}, r"v_threshold must be above v_reset, got -1.0 <= 0.5"),
    ],
)
def test_bad_arguments_raise_one_line(kwargs, message):
    with pytest.raises(UserError, match=message) as error:
        LIF(**kwargs)
    assert "\n" not in str(error.value) and isinstance(error.value, ValueError)


def test_soft_reset_accepts_any_threshold():
    assert LIF(v_threshold=0.5, v_reset=None).params.v_threshold == 0.5


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("v_reset", [0.0, None])
def test_a_non_finite_membrane_is_not_silent(bad, v_reset):
    """A NaN or infinite input (diverged weights upstream) makes the output NaN there, never a quiet 'no spike'."""
    x = torch.rand(4, 3, 5, requires_grad=True)
    with torch.no_grad():
        x[1, 0, 2] = bad
    out = LIF(v_reset=v_reset, backend="torch")(x)
    assert out[-1, 0, 2].isnan() and torch.isfinite(out[:, 1:]).all() and torch.isfinite(out[:, 0, :2]).all()
    out.sum().backward()
    assert torch.isfinite(x.grad[:, 1:]).all()


@pytest.mark.skipif(cupy_available(), reason="checks the message shown where CuPy or CUDA is missing")
def test_cupy_backend_without_cupy_says_what_to_do():
    with pytest.raises(UserError, match="backend='cupy' needs CuPy .* use backend='auto' or 'torch'"):
        LIF(backend="cupy")


def test_bad_inputs_name_the_expected_layout():
    lif = LIF()
    with pytest.raises(ValueError, match=r"expected a floating-point input \[T, N, ...\].*got shape \[5\]"):
        lif(torch.randn(5))
    with pytest.raises(ValueError, match="dtype torch.int64"):
        lif(torch.ones(2, 3, dtype=torch.long))
    lif(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"v has shape \[3, 4\] but one step of the input has \[5, 4\].*reset_net"):
        lif(torch.randn(2, 5, 4))
