"""Event-frame augmentation on tensors ``[T, C, H, W]``: one random draw per sample, applied alike to every time step.

The reference recipe: a horizontal flip with probability 0.5, then exactly one of rotation (±15°), x-shear (±8°), cutout
(a square of 1–8 px set to 0) or rolling (±5 px, wrapping around). Angles and offsets are whole numbers, as in the
reference. Nearest-neighbour resampling with zero fill keeps frames integer event counts: every output value is one of
the input values or 0.

Randomness comes from ``generator`` if given, else from torch's global generator, which DataLoader seeds differently in
each worker (a shared explicit generator would repeat the same draws in every worker).
"""

from collections.abc import Callable

import torch
from torchvision.transforms.v2 import functional as F

from pfa.errors import UserError

POLICIES = ("reference", "none")
OPS = ("rotate", "shear", "cutout", "roll")


class EventAugment:
    """Flip horizontally with probability ``flip_p``, then apply one op drawn uniformly from ``ops``."""

    def __init__(self, ops: tuple[str, ...] = OPS, flip_p: float = 0.5, max_rotation: int = 15, max_shear: int = 8,
                 max_cutout: int = 8, max_roll: int = 5, generator: torch.Generator | None = None):
        unknown = set(ops) - set(OPS)
        if unknown or not ops:
            raise UserError(f"augmentation ops must be a non-empty subset of {OPS}, got {ops}")
        self.ops, self.flip_p, self.generator = tuple(ops), flip_p, generator
        self.max_rotation, self.max_shear = max_rotation, max_shear
        self.max_cutout, self.max_roll = max_cutout, max_roll

    def _int(self, low: int, high: int) -> int:
        """A whole number drawn uniformly from [low, high]."""
        return int(torch.randint(low, high + 1, (), generator=self.generator))

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() != 4:
            raise ValueError(f"expected event frames [T, C, H, W], got shape {tuple(frames.shape)}")
        if torch.rand((), generator=self.generator) < self.flip_p:
            frames = F.horizontal_flip(frames)
        op = self.ops[self._int(0, len(self.ops) - 1)]
        return getattr(self, f"_{op}")(frames)

    def _rotate(self, frames: torch.Tensor) -> torch.Tensor:
        return F.rotate(frames, self._int(-self.max_rotation, self.max_rotation), fill=0)

    def _shear(self, frames: torch.Tensor) -> torch.Tensor:
        shear = self._int(-self.max_shear, self.max_shear)
        return F.affine(frames, angle=0, translate=[0, 0], scale=1.0, shear=[shear, 0], fill=0)

    def _cutout(self, frames: torch.Tensor) -> torch.Tensor:
        height, width = frames.shape[-2:]
        size = self._int(1, min(self.max_cutout, height, width))
        top, left = self._int(0, height - size), self._int(0, width - size)
        return F.erase(frames, top, left, size, size, torch.zeros((), dtype=frames.dtype))

    def _roll(self, frames: torch.Tensor) -> torch.Tensor:
        shifts = (self._int(-self.max_roll, self.max_roll), self._int(-self.max_roll, self.max_roll))
        return torch.roll(frames, shifts=shifts, dims=(-2, -1))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ops={self.ops}, flip_p={self.flip_p})"


def build_augment(policy: str, generator: torch.Generator | None = None) -> Callable | None:
    """The training transform for ``policy`` ('reference' or 'none'); ``None`` means no augmentation."""
    if policy not in POLICIES:
        raise UserError(f"unknown augmentation policy {policy!r}: expected one of {', '.join(POLICIES)}")
    return EventAugment(generator=generator) if policy == "reference" else None
