"""FSVAE (Kamata et al., AAAI 2022): a fully spiking VAE with Bernoulli latent spikes, optionally with PFA on its input.

Images [N, C, H, W] in [-1, 1] are repeated over T steps (direct input), optionally passed through PFA, encoded by
spiking convolutions into a latent spike train x [T, N, L]; a spiking posterior q(z_t | x_<=t, z_<t) and an
autoregressive spiking prior p(z_t | z_<t) each emit k spikes per latent bit, and a bit is sampled by picking one
of its k spikes. The decoder turns z into the membrane potential of a non-firing output layer, squashed by tanh.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer

from pfa.attention.registry import make_attention
from pfa.models.fsvae_layers import MembraneOutput, postsynaptic_potential, run_fresh, spiking_block

HIDDEN_DIMS = {"fsvae": (32, 64, 128, 256), "fsvae-large": (32, 64, 128, 256, 512)}
DISTANCES = ("mmd", "kld")
SCHEDULED_SAMPLING_FROM = 5
KLD_WEIGHT = 1e-4
WEIGHT_BOUND = 4.0


def input_size_for(hidden_dims) -> int:
    """Image side that the stride-2 stages bring down to FSVAE's 2x2 bottleneck."""
    return 2 ** (len(hidden_dims) + 1)


def hidden_dims_for(input_size: int) -> tuple[int, ...]:
    """The stages of FSVAE (32 px) or FSVAE-large (64 px) for an image side."""
    return {input_size_for(dims): dims for dims in HIDDEN_DIMS.values()}[input_size]


def pick_one_of_k(spikes: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """Bernoulli sample of each latent bit: one of its k spikes [..., k], chosen uniformly (or at `index` [..., 1])."""
    if index is None:
        index = torch.randint(spikes.shape[-1], (*spikes.shape[:-1], 1), device=spikes.device)
    return spikes.gather(-1, index).squeeze(-1)


class BernoulliLatent(nn.Module):
    """3 x [linear + tdBN(alpha 2) + LIF] emitting k spikes per latent bit, re-run from rest on each input prefix."""

    def __init__(self, in_features: int, latent_dim: int, k: int):
        super().__init__()
        self.latent_dim, self.k = latent_dim, k
        widths = (in_features, 2 * latent_dim, 4 * latent_dim, k * latent_dim)
        self.layers = nn.Sequential(
            *(spiking_block(nn.Linear(a, b), b, alpha=2.0) for a, b in zip(widths[:-1], widths[1:], strict=True))
        )

    def spikes(self, inputs: torch.Tensor) -> torch.Tensor:
        """[T', N, in_features] -> k spikes per latent bit [T', N, latent_dim, k]."""
        return run_fresh(self.layers, inputs).unflatten(-1, (self.latent_dim, self.k))


class Posterior(BernoulliLatent):
    """q(z_t | x_<=t, z_<t): z is drawn step by step without gradient, then q for all t is recomputed with gradient."""

    def __init__(self, latent_dim: int, k: int):
        super().__init__(2 * latent_dim, latent_dim, k)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, N, L] -> sampled z [T, N, L], q spikes [T, N, L, k]."""
        index = torch.randint(self.k, (*x.shape, 1), device=x.device)
        with torch.no_grad():
            z_before = x.new_zeros(1, *x.shape[1:])
            for t in range(x.shape[0] - 1):
                q_t = self.spikes(torch.cat([x[: t + 1], z_before], -1))[-1]
                z_before = torch.cat([z_before, pick_one_of_k(q_t, index[t])[None]])
        q = self.spikes(torch.cat([x, z_before], -1))
        return pick_one_of_k(q, index), q


class Prior(BernoulliLatent):
    """p(z_t | z_<t), autoregressive over t, with scheduled sampling while training."""

    def __init__(self, latent_dim: int, k: int):
        super().__init__(latent_dim, latent_dim, k)

    def forward(self, z: torch.Tensor, scheduled_p: float = 0.0) -> torch.Tensor:
        """Posterior sample z [T, N, L] -> p spikes [T, N, L, k] for every t given the (fed-back) z_<t."""
        z = z.detach()
        if self.training and scheduled_p > 0:
            z_before = self._scheduled_inputs(z, scheduled_p)
        else:
            z_before = torch.cat([torch.zeros_like(z[:1]), z[:-1]])
        return self.spikes(z_before)

    @torch.no_grad()
    def _scheduled_inputs(self, z: torch.Tensor, p: float) -> torch.Tensor:
        """From t >= 5, with probability p per step, feed back the prior's own guess (mean of k spikes > 0.5)."""
        z_before = torch.zeros_like(z[:1])
        for t in range(z.shape[0] - 1):
            z_t = z[t]
            if t >= SCHEDULED_SAMPLING_FROM and torch.rand(()).item() < p:
                rate = self.spikes(z_before)[-1].mean(-1)
                z_t = (rate + 1e-3 * torch.randn_like(rate) > 0.5).to(z.dtype)
            z_before = torch.cat([z_before, z_t[None]])
        return z_before

    @torch.no_grad()
    def sample(self, n: int, steps: int, device=None) -> torch.Tensor:
        """Run the prior for `steps` steps from z_0 = 0: z [steps, n, L].

        In eval mode (batch norm on running statistics) re-running every growing prefix from rest gives the same spikes
        as one stateful pass, so each step feeds only the newest z: T steps of work instead of T(T+1)/2.
        """
        z_before = torch.zeros(1, n, self.latent_dim, device=device)
        if self.training:
            for _ in range(steps):
                z_before = torch.cat([z_before, pick_one_of_k(self.spikes(z_before)[-1])[None]])
            return z_before[1:]
        functional.reset_net(self.layers)
        z = [z_before]
        for _ in range(steps):
            z.append(pick_one_of_k(self.layers(z[-1]).unflatten(-1, (self.latent_dim, self.k))))
        return torch.cat(z[1:])


def mmd_loss(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between the PSP-filtered Bernoulli rates (mean over k) of posterior and prior."""
    return (postsynaptic_potential(q.mean(-1)) - postsynaptic_potential(p.mean(-1))).square().mean()


def kld_loss(q: torch.Tensor, p: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """KL divergence between Bernoulli rates, summed over time and latent bits, averaged over the batch."""
    rate_q, rate_p = q.mean(-1), p.mean(-1)
    kld = rate_q * torch.log((rate_q + eps) / (rate_p + eps))
    kld = kld + (1 - rate_q) * torch.log((1 - rate_q + eps) / (1 - rate_p + eps))
    return kld.sum((0, 2)).mean()


def scheduled_sampling_probability(epoch: int, epochs: int, start: float = 0.1, end: float = 0.3) -> float:
    """p rising linearly from `start` at epoch 0 towards `end` at epoch `epochs`."""
    return start + (end - start) * epoch / epochs


class FSVAE(nn.Module):
    """Fully spiking VAE; `hidden_dims` of 4 stages for 32 px input (FSVAE), 5 for 64 px (FSVAE-large).

    Args:
        in_channels: image channels; latent_dim: latent bits L; T: time steps; k: spikes per latent bit.
        attention: an attention kind on the input spike tensor ("pfa": PFA(T, in_channels, rank) with the
            unweighted sum of its R terms, as the reference's Generation copy; "none": the plain FSVAE).
        distance: "mmd" (PSP-filtered rates) or "kld" (Bernoulli KL, weighted 1e-4) between posterior and prior.
        scheduled: whether the prior uses scheduled sampling while training (probability set by `set_epoch`).
    """


    def __init__(
        self,
        in_channels: int = 1,
        latent_dim: int = 128,
        T: int = 16,
        k: int = 20,
        hidden_dims=HIDDEN_DIMS["fsvae"],
        attention: str = "none",
        rank: int = 64,
        distance: str = "mmd",
        scheduled: bool = True,
    ):
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"FSVAE: distance must be one of {DISTANCES}, got {distance!r}")
        self.in_channels, self.latent_dim, self.T, self.k = in_channels, latent_dim, T, k
        self.hidden_dims, self.distance, self.scheduled = tuple(hidden_dims), distance, scheduled
        self.input_size = input_size_for(self.hidden_dims)
        self.scheduled_p = 0.0
        self.attention = make_attention(attention, T, in_channels, rank=rank, weights="sum")

        channels = (in_channels, *self.hidden_dims)
        self.encoder = nn.Sequential(
            *(spiking_block(nn.Conv2d(a, b, 3, 2, 1), b) for a, b in zip(channels[:-1], channels[1:], strict=True))
        )
        bottleneck = self.hidden_dims[-1] * 4
        self.before_latent = spiking_block(nn.Linear(bottleneck, latent_dim), latent_dim)
        self.posterior = Posterior(latent_dim, k)
        self.prior = Prior(latent_dim, k)

        self.decoder_input = spiking_block(nn.Linear(latent_dim, bottleneck), bottleneck)
        reversed_dims = self.hidden_dims[::-1] + self.hidden_dims[:1]
        self.decoder = nn.Sequential(
            *(
                spiking_block(nn.ConvTranspose2d(a, b, 3, 2, 1, output_padding=1), b)
                for a, b in zip(reversed_dims[:-1], reversed_dims[1:], strict=True)
            )
        )
        self.to_image = nn.Sequential(
            layer.SeqToANNContainer(nn.ConvTranspose2d(self.hidden_dims[0], in_channels, 3, padding=1)),
            MembraneOutput(),
        )

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Scheduled-sampling probability for this epoch (used only when `scheduled`)."""
        self.scheduled_p = scheduled_sampling_probability(epoch, epochs) if self.scheduled else 0.0

    @torch.no_grad()
    def clip_weights(self) -> None:
        """FSVAE's weight clipping to [-4, 4], after every optimiser step."""
        for p in self.parameters():
            p.clamp_(-WEIGHT_BOUND, WEIGHT_BOUND)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images [N, C, H, W] -> posterior sample z [T, N, L], q spikes and p spikes [T, N, L, k]."""
        self._check_images(images)
        spikes_in = self.attention(images.unsqueeze(0).repeat(self.T, 1, 1, 1, 1))
        features = run_fresh(self.encoder, spikes_in).flatten(2)
        z, q = self.posterior(run_fresh(self.before_latent, features))
        return z, q, self.prior(z, self.scheduled_p)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent spikes z [T, N, L] -> images [N, C, H, W] in (-1, 1)."""
        h = run_fresh(self.decoder_input, z).unflatten(-1, (self.hidden_dims[-1], 2, 2))
        return torch.tanh(self.to_image(run_fresh(self.decoder, h)))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Images -> (reconstruction, {"loss", "recon_loss", "distance_loss"}): MSE + MMD, or MSE + 1e-4 KLD."""
        z, q, p = self.encode(images)
        recon = self.decode(z)
        recon_loss = F.mse_loss(recon, images)
        if self.distance == "mmd":
            distance = mmd_loss(q, p)
            loss = recon_loss + distance
        else:
            distance = kld_loss(q, p)
            loss = recon_loss + KLD_WEIGHT * distance
        return recon, {"loss": loss, "recon_loss": recon_loss, "distance_loss": distance}

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """n images drawn from the prior."""
        return self.decode(self.prior.sample(n, self.T, device=next(self.parameters()).device))

    def _check_images(self, images: torch.Tensor) -> None:
        expected = (self.in_channels, self.input_size, self.input_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"FSVAE expects images [N, {', '.join(map(str, expected))}], got {list(images.shape)}")
