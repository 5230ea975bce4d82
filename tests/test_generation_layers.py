"""FSVAE's building blocks against small hand-written references of the public FSVAE code's behaviour (time last)."""

import torch
from reference_snn import fsvae_lif

from pfa.models.fsvae_layers import MembraneOutput, TdBatchNorm, fsvae_neuron, postsynaptic_potential


def test_neuron_matches_fsvae_lif_in_spikes_and_gradients():
    torch.manual_seed(0)
    x = (torch.randn(6, 3, 5, 8, dtype=torch.float64) * 0.4).requires_grad_()  # time last, as FSVAE
    weights = torch.randn(6, 3, 5, 8, dtype=torch.float64)
    expected = fsvae_lif(x)
    (grad_expected,) = torch.autograd.grad((expected * weights).sum(), x)

    neuron = fsvae_neuron()
    spikes = neuron(x.permute(3, 0, 1, 2)).permute(1, 2, 3, 0)
    (grad,) = torch.autograd.grad((spikes * weights).sum(), x)
    assert 0.05 < expected.mean() < 0.95
    torch.testing.assert_close(spikes, expected)
    torch.testing.assert_close(grad, grad_expected)


def hand_td_batch_norm(x, weight, bias, alpha, eps=1e-5):
    """FSVAE's tdBN on time-last x [N, C, H, W, T]: statistics over (N, H, W, T), alpha * 0.2 * x_hat * w + b."""
    dims = (0, 2, 3, 4)
    mean, var = x.mean(dims, keepdim=True), x.var(dims, unbiased=False, keepdim=True)
    shape = (1, -1, 1, 1, 1)
    return alpha * 0.2 * (x - mean) / torch.sqrt(var + eps) * weight.view(shape) + bias.view(shape)


def test_td_batch_norm_matches_fsvae_in_training_and_eval():
    torch.manual_seed(1)
    x = torch.randn(4, 3, 5, 5, 6, dtype=torch.float64) * 2 + 1  # [N, C, H, W, T]
    bn = TdBatchNorm(3, alpha=2.0).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    time_first = x.permute(4, 0, 1, 2, 3)
    out = bn(time_first).permute(1, 2, 3, 4, 0)
    torch.testing.assert_close(out, hand_td_batch_norm(x, bn.weight, bn.bias, 2.0))

    n = x.numel() / 3
    unbiased = x.var((0, 2, 3, 4), unbiased=False) * n / (n - 1)
    torch.testing.assert_close(bn.running_mean, 0.1 * x.mean((0, 2, 3, 4)))
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * unbiased)

    bn.eval()
    shape = (1, -1, 1, 1, 1)
    x_hat = (x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + 1e-5)
    expected = 2.0 * 0.2 * x_hat * bn.weight.view(shape) + bn.bias.view(shape)
    torch.testing.assert_close(bn(time_first).permute(1, 2, 3, 4, 0), expected)


def test_td_batch_norm_on_linear_features():
    x = torch.randn(5, 7, 4, dtype=torch.float64)  # [T, N, features]
    bn = TdBatchNorm(4).double()
    flat = x.reshape(-1, 4)
    expected = 0.2 * (flat - flat.mean(0)) / torch.sqrt(flat.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(bn(x), expected.view_as(x))


def test_membrane_output_is_a_leaky_sum_ending_at_the_last_step():
    x = torch.randn(16, 2, 3, 4, 4, dtype=torch.float64)
    v = torch.zeros_like(x[0])
    for x_t in x:
        v = 0.8 * v + x_t
    torch.testing.assert_close(MembraneOutput()(x), v)
    assert MembraneOutput()(x).shape == (2, 3, 4, 4)


def test_postsynaptic_potential_closed_form():
    x = torch.rand(7, 3, 2, dtype=torch.float64)
    t = torch.arange(7)
    kernel = torch.where(t[:, None] >= t[None, :], 0.5 ** (t[:, None] - t[None, :] + 1.0), 0.0).double()
    torch.testing.assert_close(postsynaptic_potential(x), torch.einsum("ts,sab->tab", kernel, x))
