"""The reference Fashion-MNIST network, with its width, T, rank, attention and PFA's options configurable.

    static conv 1->w + BN (computed once, repeated over T)
    LIF -> maxpool -> conv w->w + BN -> attention -> LIF -> maxpool                   28 -> 14 -> 7
    dropout -> FC 49w -> 16w -> LIF -> dropout -> FC 16w -> 10 -> LIF                 (w = 128: 6272 -> 2048 -> 10)

The output is the last LIF's spikes [T, N, 10]; their mean over T is the prediction (pfa.engine.losses' convention).
As in the reference (the defaults, PFA_OPTIONS): PFA with fusion "add", the unweighted sum of its R terms (weights
"sum") and the ReLU gate, and neurons that do not detach their reset. Each max pooling runs fused with the neuron
before it, and dropout is pfa.lif.layers' (the reference's numbers, faster on CPU; dropout draws its masks from
another random stream).
"""

from collections.abc import Callable

import torch
import torch.nn as nn
from spikingjelly.activation_based import layer

from pfa.attention.registry import make_attention
from pfa.lif.layers import Dropout, SpikingMaxPool2d
from pfa.models.layers import spiking_neuron, to_time_first

NEURON = {"detach_reset": False}
PFA_OPTIONS = {"fusion": "add", "weights": "sum", "gate": "relu"}


def _to_channels_last(grad: torch.Tensor) -> torch.Tensor:
    return grad.contiguous(memory_format=torch.channels_last)


def _load_unfused_layout(module, state_dict, prefix, *_):
    """Checkpoints written before pooling joined the neurons (features.1 held max pooling, convolution, batch norm)
    load into today's layout (features.1 holds convolution, batch norm)."""
    old = prefix + "features.1."
    if old + "2.running_mean" not in state_dict:
        return
    for index in ("1", "2"):
        for key in [k for k in state_dict if k.startswith(old + index + ".")]:
            state_dict[old + str(int(index) - 1) + key[len(old) + 1:]] = state_dict.pop(key)


class FashionMNISTNet(nn.Module):
    """Args:
    T: time steps; width: channels of both convolutions (128 in the reference); rank: PFA's R;
    attention: a kind of `pfa.attention.registry`; dropout: probability of both dropouts (0.7 in the reference);
    neuron: factory of the multi-step spiking neuron (pfa.lif.neuron.LIF without detached reset by default);
    make_pfa: factory (T, C, rank) -> PFA module, to swap in another implementation (the benchmark does);
    channels_last: keep the convolutions' weights and so every feature map channels-last (faster convolution and
    pooling on CPU; the LIF and PFA keep the layout). The same numbers up to rounding either way.
    fusion, weights, gate: PFA's options (`pfa.attention.projected_full.PFA`; the reference's by default).
    """

    def __init__(self, T: int = 4, width: int = 128, rank: int = 4, attention: str = "pfa", dropout: float = 0.7,
                 neuron: Callable[[], nn.Module] | None = None, make_pfa: Callable[..., nn.Module] | None = None,
                 channels_last: bool = True, fusion: str = PFA_OPTIONS["fusion"],
                 weights: str = PFA_OPTIONS["weights"], gate: str = PFA_OPTIONS["gate"]):
        super().__init__()
        self.T = T
        neuron = neuron or (lambda: spiking_neuron(**NEURON))
        if make_pfa is not None and attention == "pfa":
            attention_module = make_pfa(T, width, rank)
        else:
            attention_module = make_attention(attention, T, width, rank=rank, fusion=fusion, weights=weights,
                                              gate=gate)
        self.static_conv = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.features = nn.Sequential(
            SpikingMaxPool2d(neuron()),
            layer.SeqToANNContainer(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)),
            attention_module,
            SpikingMaxPool2d(neuron()),
            layer.SeqToANNContainer(nn.Flatten()),
        )
        self.classifier = nn.Sequential(
            Dropout(dropout),
            layer.SeqToANNContainer(nn.Linear(width * 7 * 7, width * 4 * 4, bias=False)),
            neuron(),
            Dropout(dropout),
            layer.SeqToANNContainer(nn.Linear(width * 4 * 4, 10, bias=False)),
            neuron(),
        )
        self.register_load_state_dict_pre_hook(_load_unfused_layout)
        self.channels_last = channels_last
        if channels_last:  # 2-D convolutions only: other kinds of attention hold 3-D or 5-D weights
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    module.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 1, 28, 28] -> output spikes [T, N, 10]."""
        x = self.static_conv(images)
        if self.channels_last and x.requires_grad:  # the repeat's backward (a sum over T) returns a contiguous
            x.register_hook(_to_channels_last)  # gradient, on which batch norm's backward is several times slower
        return self.classifier(self.features(to_time_first(x, self.T)))
