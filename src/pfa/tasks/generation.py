"""Training generative models with `pfa.engine.loop.fit`: the entry's config, the model builder, the per-batch step, the
per-epoch pictures and sample metrics.

Every epoch the run directory gets `reconstructions.png` (rows of test images alternating with their reconstructions)
and `samples.png` (images drawn from the model), copies of both under `images/`, the same pictures in TensorBoard, and
the metrics of `SampleMetrics` when due. Pictures and metrics draw their randomness from a forked RNG seeded by the
epoch, so they never change the course of training and a resumed run stays identical to an uninterrupted one.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset
from torchvision.utils import make_grid

from pfa.attention.registry import attention_kinds
from pfa.data.fashion_mnist import CLASSES
from pfa.data.images import CHANNELS, load_generation_data
from pfa.data.subsets import train_test_subsets
from pfa.engine.config import arg
from pfa.engine.loop import fit
from pfa.engine.run import Run
from pfa.engine.task import StepResult, Task
from pfa.errors import UserError
from pfa.models.ann_vae import AnnVAE
from pfa.models.fsvae import DISTANCES, FSVAE, HIDDEN_DIMS, hidden_dims_for, input_size_for
from pfa.tasks import TaskSpec, recipe_folder
from pfa.tasks.generation_metrics import SampleMetrics, private_rng
from pfa.tasks.outputs import OutputConfig, write_outputs

RECIPES = recipe_folder("generation")

GRID_COLUMNS = 8
MODELS = ("fsvae", "fsvae-large", "ann-vae")


@dataclass
class GenerationConfig(OutputConfig):
    """Train FSVAE (optionally with PFA) or its ANN VAE baseline to generate images (defaults: FSVAE's recipe)."""

    dataset: str = arg("fashion", "image dataset; picks the recipe pfa/recipes/generation/DATASET.yaml",
                       choices=tuple(CHANNELS))
    model: str = arg("fsvae", "fsvae (32 px), fsvae-large (64 px) or the ANN baseline ann-vae", choices=MODELS)
    attention: str = arg("pfa", "attention on the input spike tensor (pfa.attention.registry); none: plain FSVAE",
                         choices=attention_kinds())
    rank: int = arg(64, "PFA's rank R (connecting factor)")
    time_steps: int = arg(16, "simulation time steps T")
    latent_dim: int = arg(128, "latent bits (FSVAE) / Gaussian dimensions (ANN VAE)")
    k: int = arg(20, "spikes per latent bit; a Bernoulli sample picks one of them")
    input_size: int = arg(32, "image side after resizing: 32 for fsvae, 64 for fsvae-large")
    distance: str = arg("mmd", "FSVAE's prior-posterior distance: mmd (PSP-filtered rates) or kld", choices=DISTANCES)
    scheduled: bool = arg(True, "scheduled sampling in the prior, p rising from 0.1 to 0.3 over the epochs")
    images: int = arg(64, "samples drawn into samples.png each epoch")
    fid_every: int = arg(1, "compute the autoencoder-FID every this many epochs and after the last (0: never)")
    fid_samples: int = arg(5000, "generated images per FID")
    fid_autoencoder: str | None = arg(None, "checkpoint of the FID's feature autoencoder: reused if it exists, "
                                      "else trained and saved there (default RUN_DIR/fid_autoencoder.pth)")
    fid_autoencoder_epochs: int = arg(10, "epochs to train the FID's feature autoencoder when it is created")
    inception_weights: str | None = arg(None, "torch-fidelity's InceptionV3 weights file for IS / Inception-FID")
    epochs: int = arg(150, "number of training epochs")
    batch_size: int = arg(250, "batch size per process")
    optimizer: str = arg("adamw", "optimiser", choices=("adam", "adamw", "sgd"))
    weight_decay: float = arg(1e-3, "weight decay")
    scheduler: str = arg("none", "learning-rate schedule, stepped once per epoch", choices=("cosine", "step", "none"))

    TASK = "generation"
    RECIPES = RECIPES
    FLAG_RECIPES = tuple(CHANNELS)

    @classmethod
    def recipe_name(cls, values: dict[str, Any]) -> str | None:
        return values.get("dataset", cls.dataset)

    UNUSED = ("loss", "tet_lambda")  # the VAE's loss is its own
    RESUME_FREE = ("images", "fid_every", "fid_samples", "fid_autoencoder", "fid_autoencoder_epochs",
                   "inception_weights")

    def validate(self) -> None:
        super().validate()
        for name in ("fid_autoencoder", "inception_weights"):
            path = getattr(self, name)
            if path is not None and Path(path).is_dir():
                raise UserError(f"--{name.replace('_', '-')} {path} is a folder; give a file path (e.g. {path}/x.pth)")
        for name in ("rank", "time_steps", "latent_dim", "k", "images", "fid_autoencoder_epochs"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        if self.fid_every < 0:
            raise UserError(f"--fid-every must be 0 (never) or a positive integer, got {self.fid_every}")
        if self.fid_samples < 2:
            raise UserError(f"--fid-samples must be at least 2 (a covariance needs them), got {self.fid_samples}")
        sizes = tuple(map(input_size_for, HIDDEN_DIMS.values())) if self.model == "ann-vae" else (
            input_size_for(HIDDEN_DIMS[self.model]),)
        if self.input_size not in sizes:
            raise UserError(f"--model {self.model} needs --input-size {' or '.join(map(str, sizes))} (down to FSVAE's "
                            f"2x2 bottleneck), got {self.input_size}")
        if self.model == "ann-vae" and self.attention != "none":
            raise UserError("--model ann-vae has no spike input for PFA; add --attention none")


def describe(cfg: GenerationConfig) -> str:
    """The architecture, for checkpoints: a checkpoint from another one is refused."""
    if cfg.model == "ann-vae":
        return f"AnnVAE(dataset={cfg.dataset}, input={cfg.input_size}, latent={cfg.latent_dim})"
    return (f"FSVAE(model={cfg.model}, dataset={cfg.dataset}, T={cfg.time_steps}, latent={cfg.latent_dim}, k={cfg.k}, "
            f"attention={cfg.attention}, rank={cfg.rank})")


def build_model(cfg: GenerationConfig, batches_per_epoch: int) -> nn.Module:
    """The configured model; the ANN VAE weights its KL term by 1 / batches_per_epoch as FSVAE's authors did."""
    channels = CHANNELS[cfg.dataset]
    if cfg.model == "ann-vae":
        dims = hidden_dims_for(cfg.input_size)
        return AnnVAE(channels, cfg.latent_dim, dims, kld_weight=1 / batches_per_epoch)
    return FSVAE(channels, cfg.latent_dim, cfg.time_steps, cfg.k, HIDDEN_DIMS[cfg.model], cfg.attention, cfg.rank,
                 cfg.distance, cfg.scheduled)


def picture_grid(images: torch.Tensor, columns: int = GRID_COLUMNS) -> torch.Tensor:
    """Images [N, C, H, W] in [-1, 1] -> one [C', H', W'] grid in [0, 1] (torchvision's, 2 px padding)."""
    return make_grid(images.detach().cpu().clamp(-1, 1).add(1).div(2), nrow=columns)


def reconstruction_grid(originals: torch.Tensor, recons: torch.Tensor) -> torch.Tensor:
    """Rows of (up to) 8 originals, each followed by the row of their reconstructions."""
    columns = min(len(originals), GRID_COLUMNS)
    n = len(originals) // columns * columns
    pairs = torch.stack([originals[:n], recons[:n]]).unflatten(1, (-1, columns))
    return picture_grid(pairs.transpose(0, 1).flatten(0, 2), columns)


class GenerationTask(Task):
    """Batches of (images, labels); the model returns (reconstruction, {"loss", "recon_loss", "distance_loss"}),
    has `sample(n)`, `set_epoch(epoch, epochs)` and `clip_weights()` (called after each step)."""

    monitor = "test_loss"
    maximize = False

    def __init__(self, model: nn.Module, cfg: GenerationConfig, metrics: SampleMetrics | None):
        self.model, self.cfg, self.metrics = model, cfg, metrics
        self.shown: tuple[torch.Tensor, torch.Tensor] | None = None

    def train_step(self, model: nn.Module, batch: Any) -> StepResult:
        images = batch[0]
        _, losses = model(images)
        return StepResult(losses["loss"], {k: v.detach() for k, v in losses.items()}, len(images))

    def eval_step(self, model: nn.Module, batch: Any) -> StepResult:
        images = batch[0]
        recon, losses = model(images)
        if self.shown is None:
            keep = min(len(images), 4 * GRID_COLUMNS)
            self.shown = (images[:keep].cpu(), recon[:keep].cpu())
        return StepResult(losses["loss"], losses, len(images))

    def after_optimizer_step(self, model: nn.Module) -> None:
        model.clip_weights()

    def on_epoch_start(self, epoch: int) -> None:
        self.model.set_epoch(epoch, self.cfg.epochs)
        self.shown = None

    def on_epoch_end(self, epoch: int, model: nn.Module, run) -> dict[str, Any] | None:
        if not run.is_main:
            return None
        model.eval()
        with private_rng(run.device, self.cfg.seed + epoch):
            samples = model.sample(self.cfg.images)
            grids = {"reconstructions": reconstruction_grid(*self.shown), "samples": picture_grid(samples)}
            run.log.images(epoch + 1, grids)
            if self.metrics is not None and self.metrics.due(epoch):
                return self.metrics(model, run.dir, run.device)
        return None

    def record(self, epochs_done: int, train: dict[str, float], test: dict[str, float]) -> dict[str, Any]:
        return {"epoch": epochs_done, **train, **{f"test_{k}": v for k, v in test.items()}}



def rebuild(cfg: GenerationConfig) -> tuple[nn.Module, Dataset]:
    """The model of a saved config and the test images, for tools that read checkpoints."""
    train_set, test_set = load_generation_data(cfg.dataset, cfg.data_dir, cfg.input_size)
    return build_model(cfg, math.ceil(len(train_set) / cfg.batch_size)), test_set


def train(cfg: GenerationConfig) -> dict:
    """Train (or with --eval-only evaluate) as configured; returns the last metrics record."""
    train_set, test_set = train_test_subsets(*load_generation_data(cfg.dataset, cfg.data_dir, cfg.input_size), cfg)
    with Run(cfg, name=f"generation-{cfg.dataset}") as run:
        run.check_network(lambda: build_model(cfg, math.ceil(len(train_set) / cfg.batch_size)))
        model = build_model(cfg, math.ceil(len(train_set) / cfg.batch_size)).to(run.device)
        wanted = run.is_main and cfg.fid_every > 0 and not cfg.eval_only
        metrics = SampleMetrics(cfg, CHANNELS[cfg.dataset], train_set, test_set) if wanted else None
        record = fit(run, model, GenerationTask(model, cfg, metrics), train_set, test_set, describe(cfg))
        write_outputs(run, model, test_set, CLASSES if cfg.dataset == "fashion" else None)
    return record


TASK = TaskSpec("generation", GenerationConfig, train, rebuild, script="Generation/main_fsvae.py")
