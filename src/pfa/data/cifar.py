"""Static CIFAR10 / CIFAR100 from torchvision's on-disk layout, never downloaded at run time.

Items are ``(float tensor [3, 32, 32], label)``: training images get a random 32×32 crop of the 4-px zero-padded image
and a horizontal flip, both sides are normalised with the dataset's channel mean and std. Repeating the image over T
(direct encoding) is the model's job.
"""

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.transforms import v2

from pfa.errors import UserError


@dataclass(frozen=True)
class _Spec:
    title: str
    folder_class: type
    folder: str
    url: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


SPECS = {
    "cifar10": _Spec("CIFAR-10", CIFAR10, "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                     (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": _Spec("CIFAR-100", CIFAR100, "cifar-100-python",
                      "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                      (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
DATASETS = tuple(SPECS)


def _without_md5(folder_class: type) -> type:
    """The torchvision class checking only that its files exist: its md5 check rejects any copy but the original."""
    return type(folder_class.__name__, (folder_class,), {
        "train_list": [[name, None] for name, _ in folder_class.train_list],
        "test_list": [[name, None] for name, _ in folder_class.test_list],
        "meta": {**folder_class.meta, "md5": None},
    })


def cifar_files(name: str) -> list[str]:
    """The files torchvision's layout holds for ``name``, relative to the data directory."""
    cls = SPECS[name].folder_class
    names = [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [f"{SPECS[name].folder}/{n}" for n in names]


def cifar_transform(name: str, train: bool) -> v2.Compose:
    """Random crop (pad 4) + horizontal flip for training, then tensor conversion and normalisation."""
    spec = SPECS[name]
    augment = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()] if train else []
    to_float = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(spec.mean, spec.std)]
    return v2.Compose([v2.ToImage(), *augment, *to_float])


@dataclass
class StaticData:
    """Train and test sets of a static image dataset and what a model needs to know."""

    train: Dataset
    test: Dataset
    classes: list[str]
    image_shape: tuple[int, int, int]  # (C, H, W)


def build_cifar(name: str, root, augment: bool = True) -> StaticData:
    """CIFAR10 or CIFAR100 read from ``root/cifar-10-batches-py`` or ``root/cifar-100-python``.

    ``augment=False`` gives the training set the test transform. Missing or unreadable files raise ``UserError``.
    """
    if name not in SPECS:
        raise UserError(f"unknown static dataset {name!r}: expected one of {', '.join(DATASETS)}")
    spec, root = SPECS[name], Path(root)
    missing = [f for f in cifar_files(name) if not (root / f).is_file()]
    if missing:
        raise UserError(f"{spec.title} not found in {root} (missing {', '.join(missing)}): download {spec.url} and "
                        f"unpack it there (tar xzf {spec.url.rsplit('/', 1)[1]} -C {root})")
    folder_class = _without_md5(spec.folder_class)
    try:
        train = folder_class(str(root), train=True, transform=cifar_transform(name, augment))
        test = folder_class(str(root), train=False, transform=cifar_transform(name, False))
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"cannot read {spec.title} from {root / spec.folder} ({type(error).__name__}: {error}): "
                        f"unpack {spec.url} there again") from error
    return StaticData(train=train, test=test, classes=list(train.classes), image_shape=(3, 32, 32))
