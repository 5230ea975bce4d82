"""Event-camera datasets: train/test splits and frame datasets over what ``pfa.data.event_frames`` prepares.

Splits: DVS128 Gesture, N-MNIST and Fashion-MNIST events use their official train/test files. CIFAR10-DVS and
N-Caltech101 have none: by default (``seeded``) each class is shuffled with the seed and ``test_fraction`` of it (at
least one file when a class has two) goes to the test side; ``reference`` takes the first 90 % of each class in file
order, as spikingjelly's ``split_to_train_test_set(0.9, random_split=False)``. The split is made from file names only,
returned as a JSON-able dict, and can be saved and passed back to reproduce a run.
"""

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from spikingjelly.datasets import utils as sj_utils
from torch.utils.data import Dataset

from pfa.data.event_frames import SPLITS, _spec, frame_size, prepare_frames
from pfa.errors import UserError
from pfa.files import write_json


def split_per_class(files_by_class: dict[str, list[str]], test_fraction: float = 0.1, seed: int = 2022) -> dict:
    """Shuffle each class's files with ``seed`` and send ``round(n · test_fraction)`` of them (≥ 1 if n ≥ 2) to test."""
    if not 0 < test_fraction < 1:
        raise UserError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in sorted(files_by_class):
        files = sorted(files_by_class[cls])
        order = rng.permutation(len(files))
        n_test = max(1, int(len(files) * test_fraction + 0.5)) if len(files) >= 2 else 0
        test += [files[i] for i in sorted(order[:n_test])]
        train += [files[i] for i in sorted(order[n_test:])]
    return {"train": train, "test": test}


def split_first_per_class(files_by_class: dict[str, list[str]], test_fraction: float = 0.1) -> dict:
    """The reference's split, spikingjelly's ``split_to_train_test_set(1 - test_fraction, random_split=False)``: the
    first ``ceil(n · (1 - test_fraction))`` files of each class in file order (sorted names) train, the rest test."""
    if not 0 < test_fraction < 1:
        raise UserError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    train, test = [], []
    for cls in sorted(files_by_class):
        files = sorted(files_by_class[cls])
        n_train = math.ceil(len(files) * (1 - test_fraction))
        train += files[:n_train]
        test += files[n_train:]
    return {"train": train, "test": test}


def save_split(split: dict, path) -> None:
    """Write ``split`` as JSON atomically (a crash never leaves half a file)."""
    write_json(Path(path), split)


def load_split(path) -> dict:
    """Read a split saved by :func:`save_split`; a missing or damaged file raises ``UserError``."""
    try:
        split = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read the split file {path} ({error}): restore it or start a new run") from error
    if not isinstance(split, dict) or not {"dataset", "train", "test"} <= split.keys():
        raise UserError(f"{path} is not a split file (expected keys dataset, train, test)")
    return split


def _check_split(split: dict, name: str, known: set[str], where: Path) -> None:
    if split["dataset"] != name:
        raise UserError(f"the split was made for {split['dataset']!r}, not {name!r}: use a new run directory")
    both = set(split["train"]) & set(split["test"])
    if both:
        raise UserError(f"the split puts {len(both)} files on both sides (e.g. {min(both)}): it is damaged")
    absent = sorted((set(split["train"]) | set(split["test"])) - known)
    if absent:
        raise UserError(f"the split lists {len(absent)} files absent from {where} (e.g. {absent[0]}): it belongs to "
                        f"other data; use a new run directory")


# ---------------------------------------------------------------- datasets


class FrameDataset(Dataset):
    """Frame files chosen by path; item ``i`` is ``(float32 tensor [T, 2, H, W], label)`` after ``transform``."""

    def __init__(self, folder: Path, samples: list[tuple[str, int]], transform: Callable | None = None):
        self.folder, self.samples, self.transform = folder, samples, transform
        self.targets = [label for _, label in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        relative, label = self.samples[index]
        path = self.folder / relative
        try:
            frames = torch.from_numpy(sj_utils.load_npz_frames(path))
        except Exception as error:
            raise UserError(f"cannot read frame file {path} ({error}): delete {self.folder} to rebuild it") from error
        return (self.transform(frames) if self.transform else frames), label


@dataclass
class EventData:
    """Train and test sets of one event dataset, the split that made them, and what a model needs to know."""

    train: FrameDataset
    test: FrameDataset
    split: dict
    classes: list[str]
    frame_shape: tuple[int, int, int, int]  # (T, 2, H, W)


def _listing(folder: Path) -> tuple[list[str], dict[str, int]]:
    """Class folders in spikingjelly's (torchvision DatasetFolder's) order and every frame file as ``class/file``."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    files = {f"{c}/{f.name}": i for i, c in enumerate(classes) for f in sorted((folder / c).glob("*.npz"))}
    return classes, files


def build_neuromorphic(name: str, root, T: int, *, split_by: str = "number", seed: int = 2022,
                       split: dict | None = None, test_fraction: float = 0.1, split_method: str = "seeded",
                       train_transform: Callable | None = None, test_transform: Callable | None = None,
                       workers: int | None = None, progress: bool = True, wait: bool = True) -> EventData:
    """Train/test frame datasets of ``name`` under ``root`` with ``T`` frames each, built on first use.

    ``split``: a dict from an earlier call (``EventData.split``, e.g. reloaded with :func:`load_split`) to reuse;
    without it the official split is taken, or one per class with ``test_fraction`` of each class on the test side:
    ``split_method`` "seeded" draws them with ``seed`` (:func:`split_per_class`), "reference" takes the last ones in
    file order as the reference code does (:func:`split_first_per_class`).
    Labels follow spikingjelly's class order (class folders sorted by name). ``workers``, ``progress``, ``wait``: see
    :func:`prepare_frames`; every rank of a distributed run may call this: one builds, the others wait.
    """
    spec = _spec(name)
    if split_method not in SPLITS:
        raise UserError(f"split_method must be one of {', '.join(SPLITS)}, got {split_method!r}")
    folder = prepare_frames(name, root, T, split_by, workers, progress, wait)
    if spec.official_split:
        classes, train_files = _listing(folder / "train")
        test_classes, test_files = _listing(folder / "test")
        if test_classes != classes:
            raise UserError(f"{folder}/train and {folder}/test hold different classes: delete {folder} to rebuild it")
        files = {f"train/{k}": v for k, v in train_files.items()} | {f"test/{k}": v for k, v in test_files.items()}
        made = {"train": [f"train/{k}" for k in train_files], "test": [f"test/{k}" for k in test_files]}
        kind = "official"
    else:
        classes, files = _listing(folder)
        by_class = {c: [] for c in classes}
        for f, label in files.items():
            by_class[classes[label]].append(f)
        if split_method == "reference":
            made = split_first_per_class(by_class, test_fraction)
            kind = f"per-class first {1 - test_fraction:.0%} in file order (spikingjelly's split_to_train_test_set)"
        else:
            made = split_per_class(by_class, test_fraction, seed)
            kind = f"per-class random, test fraction {test_fraction}, seed {seed}"
    if split is None:
        split = {"dataset": name, "kind": kind, **made}
    _check_split(split, name, set(files), folder)
    return EventData(
        train=FrameDataset(folder, [(f, files[f]) for f in split["train"]], train_transform),
        test=FrameDataset(folder, [(f, files[f]) for f in split["test"]], test_transform),
        split=split,
        classes=classes,
        frame_shape=(T, 2, *frame_size(name)),
    )
