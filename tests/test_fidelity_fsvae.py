"""Whole-network fidelity: our FSVAE with PFA against a transcription of the reference's (Generation/fsvae_models,
FullySpikingVAE's behaviour), in its own time-last layout.

The reference keeps time last: images [N, C, H, W] are repeated into [N, C, H, W, T]; PFA is the Generation copy (a
per-rank loop summing the R terms unweighted, fused by multiplication); convolutions are 3-D with (k, k, 1) kernels;
tdBN normalises over (N, H, W, T) and scales by alpha * 0.2; its LIF decays by 0.25, fires at u > 0.2, keeps the reset
in the graph and has a rectangle surrogate centred at 0. The posterior samples z step by step without gradient
(re-running its layers on every prefix), then recomputes q for all steps with gradient and takes the same spikes;
the prior sees [0, z_1 .. z_{T-1}]. With T < 6 the prior's scheduled sampling (from t = 5) never fires: left out.
Sizes: the reference's hidden dims (32, 64, 128, 256) at 32 px and 3 channels, with latent 8, k 4, T 4, R 8.
"""

import torch
import torch.nn.functional as F
from reference_snn import Weights, assert_close, batch_norm, fsvae_lif, per_rank_pfa

from pfa.models.fsvae import FSVAE

HIDDEN = (32, 64, 128, 256)


def block(x, w: Weights, op, out, alpha=1.0):
    """op -> tdBN(alpha) -> LIF, on time-last x."""
    gamma, beta = w.take(out), w.take(out)
    return fsvae_lif(batch_norm(op(x), gamma, beta, scale=alpha * 0.2))


def linear_t(w: Weights, n_in, n_out):
    """tdLinear on [N, features, T] (its tdBN sees [N, features, 1, 1, T]: the same statistics)."""
    weight, bias = w.take(n_out, n_in), w.take(n_out)
    return lambda x: F.linear(x.transpose(1, 2), weight, bias).transpose(1, 2)


def conv3d(w: Weights, n_in, n_out):
    """3x3 stride-2 convolution as a (3, 3, 1) Conv3d on [N, C, H, W, T]."""
    weight, bias = w.take(n_out, n_in, 3, 3), w.take(n_out)
    return lambda x: F.conv3d(x, weight.unsqueeze(-1), bias, stride=(2, 2, 1), padding=(1, 1, 0))


def deconv3d(w: Weights, n_in, n_out, stride=2):
    weight, bias = w.take(n_in, n_out, 3, 3), w.take(n_out)
    extra = (stride - 1, stride - 1, 0)
    return lambda x: F.conv_transpose3d(x, weight.unsqueeze(-1), bias, (stride, stride, 1), (1, 1, 0), extra)


def bernoulli_layers(w: Weights, n_in, latent, k):
    """3 x [tdLinear + tdBN(alpha 2) + LIF], widths n_in -> 2L -> 4L -> kL."""
    widths = (n_in, 2 * latent, 4 * latent, k * latent)
    layers = [(linear_t(w, a, b), b, w.take(b), w.take(b)) for a, b in zip(widths[:-1], widths[1:], strict=True)]

    def run(x):
        for op, _, gamma, beta in layers:
            x = fsvae_lif(batch_norm(op(x), gamma, beta, scale=2 * 0.2))
        return x

    return run


def psp(x):
    """FSVAE's synaptic filter over the last axis: s_t = s_{t-1} + (x_t - s_{t-1}) / 2."""
    s, out = torch.zeros_like(x[..., 0]), []
    for t in range(x.shape[-1]):
        s = s + (x[..., t] - s) / 2
        out.append(s)
    return torch.stack(out, -1)


def reference_fsvae(images, w: Weights, T, latent, k, rank, indices):
    """images [N, C, 32, 32], spike indices [T, N, latent] -> (reconstruction, loss, q [N, L, k, T], p)."""
    N, C = images.shape[:2]
    x = images.unsqueeze(-1).repeat(1, 1, 1, 1, T)
    pfa = w.pfa(T, C, rank)
    x = per_rank_pfa(x.permute(0, 4, 1, 2, 3), pfa, "mul", 1.0).permute(0, 2, 3, 4, 1)
    channels = (C, *HIDDEN)
    for a, b in zip(channels[:-1], channels[1:], strict=True):
        x = block(x, w, conv3d(w, a, b), b)
    x = block(x.flatten(1, 3), w, linear_t(w, 4 * HIDDEN[-1], latent), latent)  # [N, L, T]

    posterior = bernoulli_layers(w, 2 * latent, latent, k)
    prior = bernoulli_layers(w, latent, latent, k)

    def pick(spikes, t):  # spikes [N, L * k] -> the chosen one of each bit's k spikes, [N, L, 1]
        return spikes.view(N, latent, k).gather(-1, indices[t].unsqueeze(-1))

    with torch.no_grad():
        z_before = torch.zeros(N, latent, 1, dtype=x.dtype)
        for t in range(T - 1):
            q_t = posterior(torch.cat([x[..., : t + 1], z_before], 1))[..., -1]
            z_before = torch.cat([z_before, pick(q_t, t)], -1)
    q = posterior(torch.cat([x, z_before], 1))
    z = torch.cat([pick(q[..., t], t) for t in range(T)], -1)  # [N, L, T]
    p = prior(torch.cat([torch.zeros_like(z[..., :1]), z.detach()[..., :-1]], -1))

    h = block(z, w, linear_t(w, latent, 4 * HIDDEN[-1]), 4 * HIDDEN[-1]).view(N, HIDDEN[-1], 2, 2, T)
    dims = (*HIDDEN[::-1], HIDDEN[0])
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        h = block(h, w, deconv3d(w, a, b), b)
    out = deconv3d(w, HIDDEN[0], C, stride=1)(h)
    recon = torch.tanh((out * 0.8 ** torch.arange(T - 1, -1, -1, dtype=out.dtype)).sum(-1))

    q, p = q.view(N, latent, k, T), p.view(N, latent, k, T)
    mmd = ((psp(q.mean(2)) - psp(p.mean(2))) ** 2).mean()
    return recon, F.mse_loss(recon, images) + mmd, q, p


def test_fsvae_with_pfa_equals_the_reference_forward_and_gradients(monkeypatch):
    T, N, C, latent, k, rank = 4, 2, 3, 8, 4, 8
    torch.manual_seed(0)
    model = FSVAE(C, latent, T, k, HIDDEN, attention="pfa", rank=rank).double()
    images = (torch.rand(N, C, 32, 32, dtype=torch.float64) * 2 - 1).requires_grad_()

    drawn, encoded = [], []  # the posterior's sampling indices (drawn once, given to the transcription); q and p
    randint, encode = torch.randint, model.encode
    monkeypatch.setattr(torch, "randint", lambda *a, **kw: drawn.append(randint(*a, **kw)) or drawn[-1])
    monkeypatch.setattr(model, "encode", lambda x: encoded.append(encode(x)) or encoded[-1])
    recon, losses = model(images)
    monkeypatch.undo()
    losses["loss"].backward()
    assert len(drawn) == 1 and drawn[0].shape == (T, N, latent, 1)

    w = Weights(model)
    images_ref = images.detach().clone().requires_grad_()
    recon_ref, loss_ref, q_ref, p_ref = reference_fsvae(images_ref, w, T, latent, k, rank, drawn[0].squeeze(-1))
    loss_ref.backward()

    _, q, p = encoded[0]
    assert q.sum() > 0 and p.sum() > 0, "silent latent layers: the comparison would be weak"
    assert torch.equal(q.permute(1, 2, 3, 0), q_ref) and torch.equal(p.permute(1, 2, 3, 0), p_ref)
    assert_close(recon, recon_ref, "reconstruction", tol=1e-12)
    assert_close(losses["loss"], loss_ref, "loss", tol=1e-12)
    assert_close(images.grad, images_ref.grad, "input gradient")
    for name, grad, grad_ref in w.grads():
        assert_close(grad, grad_ref, name)
