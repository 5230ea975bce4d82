"""The reference's building blocks that the benchmarks measure ours against."""

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import neuron, surrogate

from pfa.lif.layers import Dropout, MaxPool2d


class LoopPFA(nn.Module):
    """PFA computed as the reference does: a Python loop over the rank, each term a full [N, T, C, H, W] tensor.

    Same parameters as pfa.PFA; the rank weights stay 1/R ("mul") or 1 ("add", the reference's unweighted sum).
    """

    def __init__(self, T: int, C: int, rank: int, fusion: str = "add"):
        super().__init__()
        self.rank, self.fusion = rank, fusion
        self.spatial = nn.Conv2d(T, rank, 3, padding=1)
        self.temporal = nn.Linear(C, rank)
        self.channel = nn.Linear(T, rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(0, 1)  # [N, T, C, H, W]
        n, t, c, h, w = x.shape
        spatial = torch.sigmoid(self.spatial(x.mean(2))).flatten(2).permute(1, 0, 2)  # [R, N, H*W]
        pooled = x.mean((3, 4))  # [N, T, C]
        temporal = torch.sigmoid(self.temporal(pooled)).permute(2, 0, 1)  # [R, N, T]
        channel = torch.sigmoid(self.channel(pooled.transpose(1, 2))).permute(2, 0, 1)  # [R, N, C]
        weight = 1.0 if self.fusion == "add" else 1.0 / self.rank
        attention = torch.zeros_like(x)
        for r in range(self.rank):
            space_time = torch.bmm(spatial[r].unsqueeze(2), temporal[r].unsqueeze(1))  # [N, H*W, T]
            term = torch.bmm(space_time.reshape(n, -1, 1), channel[r].unsqueeze(1))  # [N, H*W*T, C]
            attention = attention + weight * term.view(n, h, w, t, c).permute(0, 3, 4, 1, 2)
        y = attention + x if self.fusion == "add" else attention * x
        return F.relu(y).transpose(0, 1)


def spikingjelly_lif(detach_reset: bool = True) -> nn.Module:
    return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=detach_reset, step_mode="m")


def with_torch_layers(model: nn.Module) -> nn.Module:
    """The model with torch's own max pooling and dropout in place of pfa.lif.layers' (same settings)."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, MaxPool2d):
                setattr(module, name, nn.MaxPool2d(child.kernel_size, child.stride, child.padding, child.dilation,
                                                   child.return_indices, child.ceil_mode))
            elif isinstance(child, Dropout):
                setattr(module, name, nn.Dropout(child.p, child.inplace))
    return model
