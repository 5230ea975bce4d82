"""Deterministic subsets: for quick runs (`--train-samples N`, `--test-samples N`), taken once, where data are loaded;
and the stratified, seeded validation part of a training set (`pfa.tasks.validation`)."""

import copy

import numpy as np
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


def dataset_labels(dataset: Dataset) -> list[int]:
    """The label of every item, read from the dataset's `targets` or `labels` (torchvision's datasets, Fashion-MNIST,
    event frames: no input is loaded) through any Subsets; other datasets are read item by item."""
    if isinstance(dataset, Subset):
        labels = dataset_labels(dataset.dataset)
        return [labels[i] for i in dataset.indices]
    for name in ("targets", "labels"):
        values = getattr(dataset, name, None)
        if values is not None:
            return values.tolist() if isinstance(values, torch.Tensor) else [int(v) for v in values]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def stratified_indices(labels: list[int], fraction: float, seed: int) -> list[int]:
    """Sorted positions of a seeded `fraction` of each class: round(n * fraction) of a class of n, at least 1 and at
    most n - 1 (none of a class of one)."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for position, label in enumerate(labels):
        by_class.setdefault(label, []).append(position)
    chosen = []
    for label in sorted(by_class):
        members = by_class[label]
        count = min(len(members) - 1, max(1, int(len(members) * fraction + 0.5)))
        chosen += [members[i] for i in rng.permutation(len(members))[:count]]
    return sorted(chosen)


def evaluation_view(train: Dataset, test: Dataset) -> Dataset:
    """`train`'s items read as `test`'s are: with the test set's transform, without training augmentation (`train`
    itself where it has no transform); Subsets of either side are followed."""
    if isinstance(train, Subset):
        return Subset(evaluation_view(train.dataset, test), train.indices)
    if not hasattr(train, "transform"):
        return train
    while isinstance(test, Subset):
        test = test.dataset
    view = copy.copy(train)  # shares the data, not the transform
    view.transform = getattr(test, "transform", None)
    return view
