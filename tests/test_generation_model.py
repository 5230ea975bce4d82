"""FSVAE: the public model's parameter counts, the latent sampling, the autoregressive prior, losses and clipping."""

import pytest
import torch

from pfa.models.ann_vae import AnnVAE
from pfa.models.fsvae import (
    FSVAE,
    HIDDEN_DIMS,
    Prior,
    kld_loss,
    mmd_loss,
    pick_one_of_k,
    scheduled_sampling_probability,
)
from pfa.models.fsvae_layers import postsynaptic_potential
from pfa.tasks.generation import GenerationTask

pytestmark = pytest.mark.usefixtures("one_thread")


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_parameter_counts_match_the_public_fsvae():
    assert trainable(FSVAE(1)) == 4_053_601
    assert trainable(FSVAE(3)) == 4_054_755
    assert trainable(FSVAE(3, hidden_dims=HIDDEN_DIMS["fsvae-large"])) == 6_681_571


def test_pfa_adds_its_own_parameters_only():
    T, C, R = 16, 3, 64
    extra = trainable(FSVAE(C, T=T, attention="pfa", rank=R)) - trainable(FSVAE(C, T=T))
    assert extra == 9 * T * R + R + C * R + R + T * R + R + R


def tiny(**kwargs) -> FSVAE:
    return FSVAE(**{"in_channels": 1, "latent_dim": 6, "T": 4, "k": 5, "attention": "pfa", "rank": 3, **kwargs})


def test_forward_sample_and_gradients():
    torch.manual_seed(0)
    model = tiny()
    images = torch.rand(3, 1, 32, 32) * 2 - 1
    recon, losses = model(images)
    assert recon.shape == images.shape and recon.abs().max() <= 1  # tanh; float32 rounds it to 1 where it saturates
    losses["loss"].backward()
    assert model.attention.spatial.weight.grad.abs().sum() > 0  # the reconstruction reaches PFA through the spikes
    assert model.encoder[0][0][0].weight.grad.abs().sum() > 0
    model.eval()
    samples = model.sample(5)
    assert samples.shape == (5, 1, 32, 32) and samples.abs().max() < 1
    with pytest.raises(ValueError, match=r"expects images \[N, 1, 32, 32\], got \[3, 1, 28, 28\]"):
        model(torch.zeros(3, 1, 28, 28))


def test_pick_one_of_k_takes_one_of_the_k_spikes():
    torch.manual_seed(0)
    spikes = (torch.rand(4, 3, 6, 20) > 0.5).float()
    picked = pick_one_of_k(spikes)
    assert ((spikes == picked[..., None]).any(-1)).all()
    rates = torch.stack([pick_one_of_k(spikes) for _ in range(400)]).mean(0)
    torch.testing.assert_close(rates, spikes.mean(-1), atol=0.12, rtol=0)


def test_posterior_sample_is_one_of_its_k_spikes():
    torch.manual_seed(0)
    model = tiny()
    x = (torch.rand(4, 2, 6) > 0.5).float()
    z, q = model.posterior(x)
    assert z.shape == (4, 2, 6) and q.shape == (4, 2, 6, 5)
    assert ((q == z[..., None]).any(-1)).all()


def test_prior_is_causal_and_sampling_is_autoregressive():
    torch.manual_seed(0)
    prior = Prior(latent_dim=6, k=5).eval()  # eval: tdBN uses running statistics, so no step sees another's batch
    z = (torch.rand(5, 3, 6) > 0.5).float()
    changed = z.clone()
    changed[3:] = 1 - changed[3:]
    p, p_changed = prior(z), prior(changed)
    torch.testing.assert_close(p[:4], p_changed[:4])  # p(z_t | z_<t) for t <= 3 never sees z_3 or later
    assert not torch.equal(p[4:], p_changed[4:])
    torch.manual_seed(1)
    sampled = prior.sample(3, steps=5)
    assert sampled.shape == (5, 3, 6) and set(sampled.unique().tolist()) <= {0.0, 1.0}


def test_scheduled_sampling_feeds_back_the_prior_from_step_5():
    torch.manual_seed(0)
    prior = Prior(latent_dim=6, k=5).train()
    z = (torch.rand(9, 3, 6) > 0.5).float()
    teacher = torch.cat([torch.zeros_like(z[:1]), z[:-1]])
    torch.testing.assert_close(prior._scheduled_inputs(z, 0.0), teacher)
    torch.manual_seed(2)
    fed_back = prior._scheduled_inputs(z, 1.0)
    torch.testing.assert_close(fed_back[:6], teacher[:6])
    other = z.clone()
    other[5:] = 1 - other[5:]
    torch.manual_seed(2)
    torch.testing.assert_close(prior._scheduled_inputs(other, 1.0), fed_back)  # z_5.. are never used at p = 1


def test_scheduled_sampling_probability_rises_from_0_1_to_0_3():
    assert scheduled_sampling_probability(0, 150) == pytest.approx(0.1)
    assert scheduled_sampling_probability(75, 150) == pytest.approx(0.2)
    assert scheduled_sampling_probability(150, 150) == pytest.approx(0.3)
    model = tiny()
    model.set_epoch(30, 150)
    assert model.scheduled_p == pytest.approx(0.14)
    assert tiny(scheduled=False).scheduled_p == 0.0


def test_losses_against_direct_formulas():
    torch.manual_seed(0)
    q = (torch.rand(4, 2, 3, 5) > 0.5).float()
    p = (torch.rand(4, 2, 3, 5) > 0.5).float()
    rate_q, rate_p = q.mean(-1), p.mean(-1)
    psp = postsynaptic_potential
    torch.testing.assert_close(mmd_loss(q, p), ((psp(rate_q) - psp(rate_p)) ** 2).mean())
    expected = 0.0
    for n in range(2):
        total = 0.0
        for t in range(4):
            for c in range(3):
                a, b = rate_q[t, n, c].item(), rate_p[t, n, c].item()
                total += a * torch.log(torch.tensor((a + 0.01) / (b + 0.01))).item()
                total += (1 - a) * torch.log(torch.tensor((1 - a + 0.01) / (1 - b + 0.01))).item()
        expected += total / 2
    assert kld_loss(q, p).item() == pytest.approx(expected, rel=1e-5)


def test_weights_are_clipped_to_4_after_each_step_for_fsvae_only():
    model = tiny()
    with torch.no_grad():
        model.encoder[0][0][0].weight[0, 0, 0, 0] = 10.0
        model.posterior.layers[0][1].bias[0] = -7.0
    GenerationTask(model, cfg=None, metrics=None).after_optimizer_step(model)
    assert max(p.abs().max().item() for p in model.parameters()) == 4.0
    ann = AnnVAE(1, 8)
    with torch.no_grad():
        ann.to_mean.weight[0, 0] = 10.0
    GenerationTask(ann, cfg=None, metrics=None).after_optimizer_step(ann)
    assert ann.to_mean.weight[0, 0].item() == 10.0


def test_ann_vae_shapes_and_large_variant():
    torch.manual_seed(0)
    model = AnnVAE(3, 16, HIDDEN_DIMS["fsvae-large"])
    images = torch.rand(4, 3, 64, 64) * 2 - 1
    recon, losses = model(images)
    assert recon.shape == images.shape and set(losses) == {"loss", "recon_loss", "distance_loss"}
    assert model.eval().sample(2).shape == (2, 3, 64, 64)


def test_eval_sampling_in_one_pass_equals_rerunning_every_prefix():
    torch.manual_seed(0)
    prior = Prior(16, 20)
    with torch.no_grad():
        for module in prior.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(4)
                module.bias.add_(0.3)
    for _ in range(3):
        prior.spikes(torch.rand(5, 8, 16).round())  # non-trivial running statistics
    prior.eval()
    torch.manual_seed(1)
    one_pass = prior.sample(8, 16)
    torch.manual_seed(1)
    z_before = torch.zeros(1, 8, 16)
    with torch.no_grad():
        for _ in range(16):
            z_before = torch.cat([z_before, pick_one_of_k(prior.spikes(z_before)[-1])[None]])
    assert 0.1 < one_pass.mean() < 0.9
    assert torch.equal(one_pass, z_before[1:])
