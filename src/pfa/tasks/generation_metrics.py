"""Sample-quality metrics for generative models of images in [-1, 1].

- Autoencoder-FID (FSVAE's own metric, works offline): the Frechet distance between latent features of generated and
  test images, taken from a small conv autoencoder trained on the same dataset; the trained autoencoder and the test
  set's feature statistics live in one checkpoint file that later runs reuse.
- Inception score and Inception-FID through torchmetrics (+ torch-fidelity), only when the InceptionV3 weights file is
  on disk: nothing is ever downloaded, and a missing piece gives one message instead of an error.
"""

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import linalg
from torch.utils.data import DataLoader, Dataset

from pfa.engine.checkpoint import read_checkpoint, save_checkpoint
from pfa.errors import UserError
from pfa.models.ann_vae import ConvAutoencoder
from pfa.models.fsvae import hidden_dims_for

INCEPTION_WEIGHTS_NAME = "weights-inception-2015-12-05-6726825d.pth"


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features [M, D] (M >= 2)."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (round-off negative eigenvalues clipped to 0)."""
    values, vectors = linalg.eigh(matrix)
    return (vectors * np.sqrt(values.clip(min=0))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians.

    Tr((S1 S2)^(1/2)) is the sum of the square roots of the eigenvalues of R S2 R with R = S1^(1/2): a symmetric
    problem, so singular covariances (few samples, dead features) need no special case.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    root1 = psd_sqrt(sigma1)
    cross = np.sqrt(linalg.eigvalsh(root1 @ sigma2 @ root1).clip(min=0)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * cross)


def fid_autoencoder_for(in_channels: int, input_size: int) -> ConvAutoencoder:
    """FSVAE's feature extractors: latent 64 for 1-channel data, 128 for 3 channels; 5 stages for 64 px input."""
    latent_dim = 64 if in_channels == 1 else 128
    hidden_dims = hidden_dims_for(input_size)
    return ConvAutoencoder(in_channels, latent_dim, hidden_dims)


@torch.no_grad()
def encode_all(autoencoder: ConvAutoencoder, batches: Iterable[torch.Tensor], device) -> np.ndarray:
    autoencoder.eval()
    return np.concatenate([autoencoder.encode(x.to(device)).cpu().double().numpy() for x in batches])


def images_of(loader) -> Iterable[torch.Tensor]:
    """The image tensors of an (image, label) loader."""
    return (batch[0] for batch in loader)


class AutoencoderFID:
    """Autoencoder-FID against the test set's feature statistics.

    `load_or_train` reuses `path` when it exists and was made for this image shape, else trains the autoencoder
    (AdamW 1e-3, MSE, as FSVAE's authors did) on `train_loader` for `epochs` and stores it with the statistics of
    `test_loader`.
    """

    def __init__(self, autoencoder: ConvAutoencoder, mean: np.ndarray, cov: np.ndarray, device):
        self.autoencoder, self.mean, self.cov, self.device = autoencoder.to(device).eval(), mean, cov, device

    @classmethod
    def load_or_train(cls, path, in_channels, input_size, train_loader, test_loader, epochs, device, log=print):
        path = Path(path)
        autoencoder = fid_autoencoder_for(in_channels, input_size).to(device)
        if path.is_file():
            state = read_checkpoint(path)
            shape = state.get("image_shape")
            if shape != [in_channels, input_size, input_size]:
                raise UserError(
                    f"autoencoder-FID checkpoint {path} was made for images {shape}, this run has "
                    f"{[in_channels, input_size, input_size]}; remove it or pass another --fid-autoencoder path"
                )
            autoencoder.load_state_dict(state["model"])
            log(f"autoencoder-FID: reusing {path}")
            return cls(autoencoder, state["mean"].numpy(), state["cov"].numpy(), device)
        log(f"autoencoder-FID: training the feature autoencoder for {epochs} epoch(s) -> {path}")
        train_autoencoder(autoencoder, train_loader, epochs, device)
        mean, cov = feature_statistics(encode_all(autoencoder, images_of(test_loader), device))
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(
            path,
            {
                "model": autoencoder.state_dict(),
                "image_shape": [in_channels, input_size, input_size],
                "mean": torch.from_numpy(mean),
                "cov": torch.from_numpy(cov),
            },
        )
        return cls(autoencoder, mean, cov, device)

    def __call__(self, batches: Iterable[torch.Tensor]) -> float:
        """Distance of the images in `batches` (each [B, C, H, W] in [-1, 1]) from the test set."""
        mean, cov = feature_statistics(encode_all(self.autoencoder, batches, self.device))
        return frechet_distance(mean, cov, self.mean, self.cov)


@torch.enable_grad()
def train_autoencoder(autoencoder: ConvAutoencoder, loader, epochs: int, device) -> float:
    """Plain reconstruction training; returns the last epoch's mean MSE."""
    optimizer = torch.optim.AdamW(autoencoder.parameters(), lr=1e-3)
    autoencoder.train()
    mean_loss = float("nan")
    for _ in range(epochs):
        total, count = 0.0, 0
        for images in images_of(loader):
            images = images.to(device)
            loss = F.mse_loss(autoencoder(images), images)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(images), count + len(images)
        mean_loss = total / count
    return mean_loss


def generated_batches(sample: Callable[[int], torch.Tensor], total: int, batch_size: int) -> Iterable[torch.Tensor]:
    """`total` images from `sample(n)`, in batches of at most `batch_size`."""
    for start in range(0, total, batch_size):
        yield sample(min(batch_size, total - start))


def find_inception_weights(path: str | None) -> tuple[str | None, str | None]:
    """(weights path, None) when IS / Inception-FID can run, else (None, one line on how to enable them)."""
    how = (
        "pip install torchmetrics torch-fidelity and put torch-fidelity's InceptionV3 file "
        f"{INCEPTION_WEIGHTS_NAME} at --inception-weights PATH (or in {Path(torch.hub.get_dir()) / 'checkpoints'})"
    )
    candidate = Path(path) if path else Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_NAME
    if not candidate.is_file():
        return None, f"Inception score / Inception-FID skipped: no weights at {candidate}; to enable them, {how}"
    try:
        import torch_fidelity  # noqa: F401
        import torchmetrics  # noqa: F401
    except ImportError as e:
        return None, f"Inception score / Inception-FID skipped: {e.name} is not installed; to enable them, {how}"
    return os.fspath(candidate), None


@torch.no_grad()
def inception_metrics(weights: str, fake: Iterable[torch.Tensor], real: Iterable[torch.Tensor], device) -> dict:
    """Inception score (mean, std) of `fake` and Inception-FID between `fake` and `real`, via torchmetrics."""
    from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
    from torchmetrics.image.inception import InceptionScore

    fid = FrechetInceptionDistance(normalize=True, feature_extractor_weights_path=weights).to(device)
    logits = NoTrainInceptionV3(
        name="inception-v3-compat", features_list=["logits_unbiased"], feature_extractor_weights_path=weights
    )
    score = InceptionScore(feature=logits, normalize=True).to(device)
    def rgb(images: torch.Tensor) -> torch.Tensor:
        return ((images.to(device) + 1) / 2).clamp(0, 1).expand(-1, 3, -1, -1)

    for images in real:
        fid.update(rgb(images), real=True)
    for images in fake:
        fid.update(rgb(images), real=False)
        score.update(rgb(images))
    is_mean, is_std = score.compute()
    fid_value = fid.compute().item()
    return {"inception_score": is_mean.item(), "inception_score_std": is_std.item(), "inception_fid": fid_value}


@contextlib.contextmanager
def private_rng(device: torch.device, seed: int):
    """Random numbers from a stream seeded with `seed`; the run's own RNG state is restored afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


class SampleMetrics:
    """Autoencoder-FID (and IS / Inception-FID when their weights are on disk) of `samples` generated images."""

    def __init__(self, cfg, in_channels: int, train_set: Dataset, test_set: Dataset, log=print):
        """cfg: the generation config (fid_* fields, inception_weights, batch_size, workers, seed, epochs)."""
        self.cfg, self.in_channels, self.log = cfg, in_channels, log
        self.train_set, self.test_set = train_set, test_set
        self.fid = None
        self.inception_weights, message = find_inception_weights(cfg.inception_weights)
        if message:
            log(message)

    def due(self, epoch: int) -> bool:
        every = self.cfg.fid_every
        return every > 0 and ((epoch + 1) % every == 0 or epoch + 1 == self.cfg.epochs)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.cfg.batch_size, shuffle=shuffle, num_workers=self.cfg.workers)

    def autoencoder_fid(self, run_dir: Path, device) -> AutoencoderFID:
        if self.fid is None:
            path = Path(self.cfg.fid_autoencoder or run_dir / "fid_autoencoder.pth")
            with private_rng(device, self.cfg.seed):
                self.fid = AutoencoderFID.load_or_train(
                    path, self.in_channels, self.cfg.input_size, self._loader(self.train_set, True),
                    self._loader(self.test_set, False), self.cfg.fid_autoencoder_epochs, device, self.log,
                )
        return self.fid

    def __call__(self, model: nn.Module, run_dir: Path, device) -> dict[str, float]:
        fid = self.autoencoder_fid(run_dir, device)
        batches = [x.cpu() for x in generated_batches(model.sample, self.cfg.fid_samples, self.cfg.batch_size)]
        metrics = {"autoencoder_fid": fid(batches)}
        if self.inception_weights:
            real = images_of(self._loader(self.test_set, False))
            metrics.update(inception_metrics(self.inception_weights, batches, real, device))
        return metrics
