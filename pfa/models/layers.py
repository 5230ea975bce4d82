"""Building blocks shared by the spiking CNNs: conv + BN, the LIF neuron, the attention choice, input encoding.

Every block works on spikingjelly's multi-step layout [T, N, C, H, W].
"""

import torch
import torch.nn as nn
from spikingjelly.activation_based import layer

from pfa.attention import PFA
from pfa.neuron import LIF

ATTENTIONS = ("pfa", "ma", "none")


def spiking_neuron() -> nn.Module:
    """The multi-step LIF of the reference networks: tau 2, threshold 1, hard reset to 0 (detached), ATan surrogate."""
    return LIF(tau=2.0, v_threshold=1.0, v_reset=0.0, detach_reset=True)


def scaled(channels: int, width: float) -> int:
    """A channel count times the width multiplier, at least 1."""
    return max(1, round(channels * width))


def conv_bn(in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3) -> nn.Module:
    """A bias-free convolution and its batch norm, applied to all T steps at once."""
    return layer.SeqToANNContainer(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def ma_reductions(T: int, C: int) -> tuple[int, int]:
    """MA-SNN's temporal and channel reduction ratios, capped so that T >= reduction_t and C >= reduction_c.

    MultiDimensionalAttention asserts both; its defaults (16, 16) fail for T < 16 and for the 2-channel event input.
    """
    return min(4, T), min(16, C)


def make_attention(kind: str, T: int, C: int, rank: int) -> nn.Module:
    """The attention module at one position: "pfa" (ours), "ma" (MA-SNN, spikingjelly's peer) or "none" (identity)."""
    if kind == "pfa":
        return PFA(T, C, rank)
    if kind == "ma":
        reduction_t, reduction_c = ma_reductions(T, C)
        return layer.MultiDimensionalAttention(T, C, reduction_t=reduction_t, reduction_c=reduction_c)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"attention must be one of {ATTENTIONS}, got {kind!r}")


def to_time_first(x: torch.Tensor, T: int) -> torch.Tensor:
    """Frames [N, T, C, H, W] -> [T, N, C, H, W]; images [N, C, H, W] are repeated over T (direct encoding)."""
    if x.dim() == 4:
        return x.unsqueeze(0).expand(T, *x.shape)
    if x.dim() == 5 and x.shape[1] == T:
        return x.transpose(0, 1)
    raise ValueError(f"expected frames [N, T={T}, C, H, W] or images [N, C, H, W], got {list(x.shape)}")
