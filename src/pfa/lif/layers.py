"""Layers whose torch versions cost the spiking CNNs more than they should on CPU.

MaxPool2d and Dropout are subclasses of the torch layer with the same arguments, state and numbers (the dropout's
mask comes from another random stream); SpikingMaxPool2d runs a neuron and pools its spikes, fused for pfa's LIF.
Each defers to the plain computation wherever its own path does not apply (CUDA, other settings).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from spikingjelly.activation_based import layer
from torch.autograd.function import once_differentiable

from pfa.lif import native as _native
from pfa.lif.neuron import LIF


class _MaxPool2x2(torch.autograd.Function):
    """2x2, stride-2 max pooling of a channels-last float32 CPU map by `csrc/pool_cpu.c`; backward finds each window's
    maximum again in the saved input instead of storing int64 indices and scattering into a zero-filled gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = torch.empty((n, c, h // 2, w // 2), memory_format=torch.channels_last)
        lib = _native.library()

        def run(a: int, b: int) -> None:
            lib.max_pool2x2_forward(x.data_ptr(), y.data_ptr(), a, b - a, h // 2, h, w, c)

        _native.parallel(run, n * (h // 2), 4 * (w // 2) * c)
        ctx.save_for_backward(x)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        n, c, h, w = x.shape
        grad_y = grad_y.contiguous(memory_format=torch.channels_last)
        odd = h % 2 or w % 2  # the dropped last row or column is not written by the loops
        grad_x = torch.zeros_like(x) if odd else torch.empty_like(x)
        lib = _native.library()

        def run(a: int, b: int) -> None:
            lib.max_pool2x2_backward(x.data_ptr(), grad_y.data_ptr(), grad_x.data_ptr(), a, b - a, h // 2, h, w, c)

        _native.parallel(run, n * (h // 2), 4 * (w // 2) * c)
        return grad_x


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d; its 2x2, stride-2 case on channels-last float32 CPU maps (the spiking CNNs' pooling of spikes)
    runs pfa's C loops: the same output and gradient (ties to the first maximum, NaN as torch), no index tensor and
    no zero fill, 4 % of the width-128 FMNIST training step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._native_applies(x):
            return _MaxPool2x2.apply(x)
        return super().forward(x)

    def _native_applies(self, x: torch.Tensor) -> bool:
        settings = (_pair(self.kernel_size), _pair(self.stride or self.kernel_size), _pair(self.padding),
                    _pair(self.dilation), self.ceil_mode, self.return_indices)
        return (settings == ((2, 2), (2, 2), (0, 0), (1, 1), False, False) and x.device.type == "cpu"
                and x.dtype == torch.float32 and x.dim() == 4 and x.shape[2] >= 2 and x.shape[3] >= 2
                and x.is_contiguous(memory_format=torch.channels_last) and _native.available())


class Dropout(nn.Dropout):
    """nn.Dropout; on CPU its mask comes from `rand_like` (vectorised) rather than `bernoulli_`, which draws one
    number at a time there and is 3x slower: 4-5 % of the FMNIST training step. Same distribution, other stream."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or self.p == 1 or self.inplace:
            return super().forward(x)
        return x * torch.rand_like(x).ge_(self.p).div_(1 - self.p)


class SpikingMaxPool2d(nn.Module):
    """A multi-step spiking neuron and 2x2 max pooling of its spikes: [T, N, C, H, W] -> [T, N, C, H/2, W/2].

    For pfa's LIF on CPU (channels-last float32 maps, even H) the two run in one pass of the C loops
    (`LIF.max_pooled_forward`): the full spikes are never written, read back by the pooling or given a gradient
    buffer, which saves about 2/3 of the bytes the pair moves. Elsewhere the neuron runs and `pool` follows, with the
    same numbers; a forward hook on `neuron` (pfa.study.report's spike rates) sees its full spikes that way.
    """

    def __init__(self, neuron: nn.Module):
        super().__init__()
        self.neuron = neuron
        self.pool = layer.SeqToANNContainer(MaxPool2d(2))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        pooled = self.neuron.max_pooled_forward(x_seq) if isinstance(self.neuron, LIF) else None
        return self.pool(self.neuron(x_seq)) if pooled is None else pooled
