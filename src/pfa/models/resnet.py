"""Spiking ResNet-18 / ResNet-19 with an attention module after the stem and after every stage.

The stem (3x3 conv + BN + LIF) sees the image repeated over T (direct encoding) or the event frames; blocks are the
basic residual block with the LIF after the sum. ResNet-19 is the tdBN paper's CIFAR network (128-256-512 channels,
3-3-2 blocks, an FC-256 + LIF before the classifier); ResNet-18 the usual 64-128-256-512, 2-2-2-2. As in those papers
the last FC has no neuron: its per-step outputs are real-valued logits (train with the "ce" or "tet" loss).
"""

from collections.abc import Sequence

import torch
import torch.nn as nn
from spikingjelly.activation_based import layer

from pfa.attention.registry import make_attention
from pfa.models.layers import conv_bn, ranks_at, scaled, spiking_neuron, to_time_first

ARCHS = {
    # name: (stem channels, ((channels, blocks, stride), ...), hidden FC width or 0)
    "resnet18": (64, ((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)), 0),
    "resnet19": (128, ((128, 3, 1), (256, 3, 2), (512, 2, 2)), 256),
}


def attention_slots(arch: str) -> tuple[int, ...]:
    """Slot 0 after the stem, slot k after stage k."""
    return tuple(range(len(ARCHS[arch][1]) + 1))


class BasicBlock(nn.Module):
    """conv-BN-LIF-conv-BN plus the (projected) input, then LIF."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.residual = nn.Sequential(
            conv_bn(in_channels, out_channels, stride), spiking_neuron(), conv_bn(out_channels, out_channels)
        )
        projected = stride != 1 or in_channels != out_channels
        self.shortcut = conv_bn(in_channels, out_channels, stride, kernel_size=1) if projected else nn.Identity()
        self.neuron = spiking_neuron()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.residual(x) + self.shortcut(x))


class SpikingResNet(nn.Module):
    """Spiking ResNet on [N, C, H, W] images (repeated over T) or [N, T, C, H, W] frames.

    Args:
        arch: "resnet18" or "resnet19".
        num_classes, T, in_channels: as in `SpikingVGG`.
        input_pool: if set, frames are first average-pooled to input_pool x input_pool.
        attention, rank: the attention kind and PFA's rank (one int, or one per position as in `SpikingVGG`).
        positions: attention slots in use: 0 = after the stem, k = after stage k; default: after every stage.
        width: multiplies every channel count.
        gate: PFA's output gate (pfa.PFA; "relu" = the reference's).
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        T: int,
        in_channels: int = 3,
        input_pool: int | None = None,
        attention: str = "pfa",
        rank: int | Sequence[int] = 8,
        positions: tuple[int, ...] | None = None,
        width: float = 1.0,
        gate: str = "relu",
    ):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"SpikingResNet: arch must be one of {tuple(ARCHS)}, got {arch!r}")
        stem, stages, hidden = ARCHS[arch]
        available = attention_slots(arch)
        positions = available[1:] if positions is None else tuple(positions)
        if not set(positions) <= set(available):
            raise ValueError(f"SpikingResNet: attention positions must be in {available}, got {positions}")
        ranks = ranks_at(rank, positions, "SpikingResNet")
        self.T = T
        channels = scaled(stem, width)
        blocks: list[nn.Module] = []
        if input_pool is not None:
            blocks.append(layer.SeqToANNContainer(nn.AdaptiveAvgPool2d(input_pool)))
        blocks += [conv_bn(in_channels, channels), spiking_neuron()]
        if 0 in positions:
            blocks.append(make_attention(attention, T, channels, rank=ranks[0], gate=gate))
        for index, (out_channels, depth, stride) in enumerate(stages, start=1):
            out_channels = scaled(out_channels, width)
            for block in range(depth):
                blocks.append(BasicBlock(channels, out_channels, stride if block == 0 else 1))
                channels = out_channels
            if index in positions:
                blocks.append(make_attention(attention, T, channels, rank=ranks[index], gate=gate))
        self.features = nn.Sequential(*blocks)
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if hidden:
            head += [nn.Linear(channels, hidden)]
            self.classifier = nn.Sequential(
                layer.SeqToANNContainer(*head),
                spiking_neuron(),
                layer.SeqToANNContainer(nn.Linear(hidden, num_classes)),
            )
        else:
            self.classifier = layer.SeqToANNContainer(*head, nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Frames [N, T, C, H, W] or images [N, C, H, W] -> the classifier's output per step [T, N, num_classes]."""
        return self.classifier(self.features(to_time_first(x, self.T)))
