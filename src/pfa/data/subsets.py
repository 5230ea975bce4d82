"""Deterministic subsets for quick runs (`--train-samples N`, `--test-samples N`), taken once, where data are loaded."""

import torch
from torch.utils.data import Dataset, Subset

from pfa.errors import UserError


def fixed_subset(dataset: Dataset, n: int | None, flag: str) -> Dataset:
    """The same `n` samples on every run and machine (a permutation seeded with 0, kept in dataset order)."""
    if n is None:
        return dataset
    if n > len(dataset):
        raise UserError(f"{flag} {n} is more than the {len(dataset)} samples available; give at most {len(dataset)}")
    chosen = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:n]
    return Subset(dataset, chosen.sort().values.tolist())


def train_test_subsets(train: Dataset, test: Dataset, cfg) -> tuple[Dataset, Dataset]:
    """`train` and `test` cut to cfg.train_samples / cfg.test_samples (None keeps all)."""
    return (fixed_subset(train, cfg.train_samples, "--train-samples"),
            fixed_subset(test, cfg.test_samples, "--test-samples"))
