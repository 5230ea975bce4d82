"""Classification losses for spiking networks.

Convention: a classifier returns its per-step outputs `[T, N, classes]` (the output layer's spikes); the prediction is
the firing rate `out.mean(0)`. Losses:
- "mse": mean squared error between the firing rate and the one-hot label (the reference's default);
- "ce": cross-entropy of the firing rate, used as logits;
- "tet": TET (Deng et al., ICLR 2022): the mean over t of the cross-entropy of each step's output, plus optionally
  `tet_lambda` times the MSE pulling every step's output towards 1: `(1 - lambda) * CE_t + lambda * MSE(out, 1)`.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

LOSSES = ("mse", "ce", "tet")


def firing_rate(out: torch.Tensor) -> torch.Tensor:
    """[T, N, classes] -> [N, classes]."""
    return out.mean(0)


def mse_rate_loss(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    rate = firing_rate(out)
    return F.mse_loss(rate, F.one_hot(labels, rate.shape[-1]).to(rate.dtype))


def ce_rate_loss(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(firing_rate(out), labels)


def tet_loss(out: torch.Tensor, labels: torch.Tensor, tet_lambda: float = 0.0) -> torch.Tensor:
    per_step = F.cross_entropy(out.flatten(0, 1), labels.repeat(out.shape[0]))  # mean over t and n
    if tet_lambda == 0:
        return per_step
    return (1 - tet_lambda) * per_step + tet_lambda * F.mse_loss(out, torch.ones_like(out))


def classification_loss(name: str, tet_lambda: float = 0.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss function called `name`, taking per-step outputs [T, N, classes] and integer labels [N]."""
    if name == "mse":
        return mse_rate_loss
    if name == "ce":
        return ce_rate_loss
    if name == "tet":
        return lambda out, labels: tet_loss(out, labels, tet_lambda)
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")
