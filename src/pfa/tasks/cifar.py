"""The paper's main experiment: classification of CIFAR10-DVS, N-Caltech101, DVS128 Gesture, CIFAR10 and CIFAR100,
and of Fashion-MNIST events (real images recorded by a simulated event camera, `pfa.data.fmnist_events`).

`CifarConfig` holds the flags of `CIFAR/main.py`; `--dataset NAME` reads the recipe `pfa/recipes/cifar/NAME.yaml` (event
data: the reference's network and optimiser; still images: a common ResNet-19 recipe), the single source of the
per-dataset values. `load_data` builds the datasets and the train/test split of random-split datasets (saved as
`split.json` in the run directory), `build_model` the network, `train` runs it all.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn
from torch.utils.data import Dataset

from pfa.attention.projected_full import GATES
from pfa.attention.registry import attention_kinds
from pfa.data import augment, neuromorphic
from pfa.data.cifar import build_cifar
from pfa.data.subsets import train_test_subsets
from pfa.engine.config import arg
from pfa.engine.loop import fit
from pfa.engine.run import Run
from pfa.engine.task import ClassificationTask
from pfa.errors import UserError
from pfa.models import resnet, vgg
from pfa.tasks import TaskSpec, recipe_folder
from pfa.tasks.outputs import write_outputs
from pfa.tasks.validation import ClassificationConfig, hold_out

EVENT_DATASETS = ("cifar10dvs", "ncaltech101", "dvsgesture", "fmnist-events")
IMAGE_DATASETS = ("cifar10", "cifar100")
DATASETS = EVENT_DATASETS + IMAGE_DATASETS
ARCHS = ("vgg", *resnet.ARCHS)

RECIPES = recipe_folder("cifar")
PER_DATASET = "[default: per dataset, pfa/recipes/cifar/DATASET.yaml]"


@dataclass
class CifarConfig(ClassificationConfig):
    """Train a spiking VGG or ResNet with PFA on event data or still images (defaults: per dataset, see --dataset)."""

    dataset: str | None = arg(None, "dataset (required); picks the recipe DATASET (pfa/recipes/cifar/DATASET.yaml)",
                              choices=DATASETS)
    arch: str | None = arg(None, f"network: vgg (the paper's) or a spiking ResNet {PER_DATASET}", choices=ARCHS)
    attention: str = arg("pfa", "attention module (pfa.attention.registry)", choices=attention_kinds())
    gate: str = arg("relu", "PFA's output gate: the ReLU (the reference's); pass, the ReLU with gradient 1 at 0; "
                    "identity, none", choices=GATES)
    attention_at: str | None = arg(None, "comma-separated attention slots, e.g. 1,2: vgg 0 = on the input frames, k = "
                                   "after pooling k (1-4); resnet 0 = after the stem, k = after stage k [default: all "
                                   "but slot 0 for resnets and for images]")
    T: int | None = arg(None, f"time steps: frames per recording, or repeats of an image {PER_DATASET}")
    rank: str | None = arg(None, "PFA's rank R, the connecting factor: one for every attention slot, or one per slot "
                           f"in use separated by commas, e.g. 32,32,32,32,64 {PER_DATASET}")
    pool: int | None = arg(None, f"average-pool event frames to POOL x POOL first; 0 keeps them {PER_DATASET}")
    width: float = arg(1.0, "multiplies every channel count (1 = the paper's network; e.g. 0.25 for quick CPU runs)")
    augment: str = arg("reference", "training augmentation: reference (event frames: flip + one of rotate, shear, "
                       "cutout, roll; images: crop + flip) or none", choices=augment.POLICIES)
    split: str = arg("seeded", "train/test split of CIFAR10-DVS and N-Caltech101 (the others have official ones): "
                     "seeded (10 % of each class drawn with --seed) or reference (the last 10 % of each class in file "
                     "order, as the reference's spikingjelly split_to_train_test_set)", choices=neuromorphic.SPLITS)
    split_by: str = arg("number", "how spikingjelly integrates events into T frames", choices=("number", "time"))

    TASK = "cifar"
    RECIPES = RECIPES
    FLAG_RECIPES = DATASETS

    @classmethod
    def recipe_name(cls, values: dict[str, Any]) -> str | None:
        return values.get("dataset")

    @classmethod
    def recipe_optional(cls) -> bool:
        return False  # --dataset is required and picks one

    def __post_init__(self) -> None:
        if isinstance(self.rank, str) and self.rank.strip().lstrip("-").isdigit():
            self.rank = int(self.rank)  # one rank, as a flag or in YAML: an int like the other fields

    def validate(self) -> None:
        if self.dataset is None:
            raise UserError(f"--dataset is required: one of {', '.join(DATASETS)}")
        missing = [name for name in ("arch", "T", "rank", "pool") if getattr(self, name) is None]
        if missing:
            raise UserError(f"recipe pfa/recipes/cifar/{self.dataset}.yaml lacks {', '.join(missing)}; add them to it")
        super().validate()
        if self.T <= 0:
            raise UserError(f"--T must be a positive integer, got {self.T}")
        if self.pool < 0:
            raise UserError(f"--pool must be a frame size in pixels, or 0 to keep the frames, got {self.pool}")
        if self.width <= 0:
            raise UserError(f"--width must be a positive channel multiplier, got {self.width}")
        self.positions()
        self.ranks()

    def positions(self) -> tuple[int, ...] | None:
        """--attention-at as slot numbers (None: the network's default slots)."""
        if self.attention_at is None:
            return None
        try:
            positions = tuple(int(slot) for slot in self.attention_at.split(","))
        except ValueError:
            raise UserError(f"--attention-at expects slot numbers separated by commas, e.g. 1,2,3; "
                            f"got {self.attention_at!r}") from None
        images = self.dataset in IMAGE_DATASETS
        slots = vgg.attention_slots(images) if self.arch == "vgg" else resnet.attention_slots(self.arch)
        if not set(positions) <= set(slots):
            data = "images" if images else "event frames"
            raise UserError(f"--attention-at {self.attention_at}: {self.arch} on {data} has attention slots "
                            f"{', '.join(map(str, slots))}; choose among them")
        return positions

    def ranks(self) -> int | tuple[int, ...]:
        """--rank as one rank for every attention slot, or a tuple with one per slot in use."""
        text = str(self.rank)
        try:
            ranks = tuple(int(rank) for rank in text.split(","))
        except ValueError:
            raise UserError(f"--rank expects a positive integer, or one per attention slot separated by commas "
                            f"(e.g. 32,32,32,32,64); got {text!r}") from None
        if min(ranks) <= 0:
            raise UserError(f"--rank must be a positive integer, got {text}")
        if len(ranks) == 1:
            return ranks[0]
        images = self.dataset in IMAGE_DATASETS
        slots = self.positions() or (vgg.attention_slots(images) if self.arch == "vgg"
                                     else resnet.attention_slots(self.arch)[1:])
        if len(ranks) != len(slots):
            raise UserError(f"--rank {text} gives {len(ranks)} ranks for {len(slots)} attention slots "
                            f"({','.join(map(str, slots))}): give one rank, or one per slot")
        return ranks


@dataclass
class Data:
    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    size: tuple[int, int]  # (H, W) of a sample as the network receives it
    images: bool  # still images (direct encoding) rather than event frames
    split: dict | None = None  # event data: the train/test file lists, saved as the run's split.json
    classes: tuple[str, ...] | None = None  # class names, in label order


def load_data(cfg: CifarConfig, progress: bool = True) -> Data:
    """The datasets of cfg.dataset, cut to --train-samples / --test-samples.

    Resuming reuses the split.json found beside the --resume checkpoint, so the test side never changes.
    """
    if cfg.data_dir is None:
        raise UserError(f"--data-dir is required: the folder holding {cfg.dataset}'s files (see CIFAR/README.md)")
    if cfg.dataset in IMAGE_DATASETS:
        images = build_cifar(cfg.dataset, cfg.data_dir, augment=cfg.augment != "none")
        channels, height, width = images.image_shape
        train, test = train_test_subsets(images.train, images.test, cfg)
        return Data(train, test, len(images.classes), channels, (height, width), images=True,
                    classes=tuple(images.classes))
    previous = Path(cfg.resume).parent / "split.json" if cfg.resume else None
    split = neuromorphic.load_split(previous) if previous is not None and previous.exists() else None
    data = neuromorphic.build_neuromorphic(cfg.dataset, cfg.data_dir, cfg.T, split_by=cfg.split_by, seed=cfg.seed,
                                           split=split, split_method=cfg.split,
                                           train_transform=augment.build_augment(cfg.augment), progress=progress)
    _, channels, height, width = data.frame_shape
    train, test = train_test_subsets(data.train, data.test, cfg)
    return Data(train, test, len(data.classes), channels, (height, width), images=False, split=data.split,
                classes=tuple(data.classes))


def model_arguments(cfg: CifarConfig, data: Data) -> dict:
    """Keyword arguments of the network class for cfg and data (also its description in checkpoints)."""
    common = dict(num_classes=data.num_classes, T=cfg.T, in_channels=data.in_channels, attention=cfg.attention,
                  rank=cfg.ranks(), positions=cfg.positions(), width=cfg.width)
    if cfg.gate != "relu":  # named only when it differs, so the descriptions in earlier checkpoints still match
        common["gate"] = cfg.gate
    pool = cfg.pool if cfg.pool and not data.images else None
    if cfg.arch != "vgg":
        return dict(arch=cfg.arch, input_pool=pool, **common)
    height, width = (pool, pool) if pool else data.size
    if height != width or height % 16:
        raise UserError(f"the VGG needs square inputs with sides divisible by 16, but {cfg.dataset} frames are "
                        f"{height}x{width}; pool them with --pool 48, or use --arch resnet19")
    return dict(image_size=None if pool else height, input_pool=pool, static=data.images, **common)


def build_model(cfg: CifarConfig, data: Data) -> tuple[nn.Module, str]:
    """The network and its description, e.g. "SpikingVGG(num_classes=10, T=12, ...)"."""
    network = vgg.SpikingVGG if cfg.arch == "vgg" else resnet.SpikingResNet
    kwargs = model_arguments(cfg, data)
    return network(**kwargs), f"{network.__name__}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


def rebuild(cfg: CifarConfig) -> tuple[nn.Module, Dataset]:
    """The network of a saved config and its test set, for tools that read checkpoints."""
    data = load_data(cfg, progress=False)
    return build_model(cfg, data)[0], data.test


def train(cfg: CifarConfig) -> dict:
    """Train (or with --eval-only evaluate) as configured; returns the last metrics record."""
    with Run(cfg, name=cfg.dataset) as run:
        data = load_data(cfg, progress=run.is_main)
        run.check_network(lambda: build_model(cfg, data)[0])
        model, arch = build_model(cfg, data)
        files = {"split.json": data.split} if data.split is not None else {}
        train_set, val_set, held_out = hold_out(cfg, data.train, data.test)
        record = fit(run, model.to(run.device), ClassificationTask(cfg.loss, cfg.tet_lambda), train_set, data.test,
                     arch, files={**files, **held_out}, val_set=val_set)
        write_outputs(run, model, data.test, data.classes)
    return record


TASK = TaskSpec("cifar", CifarConfig, train, rebuild, script="CIFAR/main.py")
