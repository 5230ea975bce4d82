"""Time-first spiking layers of FSVAE: its LIF neuron, tdBN, conv/linear + tdBN + LIF blocks, membrane output, PSP.

FSVAE's public code keeps time last ([N, C, H, W, T]) and convolves with (k, k, 1) 3-D kernels so time never mixes.
Here every tensor is time-first ([T, N, ...], spikingjelly's multi-step layout) and spatial layers run on the merged
[T*N, ...] batch: the same arithmetic and the same parameter counts, and it plugs straight into `pfa.lif.neuron.LIF`,
`pfa.PFA` and `spikingjelly.activation_based.functional.reset_net`.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer

from pfa.lif.neuron import LIF

V_THRESHOLD = 0.2
MEMBRANE_DECAY = 0.25


def fsvae_neuron() -> LIF:
    """FSVAE's LIF: u_t = 0.25 u_{t-1} (1 - o_{t-1}) + x_t, o_t = [u_t > 0.2], surrogate 1[|u| < 0.5] (reset kept in
    the graph)."""
    return LIF(
        tau=1 / (1 - MEMBRANE_DECAY),
        v_threshold=V_THRESHOLD,
        v_reset=0.0,
        decay_input=False,
        detach_reset=False,
        surrogate="rectangle",
        width=0.5,
        surrogate_center=0.0,
    )


class TdBatchNorm(nn.BatchNorm1d):
    """Threshold-dependent batch norm on [T, N, C, *]: statistics per channel over (T, N, *), the normalised input
    scaled by alpha * V_th, then the affine weight and bias.

    spikingjelly's ThresholdDependentBatchNorm folds alpha * V_th into the initial weight instead, which changes what
    weight decay and FSVAE's weight clipping act on, hence this class.
    """

    def __init__(self, channels: int, alpha: float = 1.0, v_threshold: float = V_THRESHOLD):
        super().__init__(channels)
        self.alpha, self.v_threshold = alpha, v_threshold

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}, v_threshold={self.v_threshold}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        merged = x.flatten(0, 1)
        if self.training:
            self.num_batches_tracked.add_(1)
        weight = self.weight * (self.alpha * self.v_threshold)  # folded per call: the parameter stays FSVAE's
        y = F.batch_norm(merged, self.running_mean, self.running_var, weight, self.bias, training=self.training,
                         momentum=self.momentum, eps=self.eps)
        return y.view_as(x)


def spiking_block(op: nn.Module, channels: int, alpha: float = 1.0) -> nn.Sequential:
    """op on every time step -> tdBN -> FSVAE's LIF; spikes [T, N, channels, ...] out."""
    return nn.Sequential(layer.SeqToANNContainer(op), TdBatchNorm(channels, alpha), fsvae_neuron())


def run_fresh(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a spiking module from resting membranes (FSVAE re-runs its latent networks on growing prefixes)."""
    functional.reset_net(module)
    return module(x)


class MembraneOutput(nn.Module):
    """Membrane potential of a non-firing leaky neuron after the last step: sum_t decay^(T-1-t) x_t over [T, ...]."""

    def __init__(self, decay: float = 0.8):
        super().__init__()
        self.decay = decay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(x.shape[0] - 1, -1, -1, device=x.device, dtype=x.dtype)
        return torch.tensordot(self.decay**steps, x, dims=1)


def postsynaptic_potential(x: torch.Tensor, tau_s: float = 2.0) -> torch.Tensor:
    """FSVAE's synaptic filter over [T, ...]: s_t = s_{t-1} + (x_t - s_{t-1}) / tau_s, s_{-1} = 0."""
    state = torch.zeros_like(x[0])
    filtered = []
    for x_t in x:
        state = state + (x_t - state) / tau_s
        filtered.append(state)
    return torch.stack(filtered)
