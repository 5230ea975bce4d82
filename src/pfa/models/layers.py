"""Building blocks shared by the spiking CNNs: conv + BN, the LIF neuron, input encoding.

Every block works on spikingjelly's multi-step layout [T, N, C, H, W].
"""

from collections.abc import Sequence

import torch
import torch.nn as nn
from spikingjelly.activation_based import layer

from pfa.lif.neuron import LIF


def spiking_neuron(detach_reset: bool = True) -> nn.Module:
    """The multi-step LIF of the reference networks: tau 2, threshold 1, hard reset to 0, ATan surrogate.

    The event VGG and the ResNets detach the reset (spikingjelly 2's `detach_reset=True`); the Fashion-MNIST network
    does not (`detach_reset=False`, the default of the old `MultiStepLIFNode` the reference used there).
    """
    return LIF(tau=2.0, v_threshold=1.0, v_reset=0.0, detach_reset=detach_reset)


def scaled(channels: int, width: float) -> int:
    """A channel count times the width multiplier, at least 1."""
    return max(1, round(channels * width))


def conv_bn(in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3) -> nn.Module:
    """A bias-free convolution and its batch norm, applied to all T steps at once."""
    return layer.SeqToANNContainer(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def ranks_at(rank: int | Sequence[int], positions: tuple[int, ...], network: str) -> dict[int, int]:
    """PFA's rank at each attention position: one int for all, or a sequence with one rank per position (in order)."""
    if isinstance(rank, int):
        return dict.fromkeys(positions, rank)
    if len(rank) != len(positions):
        raise ValueError(f"{network}: rank must be one int or one per attention position {positions}, got {rank}")
    return dict(zip(positions, rank, strict=True))


def to_time_first(x: torch.Tensor, T: int) -> torch.Tensor:
    """Frames [N, T, C, H, W] -> [T, N, C, H, W]; images [N, C, H, W] are repeated over T (direct encoding)."""
    if x.dim() == 4:
        return x.unsqueeze(0).expand(T, *x.shape)
    if x.dim() == 5 and x.shape[1] == T:
        return x.transpose(0, 1)
    raise ValueError(f"expected frames [N, T={T}, C, H, W] or images [N, C, H, W], got {list(x.shape)}")
