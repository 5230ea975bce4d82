"""The Fashion-MNIST network as it trains on CPU: its fused neuron-and-pooling layers give the unfused network's
floats, checkpoints written with the earlier layout (pooling inside features.1) still load, and PFA's options reach
it from the flags."""

import pytest
import torch
from spikingjelly.activation_based import functional

from pfa import PFA
from pfa.engine.config import parse_config
from pfa.errors import UserError
from pfa.lif.layers import SpikingMaxPool2d
from pfa.models.fmnist import FashionMNISTNet
from pfa.tasks.fmnist import FMNISTConfig, build_model, describe


def outputs_and_grads(model, images, seed=1):
    torch.manual_seed(seed)  # the same dropout masks
    out = model(images)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    functional.reset_net(model)
    return out, grads


def test_fused_pooling_gives_the_unfused_networks_floats():
    torch.manual_seed(0)
    model = FashionMNISTNet(T=4, width=8, rank=2, dropout=0.2)
    for fc in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
        fc.weight.data.mul_(10)  # so that the untrained network's FC neurons fire
    images = torch.rand(6, 1, 28, 28)
    fused = outputs_and_grads(model, images)
    fused_layers = [m for m in model.modules() if isinstance(m, SpikingMaxPool2d)]
    hooks = [m.neuron.register_forward_hook(lambda *_: None) for m in fused_layers]  # a hook turns fusion off
    unfused = outputs_and_grads(model, images)
    for hook in hooks:
        hook.remove()
    assert len(fused_layers) == 2 and fused[0].sum() > 0 and fused[1]["features.1.0.weight"].abs().sum() > 0
    assert torch.equal(fused[0], unfused[0])
    for name, grad in fused[1].items():
        assert torch.equal(grad, unfused[1][name]), name


def test_a_checkpoint_of_the_earlier_layout_loads():
    torch.manual_seed(0)
    model = FashionMNISTNet(T=2, width=4, rank=2)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_()
    earlier = {}
    for key, value in model.state_dict().items():  # features.1 was [MaxPool2d, Conv2d, BatchNorm2d]
        if key.startswith("features.1."):
            index, rest = key[len("features.1."):].split(".", 1)
            key = f"features.1.{int(index) + 1}.{rest}"
        earlier[key] = value
    assert "features.1.2.running_mean" in earlier
    fresh = FashionMNISTNet(T=2, width=4, rank=2)
    fresh.load_state_dict(earlier)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_pfa_flags_reach_the_module_and_the_architecture_string():
    default = parse_config(FMNISTConfig, ["--width", "4"])
    module = build_model(default).features[2]
    assert isinstance(module, PFA) and (module.fusion, module.weights, module.gate) == ("add", "sum", "relu")
    assert describe(default) == "FashionMNISTNet(T=4, width=4, rank=4, attention=pfa)"  # as before the flags
    cfg = parse_config(FMNISTConfig, ["--width", "4", "--fusion", "mul", "--weights", "softmax", "--gate", "pass"])
    module = build_model(cfg).features[2]
    assert (module.fusion, module.weights, module.gate) == ("mul", "softmax", "pass")
    assert describe(cfg).endswith("attention=pfa, fusion=mul, weights=softmax, gate=pass)")
    assert describe(parse_config(FMNISTConfig, ["--gate", "identity"])).endswith("attention=pfa, gate=identity)")
    assert describe(parse_config(FMNISTConfig, ["--attention", "ma", "--gate", "pass"])).endswith("attention=ma)")
    with pytest.raises(UserError, match="argument --gate: invalid choice: 'straight'"):
        parse_config(FMNISTConfig, ["--gate", "straight"])
