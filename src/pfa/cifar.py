"""The paper's main experiment: classification of CIFAR10-DVS, N-Caltech101, DVS128 Gesture, CIFAR10 and CIFAR100.

`CifarConfig` holds the flags of `CIFAR/main.py`; every field left unset takes its dataset's default from `DEFAULTS`
(event data: the reference recipe; still images: a common ResNet-19 recipe). `load_data` builds the datasets, keeping
the train/test split of random-split datasets in `split.json` beside the checkpoints; `build_model` the network.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from pfa.attentions import attention_kinds
from pfa.config import TrainConfig, arg
from pfa.data import augment, neuromorphic
from pfa.data.cifar import build_cifar
from pfa.engine import Run, fixed_subset
from pfa.errors import UserError
from pfa.models import resnet, vgg
from pfa.report import format_report, model_report, save_report

EVENT_DATASETS = ("cifar10dvs", "ncaltech101", "dvsgesture")
IMAGE_DATASETS = ("cifar10", "cifar100")
DATASETS = EVENT_DATASETS + IMAGE_DATASETS
ARCHS = ("vgg", *resnet.ARCHS)

# The reference's recipe for event data (it steps the rate down 10x every 20 epochs; cosine is our default).
EVENT_RECIPE = dict(arch="vgg", epochs=200, batch_size=32, optimizer="adam", lr=1e-4, weight_decay=0.0,
                    scheduler="cosine", t_max=200, loss="mse", amp="fp16")
# Still images: ResNet-19 with direct encoding, SGD + cosine and the TET loss, as in the tdBN / TET papers.
IMAGE_RECIPE = dict(arch="resnet19", T=4, rank=8, pool=0, epochs=200, batch_size=128, optimizer="sgd", lr=0.1,
                    weight_decay=5e-4, scheduler="cosine", t_max=200, loss="tet", amp="fp16")
DEFAULTS = {
    "cifar10dvs": {**EVENT_RECIPE, "T": 12, "rank": 8, "pool": 48},
    "ncaltech101": {**EVENT_RECIPE, "T": 14, "rank": 8, "pool": 48},
    "dvsgesture": {**EVENT_RECIPE, "T": 20, "rank": 32, "pool": 0},
    "cifar10": IMAGE_RECIPE,
    "cifar100": IMAGE_RECIPE,
}


def per_dataset(name: str):
    """A field of TrainConfig whose default comes from DEFAULTS[dataset] instead."""
    metadata = TrainConfig.__dataclass_fields__[name].metadata
    return arg(None, f"{metadata['help']} [default: per dataset]", metadata["choices"])


@dataclass
class CifarConfig(TrainConfig):
    """Train a spiking VGG or ResNet with PFA on event data or still images (defaults: per dataset, see --dataset)."""

    dataset: str | None = arg(None, "dataset; its name picks the defaults of the fields marked 'per dataset'",
                              choices=DATASETS)
    arch: str | None = arg(None, "network: vgg (the paper's) or a spiking ResNet [default: per dataset]", choices=ARCHS)
    attention: str = arg("pfa", "attention module (pfa.attentions)", choices=attention_kinds())
    attention_at: str | None = arg(None, "comma-separated attention slots, e.g. 1,2: vgg 0 = on the input frames, k = "
                                   "after pooling k (1-4); resnet 0 = after the stem, k = after stage k [default: all "
                                   "but slot 0 for resnets and for images]")
    T: int | None = arg(None, "time steps: frames per recording, or repeats of an image [default: per dataset]")
    rank: int | None = arg(None, "PFA's rank R, the connecting factor [default: per dataset]")
    pool: int | None = arg(None, "average-pool event frames to POOL x POOL first; 0 keeps them [default: per dataset]")
    width: float = arg(1.0, "multiplies every channel count (1 = the paper's network; e.g. 0.25 for quick CPU runs)")
    augment: str = arg("reference", "training augmentation: reference (event frames: flip + one of rotate, shear, "
                       "cutout, roll; images: crop + flip) or none", choices=augment.POLICIES)
    split_by: str = arg("number", "how spikingjelly integrates events into T frames", choices=("number", "time"))
    report: bool = arg(False, "after training (or --eval-only), print and save report.json: parameters per layer, "
                       "spike rates and synaptic operations on one test batch")
    epochs: int | None = per_dataset("epochs")
    batch_size: int | None = per_dataset("batch_size")
    optimizer: str | None = per_dataset("optimizer")
    lr: float | None = per_dataset("lr")
    weight_decay: float | None = per_dataset("weight_decay")
    scheduler: str | None = per_dataset("scheduler")
    t_max: int | None = per_dataset("t_max")
    loss: str | None = per_dataset("loss")
    amp: str | None = per_dataset("amp")

    RESUME_FREE = ("report",)

    def __post_init__(self) -> None:
        for name, value in DEFAULTS.get(self.dataset, {}).items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    def validate(self) -> None:
        if self.dataset is None:
            raise UserError(f"--dataset is required: one of {', '.join(DATASETS)}")
        super().validate()
        for name in ("T", "rank"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        if self.pool < 0:
            raise UserError(f"--pool must be a frame size in pixels, or 0 to keep the frames, got {self.pool}")
        if self.width <= 0:
            raise UserError(f"--width must be a positive channel multiplier, got {self.width}")
        self.positions()

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


@dataclass
class Data:
    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    size: tuple[int, int]  # (H, W) of a sample as the network receives it
    images: bool  # still images (direct encoding) rather than event frames


def load_data(cfg: CifarConfig, run: Run) -> Data:
    """The datasets of cfg.dataset; for event data, also writes the split to <run dir>/split.json.

    Resuming reuses the split.json found beside the --resume checkpoint, so the test side never changes.
    """
    if cfg.data_dir is None:
        raise UserError(f"--data-dir is required: the folder holding {cfg.dataset}'s files (see CIFAR/README.md)")
    if cfg.dataset in IMAGE_DATASETS:
        images = build_cifar(cfg.dataset, cfg.data_dir, augment=cfg.augment != "none")
        channels, height, width = images.image_shape
        return Data(images.train, images.test, len(images.classes), channels, (height, width), images=True)
    previous = Path(cfg.resume).parent / "split.json" if cfg.resume else None
    split = neuromorphic.load_split(previous) if previous is not None and previous.exists() else None
    data = neuromorphic.build_neuromorphic(cfg.dataset, cfg.data_dir, cfg.T, split_by=cfg.split_by, seed=cfg.seed,
                                           split=split, train_transform=augment.build_augment(cfg.augment),
                                           progress=run.is_main)
    run.prepare_dir()
    if run.is_main:
        neuromorphic.save_split(data.split, run.dir / "split.json")
    _, channels, height, width = data.frame_shape
    return Data(data.train, data.test, len(data.classes), channels, (height, width), images=False)


def model_arguments(cfg: CifarConfig, data: Data) -> dict:
    """Keyword arguments of the network class for cfg and data (also its description in checkpoints)."""
    common = dict(num_classes=data.num_classes, T=cfg.T, in_channels=data.in_channels, attention=cfg.attention,
                  rank=cfg.rank, positions=cfg.positions(), width=cfg.width)
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


def write_report(model: nn.Module, test_set: Dataset, cfg: CifarConfig, run: Run) -> dict:
    """`pfa.report` on the first test batch: printed, and saved as <run dir>/report.json."""
    loader = DataLoader(fixed_subset(test_set, cfg.test_samples, "--test-samples"), batch_size=cfg.batch_size)
    inputs, _ = next(iter(loader))
    report = model_report(model, inputs.to(run.device))
    report["config"] = dataclasses.asdict(cfg)
    print(format_report(report), flush=True)
    save_report(report, run.dir / "report.json")
    return report
