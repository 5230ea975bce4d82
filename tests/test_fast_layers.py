"""pfa.lif.layers: the C max pooling gives torch's output and gradient exactly (ties, NaN, odd sizes, threads) and
defers to torch elsewhere; the LIF fused with pooling gives the unfused floats; the CPU dropout has dropout's law,
scaling and gradient."""

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, layer, surrogate
from spikingjelly.activation_based import neuron as sj_neuron

import pfa.lif.cpu_backend as lif_cpu
import pfa.lif.native as native
from pfa.lif.layers import Dropout, MaxPool2d, SpikingMaxPool2d
from pfa.lif.neuron import LIF

needs_compiler = pytest.mark.skipif(not native.available(), reason="no working C compiler here")


def pool_both(x, ours, theirs):
    """Forward and backward of both layers on copies of x: outputs, input gradients."""
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(a), theirs(b)
    probe = torch.randn(ya.shape, generator=torch.Generator().manual_seed(2)).to(ya.dtype)
    (ya * probe).sum().backward()
    (yb * probe).sum().backward()
    return (ya, a.grad), (yb, b.grad)


def assert_identical(a, b):
    assert a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype
    assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


@needs_compiler
@pytest.mark.parametrize("shape", [(5, 6, 8, 8), (3, 7, 9, 11), (2, 1, 2, 3), (64, 16, 28, 28)], ids=str)
def test_pooling_spikes_and_special_values_matches_torch_exactly(monkeypatch, shape):
    monkeypatch.setattr(native, "MIN_PER_THREAD", 8)  # several threads even for small maps
    torch.manual_seed(0)
    spikes = (torch.rand(shape) < 0.3).float()  # ties everywhere: the gradient must go to the first maximum
    special = torch.randn(shape).round()
    special.view(-1)[::7] = float("nan")
    special.view(-1)[3::11] = float("-inf")
    special.view(-1)[5::13] = -0.0
    for x in (spikes, special):
        x = x.contiguous(memory_format=torch.channels_last)
        (y, grad), (y_ref, grad_ref) = pool_both(x, MaxPool2d(2), nn.MaxPool2d(2))
        assert_identical(y, y_ref)
        assert_identical(grad, grad_ref)
        assert grad.abs().sum() > 0


@needs_compiler
def test_the_native_loops_run_and_keep_nothing_but_the_input(monkeypatch):
    calls = []
    monkeypatch.setattr(native, "parallel", lambda call, count, size=1: calls.append(count) or call(0, count))
    x = torch.rand(4, 3, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = MaxPool2d(2)(x)
    assert calls == [4 * 3] and y.grad_fn.saved_tensors[0] is x
    y.sum().backward()
    assert calls == [12, 12]


@pytest.mark.parametrize("layer, x", [
    (MaxPool2d(2), torch.randn(3, 4, 8, 8)),  # NCHW
    (MaxPool2d(2), torch.randn(3, 4, 8, 8, dtype=torch.float64).contiguous(memory_format=torch.channels_last)),
    (MaxPool2d(3), torch.randn(3, 4, 9, 9).contiguous(memory_format=torch.channels_last)),
    (MaxPool2d(2, stride=1), torch.randn(3, 4, 8, 8).contiguous(memory_format=torch.channels_last)),
    (MaxPool2d(2, ceil_mode=True), torch.randn(3, 4, 7, 7).contiguous(memory_format=torch.channels_last)),
    (MaxPool2d(2, padding=1), torch.randn(3, 4, 8, 8).contiguous(memory_format=torch.channels_last)),
], ids=["nchw", "float64", "kernel-3", "stride-1", "ceil", "padding"])
def test_other_settings_are_torchs_own_pooling(monkeypatch, layer, x):
    monkeypatch.setattr(native, "parallel", lambda *args: pytest.fail("the C loops ran outside their case"))
    reference = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding, ceil_mode=layer.ceil_mode)
    (y, grad), (y_ref, grad_ref) = pool_both(x, layer, reference)
    assert_identical(y, y_ref)
    assert_identical(grad, grad_ref)


def test_pooling_without_a_compiler_is_torchs(fresh_build, monkeypatch):
    monkeypatch.setenv("CC", str(fresh_build / "no-such-cc"))
    x = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    with pytest.warns(RuntimeWarning, match="no-such-cc.*failed"):
        y = MaxPool2d(2)(x)
    assert torch.equal(y, nn.MaxPool2d(2)(x))


def test_dropout_keeps_one_minus_p_scales_the_kept_and_passes_the_gradient_through_the_mask():
    layer, x = Dropout(0.3), (torch.rand(1000, 1000) + 0.5).requires_grad_()
    torch.manual_seed(0)
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.003  # 1e6 draws: 6 standard deviations
    torch.testing.assert_close(y[kept], x[kept] / 0.7)
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() / 0.7)
    torch.manual_seed(0)
    assert torch.equal(layer(x), y)  # a seed reproduces the mask


def test_dropout_is_the_identity_in_eval_mode_or_at_p_0_and_zero_at_p_1():
    x = torch.rand(4, 5)
    assert Dropout(0.5).eval()(x) is x and Dropout(0.0)(x) is x
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))


LIF_SETTINGS = {
    "fmnist": {"detach_reset": False},
    "detached-soft": {"v_reset": None},
    "fsvae": {"tau": 4 / 3, "v_threshold": 0.2, "decay_input": False, "detach_reset": False, "surrogate": "rectangle",
              "surrogate_center": 0.0},
}
INPUT_SCALE = {"fsvae": 0.1}  # its threshold of 0.2 and undecayed input: the same spike rates as the others


def pooled_spikes(layer, x, repeat=None, calls=2):
    """Two chained calls (the membrane carries over), backward through both outputs and the final membrane."""
    x = x.clone().requires_grad_()
    x_seq = x.unsqueeze(0).expand(repeat, *x.shape) if repeat else x
    g = torch.Generator().manual_seed(1)
    outputs = [layer(x_seq) for _ in range(calls)]
    neuron = layer.neuron if isinstance(layer, SpikingMaxPool2d) else layer[0]
    loss = sum((y * torch.randn(y.shape, generator=g)).sum() for y in outputs) + neuron.v.square().sum()
    loss.backward()
    return (*outputs, neuron.v, x.grad)


def unfused(settings, backend="torch"):
    """The reference: the LIF's torch backend, then torch's pooling."""
    return nn.Sequential(LIF(backend=backend, **settings), layer.SeqToANNContainer(nn.MaxPool2d(2)))


def channels_last_steps(x):
    return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


@needs_compiler
@pytest.mark.parametrize("setting", LIF_SETTINGS)
@pytest.mark.parametrize("shape", [(4, 3, 8, 6, 6), (3, 2, 5, 4, 7), (4, 16, 32, 28, 28)], ids=str)
def test_lif_and_pooling_fused_give_the_unfused_floats(monkeypatch, setting, shape):
    monkeypatch.setattr(native, "MIN_PER_THREAD", 64)  # several threads even for small maps
    torch.manual_seed(0)
    x = channels_last_steps((torch.randn(shape) * 1.5 + 0.6) * INPUT_SCALE.get(setting, 1.0))
    fused = SpikingMaxPool2d(LIF(**LIF_SETTINGS[setting]))
    ours, reference = pooled_spikes(fused, x), pooled_spikes(unfused(LIF_SETTINGS[setting]), x)
    for name, a, b in zip(("pooled spikes", "2nd call", "v", "dL/dx"), ours, reference, strict=True):
        assert torch.equal(a, b) and a.stride() == b.stride(), name
    assert 0.1 < ours[0].mean() < 0.9 and ours[-1].abs().sum() > 0


@needs_compiler
def test_a_repeated_input_is_read_in_place_and_only_h_is_saved():
    torch.manual_seed(0)
    x = (torch.randn(6, 8, 10, 10) + 0.7).contiguous(memory_format=torch.channels_last)
    fused = SpikingMaxPool2d(LIF(detach_reset=False))
    pooled = fused(x.clone().requires_grad_().unsqueeze(0).expand(4, *x.shape))
    assert type(pooled.grad_fn).__name__ == "CpuMultiStepLIFPoolBackward"
    [h_seq] = pooled.grad_fn.saved_tensors
    assert h_seq.numel() == 4 * x.numel()
    fused.neuron.reset()
    reference = pooled_spikes(unfused({"detach_reset": False}, backend="cpu"), x, repeat=4)  # its order of the sum
    ours = pooled_spikes(fused, x, repeat=4)  # over T, which the torch backend leaves to autograd's expand
    assert all(torch.equal(a, b) for a, b in zip(ours, reference, strict=True))


@needs_compiler
def test_a_diverged_membrane_shows_in_the_last_pooled_step():
    x = torch.ones(3, 1, 2, 4, 4)
    x[:, 0, 1, 2, 3] = float("inf")
    pooled = SpikingMaxPool2d(LIF())(channels_last_steps(x))
    reference = unfused({})(channels_last_steps(x))
    assert torch.equal(pooled.isnan(), reference.isnan()) and pooled[-1, 0, 1, 1, 1].isnan()


@pytest.mark.parametrize("case", ["nchw", "odd-height", "v_seq", "float64", "hooked", "spikingjelly"])
def test_the_neuron_then_the_pooling_where_the_fused_loops_do_not_apply(case):
    torch.manual_seed(0)
    x = torch.randn(3, 2, 4, 6, 6) + 0.7
    x = x if case == "nchw" else channels_last_steps(x)
    x = x[:, :, :, :5] if case == "odd-height" else x
    x = x.double() if case == "float64" else x
    neuron = LIF(store_v_seq=case == "v_seq", backend="auto")
    if case == "spikingjelly":
        neuron = sj_neuron.LIFNode(surrogate_function=surrogate.ATan(), step_mode="m")
    layer_ = SpikingMaxPool2d(neuron)
    if case == "hooked":
        neuron.register_forward_hook(lambda module, inputs, output: None)
    y = layer_(x.requires_grad_())
    assert type(y.grad_fn).__name__ != "CpuMultiStepLIFPoolBackward"
    functional.reset_net(layer_)
    assert torch.equal(y, layer.SeqToANNContainer(nn.MaxPool2d(2))(neuron(x)))


@needs_compiler
def test_without_gradients_the_fused_forward_keeps_nothing_and_gives_the_same_spikes(monkeypatch):
    calls, fused_apply = [], lif_cpu.CpuMultiStepLIFPool.apply
    monkeypatch.setattr(lif_cpu.CpuMultiStepLIFPool, "apply", lambda *args: calls.append(1) or fused_apply(*args))
    torch.manual_seed(0)
    x = channels_last_steps(torch.randn(4, 5, 6, 8, 10) + 0.7)
    fused, reference = SpikingMaxPool2d(LIF(detach_reset=False)), unfused({"detach_reset": False})
    with torch.no_grad():
        outputs = [(layer_(x), layer_(x)) for layer_ in (fused, reference)]
    assert len(calls) == 2 and outputs[0][0].grad_fn is None
    assert all(torch.equal(a, b) for a, b in zip(*outputs, strict=True))
    assert torch.equal(fused.neuron.v, reference[0].v)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_maps_are_pooled_in_their_dtype_with_a_float32_membrane(dtype):
    torch.manual_seed(0)
    x = channels_last_steps(torch.randn(4, 3, 6, 8, 8) + 0.7).to(dtype)
    fused = SpikingMaxPool2d(LIF(detach_reset=False))
    ours, reference = pooled_spikes(fused, x), pooled_spikes(unfused({"detach_reset": False}, backend="cpu"), x)
    assert all(torch.equal(a, b) for a, b in zip(ours, reference, strict=True))
    fused.neuron.reset()
    assert type(fused(x.clone().requires_grad_()).grad_fn).__name__ == "CpuMultiStepLIFPoolBackward"
    assert ours[0].dtype == ours[-1].dtype == dtype and ours[2].dtype == torch.float32
