"""Fashion-MNIST from its idx files, found in this order:

1. `--data-dir` in torchvision's layout (`<dir>/FashionMNIST/raw/*-ubyte[.gz]`), or a folder holding the idx files;
2. Debian's package `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist; read directly, because Debian
   recompressed the files and torchvision's md5 check rejects them);
3. torchvision's download into `./data` (needs internet).
"""

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pfa.errors import UserError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_ROOT = Path("data")
FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
HOW_TO_GET = ("put the idx files under DIR/FashionMNIST/raw and pass --data-dir DIR, install Debian's package "
              "(apt-get install dataset-fashion-mnist), or run once with internet so torchvision downloads them")


class FashionMNIST(Dataset):
    """Images as float tensors [1, 28, 28] in [0, 1] (torchvision's ToTensor), labels as ints."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].unsqueeze(0).float().div_(255), int(self.labels[index])

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        """A whole batch in one indexing and one conversion (DataLoader calls this instead of __getitem__ per image)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index].unsqueeze(1).float().div_(255)
        return list(zip(images.unbind(), self.labels[index].tolist(), strict=True))


def read_idx(path: Path) -> np.ndarray:
    """An idx file (maybe gzipped): big-endian magic 0x0000 <dtype 0x08 = uint8> <ndim>, ndim uint32 sizes, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"cannot read {path} ({e}); replace it with an intact copy") from None
    ndim = raw[3] if len(raw) >= 4 else 0
    if len(raw) < 4 + 4 * ndim or raw[:3] != b"\x00\x00\x08" or ndim == 0:
        raise UserError(f"{path} is not a uint8 idx file ({len(raw)} bytes); expected Fashion-MNIST's original files")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", ndim, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated: its header says {shape}, it holds {data.size} bytes; get a fresh copy")
    return data.reshape(shape)


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _folder_with_files(root: Path) -> Path | None:
    for folder in (root / "FashionMNIST" / "raw", root):
        if all(_find(folder, name) for names in FILES.values() for name in names):
            return folder
    return None


def locate(data_dir: str | None) -> Path:
    """The folder holding all four idx files, following the module's search order."""
    if data_dir is not None:
        root = Path(data_dir)
        if not root.is_dir():
            raise UserError(f"--data-dir {root} does not exist; {HOW_TO_GET}")
        folder = _folder_with_files(root)
        if folder is None:
            raise UserError(f"--data-dir {root} holds no Fashion-MNIST idx files "
                            f"(looked for {root}/FashionMNIST/raw/train-images-idx3-ubyte[.gz]); {HOW_TO_GET}")
        return folder
    for root in (DEBIAN_DIR, DOWNLOAD_ROOT):
        folder = _folder_with_files(root)
        if folder is not None:
            return folder
    return _download()


def _download() -> Path:
    from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST

    try:
        TorchvisionFashionMNIST(str(DOWNLOAD_ROOT), train=True, download=True)
        TorchvisionFashionMNIST(str(DOWNLOAD_ROOT), train=False, download=True)
    except (OSError, RuntimeError) as e:
        raise UserError(f"Fashion-MNIST was not found and could not be downloaded ({type(e).__name__}); "
                        f"{HOW_TO_GET}") from None
    return DOWNLOAD_ROOT / "FashionMNIST" / "raw"


def load_fashion_mnist(data_dir: str | None, train: bool) -> FashionMNIST:
    folder = locate(data_dir)
    images_name, labels_name = FILES[train]
    images = read_idx(_find(folder, images_name))
    labels = read_idx(_find(folder, labels_name))
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"{folder}: images {images.shape} and labels {labels.shape} do not match; "
                        "expected [N, 28, 28] images and N labels")
    if labels.size and labels.max() >= len(CLASSES):
        raise UserError(f"{folder}/{labels_name}: label {labels.max()} is not a Fashion-MNIST class (0 to "
                        f"{len(CLASSES) - 1}); replace the file with an intact copy")
    return FashionMNIST(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))
