"""The CIFAR-family spiking networks: shapes, parameter counts against the paper's formulas, attention choices."""

import itertools

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, layer

from pfa import PFA
from pfa.attention.registry import make_attention
from pfa.models.resnet import SpikingResNet
from pfa.models.vgg import SpikingVGG


def pfa_params(T, C, R, k=3):
    """PFA's parameter count by hand: conv (k*k*T*R + R), temporal (C*R + R), channel (T*R + R), weights (R)."""
    return k * k * T * R + R + C * R + R + T * R + R + R


def count(module):
    return sum(p.numel() for p in module.parameters())


def run(model, x):
    functional.reset_net(model)
    y = model(x)
    functional.reset_net(model)
    return y


def vgg_backbone_params(in_channels, side, num_classes):
    """3x3 conv (no bias) + BN per layer, then the FC after four 2x2 poolings."""
    widths = [in_channels, 64, 128, 256, 256, 512, 512, 512, 512]
    convs = sum(9 * c_in * c_out + 2 * c_out for c_in, c_out in itertools.pairwise(widths))
    return convs + 512 * (side // 16) ** 2 * num_classes + num_classes


@pytest.mark.parametrize(
    "kwargs, side, classes",
    [
        (dict(num_classes=10, T=12, rank=8, input_pool=48), 48, 10),  # CIFAR10-DVS
        (dict(num_classes=101, T=14, rank=8, input_pool=48), 48, 101),  # N-Caltech101
        (dict(num_classes=11, T=20, rank=32, image_size=128), 128, 11),  # DVS128 Gesture
    ],
)
def test_dvs_vgg_parameters_match_the_formulas(kwargs, side, classes):
    model = SpikingVGG(**kwargs)
    modules = [m for m in model.modules() if isinstance(m, PFA)]
    T, R = kwargs["T"], kwargs["rank"]
    assert [m.C for m in modules] == [2, 128, 256, 512, 512]
    assert [count(m) for m in modules] == [pfa_params(T, m.C, R) for m in modules]
    expected = vgg_backbone_params(2, side, classes) + sum(pfa_params(T, C, R) for C in (2, 128, 256, 512, 512))
    assert count(model) == expected


def test_static_vgg_has_no_attention_on_the_image():
    model = SpikingVGG(num_classes=100, T=4, in_channels=3, image_size=32, rank=4, static=True)
    assert [m.C for m in model.modules() if isinstance(m, PFA)] == [128, 256, 512, 512]
    assert count(model) == vgg_backbone_params(3, 32, 100) + sum(pfa_params(4, C, 4) for C in (128, 256, 512, 512))


def test_resnet18_without_attention_is_the_usual_cifar_resnet18():
    # 11,173,962 is the well-known size of the CIFAR ResNet-18 (3x3 stem, 10 classes, bias-free convs + BN).
    assert count(SpikingResNet("resnet18", num_classes=10, T=4, attention="none")) == 11_173_962


@pytest.mark.parametrize("arch, channels", [("resnet18", [64, 128, 256, 512]), ("resnet19", [128, 256, 512])])
def test_resnet_pfa_adds_one_module_per_stage(arch, channels):
    plain = SpikingResNet(arch, num_classes=10, T=4, attention="none")
    model = SpikingResNet(arch, num_classes=10, T=4, rank=8)
    assert [m.C for m in model.modules() if isinstance(m, PFA)] == channels
    assert count(model) - count(plain) == sum(pfa_params(4, C, 8) for C in channels)


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        (dict(num_classes=10, input_pool=48), (2, 3, 2, 60, 60)),
        (dict(num_classes=11, image_size=128), (1, 3, 2, 128, 128)),
        (dict(num_classes=100, in_channels=3, image_size=32, static=True), (2, 3, 32, 32)),
    ],
)
@pytest.mark.parametrize("attention", ["pfa", "ma", "none"])
def test_vgg_outputs_spikes_per_step(kwargs, shape, attention):
    torch.manual_seed(0)
    T = 3
    model = SpikingVGG(T=T, attention=attention, rank=2, width=1 / 16, **kwargs)
    y = run(model, (torch.rand(shape) < 0.5).float() if len(shape) == 5 else torch.randn(shape))
    assert y.shape == (T, shape[0], kwargs["num_classes"])
    assert set(y.unique().tolist()) <= {0.0, 1.0}  # spikes of the output neurons


@pytest.mark.parametrize("arch", ["resnet18", "resnet19"])
@pytest.mark.parametrize("attention", ["pfa", "ma", "none"])
def test_resnet_forward_on_images_and_frames(arch, attention):
    images = SpikingResNet(arch, num_classes=10, T=2, attention=attention, rank=2, width=1 / 16)
    assert run(images, torch.randn(2, 3, 32, 32)).shape == (2, 2, 10)
    frames = SpikingResNet(arch, num_classes=11, T=2, in_channels=2, input_pool=32, attention=attention, width=1 / 16)
    assert run(frames, (torch.rand(3, 2, 2, 40, 40) < 0.3).float()).shape == (2, 3, 11)


def test_attention_choice_builds_the_named_module():
    assert isinstance(make_attention("pfa", 12, 128, rank=8), PFA)
    assert isinstance(make_attention("none", 12, 128, rank=8), nn.Identity)
    ma = make_attention("ma", 2, 2, rank=8)  # T and C below MA-SNN's default reductions (16) must still build and run
    assert isinstance(ma, layer.MultiDimensionalAttention)
    assert ma(torch.rand(2, 3, 2, 5, 5)).shape == (2, 3, 2, 5, 5)
    with pytest.raises(ValueError, match="pfa"):
        make_attention("se", 4, 4, rank=4)


def test_attention_positions_are_configurable():
    model = SpikingVGG(num_classes=10, T=4, input_pool=48, positions=(1, 3), width=1 / 8)
    assert [m.C for m in model.modules() if isinstance(m, PFA)] == [16, 64]
    resnet = SpikingResNet("resnet19", num_classes=10, T=4, positions=(0,), width=1 / 8)
    assert [m.C for m in resnet.modules() if isinstance(m, PFA)] == [16]


def test_pfa_parameters_learn_inside_the_network():
    torch.manual_seed(0)
    model = SpikingVGG(num_classes=10, T=2, input_pool=48, rank=2, width=1 / 16)
    run(model, (torch.rand(2, 2, 2, 48, 48) < 0.5).float()).sum().backward()
    for module in (m for m in model.modules() if isinstance(m, PFA)):
        assert all(p.grad is not None for p in module.parameters())


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: SpikingVGG(num_classes=10, T=4, image_size=40), "divisible by 16"),
        (lambda: SpikingVGG(num_classes=10, T=4, image_size=32, static=True, positions=(0, 1)), "positions"),
        (lambda: SpikingResNet("resnet50", num_classes=10, T=4), "resnet18"),
        (lambda: SpikingVGG(num_classes=10, T=4, input_pool=48, rank=0), "rank"),
        (lambda: SpikingVGG(num_classes=10, T=4), "divisible by 16"),
    ],
)
def test_bad_model_arguments_raise_clear_errors(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_wrong_input_layout_names_the_expected_shape():
    model = SpikingVGG(num_classes=10, T=4, input_pool=48, width=1 / 16)
    with pytest.raises(ValueError, match=r"\[N, T=4, C, H, W\]"):
        model(torch.zeros(2, 5, 2, 48, 48))


@pytest.mark.parametrize("network", [
    lambda gate: SpikingVGG(num_classes=10, T=2, in_channels=2, image_size=32, width=0.125, gate=gate),
    lambda gate: SpikingResNet("resnet19", num_classes=10, T=2, width=0.125, gate=gate),
])
def test_the_gate_reaches_every_pfa(network):
    for gate in ("relu", "pass", "identity"):
        gates = {m.gate for m in network(gate).modules() if isinstance(m, PFA)}
        assert gates == {gate}
