"""The ANN counterparts of FSVAE's architecture: a Gaussian VAE (the paper's baseline) and a plain autoencoder (the
feature extractor of the autoencoder-FID). Conv + BN + LeakyReLU where FSVAE has conv + tdBN + LIF."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from pfa.models.fsvae import input_size_for


def conv_encoder(in_channels: int, hidden_dims) -> nn.Sequential:
    """Stride-2 conv + BN + LeakyReLU stages down to a 2x2 map, flattened to hidden_dims[-1] * 4 features."""
    channels = (in_channels, *hidden_dims)
    stages = [
        nn.Sequential(nn.Conv2d(a, b, 3, 2, 1), nn.BatchNorm2d(b), nn.LeakyReLU())
        for a, b in zip(channels[:-1], channels[1:], strict=True)
    ]
    return nn.Sequential(*stages, nn.Flatten())


def conv_decoder(latent_dim: int, out_channels: int, hidden_dims) -> nn.Sequential:
    """latent -> 2x2 map -> stride-2 transposed conv + BN + LeakyReLU stages -> conv to `out_channels` -> tanh."""
    dims = tuple(hidden_dims)[::-1] + tuple(hidden_dims)[:1]
    stages = [
        nn.Sequential(nn.ConvTranspose2d(a, b, 3, 2, 1, output_padding=1), nn.BatchNorm2d(b), nn.LeakyReLU())
        for a, b in zip(dims[:-1], dims[1:], strict=True)
    ]
    return nn.Sequential(
        nn.Linear(latent_dim, dims[0] * 4),
        nn.Unflatten(1, (dims[0], 2, 2)),
        *stages,
        nn.ConvTranspose2d(dims[-1], out_channels, 3, padding=1),
        nn.Tanh(),
    )


class ConvAutoencoder(nn.Module):
    """Deterministic autoencoder; `encode` gives the features of the autoencoder-FID."""

    def __init__(self, in_channels: int, latent_dim: int, hidden_dims=(32, 64, 128, 256)):
        super().__init__()
        self.input_size = input_size_for(hidden_dims)
        self.encoder = nn.Sequential(conv_encoder(in_channels, hidden_dims), nn.Linear(hidden_dims[-1] * 4, latent_dim))
        self.decoder = conv_decoder(latent_dim, in_channels, hidden_dims)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(images))


class AnnVAE(nn.Module):
    """Gaussian VAE with FSVAE's layer sizes; loss = MSE + kld_weight * KL(N(mu, sigma) || N(0, 1)).

    The FSVAE authors' baseline weights the KL term by 1 / (batches per epoch); the training task passes that.
    """

    def __init__(self, in_channels: int = 1, latent_dim: int = 128, hidden_dims=(32, 64, 128, 256), kld_weight=1e-3):
        super().__init__()
        self.latent_dim, self.kld_weight = latent_dim, kld_weight
        self.input_size = input_size_for(hidden_dims)
        self.encoder = conv_encoder(in_channels, hidden_dims)
        self.to_mean = nn.Linear(hidden_dims[-1] * 4, latent_dim)
        self.to_log_var = nn.Linear(hidden_dims[-1] * 4, latent_dim)
        self.decoder = conv_decoder(latent_dim, in_channels, hidden_dims)

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Nothing depends on the epoch here; present so both model families train through one task."""

    def clip_weights(self) -> None:
        """No clipping for the ANN baseline; present so both model families train through one task."""

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Images -> (reconstruction, {"loss", "recon_loss", "distance_loss"}); the distance is the KL term."""
        features = self.encoder(images)
        mean, log_var = self.to_mean(features), self.to_log_var(features)
        recon = self.decoder(mean + torch.randn_like(mean) * torch.exp(0.5 * log_var))
        recon_loss = F.mse_loss(recon, images)
        kld = (-0.5 * (1 + log_var - mean.square() - log_var.exp()).sum(1)).mean()
        return recon, {"loss": recon_loss + self.kld_weight * kld, "recon_loss": recon_loss, "distance_loss": kld}

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        z = torch.randn(n, self.latent_dim, device=self.to_mean.weight.device)
        return self.decoder(z)
