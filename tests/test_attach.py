"""attach on spikingjelly's model zoo and on our networks: positions, training, reset, state dicts, errors,
torch.compile and DDP."""

import io

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet, spiking_resnet, spiking_vgg

import pfa
from pfa.attention.attach import Attached
from pfa.attention.registry import is_attention
from pfa.engine.losses import mse_rate_loss
from pfa.errors import UserError
from pfa.models.fmnist import FashionMNISTNet
from pfa.models.vgg import SpikingVGG

T, N = 2, 2


def zoo_resnet18() -> nn.Module:
    torch.manual_seed(0)
    net = spiking_resnet.spiking_resnet18(spiking_neuron=neuron.LIFNode, surrogate_function=surrogate.ATan(),
                                          detach_reset=True, num_classes=10)
    functional.set_step_mode(net, "m")
    return net


def frames(seed: int = 0) -> torch.Tensor:
    return torch.rand(T, N, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def spiking_neurons(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, neuron.BaseNode)]


def test_zoo_resnet_trains_a_step_and_round_trips_its_state_dict(one_thread):
    net = zoo_resnet18()
    x = frames()
    with torch.no_grad():
        plain_shape = net(x).shape
    functional.reset_net(net)
    neurons = spiking_neurons(net)
    # TCJA multiplies without a ReLU, so gradients also cross layer4, whose neurons stay silent on 1x1 maps
    names = pfa.attach(net, x, kind="tcja")
    assert names == [f"{n}.attention" for n in neurons] and len(names) == 17  # stem + 2 per basic block
    assert all(is_attention(net.get_submodule(n)) for n in names)
    assert "layer4.1.sn2.attention.temporal.weight" in net.state_dict()

    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    out = net(x)
    assert out.shape == plain_shape
    mse_rate_loss(out, torch.tensor([1, 2])).backward()
    attention_params = [p for n in names for p in net.get_submodule(n).parameters()]
    assert all(p.grad is not None for p in attention_params)
    assert all(float(net.get_submodule(n).temporal.weight.grad.abs().sum()) > 0 for n in names[:13])
    optimizer.step()
    functional.reset_net(net)

    net.eval()
    with torch.no_grad():
        first = net(x)
        functional.reset_net(net)
        again = net(x)  # reset_net clears every neuron, so the same input gives the same output
        functional.reset_net(net)
    torch.testing.assert_close(first, again, rtol=0, atol=0)

    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    fresh = zoo_resnet18()
    assert pfa.attach(fresh, x, kind="tcja") == names
    fresh.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), first, rtol=0, atol=0)


@pytest.mark.parametrize("build, neurons", [
    (lambda: sew_resnet.sew_resnet18(spiking_neuron=neuron.IFNode, surrogate_function=surrogate.ATan(),
                                     detach_reset=True, cnf="ADD", num_classes=10), 20),  # + 3 downsample neurons
    (lambda: spiking_vgg.spiking_vgg11_bn(spiking_neuron=neuron.LIFNode, surrogate_function=surrogate.ATan(),
                                          detach_reset=True, num_classes=10), 8),  # not the 2 after its FC layers
])
def test_zoo_sew_resnet_and_vgg_get_attention_after_their_conv_neurons(build, neurons):
    torch.manual_seed(0)
    net = build()
    functional.set_step_mode(net, "m")
    names = pfa.attach(net, frames(), kind="tcja")
    assert len(names) == neurons and all(isinstance(net.get_submodule(n), pfa.TCJA) for n in names)
    with torch.no_grad():
        assert net(frames(1)).shape == (T, N, 10)


def test_our_networks_without_attention_get_it_after_every_conv_neuron():
    model = FashionMNISTNet(T=2, width=4, attention="none", dropout=0.0)
    names = pfa.attach(model, torch.randn(3, 1, 28, 28), kind="ma")
    assert names == ["features.0.neuron.attention", "features.3.neuron.attention"]  # FC neurons output [T, N, F]
    vgg = SpikingVGG(num_classes=10, T=2, input_pool=16, attention="none", width=1 / 32)
    names = pfa.attach(vgg, torch.rand(2, 2, 2, 16, 16), kind="pfa", rank=2, fusion="add")
    assert len(names) == 8 and vgg.get_submodule(names[0]).fusion == "add"
    out = vgg(torch.rand(2, 2, 2, 16, 16))
    mse_rate_loss(out, torch.tensor([0, 1])).backward()
    assert all(p.grad is not None for n in names for p in vgg.get_submodule(n).parameters())


def test_after_takes_a_list_of_names_or_a_predicate():
    net = zoo_resnet18()
    names = pfa.attach(net, frames(), kind="ta", after=["layer1.0.sn2", "layer2"])  # any module, e.g. a stage
    assert names == ["layer1.0.sn2.attention", "layer2.attention"]
    assert isinstance(net.layer2, Attached) and isinstance(net.layer2.module, nn.Sequential)
    assert isinstance(net.layer1[0].sn2.attention, layer.TemporalWiseAttention)

    net = zoo_resnet18()
    names = pfa.attach(net, frames(), kind="pfa", rank=2, after=lambda name, m: name.startswith("layer4"))
    assert names == ["layer4.0.sn1.attention", "layer4.0.sn2.attention", "layer4.1.sn1.attention",
                     "layer4.1.sn2.attention"]
    assert net.layer4[0].sn1.attention.C == 512
    again = pfa.attach(net, frames(), kind="ma")  # leaves neurons with attention alone
    assert len(again) == 13 and not any(n.startswith("layer4") for n in again)


def test_clear_errors():
    net = zoo_resnet18()
    with pytest.raises(UserError, match=r"no module named 'layer9.0.sn1' \(did you mean .*layer1.0.sn1"):
        pfa.attach(net, frames(), after=["layer9.0.sn1"])
    with pytest.raises(UserError, match=r"'fc' must output \[T, N, C, H, W\].*\[\[2, 2, 10\]\]"):
        pfa.attach(net, frames(), after=["fc"])
    with pytest.raises(UserError, match=r"failed on the example \[2, 3, 32, 32\].*time-first \[T, N, C, H, W\]"):
        pfa.attach(net, frames()[0])  # [N, C, H, W]: not time-first
    with pytest.raises(UserError, match="'layer2.0.sn1' lies inside 'layer2'"):
        pfa.attach(net, frames(), after=["layer2", "layer2.0.sn1"])
    with pytest.raises(UserError, match="time-first input batch"):
        pfa.attach(net, torch.rand(2, 3))
    with pytest.raises(UserError, match="no spiking neuron accepted by the predicate"):
        pfa.attach(net, frames(), after=lambda name, m: False)
    convs = nn.Sequential(layer.Conv2d(3, 4, 3, step_mode="m"))
    with pytest.raises(UserError, match=r"no spiking neuron outputs \[T, N, C, H, W\].*set_step_mode"):
        pfa.attach(convs, frames())
    assert not any(isinstance(m, Attached) for m in net.modules())  # nothing changed by the failed calls


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), layer.BatchNorm2d(4),
                        neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True),
                        layer.Flatten(), layer.Linear(4 * 8 * 8, 3))
    functional.set_step_mode(net, "m")
    return net


def test_torch_compile_matches_eager():
    net = tiny_net()
    x = torch.rand(4, 2, 2, 8, 8)
    assert pfa.attach(net, x, rank=2) == ["2.attention"]
    net.eval()
    with torch.no_grad():
        eager = net(x)
        functional.reset_net(net)
        compiled = torch.compile(net, backend="aot_eager")(x)
    torch.testing.assert_close(compiled, eager)


@pytest.mark.slow
def test_torch_compile_inductor_trains():
    net = tiny_net()
    x = torch.rand(4, 2, 2, 8, 8)
    pfa.attach(net, x, rank=2)
    compiled = torch.compile(net)
    compiled(x).sum().backward()
    assert net[2].attention.spatial.weight.grad is not None


def test_ddp_wrapped_attached_model_trains_a_step(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        net = tiny_net()
        x = torch.rand(4, 2, 2, 8, 8)
        pfa.attach(net, x, kind="tcja")
        model = nn.parallel.DistributedDataParallel(net)
        before = net[2].attention.temporal.weight.detach().clone()
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        model(x).pow(2).mean().backward()
        optimizer.step()
        functional.reset_net(model)
        assert not torch.equal(before, net[2].attention.temporal.weight)
    finally:
        dist.destroy_process_group()
