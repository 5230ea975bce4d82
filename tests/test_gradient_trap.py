"""PFA's output gates, and `attach` keeping the gradient alive through positions where nothing fires."""

import warnings

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet, spiking_vgg

import pfa
from pfa.attention.attach import Attached, SilentPositionWarning, dry_run
from pfa.errors import UserError

T, N = 2, 2


def spikes_and_rates(seed: int = 0) -> torch.Tensor:
    """Non-negative input with exact zeros: spikes in the first half of the batch, rates in the second."""
    generator = torch.Generator().manual_seed(seed)
    spikes = (torch.rand(4, 2, 6, 5, 5, generator=generator) < 0.3).float()
    rates = torch.rand(4, 2, 6, 5, 5, generator=generator) * spikes.roll(1, dims=1)
    return torch.cat([spikes, rates], 1)


def gradients(module: pfa.PFA, x: torch.Tensor, grad_y: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_()
    return list(torch.autograd.grad((module(x) * grad_y).sum(), (x, *module.parameters())))


def same_pfa(gate: str, **options) -> pfa.PFA:
    torch.manual_seed(0)
    module = pfa.PFA(T=4, C=6, rank=3, gate=gate, **options)
    with torch.no_grad():
        module.rank_logits.add_(torch.randn(3))
    return module


@pytest.mark.parametrize("fusion", ["mul", "add"])
def test_gates_give_relus_values_on_non_negative_input(fusion):
    x = spikes_and_rates()
    relu, passing, identity = (same_pfa(gate, fusion=fusion) for gate in ("relu", "pass", "identity"))
    expected = relu(x)
    torch.testing.assert_close(passing(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(identity(x), expected, rtol=0, atol=0)


def test_pass_gate_lets_the_gradient_through_where_the_input_is_zero():
    x, grad_y = spikes_and_rates(), torch.randn(4, 4, 6, 5, 5)
    relu, passing = same_pfa("relu"), same_pfa("pass")
    relu_grads, pass_grads = gradients(relu, x, grad_y), gradients(passing, x, grad_y)
    silent = x == 0
    assert silent.any() and (~silent).any()
    # where X == 0 the ReLU's derivative is 0 and the pass gate's is 1: dL/dX gains dL/dY * A there, and only there
    gained = torch.where(silent, grad_y * relu.attention_map(x), 0)
    torch.testing.assert_close(pass_grads[0] - relu_grads[0], gained, atol=1e-6, rtol=0)
    assert float(gained[silent].abs().min()) > 0
    for a, b in zip(pass_grads[1:], relu_grads[1:], strict=True):  # d(A*X)/dA = X = 0 there under either gate
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    identity_grads = gradients(same_pfa("identity"), x, grad_y)
    for a, b in zip(identity_grads, pass_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_on_a_silent_input_only_the_relu_gate_stops_the_gradient():
    x, grad_y = torch.zeros(4, 2, 6, 5, 5), torch.randn(4, 2, 6, 5, 5)
    assert float(gradients(same_pfa("relu"), x, grad_y)[0].abs().sum()) == 0
    assert float(gradients(same_pfa("pass"), x, grad_y)[0].abs().min()) > 0
    assert same_pfa("relu").stops_gradient_where_silent and not same_pfa("pass").stops_gradient_where_silent
    assert not same_pfa("relu", fusion="add").stops_gradient_where_silent  # A + 0 = A > 0: the ReLU is open


def test_on_signed_input_pass_keeps_relus_values_and_identity_lets_negatives_through():
    torch.manual_seed(5)
    x = torch.randn(4, 2, 6, 5, 5)
    relu, passing, identity = (same_pfa(gate) for gate in ("relu", "pass", "identity"))
    torch.testing.assert_close(passing(x), relu(x), rtol=0, atol=0)
    assert bool((identity(x) < 0).any()) and torch.equal(identity(x).clamp(min=0), relu(x))


@pytest.mark.parametrize("fusion", ["mul", "add"])
@pytest.mark.parametrize("gate", ["pass", "identity"])
def test_gradcheck_of_the_other_gates(fusion, gate):
    torch.manual_seed(1)
    module = pfa.PFA(T=3, C=3, rank=2, fusion=fusion, gate=gate).double()
    x = torch.randn(3, 2, 3, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *_: module(x), (x, *module.parameters()))


def test_make_attention_takes_the_gate_and_rejects_an_unknown_one():
    assert pfa.make_attention("pfa", 4, 6, rank=2, gate="pass").gate == "pass"
    assert pfa.make_attention("pfa", 4, 6, rank=2).gate == "relu"
    assert "gate='identity'" in repr(pfa.PFA(4, 6, 2, gate="identity"))
    with pytest.raises(ValueError, match=r"gate must be one of \('relu', 'pass', 'identity'\), got 'straight'"):
        pfa.PFA(4, 6, 2, gate="straight")


def sew_resnet18() -> nn.Module:
    torch.manual_seed(0)
    net = sew_resnet.sew_resnet18(spiking_neuron=neuron.LIFNode, surrogate_function=surrogate.ATan(),
                                  detach_reset=True, cnf="ADD", num_classes=10)
    functional.set_step_mode(net, "m")
    return net


def vgg11_bn() -> nn.Module:
    """spikingjelly's spiking VGG-11 with batch norm, its 120M-parameter classifier cut to one layer for speed."""
    torch.manual_seed(0)
    net = spiking_vgg.spiking_vgg11_bn(spiking_neuron=neuron.LIFNode, surrogate_function=surrogate.ATan(),
                                       detach_reset=True, num_classes=10)
    net.classifier = layer.Linear(512 * 7 * 7, 10)
    functional.set_step_mode(net, "m")
    return net


def frames(seed: int = 0) -> torch.Tensor:
    return torch.rand(T, N, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def first_conv(net: nn.Module) -> nn.Module:
    return next(m for m in net.modules() if isinstance(m, nn.Conv2d))


def attach_without_warnings(net: nn.Module, x: torch.Tensor) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SilentPositionWarning)
        return pfa.attach(net, x, rank=2)


def step(net: nn.Module, names: list[str], x: torch.Tensor, labels: torch.Tensor) -> tuple[float, set[str]]:
    """One forward and backward in training mode; returns the loss and the inserted modules whose input fired
    nothing."""
    silent = set()
    hooks = [net.get_submodule(n.removesuffix(".attention")).module.register_forward_hook(
        lambda m, i, out, name=n: silent.add(name) if not out.any() else None) for n in names]
    loss = nn.functional.cross_entropy(net(x).mean(0), labels)
    loss.backward()
    for hook in hooks:
        hook.remove()
    functional.reset_net(net)
    return loss.item(), silent


@pytest.mark.parametrize("build, silent", [
    # layer4's maps are 1x1: batch norm over 4 values per channel keeps its neurons below threshold on this batch,
    # so the network's output does not depend on its input yet, and the loss first falls through the last bias
    (sew_resnet18, {"layer4.0.sn1", "layer4.0.sn2", "layer4.0.downsample_sn", "layer4.1.sn1", "layer4.1.sn2"}),
    (vgg11_bn, set()),
])
def test_attach_defaults_carry_the_gradient_to_the_first_convolution_and_train(build, silent, one_thread):
    net, x, labels = build(), frames(), torch.tensor([1, 2])
    names = attach_without_warnings(net, x)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    first, quiet = step(net, names, x, labels)
    assert quiet == {f"{name}.attention" for name in silent}
    assert float(first_conv(net).weight.grad.abs().sum()) > 0
    for name in names:  # A * 0 = 0 whatever A, so a module whose input fired nothing has no gradient to get
        grads = [float(p.grad.abs().sum()) for p in net.get_submodule(name).parameters()]
        assert (max(grads) == 0) if name in quiet else (min(grads) > 0), (name, grads)
    losses = [first]
    for _ in range(20):
        optimizer.step()
        optimizer.zero_grad()
        losses.append(step(net, names, x, labels)[0])
    assert losses[-1] < losses[0], losses


def test_relu_gate_on_sew_resnet_warns_of_each_silent_position_and_passes_no_gradient(one_thread):
    net, x = sew_resnet18(), frames()
    with pytest.warns(SilentPositionWarning) as caught:
        names = pfa.attach(net, x, rank=2, gate="relu")
    messages = [str(w.message) for w in caught if w.category is SilentPositionWarning]
    assert len(messages) == 5 and all("'layer4." in m and "gate='pass'" in m for m in messages)
    assert all(net.get_submodule(n).gate == "relu" for n in names)
    step(net, names, x, torch.tensor([1, 2]))
    assert float(first_conv(net).weight.grad.abs().sum()) == 0


def test_the_dry_run_leaves_running_statistics_and_random_state_alone():
    torch.manual_seed(0)
    net = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), layer.BatchNorm2d(4),
                        neuron.LIFNode(surrogate_function=surrogate.ATan()), layer.Dropout(0.5))
    functional.set_step_mode(net, "m")
    x = torch.rand(2, 3, 2, 8, 8) * 8
    before, rng = {k: v.clone() for k, v in net.state_dict().items()}, torch.get_rng_state()
    shapes, rates = dry_run(net, x)
    assert shapes["2"] == [(2, 3, 4, 8, 8)] and 0 < rates["2"] < 1 and net.training
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(net.state_dict()[key], value) for key, value in before.items())


def test_second_attach_on_a_fully_attached_network_says_so():
    net, x = sew_resnet18(), frames()
    pfa.attach(net, x, kind="tcja")
    with pytest.raises(UserError, match=r"^attach: the network is already attached: every spiking neuron"):
        pfa.attach(net, x)
    with pytest.raises(UserError, match=r"'layer1.0.sn1' already has attention after it"):
        pfa.attach(net, x, after=["layer1.0.sn1"])
    with pytest.raises(UserError, match=r"'layer1.0.sn1.module' already has attention after it"):
        pfa.attach(net, x, after=["layer1.0.sn1.module"])
    assert not any(isinstance(m.module, Attached) for m in net.modules() if isinstance(m, Attached))
