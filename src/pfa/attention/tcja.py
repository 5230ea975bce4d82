"""TCJA: temporal-channel joint attention (Zhu et al., "TCJA-SNN", IEEE TNNLS 2024, arXiv 2206.10177).

For X [T, N, C, H, W]:
1. squeeze: Z[n, t, c] = mean of X[t, n, c] over H and W.
2. temporal-wise local attention (TLA): a 1-D convolution along T with C input and C output channels (kernel
   `kernel_size_t`): each (t, c) sees every channel at the steps near t.
3. channel-wise local attention (CLA): a 1-D convolution along C with T input and T output channels (kernel
   `kernel_size_c`): each (t, c) sees every step at the channels near c.
4. cross convolutional fusion (CCF): A = sigmoid(TLA(Z) * CLA(Z)), one weight per (n, t, c); Y = A * X.

Both convolutions are bias-free with "same" zero padding, (k - 1) // 2 before and the rest after, as PyTorch's
padding="same" (for an even kernel the extra tap looks ahead, as in the paper's public code), so the module has
kernel_size_t * C^2 + kernel_size_c * T^2 parameters. The paper's public code uses kernel 4 for both on DVS128
Gesture; its ablation found small kernels best, hence the default 2.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import base


class TCJA(nn.Module, base.MultiStepModule):
    """Temporal-channel joint attention on multi-step tensors [T, N, C, H, W]; the output has the input's shape."""

    def __init__(self, T: int, C: int, kernel_size_t: int = 2, kernel_size_c: int = 2):
        super().__init__()
        if min(T, C, kernel_size_t, kernel_size_c) < 1:
            raise ValueError(f"TCJA: T, C and the kernel sizes must be positive, got T={T}, C={C}, "
                             f"kernel_size_t={kernel_size_t}, kernel_size_c={kernel_size_c}")
        self.T, self.C = T, C
        self.temporal = nn.Conv1d(C, C, kernel_size_t, bias=False)
        self.channel = nn.Conv1d(T, T, kernel_size_c, bias=False)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The weights A [N, T, C] for x [T, N, C, H, W]."""
        if x.dim() != 5 or x.shape[0] != self.T or x.shape[2] != self.C:
            raise ValueError(f"TCJA(T={self.T}, C={self.C}) expects [T, N, C, H, W] = [{self.T}, N, {self.C}, H, W], "
                             f"got {list(x.shape)}")
        z = x.mean(dim=(3, 4)).transpose(0, 1)  # [N, T, C]
        tla = _same(self.temporal, z.transpose(1, 2)).transpose(1, 2)  # along T, channels C
        cla = _same(self.channel, z)  # along C, channels T
        return torch.sigmoid(tla * cla)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention_map(x).transpose(0, 1)[..., None, None]


def _same(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """`conv` with "same" zero padding (explicit: PyTorch warns about padding="same" with even kernels)."""
    total = conv.kernel_size[0] - 1
    return conv(F.pad(x, (total // 2, total - total // 2)))
