"""Image datasets for generation, as FSVAE feeds them: resized to the model's input size and scaled to [-1, 1].

MNIST, CIFAR10 and CelebA are read by torchvision from `--data-dir` in its own layouts (nothing is downloaded);
Fashion-MNIST comes from `pfa.data.fashion_mnist` (torchvision's layout under `--data-dir`, or Debian's package).
"""

from collections.abc import Callable

import torch
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

from pfa.data.fashion_mnist import load_fashion_mnist
from pfa.errors import UserError

CHANNELS = {"mnist": 1, "fashion": 1, "cifar10": 3, "celeba": 3}
LAYOUTS = {
    "mnist": "DIR/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "cifar10": "DIR/cifar-10-batches-py/ (the extracted cifar-10-python.tar.gz)",
    "celeba": "DIR/celeba/ with img_align_celeba/ and list_eval_partition.txt, list_attr_celeba.txt, "
    "identity_CelebA.txt, list_bbox_celeba.txt, list_landmarks_align_celeba.txt",
}
CELEBA_CROP = 148


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2 - 1


def image_transform(dataset: str, input_size: int, train: bool) -> Callable:
    """FSVAE's preprocessing: (CIFAR10/CelebA train: random flip), (CelebA: centre crop 148), resize, [-1, 1]."""
    steps = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if train and dataset in ("cifar10", "celeba"):
        steps.append(v2.RandomHorizontalFlip())
    if dataset == "celeba":
        steps.append(v2.CenterCrop(CELEBA_CROP))
    steps += [v2.Resize((input_size, input_size), antialias=True), v2.Lambda(to_signed)]
    return v2.Compose(steps)


class Transformed(Dataset):
    """(image, label) pairs of `dataset` with `transform` applied to the image."""

    def __init__(self, dataset: Dataset, transform: Callable):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return self.transform(image), label


def _torchvision(dataset: str, data_dir: str | None, train: bool, transform: Callable) -> Dataset:
    if data_dir is None:
        raise UserError(f"--data-dir is required for {dataset}: a folder holding {LAYOUTS[dataset]}")
    try:
        if dataset == "mnist":
            return datasets.MNIST(data_dir, train=train, transform=transform)
        if dataset == "cifar10":
            return datasets.CIFAR10(data_dir, train=train, transform=transform)
        return datasets.CelebA(data_dir, split="train" if train else "test", transform=transform)
    except RuntimeError as e:  # torchvision's "Dataset not found or corrupted"
        raise UserError(
            f"{dataset} not found in --data-dir {data_dir} ({e}); expected {LAYOUTS[dataset]} "
            "(torchvision's layout; fetch it with torchvision's download=True on a machine with internet)"
        ) from None


def load_generation_data(dataset: str, data_dir: str | None, input_size: int) -> tuple[Dataset, Dataset]:
    """(train, test) datasets of (image [C, input_size, input_size] in [-1, 1], label)."""
    if dataset not in CHANNELS:
        raise UserError(f"--dataset must be one of {', '.join(CHANNELS)}, got {dataset!r}")
    splits = []
    for train in (True, False):
        transform = image_transform(dataset, input_size, train)
        if dataset == "fashion":
            splits.append(Transformed(load_fashion_mnist(data_dir, train), transform))
        else:
            splits.append(_torchvision(dataset, data_dir, train, transform))
    return splits[0], splits[1]
