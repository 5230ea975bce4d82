"""The reference code's building blocks, transcribed from its behaviour for the whole-network fidelity tests.

Plain torch and nothing from `pfa`: a per-rank-loop PFA in the reference's [N, T, C, H, W] order, the old spikingjelly
multi-step LIF (ATan surrogate), FSVAE's own LIF (rectangle surrogate centred at 0), batch norm written out, and
`Weights`, which hands a copy of our parameters to a transcription in the transcription's own order.
"""

import math

import torch
import torch.nn.functional as F


class _ATanSpike(torch.autograd.Function):
    """heaviside(x) (1 where x >= 0); backward alpha / 2 / (1 + (pi / 2 * alpha * x)^2), spikingjelly's ATan."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.alpha / 2 / (1 + (math.pi / 2 * ctx.alpha * x) ** 2), None


def multistep_lif(x_seq, detach_reset, tau=2.0, v_threshold=1.0, v_reset=0.0, alpha=2.0):
    """spikingjelly's (old) MultiStepLIFNode over [T, ...]: charge with decay_input, fire, hard reset."""
    v, spikes = torch.zeros_like(x_seq[0]), []
    for x in x_seq:
        h = v + (x - (v - v_reset)) / tau
        s = _ATanSpike.apply(h - v_threshold, alpha)
        s_reset = s.detach() if detach_reset else s
        v = h * (1 - s_reset) + v_reset * s_reset
        spikes.append(s)
    return torch.stack(spikes)


class _RectangleSpike(torch.autograd.Function):
    """FSVAE's spike: u > 0.2; backward 1[|u| < 0.5] / (2 * 0.5) (centred at 0, not at the threshold)."""

    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return (u > 0.2).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        return grad * (u.abs() < 0.5).to(u.dtype) / (2 * 0.5)


def fsvae_lif_steps(steps):
    """FSVAE's LIF over a sequence of steps: u_t = 0.25 u_{t-1} (1 - o_{t-1}) + x_t, o_t = spike(u_t), reset kept in
    the graph; returns the list of spikes and the membrane after the last reset."""
    u = o = None
    spikes = []
    for x_t in steps:
        u = x_t if u is None else 0.25 * u * (1 - o) + x_t
        o = _RectangleSpike.apply(u)
        spikes.append(o)
    return spikes, u * (1 - o)


def fsvae_lif(x):
    """FSVAE's LIF on time-last [..., T]."""
    return torch.stack(fsvae_lif_steps(x.unbind(-1))[0], -1)


def dropout(x, p):
    """Dropout's law, keep with probability 1 - p and scale by 1 / (1 - p), drawn from a uniform number per element
    (as pfa.lif.layers.Dropout draws it, so that a shared seed gives both sides the same mask)."""
    return x * (torch.rand_like(x) >= p) / (1 - p)


def batch_norm(x, weight, bias, channel_dim=1, scale=1.0, eps=1e-5):
    """Training-mode batch norm: statistics per channel over every other axis (biased variance), then
    scale * normalised * weight + bias (scale = alpha * V_th in FSVAE's tdBN)."""
    dims = [d for d in range(x.dim()) if d != channel_dim]
    shape = [-1 if d == channel_dim else 1 for d in range(x.dim())]
    mean, var = x.mean(dims, keepdim=True), x.var(dims, unbiased=False, keepdim=True)
    return scale * (x - mean) / torch.sqrt(var + eps) * weight.view(shape) + bias.view(shape)


def per_rank_pfa(x, pfa, fusion, term_weight):
    """The reference's TCSAModule on x [N, T, C, H, W]: one full [N, T, C, H, W] term per rank, summed with
    `term_weight` (1/R in the CIFAR copy, 1 in the FMNIST and Generation copies), then relu(A * X) or relu(A + X).

    `pfa`: (TS_conv weight, bias, TC_FC weight, bias, SC_FC weight, bias), the reference's names."""
    conv_w, conv_b, tc_w, tc_b, sc_w, sc_b = pfa
    N, T, C, H, W = x.shape
    ts = torch.sigmoid(F.conv2d(x.mean(2), conv_w, conv_b, padding=conv_w.shape[-1] // 2)).flatten(2)  # [N, R, HW]
    pooled = x.mean((3, 4))  # [N, T, C]
    tc = torch.sigmoid(F.linear(pooled, tc_w, tc_b))  # [N, T, R]: temporal factors
    sc = torch.sigmoid(F.linear(pooled.transpose(1, 2), sc_w, sc_b))  # [N, C, R]: channel factors
    result = torch.zeros_like(x)
    for r in range(conv_w.shape[0]):
        term = tc[:, :, r, None, None, None] * sc[:, None, :, r, None, None] * ts[:, r].view(N, 1, 1, H, W)
        result = result + term_weight * term
    return torch.relu(result * x if fusion == "mul" else result + x)


class Weights:
    """Our model's parameters cloned as leaves, handed out by `take` in registration order with their shape checked
    against what the transcription expects; `grads` pairs each of our gradients with the transcription's."""

    def __init__(self, model):
        self.named = list(model.named_parameters())
        self.leaves = [p.detach().clone().requires_grad_() for _, p in self.named]
        self.used, self.unused = 0, set()

    def take(self, *shape):
        if self.used == len(self.named):
            raise AssertionError(f"the transcription wants a parameter of shape {shape}; ours has no more")
        name, leaf = self.named[self.used][0], self.leaves[self.used]
        assert tuple(leaf.shape) == shape, f"{name}: the transcription expects {shape}, ours is {tuple(leaf.shape)}"
        self.used += 1
        return leaf

    def pfa(self, T, C, rank, kernel_size=3):
        """PFA's parameters; its rank logits have no counterpart (the reference's weights are constants) and must
        still be at initialisation."""
        logits = self.take(rank)
        assert torch.equal(logits, torch.ones_like(logits)), "PFA's rank logits moved from initialisation"
        self.unused.add(self.named[self.used - 1][0])
        return (self.take(rank, T, kernel_size, kernel_size), self.take(rank), self.take(rank, C), self.take(rank),
                self.take(rank, T), self.take(rank))

    def grads(self):
        assert self.used == len(self.named), f"the transcription left {self.named[self.used][0]} and more unused"
        return [(name, p.grad, leaf.grad) for (name, p), leaf in zip(self.named, self.leaves, strict=True)
                if name not in self.unused]


def assert_close(ours, reference, what, tol=1e-5, floor=1e-12):
    """max |ours - reference| <= tol * max |reference| + floor (float64 round-off on gradients that are zero in exact
    arithmetic, e.g. of a bias followed by batch norm)."""
    assert ours is not None and reference is not None, f"{what}: a gradient is missing"
    scale = reference.abs().max().item()
    error = (ours - reference).abs().max().item()
    assert error <= tol * scale + floor, f"{what}: max error {error:.3g} against max |reference| {scale:.3g}"
