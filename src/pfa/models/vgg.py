"""Spiking VGG with an attention module after the input and after every pooling, as in the PFA paper.

Event frames (CIFAR10-DVS, N-Caltech101: pooled to 48x48; DVS128 Gesture: 128x128):
    [pool] -> att0 -> conv64 -> conv128 -> avgpool -> att1 -> conv256 x2 -> avgpool -> att2 -> conv512 x2 -> avgpool
    -> att3 -> conv512 x2 -> avgpool -> att4 -> FC -> LIF
Static images (CIFAR10/100, 32x32) take the same stack without att0: the image is repeated over T and the first
conv + BN + LIF turns it into spikes (direct encoding). Every conv is 3x3 conv + BN + LIF. The output is the spikes of
the last FC + LIF per step, [T, N, classes]; their mean over T is the firing rate the losses compare with the label.
"""

from collections.abc import Sequence

import torch
import torch.nn as nn
from spikingjelly.activation_based import layer

from pfa.attention.registry import make_attention
from pfa.models.layers import conv_bn, ranks_at, scaled, spiking_neuron, to_time_first

STAGES = ((64, 128), (256, 256), (512, 512), (512, 512))


def attention_slots(static: bool = False) -> tuple[int, ...]:
    """Slot 0 sits on the input frames (not on a still image, which is not a spike tensor); slot k after pooling k."""
    return (1, 2, 3, 4) if static else (0, 1, 2, 3, 4)


class SpikingVGG(nn.Module):
    """VGG of 3x3 conv + BN + LIF stages separated by 2x2 average pooling, each followed by an attention slot.

    Args:
        num_classes: outputs of the final FC + LIF layer.
        T: time steps.
        in_channels: 2 for event frames (ON/OFF), 3 for RGB images.
        image_size: side of the square input; must be divisible by 16. Not needed with `input_pool`.
        input_pool: if set, frames of any size are first average-pooled to input_pool x input_pool (the reference's
            48), which then is the side the network sees.
        attention: "pfa", "ma" or "none" (see `pfa.attention.registry`).
        rank: PFA's rank R: one for every position, or a sequence with one per position in the order of `positions`
            (the reference's DVS128 Gesture network: 32, 32, 32, 32, 64).
        positions: attention slots in use: 0 = on the input frames, k = after the k-th pooling (1..4); default all.
        width: multiplies every stage's channel count (1.0 = the paper's network; small values for smoke tests).
        static: direct encoding of still images; slot 0 is then not available (the input is not a spike tensor).
        gate: PFA's output gate (pfa.PFA; "relu" = the reference's).
    """

    def __init__(
        self,
        num_classes: int,
        T: int,
        in_channels: int = 2,
        image_size: int | None = None,
        input_pool: int | None = None,
        attention: str = "pfa",
        rank: int | Sequence[int] = 8,
        positions: tuple[int, ...] | None = None,
        width: float = 1.0,
        static: bool = False,
        gate: str = "relu",
    ):
        super().__init__()
        side = input_pool or image_size
        if side is None or side % 16:
            raise ValueError(f"SpikingVGG: the input side must be divisible by 16 (four 2x2 poolings), got "
                             f"image_size={image_size}, input_pool={input_pool}")
        available = attention_slots(static)
        positions = available if positions is None else tuple(positions)
        if not set(positions) <= set(available):
            raise ValueError(f"SpikingVGG: attention positions must be in {available}, got {positions}")
        ranks = ranks_at(rank, positions, "SpikingVGG")
        self.T = T
        blocks: list[nn.Module] = []
        if input_pool is not None:
            blocks.append(layer.SeqToANNContainer(nn.AdaptiveAvgPool2d(input_pool)))
        channels = in_channels
        for index, stage in enumerate(STAGES):
            if index > 0:
                blocks.append(layer.SeqToANNContainer(nn.AvgPool2d(2)))
                side //= 2
            if index in positions:
                blocks.append(make_attention(attention, T, channels, rank=ranks[index], gate=gate))
            for out_channels in stage:
                out_channels = scaled(out_channels, width)
                blocks += [conv_bn(channels, out_channels), spiking_neuron()]
                channels = out_channels
        blocks.append(layer.SeqToANNContainer(nn.AvgPool2d(2)))
        side //= 2
        if 4 in positions:
            blocks.append(make_attention(attention, T, channels, rank=ranks[4], gate=gate))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            layer.SeqToANNContainer(nn.Flatten(), nn.Linear(channels * side * side, num_classes)), spiking_neuron()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Frames [N, T, C, H, W] or images [N, C, H, W] -> output spikes per step [T, N, num_classes]."""
        return self.classifier(self.features(to_time_first(x, self.T)))
